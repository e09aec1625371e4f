package sink

import (
	"io"
	"log"
	"path/filepath"
	"testing"

	"github.com/discotrace/discotrace/ndjson"
)

// The cost of the fan-out per event, beside the encoder alone writing to stdout as
// trace did before sinks: go test -run '^$' -bench Fanout ./sink/
func BenchmarkFanout(b *testing.B) {
	ev := sendEvent(1)
	lg := log.New(io.Discard, "", 0)
	b.Run("encoder-alone", func(b *testing.B) {
		enc := ndjson.NewEncoder(io.Discard)
		for i := 0; b.Loop(); i++ {
			enc.Encode(ndjson.FromResult(ev, true))
			if i%64 == 0 {
				enc.Flush()
			}
		}
	})
	run := func(b *testing.B, sinks ...Sink) {
		out := NewFanout(lg, true, sinks...)
		for i := 0; b.Loop(); i++ {
			out.Write(ev)
			if i%64 == 0 {
				out.Flush()
			}
		}
		out.Close()
	}
	b.Run("stdout", func(b *testing.B) { run(b, NewWriter("stdout", io.Discard)) })
	b.Run("stdout+file+socket-without-readers", func(b *testing.B) {
		dir := b.TempDir()
		f, err := OpenFile(FileConfig{Path: filepath.Join(dir, "events.ndjson"), Log: lg})
		if err != nil {
			b.Fatal(err)
		}
		l, err := Listen(ListenConfig{Path: filepath.Join(dir, "events.sock"), Log: lg})
		if err != nil {
			b.Fatal(err)
		}
		run(b, NewWriter("stdout", io.Discard), f, l)
	})
}
