package textview

import (
	"github.com/discotrace/discotrace/decode/live"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// Output is a Writer as the live path's output (live.Output): each result is rendered to
// the schema value by ndjson.FromResult, as for NDJSON, then written as a line.
type Output struct{ W *Writer }

var _ live.Output = Output{}

// Write writes the line of one result.
func (o Output) Write(ev result.Event) error { return o.W.Write(ndjson.FromResult(ev, false)) }

// Flush writes buffered lines to the underlying writer.
func (o Output) Flush() error { return o.W.Flush() }
