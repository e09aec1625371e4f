// Package livetrace joins the kernel tracer to the live decoding path: the tracer's events
// as the decoder's records, read as a live.Source. `discotrace trace` and `discotrace
// demo` both stream through it.
package livetrace

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/discotrace/discotrace/decode/live"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/tracer"
)

// Source is the tracer as the live path's source of records; it ends (io.EOF) when the
// tracer is closed.
type Source struct{ Tracer *tracer.Tracer }

var _ live.Source = Source{}

func (s Source) Read() (record.Record, error) {
	ev, err := s.Tracer.Read()
	switch {
	case errors.Is(err, tracer.ErrClosed):
		return record.Record{}, io.EOF
	case err != nil:
		return record.Record{}, fmt.Errorf("read kernel events: %w", err)
	}
	return RecordOf(&ev), nil
}

func (s Source) DeliveredUntil() time.Time { return s.Tracer.DeliveredUntil() }
