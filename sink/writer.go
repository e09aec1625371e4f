package sink

import (
	"bufio"
	"io"
)

// Writer is a sink over a plain writer: stdout. A write error is final (a closed pipe
// does not come back).
type Writer struct {
	name string
	w    *bufio.Writer
}

// NewWriter buffers lines for w, writing them at each Flush.
func NewWriter(name string, w io.Writer) *Writer {
	return &Writer{name: name, w: bufio.NewWriterSize(w, 64<<10)}
}

func (s *Writer) Name() string { return s.name }

func (s *Writer) WriteLine(line []byte) error {
	_, err := s.w.Write(line)
	return err
}

func (s *Writer) Flush() error { return s.w.Flush() }
func (s *Writer) Close() error { return s.w.Flush() }
