package sink

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/discotrace/discotrace/ndjson"
)

// dialReader connects to the socket and waits until the listener serves it.
func dialReader(t *testing.T, l *Listener, path string) *net.UnixConn {
	t.Helper()
	want := l.Stats().Served + 1
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for l.Stats().Served < want {
		time.Sleep(time.Millisecond) // waiting for the accept, not timing it
	}
	return c
}

// streamLines reads c to its end, sending each line's seq (and the lost events) as it
// comes; the channel closes at the end.
func streamLines(t *testing.T, c io.Reader) <-chan ndjson.Event {
	out := make(chan ndjson.Event, 1024)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var ev ndjson.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("line %q: %v", sc.Text(), err)
				return
			}
			out <- ev
		}
	}()
	return out
}

// collectLines reads c to its end and yields every event it read.
func collectLines(t *testing.T, c io.Reader) <-chan []ndjson.Event {
	out := make(chan []ndjson.Event, 1)
	go func() {
		var evs []ndjson.Event
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var ev ndjson.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("line %q: %v", sc.Text(), err)
				break
			}
			evs = append(evs, ev)
		}
		out <- evs
	}()
	return out
}

// Two readers of the socket, one reading everything and one that reads nothing for a
// while: the first gets every event; the second loses events, alone, and when it has
// room again a lost event (where "reader") at the gap says how many. Every event is then
// accounted for in its stream: received, or counted in the lost event at its place.
func TestSlowReaderLosesAloneAndIsTold(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.sock")
	tl, lg := newTestLog()
	l, err := Listen(ListenConfig{Path: path, ReaderBuffer: 64 << 10, CloseGrace: time.Minute, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	fast, slow := dialReader(t, l, path), dialReader(t, l, path)
	fastLines := streamLines(t, fast)

	// The writer waits for the fast reader every 20 lines (2 KiB): it is never behind
	// by more than its queue holds, so losing events for it would be a bug. The slow one
	// reads nothing meanwhile: its socket buffer and then its queue fill up.
	const n, more = 30000, 100
	var fastGot []uint64
	write := func(from, to int) {
		for i := from; i <= to; i++ {
			l.WriteLine(numbered(i))
			if i%20 == 0 || i == to {
				l.Flush()
				for len(fastGot) == 0 || fastGot[len(fastGot)-1] < uint64(i) {
					ev, ok := <-fastLines
					if !ok {
						t.Fatalf("fast reader's stream ended after %d events", len(fastGot))
					}
					if ev.Type == ndjson.TypeLost {
						t.Fatalf("fast reader told of a loss: %+v", ev)
					}
					fastGot = append(fastGot, ev.Seq)
				}
			}
		}
	}
	write(1, n)
	if st := l.Stats(); st.Lost == 0 {
		t.Fatalf("%+v: the slow reader lost nothing: the test did not fill its queue", st)
	}
	// The slow reader starts reading; more events come, and it is told what it lost.
	slowLines := collectLines(t, slow)
	write(n+1, n+more)
	st := l.Stats()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Close: %v; want it removed", err)
	}
	if _, ok := <-fastLines; ok {
		t.Errorf("fast reader got more than was written")
	}
	wantSeqs(t, "fast reader", fastGot, 1, n+more)

	// The slow reader's stream: events in order, each gap right after a lost event
	// counting it.
	var next, received, told uint64 = 1, 0, 0
	var pendingLost uint64
	for _, ev := range <-slowLines {
		if ev.Type == ndjson.TypeLost {
			if ev.Where != ndjson.WhereReader || ev.Count == nil || *ev.Count == 0 || ev.Since == "" {
				t.Fatalf("slow reader's lost event %+v: want where reader, a count and since", ev)
			}
			pendingLost += *ev.Count
			told += *ev.Count
			continue
		}
		if ev.Seq != next+pendingLost && !(received == 0 && pendingLost == 0) {
			t.Fatalf("slow reader: seq %d after seq %d and %d told lost", ev.Seq, next-1, pendingLost)
		}
		next, pendingLost = ev.Seq+1, 0
		received++
	}
	if received == 0 || told == 0 {
		t.Fatalf("slow reader received %d events and was told of %d lost; want both", received, told)
	}
	if told != st.Lost {
		t.Errorf("slow reader told of %d lost events, the listener counted %d", told, st.Lost)
	}
	if last := next - 1 + pendingLost; last != n+more {
		t.Errorf("slow reader's stream accounts up to seq %d, want %d", last, n+more)
	}
	if l := tl.lines(); len(l) != 1 || !strings.Contains(l[0], "reader 2") || !strings.Contains(l[0], "dropped for it") {
		t.Errorf("reports %q: want one line on the slow reader's losses", l)
	}
}

// A reader that goes away is reported and counted; the others go on.
func TestGoneReaderIsCounted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.sock")
	tl, lg := newTestLog()
	l, err := Listen(ListenConfig{Path: path, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	gone, stays := dialReader(t, l, path), dialReader(t, l, path)
	staysLines := streamLines(t, stays)
	gone.Close()
	const n = 2000
	for i := 1; i <= n; i++ {
		l.WriteLine(numbered(i))
		l.Flush()
	}
	var got []uint64
	for ev := range staysLines {
		got = append(got, ev.Seq)
		if len(got) == n {
			break
		}
	}
	wantSeqs(t, "the reader that stays", got, 1, n)
	for l.Stats().Gone == 0 {
		time.Sleep(time.Millisecond) // its goroutine notices at its next write
	}
	l.Close()
	if lines := tl.lines(); len(lines) != 1 || !strings.Contains(lines[0], "reader 1 gone") {
		t.Errorf("reports %q: want one line saying reader 1 is gone", lines)
	}
}

// The socket is created 0600. A socket file its process left behind is replaced; one a
// live process listens on, or a file that is not a socket, is refused.
func TestListenSocketFile(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	_, lg := newTestLog()

	path := filepath.Join(dir, "events.sock")
	l, err := Listen(ListenConfig{Path: path, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if _, err := Listen(ListenConfig{Path: path, Log: lg}); err == nil || !strings.Contains(err.Error(), "address in use") {
		t.Errorf("a second listener on a live socket: %v; want address in use", err)
	}
	l.Close()

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // a crashed process's socket: the file stays, nobody listens
	l, err = Listen(ListenConfig{Path: stale, Log: lg})
	if err != nil {
		t.Fatalf("over a stale socket file: %v; want it replaced", err)
	}
	l.Close()

	regular := filepath.Join(dir, "events.ndjson")
	if err := os.WriteFile(regular, []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(ListenConfig{Path: regular, Log: lg}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("over a regular file: %v; want refused", err)
	}
	if b, _ := os.ReadFile(regular); string(b) != "keep me\n" {
		t.Errorf("the regular file was changed: %q", b)
	}
	if _, err := Listen(ListenConfig{Path: filepath.Join(dir, "missing", "events.sock"), Log: lg}); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("in a missing directory: %v; want ENOENT", err)
	}
}
