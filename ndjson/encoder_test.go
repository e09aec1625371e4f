package ndjson

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// reflectEncoder is the encoder discotrace used before the hand-written one: encoding/json
// by reflection. It stays as the reference the hand encoder must match byte for byte.
type reflectEncoder struct {
	w   *bufio.Writer
	enc *json.Encoder
}

func newReflectEncoder(w io.Writer) *reflectEncoder {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &reflectEncoder{w: bw, enc: enc}
}

func (e *reflectEncoder) Encode(ev *Event) error {
	ev.V = SchemaVersion
	return e.enc.Encode(ev)
}

func (e *reflectEncoder) Flush() error { return e.w.Flush() }

// nastyPieces are what strings are built from: everything appendString treats specially
// (quotes, backslash, each kind of control character, invalid UTF-8 of several shapes,
// U+2028/U+2029, HTML characters that must stay unescaped) beside ordinary text.
var nastyPieces = []string{
	"", "a", "10.0.0.1:30303", "[fe80::1]:30303", "PING/v4", "ab12cd34",
	`"`, `\`, `\"`, "\x00", "\x01", "\x1f", "\b", "\f", "\n", "\r", "\t", "\x7f",
	"<", ">", "&", "/",
	"\u2028", "\u2029", "\u2027", "\u202a", "\ufffd", "é", "日本", "🦀",
	"\xff", "\xc3", "\xe2\x80", "\xed\xa0\x80", "\xc0\x80", "\xf4\x90\x80\x80", "\x80",
}

// eventFiller sets every field of an Event (and of the Disc and Evidence in it) by
// reflection, so a field added to the schema reaches both encoders without this test
// changing. When full, every field is non-zero, non-nil and non-empty, so every key must
// appear; otherwise each field may also be zero, nil, or an empty slice.
type eventFiller struct {
	rng  *rand.Rand
	full bool
	str  func() string // a random string; must not return "" when full
}

func (f *eventFiller) event(t testing.TB) *Event {
	ev := new(Event)
	f.fill(t, reflect.ValueOf(ev).Elem(), "Event")
	return ev
}

func (f *eventFiller) fill(t testing.TB, v reflect.Value, path string) {
	maybeZero := !f.full && f.rng.IntN(4) == 0
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if !v.Type().Field(i).IsExported() {
				continue // not in the schema: what the encoder keeps for itself
			}
			f.fill(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Pointer:
		if maybeZero {
			return
		}
		p := reflect.New(v.Type().Elem())
		// A pointer to zero is the case pointers exist for: fill the pointee only sometimes.
		if f.full || f.rng.IntN(3) > 0 {
			f.fill(t, p.Elem(), path)
		}
		v.Set(p)
	case reflect.Slice:
		n := 1 + f.rng.IntN(3)
		if !f.full {
			n = f.rng.IntN(4) // 0: an empty, non-nil slice
			if f.rng.IntN(4) == 0 {
				return // nil
			}
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			f.fill(t, s.Index(i), path+"[]")
		}
		v.Set(s)
	case reflect.String:
		if !maybeZero {
			v.SetString(f.str())
		}
	case reflect.Bool:
		v.SetBool(f.full || f.rng.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !maybeZero {
			bits := v.Type().Bits()
			v.SetInt([]int64{1, -1, math.MaxInt64 >> (64 - bits), math.MinInt64 >> (64 - bits), f.rng.Int64()>>(64-bits) | 1}[f.rng.IntN(5)])
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if !maybeZero {
			bits := v.Type().Bits()
			v.SetUint([]uint64{1, math.MaxUint64 >> (64 - bits), f.rng.Uint64()>>(64-bits) | 1}[f.rng.IntN(3)])
		}
	default:
		t.Fatalf("%s is a %s, which this test cannot fill yet: teach eventFiller.fill and appendEvent (append.go) about it", path, v.Type())
	}
}

// nastyString joins a few random nastyPieces; never "", since full fillers need non-empty.
func nastyString(rng *rand.Rand) string {
	s := nastyPieces[1+rng.IntN(len(nastyPieces)-1)]
	for range rng.IntN(5) {
		s += nastyPieces[rng.IntN(len(nastyPieces))]
	}
	return s
}

// requireSameOutput encodes each event with both encoders, the hand one reused across
// events as callers reuse it, and fails at the first line that differs.
func requireSameOutput(t testing.TB, events []*Event) {
	t.Helper()
	var hand, reference bytes.Buffer
	handEnc, refEnc := NewEncoder(&hand), newReflectEncoder(&reference)
	for i, ev := range events {
		hand.Reset()
		reference.Reset()
		if err := handEnc.Encode(ev); err != nil {
			t.Fatal(err)
		}
		if err := refEnc.Encode(ev); err != nil {
			t.Fatal(err)
		}
		if err := handEnc.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := refEnc.Flush(); err != nil {
			t.Fatal(err)
		}
		if got, want := hand.Bytes(), reference.Bytes(); !bytes.Equal(got, want) {
			at := 0
			for at < min(len(got), len(want)) && got[at] == want[at] {
				at++
			}
			from := max(at-60, 0)
			t.Fatalf("event %d: the hand encoder differs from encoding/json at byte %d (a field missing in append.go?)\nhand:          …%q\nencoding/json: …%q",
				i, at, got[from:min(at+60, len(got))], want[from:min(at+60, len(want))])
		}
	}
}

func TestEncoderMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var events []*Event
	// Events with every field set first: a field the hand encoder lacks fails here.
	full := &eventFiller{rng: rng, full: true, str: func() string { return nastyString(rng) }}
	for range 50 {
		events = append(events, full.event(t))
	}
	some := &eventFiller{rng: rng, str: func() string { return nastyString(rng) }}
	for range 5000 {
		events = append(events, some.event(t))
	}
	events = append(events, new(Event), &Event{Disc: new(Disc), Evidence: []Evidence{{}}})
	requireSameOutput(t, events)
}

// TestAppendStringEveryByte checks the escaper on each single byte, alone and at each
// place of a longer string, and on every rune near the ones it treats specially, where a
// table typo would hide.
func TestAppendStringEveryByte(t *testing.T) {
	var events []*Event
	for c := range 256 {
		events = append(events, &Event{Detail: "x" + string([]byte{byte(c)}) + "y"})
		// At every place of the eight bytes the escaper tests at once.
		for at := range 17 {
			b := []byte("0123456789abcdefg")
			b[at] = byte(c)
			events = append(events, &Event{Detail: string(b)})
		}
	}
	for r := rune(0x2000); r < 0x2100; r++ {
		events = append(events, &Event{Detail: string(r)})
	}
	requireSameOutput(t, events)
}

// FuzzNDJSONEncoder fills every field of an event with pieces of the fuzzed string and
// numbers drawn from the fuzzed seed, and requires both encoders to agree.
func FuzzNDJSONEncoder(f *testing.F) {
	for _, s := range nastyPieces {
		f.Add(s, uint64(len(s)))
	}
	f.Add("\"\\\x00\u2028\xff\xed\xa0\x80<&>\x7f", uint64(7))
	f.Fuzz(func(t *testing.T, s string, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, uint64(len(s))))
		filler := &eventFiller{rng: rng, full: seed%2 == 0, str: func() string {
			if len(s) == 0 {
				return "-" // full fillers need non-empty strings
			}
			i := rng.IntN(len(s))
			return s[i:] + s[:rng.IntN(i+1)] // cut anywhere, even inside a rune
		}}
		requireSameOutput(t, []*Event{filler.event(t)})
	})
}

