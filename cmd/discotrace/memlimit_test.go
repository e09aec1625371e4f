package main

import (
	"os"
	"runtime/debug"
	"testing"
)

// limitWriter records the Go memory limit in force when the events are written.
type limitWriter struct{ limit int64 }

func (w *limitWriter) Write(p []byte) (int, error) {
	w.limit = debug.SetMemoryLimit(-1)
	return len(p), nil
}

// limitDuringDecode runs `decode` on a shared capture and returns the Go memory limit
// in force while it wrote its events.
func limitDuringDecode(t *testing.T) int64 {
	t.Helper()
	cmd := newDecodeCmd()
	w := &limitWriter{limit: -1}
	cmd.SetOut(w)
	cmd.SetArgs([]string{"--format", "ndjson", testCapture(t, "devp2p-discovery.pcap")})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if w.limit == -1 {
		t.Fatal("decode wrote nothing")
	}
	return w.limit
}

func TestDecodeLimitsMemoryUnlessGOMEMLIMITIsSet(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Setenv("GOMEMLIMIT", "") // restored after the test
	os.Unsetenv("GOMEMLIMIT")
	if got := limitDuringDecode(t); got != decodeMemoryLimit {
		t.Errorf("GOMEMLIMIT unset: limit %d while decoding, want %d", got, decodeMemoryLimit)
	}
	if after := debug.SetMemoryLimit(-1); after != before {
		t.Errorf("limit %d after decoding, want the previous %d back", after, before)
	}

	// The operator's choice stands, whatever it is (the runtime read it at start).
	t.Setenv("GOMEMLIMIT", "off")
	if got := limitDuringDecode(t); got != before {
		t.Errorf("GOMEMLIMIT set: limit %d while decoding, want it left at %d", got, before)
	}
}
