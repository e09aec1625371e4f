package sink

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// failingWriter fails every write, as stdout does once its reader has gone.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, syscall.EPIPE }

func sendEvent(seq uint64) result.Event {
	return &result.Observation{
		Head: result.Head{Seq: seq, Time: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)},
		Record: record.Record{Kind: record.Datagram, Dir: record.DirOut, Len: 4, Payload: []byte("ping"),
			Src: netip.MustParseAddrPort("127.0.0.1:30303"), Dst: netip.MustParseAddrPort("127.0.0.1:30304")},
	}
}

// Every sink gets the same lines. A sink that fails for good (stdout whose reader went)
// is reported and dropped while the others go on, as they do beside a file on a full
// disk; when none is left, writing fails.
func TestFanoutWritesEverySinkAndOutlivesAFailedOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.ndjson")
	tl, lg := newTestLog()
	file, err := OpenFile(FileConfig{Path: path, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	full, err := OpenFile(FileConfig{Path: "/dev/full", Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	out := NewFanout(lg, true, NewWriter("stdout", &buf), file, NewWriter("pipe", failingWriter{}), full)
	for seq := uint64(1); seq <= 3; seq++ {
		if err := out.Write(sendEvent(seq)); err != nil {
			t.Fatal(err)
		}
		if err := out.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if st := out.Stats(); st.FileLost != 3 || st.FileFailures == 0 {
		t.Errorf("stats %+v: want the 3 events the full disk lost, and its failures", st)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, buf.Bytes()) || len(readEvents(t, got)) != 3 {
		t.Errorf("file:\n%s\nstdout:\n%s\nwant the same three lines", got, buf.Bytes())
	}
	if !strings.Contains(string(got), `"payload":"70696e67"`) {
		t.Errorf("lines without the payload asked for:\n%s", got)
	}
	if l := tl.lines(); len(l) != 3 || !strings.Contains(l[0], "pipe: broken pipe; the other outputs go on") ||
		!strings.Contains(l[1], "--output /dev/full: write /dev/full: no space left on device") || !strings.Contains(l[2], "3 events not written") {
		t.Errorf("reports %q: want the failed pipe, the full disk, and what it lost", l)
	}

	alone := NewFanout(lg, false, NewWriter("stdout", failingWriter{}))
	alone.Write(sendEvent(1))
	if err := alone.Flush(); !errors.Is(err, syscall.EPIPE) || !strings.HasPrefix(err.Error(), "stdout: ") {
		t.Errorf("the last sink failing: %v; want its error, naming it", err)
	}
}
