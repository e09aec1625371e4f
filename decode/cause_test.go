package decode

import (
	"encoding/json"
	"os"
	"testing"

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
