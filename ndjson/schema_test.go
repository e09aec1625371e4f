package ndjson

import (
	"bytes"
	"encoding/json"
	"math/big"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/discotrace/discotrace/schema"
)

// schemaDoc is events.schema.json as generic JSON, numbers kept exact.
type schemaDoc struct {
	defs map[string]map[string]any
}

func loadSchema(t *testing.T) *schemaDoc {
	t.Helper()
	var doc struct {
		Defs map[string]map[string]any `json:"$defs"`
	}
	dec := json.NewDecoder(bytes.NewReader(schema.JSON))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("events.schema.json: %v", err)
	}
	return &schemaDoc{defs: doc.Defs}
}

// props are the properties a $defs object allows.
func (s *schemaDoc) props(t *testing.T, def string) map[string]any {
	t.Helper()
	d, ok := s.defs[def]
	if !ok {
		t.Fatalf("events.schema.json has no $defs/%s", def)
	}
	if d["additionalProperties"] != false {
		t.Errorf("$defs/%s allows additional properties: the schema would not catch an unknown key", def)
	}
	return d["properties"].(map[string]any)
}

// resolve merges a property's $ref into it.
func (s *schemaDoc) resolve(p map[string]any) map[string]any {
	ref, ok := p["$ref"].(string)
	if !ok {
		return p
	}
	out := map[string]any{}
	for k, v := range s.defs[strings.TrimPrefix(ref, "#/$defs/")] {
		out[k] = v
	}
	for k, v := range p {
		out[k] = v
	}
	return out
}

// jsonKeys are the JSON keys of a Go struct's fields.
func jsonKeys(typ reflect.Type) []string {
	var keys []string
	for i := range typ.NumField() {
		if !typ.Field(i).IsExported() {
			continue // not in the schema: what the encoder keeps for itself
		}
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		keys = append(keys, name)
	}
	return keys
}

// A field added to Event, Disc or Evidence must be added to the schema (to the event
// types that carry it), and the schema must name no key the Go types lack.
func TestSchemaCoversEveryField(t *testing.T) {
	s := loadSchema(t)
	inSomeType := map[string]bool{}
	for _, typ := range eventTypes {
		for key := range s.props(t, "event_"+typ) {
			inSomeType[key] = true
		}
	}
	goKeys := jsonKeys(reflect.TypeFor[Event]())
	for _, key := range goKeys {
		if !inSomeType[key] {
			t.Errorf("Event's %q is in no event type of schema/events.schema.json: add it to the types that carry it", key)
		}
	}
	for key := range inSomeType {
		if !slices.Contains(goKeys, key) {
			t.Errorf("schema/events.schema.json names %q, which ndjson.Event does not have", key)
		}
	}
	for def, typ := range map[string]reflect.Type{"disc": reflect.TypeFor[Disc](), "evidence": reflect.TypeFor[Evidence]()} {
		props := s.props(t, def)
		keys := jsonKeys(typ)
		for _, key := range keys {
			if props[key] == nil {
				t.Errorf("%s's %q is not in $defs/%s of schema/events.schema.json", typ.Name(), key, def)
			}
		}
		for key := range props {
			if !slices.Contains(keys, key) {
				t.Errorf("$defs/%s of schema/events.schema.json names %q, which ndjson.%s does not have", def, key, typ.Name())
			}
		}
	}
}

// eventTypes are the values of "type", each with its $defs/event_<type>.
var eventTypes = []string{TypeSend, TypeRecv, TypeRead, TypeICMP, TypeDrop, TypeLost, TypeShed,
	TypePacket, TypeHandshake, TypeExchange, TypeRevision, TypeAnomaly}

// Events of each type with every field the schema allows it set (by eventFiller, then
// given values of the field's kind: an address where an address goes, numbers at the
// edges of their range) conform: the schema accepts everything the encoder can write
// for that type, keys and extremes alike.
func TestFullEventsConform(t *testing.T) {
	s := loadSchema(t)
	rng := rand.New(rand.NewPCG(3, 4))
	filler := &eventFiller{rng: rng, full: true, str: func() string { return "x" }}
	for _, typ := range eventTypes {
		props := s.props(t, "event_"+typ)
		for i := range 20 {
			ev := filler.event(t)
			s.conform(t, reflect.ValueOf(ev).Elem(), props, i)
			ev.Type = typ
			var line bytes.Buffer
			enc := NewEncoder(&line)
			if err := enc.Encode(ev); err != nil {
				t.Fatal(err)
			}
			if err := enc.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := schema.ValidateLine(bytes.TrimSpace(line.Bytes())); err != nil {
				t.Fatalf("a full %s event does not conform: %v\n%s", typ, err, line.Bytes())
			}
			// Every key the schema allows the type was written: the check covered them all.
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(line.Bytes(), &keys); err != nil {
				t.Fatal(err)
			}
			for key := range props {
				if _, ok := keys[key]; !ok {
					t.Fatalf("a full %s event lacks %q:\n%s", typ, key, line.Bytes())
				}
			}
		}
	}
}

