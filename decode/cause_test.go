package decode

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// Every cause the event schema allows has a code: codeOf panics on one it lacks, so a
// cause added to the schema and the result package but not to causes fails here first.
func TestEveryCauseHasACode(t *testing.T) {
	raw, err := os.ReadFile("../schema/events.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Defs map[string]struct {
			Enum []string `json:"enum"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	enum := schema.Defs["cause"].Enum
	if len(enum) == 0 {
		t.Fatal(`the schema has no "cause" enum under $defs`)
	}
	for _, c := range enum {
		if got := codeOf(result.Cause(c)).cause(); got != result.Cause(c) {
			t.Errorf("%s comes back as %q", c, got)
		}
	}
	if len(causes) != len(enum)+1 {
		t.Errorf("causes has %d entries, want the schema's %d and the empty one", len(causes), len(enum))
	}
}

// A read's evidence says who read it and how long it waited, as far as the tracer knows.
func TestReadDetail(t *testing.T) {
	for _, tc := range []struct {
		r    record.Record
		want string
	}{
		{record.Record{HasProc: true, PID: 77, Comm: "geth", HasQueueTime: true, QueueTime: 35 * time.Microsecond},
			"read by pid 77 (geth) after 35µs in the socket queue, never answered"},
		{record.Record{HasProc: true, PID: 4294967295, Comm: "a b"}, "read by pid 4294967295 (a b), never answered"},
		{record.Record{HasQueueTime: true, QueueTime: 1500 * time.Millisecond}, "read by the application after 1.5s in the socket queue, never answered"},
		{record.Record{}, "read by the application, never answered"},
	} {
		if got := readDetail(&tc.r); got != tc.want {
			t.Errorf("readDetail(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}
