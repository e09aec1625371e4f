// Package sink is where `discotrace trace` writes its NDJSON stream: stdout, a file
// (appended, reopened on SIGHUP or rotated by size), and a unix socket that any number of
// readers follow live. The Fanout renders each event once and hands the same line to
// every sink.
//
// A sink that fails after it was opened (disk full, a reader gone) reports it, counts
// what it could not write and goes on (a file reopens after a delay); it never stops the
// others. What a sink loses is told in its own stream too, as a lost event with "where"
// saying whose loss it was.
package sink

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"slices"
	"sync"
	"time"

	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// Sink takes whole NDJSON lines, each ending in a newline.
type Sink interface {
	// Name is the sink as the user gave it, e.g. "--output /var/log/discotrace.ndjson".
	Name() string
	// WriteLine takes one line; the sink may keep it until Flush. line is only valid
	// during the call. An error means the sink is gone for good; a sink that can recover
	// reports and counts its failure itself and returns nil.
	WriteLine(line []byte) error
	// Flush ends a burst: what was written goes out now.
	Flush() error
	// Close flushes and releases the sink.
	Close() error
}

// Reopener is a sink that can reopen its destination, as logrotate asks with SIGHUP.
type Reopener interface {
	Reopen()
}

// Fanout is the live path's output (decode/live.Output) over several sinks.
type Fanout struct {
	sinks       []Sink // those still written to
	all         []Sink // every sink opened, for Stats
	withPayload bool
	log         *log.Logger
	// enc renders into line: each event is encoded once, for every sink.
	enc    *ndjson.Encoder
	line   bytes.Buffer
	render ndjson.Renderer
}

// NewFanout writes to sinks; withPayload adds each datagram's payload to its event.
// Failures are reported on log.
func NewFanout(logger *log.Logger, withPayload bool, sinks ...Sink) *Fanout {
	f := &Fanout{sinks: sinks, all: slices.Clone(sinks), withPayload: withPayload, log: logger}
	f.enc = ndjson.NewEncoder(&f.line)
	return f
}

// Write renders ev and hands the line to every sink. It fails only when no sink is left.
func (f *Fanout) Write(ev result.Event) error {
	return f.WriteEvent(f.render.Render(ev, f.withPayload))
}

// WriteEvent encodes an event already rendered (with or without its payload, as the
// caller chose) and hands the line to every sink. It fails only when no sink is left.
func (f *Fanout) WriteEvent(ev *ndjson.Event) error {
	f.line.Reset()
	if err := f.enc.Encode(ev); err != nil {
		return err
	}
	if err := f.enc.Flush(); err != nil { // into f.line: cannot fail
		return err
	}
	line := f.line.Bytes()
	for i := 0; i < len(f.sinks); i++ {
		if err := f.sinks[i].WriteLine(line); err != nil {
			if err := f.drop(i, err); err != nil {
				return err
			}
			i--
		}
	}
	return nil
}

// Flush ends a burst on every sink.
func (f *Fanout) Flush() error {
	for i := 0; i < len(f.sinks); i++ {
		if err := f.sinks[i].Flush(); err != nil {
			if err := f.drop(i, err); err != nil {
				return err
			}
			i--
		}
	}
	return nil
}

// drop removes the failed sink i; it returns an error when it was the last one, which
// ends the stream: there is nowhere left to write.
func (f *Fanout) drop(i int, err error) error {
	s := f.sinks[i]
	f.sinks = append(f.sinks[:i], f.sinks[i+1:]...)
	s.Close()
	if len(f.sinks) == 0 {
		return fmt.Errorf("%s: %w", s.Name(), err)
	}
	f.log.Printf("%s: %v; the other outputs go on", s.Name(), err)
	return nil
}

// Reopen reopens every sink that has a destination to reopen (files, on SIGHUP). It may
// run beside Write: it reads only the list of sinks opened, which never changes.
func (f *Fanout) Reopen() {
	for _, s := range f.all {
		if r, ok := s.(Reopener); ok {
			r.Reopen()
		}
	}
}

// Close flushes and closes every sink, each whatever the others do, all at once: each
// socket gives its readers a grace period, and they run side by side.
func (f *Fanout) Close() error {
	errs := make([]error, len(f.sinks))
	var wg sync.WaitGroup
	for i, s := range f.sinks {
		wg.Go(func() {
			if err := s.Close(); err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.Name(), err)
			}
		})
	}
	wg.Wait()
	f.sinks = nil
	return errors.Join(errs...)
}

// Stats is what the sinks lost, and how many readers they serve.
type Stats struct {
	Readers      uint64 // socket readers connected now
	ReaderLost   uint64 // events dropped for socket readers too slow to take them
	ReadersGone  uint64 // socket readers whose connection failed
	FileLost     uint64 // events not written to files that failed
	FileFailures uint64 // writes, reopens and rotations of files that failed
}

// Stats sums the sinks' counts; safe to call from any goroutine.
func (f *Fanout) Stats() Stats {
	var st Stats
	for _, s := range f.all {
		switch s := s.(type) {
		case *File:
			fs := s.Stats()
			st.FileLost += fs.Lost
			st.FileFailures += fs.Failures
		case *Listener:
			ls := s.Stats()
			st.Readers += ls.Readers
			st.ReaderLost += ls.Lost
			st.ReadersGone += ls.Gone
		}
	}
	return st
}

// lostLine renders the lost event a sink writes into its own stream: n events lost by
// where between since and until.
func lostLine(where string, n uint64, since, until time.Time) []byte {
	var b bytes.Buffer
	enc := ndjson.NewEncoder(&b)
	ev := &ndjson.Event{Type: ndjson.TypeLost, Time: ndjson.Time(until), Count: ndjson.Ptr(n), Where: where}
	if !since.IsZero() {
		ev.Since = ndjson.Time(since)
	}
	enc.Encode(ev) // into b: cannot fail
	enc.Flush()
	return b.Bytes()
}