// conform clears the fields of v that props does not allow and gives the others a value
// the schema accepts: its const, one of its enum, a sample of its format, a number
// clamped into its range. i picks among enum values and samples.
func (s *schemaDoc) conform(t *testing.T, v reflect.Value, props map[string]any, i int) {
	t.Helper()
	for f := range v.NumField() {
		if !v.Type().Field(f).IsExported() {
			continue
		}
		key, _, _ := strings.Cut(v.Type().Field(f).Tag.Get("json"), ",")
		p, ok := props[key].(map[string]any)
		if !ok {
			v.Field(f).SetZero()
			continue
		}
		s.conformValue(t, v.Field(f), s.resolve(p), key, i)
	}
}

// samples are valid values of the schema's string kinds, by $defs name or by key.
var samples = map[string][]string{
	"time":          {"2026-11-23T19:56:06.817726000Z", "1970-01-01T00:00:00.000000000Z"},
	"addr":          {"10.99.0.1:30303", "[fe80::1]:0", "[2001:db8::1]:65535", "0.0.0.0:0"},
	"nodeID":        {"ae6856aac48989adf1e084945cbdd86a2fa8dc4bddd8a8f69dba48572eec07fb"},
	"hex":           {"70696e67", "00"},
	"msgName":       {"PING/v4", "NODES/v5", "ENRRESPONSE/v4"},
	"comm":          {"geth", "devp2p-discove"},
	"reason":        {"SOCKET_RCVBUFF", "NO_SOCKET"},
	"location":      {"udp_queue_rcv_one_skb"},
	"detail":        {"icmp 3/3 from 10.0.0.2", "", "\"quoted\"\n"},
	"req_id":        {"8f3a11c2", "00", "0102030405060708"},
	"nonce":         {"a1b2c3d4e5f60718293a4b5c"},
	"expiration":    {"2026-11-23T19:56:26Z"},
	"talk_protocol": {"discv5-test", "0x00ff"},
	"error":         {"cannot decrypt: no key"},
}

func (s *schemaDoc) conformValue(t *testing.T, v reflect.Value, p map[string]any, key string, i int) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		s.conformValue(t, v.Elem(), p, key, i)
	case reflect.Struct:
		s.conform(t, v, s.resolve(p)["properties"].(map[string]any), i)
	case reflect.Slice:
		items := s.resolve(p["items"].(map[string]any))
		for j := range v.Len() {
			s.conformValue(t, v.Index(j), items, key, i+j)
		}
	case reflect.String:
		switch {
		case p["const"] != nil:
			v.SetString(p["const"].(string))
		case p["enum"] != nil:
			enum := p["enum"].([]any)
			v.SetString(enum[i%len(enum)].(string))
		default:
			ref, _ := p["$ref"].(string)
			list := samples[strings.TrimPrefix(ref, "#/$defs/")]
			if list == nil {
				list = samples[key]
			}
			if list == nil {
				t.Fatalf("no sample string for %q: add one to samples (schema_test.go)", key)
			}
			if s := list[i%len(list)]; s != "" {
				v.SetString(s)
			} else {
				v.SetString(list[0]) // a full event keeps every key
			}
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n := new(big.Int)
		if v.CanInt() {
			n.SetInt64(v.Int())
		} else {
			n.SetUint64(v.Uint())
		}
		if c, ok := p["const"].(json.Number); ok {
			n.SetString(c.String(), 10)
		}
		if lo, ok := p["minimum"].(json.Number); ok {
			if b, _ := new(big.Int).SetString(lo.String(), 10); n.Cmp(b) < 0 {
				n = b
			}
		}
		if hi, ok := p["maximum"].(json.Number); ok {
			if b, _ := new(big.Int).SetString(hi.String(), 10); n.Cmp(b) > 0 {
				n = b
			}
		}
		if n.Sign() == 0 { // a full event keeps every key: omitempty drops a zero
			n.SetInt64(1)
		}
		if v.CanInt() {
			v.SetInt(n.Int64())
		} else {
			v.SetUint(n.Uint64())
		}
	case reflect.Bool:
		v.SetBool(i%2 == 0)
	default:
		t.Fatalf("%q is a %s, which conform cannot set yet", key, v.Type())
	}
}
