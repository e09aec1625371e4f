package keylog_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/keylog"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// decodeWithKeylog decodes a shared capture with the given node keys and returns the
// key log the decoder wrote.
func decodeWithKeylog(t *testing.T, name string, keys ...string) string {
	t.Helper()
	var buf bytes.Buffer
	var id decode.Identity
	for _, k := range keys {
		id.Keys = append(id.Keys, disctest.Key(t, k))
	}
	dec := decode.NewDecoder(decode.Config{Identity: id, KeyObserver: keylog.NewWriter(&buf)})
	f, err := os.Open(disctest.CapturePath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := capture.Read(f, func(r *record.Record) error {
		dec.Feed(r, func(result.Event) {})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dec.Flush(func(result.Event) {})
	return buf.String()
}

func TestKeylogFromCapture(t *testing.T) {
	log := decodeWithKeylog(t, "devp2p-discovery.pcap", disctest.KeyA, disctest.KeyB)
	idA, idB := disctest.ID(t, disctest.KeyA).String(), disctest.ID(t, disctest.KeyB).String()
	lines := strings.Split(strings.TrimSpace(log), "\n")
	var locals, sessions int
	for _, l := range lines {
		fields := strings.Fields(l)
		switch fields[0] {
		case "#":
		case "DISCV5_LOCAL_ID":
			locals++
			if len(fields) != 2 || (fields[1] != idA && fields[1] != idB) {
				t.Errorf("local ID line %q: want one of A's or B's IDs", l)
			}
		case "DISCV5_SESSION":
			sessions++
			// B runs ping and resolve against A: B initiates, A (whose key is given) answers.
			if len(fields) != 6 || len(fields[1]) != 24 || fields[2] != idB || fields[3] != idA || len(fields[4]) != 32 || len(fields[5]) != 32 {
				t.Errorf("session line %q: want nonce, B, A, two 16-byte keys", l)
			}
		default:
			t.Errorf("unknown line %q", l)
		}
	}
	if locals != 2 || sessions != 2 {
		t.Errorf("%d local IDs and %d sessions, want 2 and 2 (B's ping and resolve handshakes):\n%s", locals, sessions, log)
	}
	// The node keys are never written.
	for _, k := range []string{disctest.KeyA, disctest.KeyB} {
		if strings.Contains(log, k) {
			t.Errorf("the key log holds a node key")
		}
	}
}