// Realistic events for the benchmark, as the live tracer writes them.
func benchmarkEvents() map[string]*Event {
	return map[string]*Event{
		"recv_disc": {
			Type: TypeRecv, Time: "2026-11-23T19:56:06.817726000Z", Seq: 1234567,
			Src: "10.99.0.2:30303", Dst: "10.99.0.1:30303", Len: Ptr(132),
			Cgroup: 8712, NetNS: 4026531840, Ifindex: 1, Cookie: 40961,
			Disc: &Disc{
				Proto: "discv5", Kind: "MESSAGE", Msg: "FINDNODE", ReqID: "8f3a11c2",
				Nonce:     "a1b2c3d4e5f60718293a4b5c",
				SrcID:     "ae6856aac48989adf1e084945cbdd86a2fa8dc4bddd8a8f69dba48572eec07fb",
				DstID:     "969b0a11b8a56bacf1ac18f219e7e376e7c213b7e7e7e46cc70a5dd086daff2a",
				Distances: []uint{256, 255, 254},
			},
		},
		"exchange_evidence": {
			Type: TypeExchange, Time: "2026-11-23T19:56:39.215275000Z", Seq: 1234570,
			Initiator: "10.99.0.1:30303", Recipient: "10.99.0.2:30303",
			InitiatorID: "85b1f044bab6d30f3a19c1501563915e194d8cfba1943570603f7606a3115508",
			RecipientID: "ae6856aac48989adf1e084945cbdd86a2fa8dc4bddd8a8f69dba48572eec07fb",
			Req:         "PING/v4", Resp: "PONG/v4", Outcome: "failed", Cause: "icmp_unreachable",
			RTTNs: Ptr(int64(499000)),
			Evidence: []Evidence{
				{Seq: 1234568, Time: "2026-11-23T19:56:39.215275000Z", Type: TypeSend, Detail: "PING/v4 to 10.99.0.2:30303"},
				{Seq: 1234569, Time: "2026-11-23T19:56:39.215811000Z", Type: TypeICMP, Detail: "icmp 3/3 port unreachable from 10.99.0.1 quoting 10.99.0.2:30303 > 10.99.0.1:30303"},
			},
		},
	}
}

// BenchmarkEncoder writes realistic events with the hand encoder and with encoding/json
// side by side. One op is one event: allocs/op is allocations per event.
func BenchmarkEncoder(b *testing.B) {
	events := benchmarkEvents()
	for _, name := range []string{"recv_disc", "exchange_evidence"} {
		ev := events[name]
		encoders := []struct {
			name string
			new  func(io.Writer) interface{ Encode(*Event) error }
		}{
			{"hand", func(w io.Writer) interface{ Encode(*Event) error } { return NewEncoder(w) }},
			{"encoding_json", func(w io.Writer) interface{ Encode(*Event) error } { return newReflectEncoder(w) }},
		}
		for _, enc := range encoders {
			b.Run(name+"/"+enc.name, func(b *testing.B) {
				e := enc.new(io.Discard)
				b.ReportAllocs()
				for b.Loop() {
					if err := e.Encode(ev); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
				b.ReportMetric(0, "ns/op") // the same figure as ns/event: printed once
			})
		}
	}
}
