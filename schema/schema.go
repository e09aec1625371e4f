// Package schema holds the JSON Schema of discotrace's NDJSON events (events.schema.json,
// draft 2020-12): the contract for programs that read the stream. Each event type allows
// only its own keys, as Suricata's EVE schema does, so a key the schema does not know
// fails validation instead of slipping into consumers unannounced.
package schema

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// JSON is the schema itself, events.schema.json.
//
//go:embed events.schema.json
var JSON []byte

// URL is the schema's $id.
const URL = "https://github.com/discotrace/discotrace/schema/events.schema.json"

var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(JSON))
	if err != nil {
		return nil, fmt.Errorf("events.schema.json is not JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat() // date-time is checked, not only annotated
	if err := c.AddResource(URL, doc); err != nil {
		return nil, fmt.Errorf("events.schema.json: %w", err)
	}
	return c.Compile(URL)
})

// ValidateLine checks one event (one line of the stream, without its newline).
func ValidateLine(line []byte) error {
	s, err := compiled()
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return s.Validate(v)
}

// ValidateStream checks every line of an NDJSON stream and returns how many it checked;
// the error names the first line that does not conform.
func ValidateStream(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		if err := ValidateLine(sc.Bytes()); err != nil {
			return n, fmt.Errorf("line %d does not conform to events.schema.json: %w\n%s", n, err, sc.Bytes())
		}
	}
	return n, sc.Err()
}
