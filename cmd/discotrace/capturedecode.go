package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// decodeCapture decodes the capture read from in (name is its path, or "-" for standard
// input) and hands each event to emit, which `decode` prints and `report` counts. An
// error from emit stops it and comes back as a write error. On a damaged capture, what
// was decoded before the damage is still emitted, then the error says where it stopped.
func decodeCapture(in io.Reader, name string, cfg decode.Config, diag io.Writer, emit func(result.Event) error) error {
	cfg.Capture = true
	dec := decode.NewDecoder(cfg)
	watch := newIdentityWatch(dec, cfg.Identity, diag, 0)
	var writeErr error
	feed := func(ev result.Event) {
		watch.observe(ev)
		if writeErr == nil {
			writeErr = emit(ev)
		}
	}
	stats, err := capture.ReadStats(in, func(r *record.Record) error {
		dec.Feed(r, feed)
		return writeErr
	})
	// Frames that give no event at all are said once, so that an empty output is not
	// read as an empty capture.
	if stats.Malformed > 0 || stats.UnsupportedLink > 0 {
		fmt.Fprintf(diag, "discotrace: %d of %d frames skipped: %d with invalid or cut-off headers (a snap length below the UDP header?), %d from interfaces without IP\n",
			stats.Malformed+stats.UnsupportedLink, stats.Frames, stats.Malformed, stats.UnsupportedLink)
	}
	if writeErr == nil {
		dec.Flush(feed)
		if err != nil {
			watch.finish("in the capture before the damage")
		} else {
			watch.finish("in this capture")
		}
	}
	if writeErr != nil {
		return fmt.Errorf("cannot write the events: %w", writeErr)
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("cannot read the capture: %w", err)
		}
		if name == "-" {
			name = "from standard input"
		}
		return fmt.Errorf("cannot read the capture %s: %w", name, err)
	}
	return nil
}
