package ndjson

import (
	"bufio"
	"io"
	"net/netip"
	"time"
)

// Encoder writes events as NDJSON. It buffers; call Flush when a batch is done.
// It is not safe for concurrent use.
type Encoder struct {
	w *bufio.Writer
	// line is reused for every event, so that encoding one allocates nothing.
	line []byte
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder {
	return &Encoder{w: bufio.NewWriterSize(w, 64<<10), line: make([]byte, 0, 1024)}
}

// Encode writes one event as one line, setting its schema version.
func (e *Encoder) Encode(ev *Event) error {
	ev.V = SchemaVersion
	e.line = append(appendEvent(e.line[:0], ev), '\n')
	_, err := e.w.Write(e.line)
	return err
}

// Flush writes buffered lines to the underlying writer.
func (e *Encoder) Flush() error { return e.w.Flush() }

// Time formats t as the schema's time: RFC 3339, UTC, nanoseconds.
func Time(t time.Time) string { return t.UTC().Format(timeLayout) }

// timeLayout is RFC 3339 with a fixed nine-digit fraction, so lines sort as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Addr formats an address as "ip:port", "[v6]:port" for IPv6, or "" when invalid.
// IPv4-mapped IPv6 addresses are shown as IPv4, as operators know them.
func Addr(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()).String()
}

// Ptr returns a pointer to v, for the schema's optional fields.
func Ptr[T any](v T) *T { return &v }
