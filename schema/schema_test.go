package schema_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
	"github.com/discotrace/discotrace/schema"
)

// testKeys are the test-only node keys of ../shared/testdata/README.md (A, G, B, C).
var testKeys = []string{
	"1111111111111111111111111111111111111111111111111111111111111111",
	"2222222222222222222222222222222222222222222222222222222222222222",
	"3333333333333333333333333333333333333333333333333333333333333333",
	"4444444444444444444444444444444444444444444444444444444444444444",
}

// Every event a decode of the shared captures writes, without keys (undecryptable
// discv5, unknown sides) and with them (decrypted messages, node IDs, exchanges),
// conforms to the schema.
func TestSharedCapturesConform(t *testing.T) {
	// The shared captures: under $DISCOTRACE_TESTDATA (the Makefile sets it), else beside
	// the checkout. Missing, the test fails: it is this check's input.
	dir := os.Getenv("DISCOTRACE_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "testdata")
	}
	paths, err := filepath.Glob(filepath.Join(dir, "pcap", "*.pcap*"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no captures in %s/pcap (%v): set DISCOTRACE_TESTDATA to the shared testdata folder", dir, err)
	}
	for _, path := range paths {
		for _, withKeys := range []bool{false, true} {
			name := filepath.Base(path)
			if withKeys {
				name += "/keys"
			}
			t.Run(name, func(t *testing.T) {
				var cfg decode.Config
				if withKeys {
					for _, s := range testKeys {
						k, err := decode.ParseNodeKey(s)
						if err != nil {
							t.Fatal(err)
						}
						cfg.Identity.Keys = append(cfg.Identity.Keys, k)
					}
				}
				stream, types := decodeToNDJSON(t, path, cfg)
				n, err := schema.ValidateStream(bytes.NewReader(stream))
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					t.Fatal("the capture gave no events to check")
				}
				t.Logf("%d events conform: %v", n, types)
			})
		}
	}
}

// decodeToNDJSON decodes the capture at path, payloads included, and returns the NDJSON
// stream and how many events of each type it holds.
func decodeToNDJSON(t *testing.T, path string, cfg decode.Config) ([]byte, map[string]int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	enc := ndjson.NewEncoder(&out)
	types := map[string]int{}
	emit := func(ev result.Event) {
		line := ndjson.FromResult(ev, true)
		types[line.Type]++
		if err := enc.Encode(line); err != nil {
			t.Fatal(err)
		}
	}
	dec := decode.NewDecoder(cfg)
	if _, err := capture.ReadStats(f, func(r *record.Record) error { dec.Feed(r, emit); return nil }); err != nil {
		t.Fatal(err)
	}
	dec.Flush(emit)
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), types
}

// The validator is not a formality: a key another type owns, a bad enum value, a
// malformed time or address, and an unknown key inside disc each fail.
func TestSchemaRejects(t *testing.T) {
	valid := `{"v":1,"type":"send","time":"2026-11-23T19:56:06.817726000Z","seq":3,"src":"10.0.0.1:30303","dst":"[fe80::1]:30303","len":4,"disc":{"proto":"discv4","kind":"PING"}}`
	if err := schema.ValidateLine([]byte(valid)); err != nil {
		t.Fatalf("a valid send: %v", err)
	}
	for _, c := range []struct{ name, from, to string }{
		{"a handshake's key on a send", `"len":4`, `"len":4,"outcome":"failed"`},
		{"an unknown key", `"len":4`, `"len":4,"colour":"red"`},
		{"an unknown type", `"send"`, `"sent"`},
		{"a time that is not RFC 3339", `19:56:06`, `19-56-06`},
		{"an address without a port", `"10.0.0.1:30303"`, `"10.0.0.1"`},
		{"an unknown disc kind", `"PING"`, `"PINGG"`},
		{"an unknown key in disc", `"kind":"PING"`, `"kind":"PING","hash":"00"}`},
		{"a negative length", `"len":4`, `"len":-4`},
		{"another schema version", `"v":1`, `"v":2`},
	} {
		line := strings.Replace(valid, c.from, c.to, 1)
		if line == valid {
			t.Fatalf("%s: the replacement did not apply", c.name)
		}
		if err := schema.ValidateLine([]byte(line)); err == nil {
			t.Errorf("%s passes validation: %s", c.name, line)
		}
	}
}
