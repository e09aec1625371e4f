package main

import (
	"bytes"
	"io"
	"sync"
	"testing"

	"github.com/discotrace/discotrace/schema"
)

// requireSchemaValid fails t unless every line of stream conforms to
// schema/events.schema.json.
func requireSchemaValid(t *testing.T, stream []byte) {
	t.Helper()
	if _, err := schema.ValidateStream(bytes.NewReader(stream)); err != nil {
		t.Error(err)
	}
}

// schemaChecked passes what is written to w through, keeping a copy that is checked
// against the schema when t ends: for a command writing while the test runs, whose
// output the test reads only once the command ended. The copy costs the command a
// memcpy; validating as it writes would slow it, and the tests that flood it measure
// what it keeps up with.
func schemaChecked(t *testing.T, w io.Writer) io.Writer {
	c := &copyingWriter{w: w}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		requireSchemaValid(t, c.copy.Bytes())
	})
	return c
}

type copyingWriter struct {
	w    io.Writer
	mu   sync.Mutex
	copy bytes.Buffer
}

func (c *copyingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.copy.Write(p)
	c.mu.Unlock()
	return c.w.Write(p)
}
