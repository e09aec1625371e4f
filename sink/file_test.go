package sink

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/discotrace/discotrace/ndjson"
)

// testLog collects what the sinks report, line by line.
type testLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *testLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func newTestLog() (*testLog, *log.Logger) {
	tl := new(testLog)
	return tl, log.New(tl, "discotrace: ", 0)
}

// numbered is the n-th test line: an event whose seq is n.
func numbered(n int) []byte {
	return fmt.Appendf(nil, `{"v":1,"type":"send","time":"2026-12-04T00:00:00.000000000Z","seq":%d}`+"\n", n)
}

// readEvents parses an NDJSON file (or stream); a missing file reads as empty.
func readEvents(t *testing.T, data []byte) []ndjson.Event {
	t.Helper()
	var evs []ndjson.Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev ndjson.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return b
}

// seqs lists the events' seq, in order.
func seqs(evs []ndjson.Event) []uint64 {
	s := make([]uint64, len(evs))
	for i, ev := range evs {
		s[i] = ev.Seq
	}
	return s
}

// wantSeqs checks that got is first, first+1, ..., last.
func wantSeqs(t *testing.T, what string, got []uint64, first, last uint64) {
	t.Helper()
	if uint64(len(got)) != last-first+1 {
		t.Fatalf("%s: %d events, want %d (seq %d to %d)", what, len(got), last-first+1, first, last)
	}
	for i, s := range got {
		if s != first+uint64(i) {
			t.Fatalf("%s: event %d has seq %d, want %d", what, i, s, first+uint64(i))
		}
	}
}

// A new output file is created 0600 whatever the umask lets through; an existing one
// that others can read is used as it is, with one warning however often it is reopened.
func TestFileMode(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	tl, lg := newTestLog()

	fresh := filepath.Join(dir, "fresh.ndjson")
	s, err := OpenFile(FileConfig{Path: fresh, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new output file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if l := tl.lines(); len(l) != 0 {
		t.Errorf("warnings about a 0600 file: %q", l)
	}

	wide := filepath.Join(dir, "wide.ndjson")
	if err := os.WriteFile(wide, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = OpenFile(FileConfig{Path: wide, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	s.Reopen()
	s.Reopen()
	s.Close()
	if l := tl.lines(); len(l) != 1 || !strings.Contains(l[0], "0644") || !strings.Contains(l[0], "chmod 600 "+wide) {
		t.Errorf("warnings %q: want one, naming the mode and what to do", l)
	}
}

// logrotate renames the file and sends SIGHUP while events keep coming: every event is in
// the renamed file or the new one, once, in order.
func TestFileReopenAfterRenameLosesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.ndjson")
	_, lg := newTestLog()
	s, err := OpenFile(FileConfig{Path: path, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	half, rotating, reopened, done := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= n; i++ {
			s.WriteLine(numbered(i))
			if i%50 == 0 {
				s.Flush()
			}
			switch i {
			case n / 2:
				close(half)
				<-rotating // the next lines are written while the rotation runs
			case n/2 + 500:
				<-reopened // and the rest after it
			}
		}
	}()
	<-half
	// The rotation, from another goroutine, as the SIGHUP handler does.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	close(rotating)
	s.Reopen()
	close(reopened)
	<-done
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rotated, current := readEvents(t, readFile(t, path+".1")), readEvents(t, readFile(t, path))
	if len(rotated) == 0 || len(current) == 0 {
		t.Fatalf("%d events in the renamed file, %d in the new one: want both written", len(rotated), len(current))
	}
	wantSeqs(t, "renamed file, then new file", append(seqs(rotated), seqs(current)...), 1, n)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("reopened file: %v, mode %v; want 0600", err, fi.Mode())
	}
}

// With a size limit the sink rotates by itself: no file grows past it, lines are never
// split across files, the oldest beyond --output-keep go, and the kept ones read in order.
func TestFileRotatesBySize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.ndjson")
	_, lg := newTestLog()
	const maxSize, keep, n = 4096, 3, 1000
	s, err := OpenFile(FileConfig{Path: path, MaxSize: maxSize, Keep: keep, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		s.WriteLine(numbered(i))
		if i%7 == 0 {
			s.Flush()
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var all []uint64
	for i := keep; i >= 0; i-- {
		p := path
		if i > 0 {
			p = fmt.Sprintf("%s.%d", path, i)
		}
		data := readFile(t, p)
		if len(data) == 0 || len(data) > maxSize {
			t.Fatalf("%s: %d bytes, want 1 to %d", p, len(data), maxSize)
		}
		all = append(all, seqs(readEvents(t, data))...)
	}
	if _, err := os.Stat(fmt.Sprintf("%s.%d", path, keep+1)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s.%d: %v; want only %d rotated files kept", path, keep+1, err, keep)
	}
	wantSeqs(t, "rotated files, oldest first, then the current", all, n-uint64(len(all))+1, n)
}

// With an age limit the sink rotates at the first write once the file's segment is that
// old, by the clock it is given: a segment starts when the file is opened (an empty one
// at its first line) and at each rotation; lines are never split, and none is lost.
func TestFileRotatesByAge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.ndjson")
	_, lg := newTestLog()
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, err := OpenFile(FileConfig{Path: path, MaxAge: time.Hour, Keep: 5, Log: lg, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(3 * time.Hour) // an empty file: its segment starts with line 1
	seq := 0
	write := func(n int, step time.Duration) {
		for range n {
			seq++
			s.WriteLine(numbered(seq))
			now = now.Add(step)
		}
		s.Flush()
	}
	write(6, 10*time.Minute) // lines 1-6 in 50 min: one segment, the clock at 60 min after it started
	write(1, 0)              // line 7: the segment is an hour old, so it goes to a new file
	write(3, 30*time.Minute) // lines 8-9 within the hour of line 7's segment; 10 past it
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path  string
		first uint64
		last  uint64
	}{{path + ".2", 1, 6}, {path + ".1", 7, 9}, {path, 10, 10}} {
		wantSeqs(t, f.path, seqs(readEvents(t, readFile(t, f.path))), f.first, f.last)
	}
	if _, err := os.Stat(path + ".3"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s.3: %v; want two rotations", path, err)
	}
}

// A disk that fills up: the sink reports once, counts what it cannot write, and at the
// first write after the retry delay reopens the file, where a lost event (where "file")
// says how many it missed before the events go on.
func TestFileFailureIsCountedAndRetried(t *testing.T) {
	dir := t.TempDir()
	path, target := filepath.Join(dir, "events.ndjson"), filepath.Join(dir, "disk.ndjson")
	if err := os.Symlink("/dev/full", path); err != nil { // writes fail with ENOSPC
		t.Fatal(err)
	}
	tl, lg := newTestLog()
	s, err := OpenFile(FileConfig{Path: path, RetryDelay: -1, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		s.WriteLine(numbered(i))
		s.Flush()
	}
	st := s.Stats()
	if st.Lost != 10 || st.Failures == 0 {
		t.Fatalf("on a full disk: %+v, want 10 lost and failures counted", st)
	}
	if l := tl.lines(); len(l) != 1 || !strings.Contains(l[0], "--output "+path) || !strings.Contains(l[0], "no space left on device") {
		t.Fatalf("reports %q: want one line naming the sink and the error", l)
	}
	// The disk has room again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	for i := 11; i <= 20; i++ {
		s.WriteLine(numbered(i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, readFile(t, target))
	if len(evs) != 11 || evs[0].Type != ndjson.TypeLost || evs[0].Where != ndjson.WhereFile || evs[0].Count == nil || *evs[0].Count != 10 {
		t.Fatalf("file after the disk freed up:\n%s\nwant a lost event (where file, count 10), then the events 11 to 20", readFile(t, target))
	}
	wantSeqs(t, "events after the lost event", seqs(evs[1:]), 11, 20)
	if l := tl.lines(); len(l) != 2 || !strings.Contains(l[1], "writing again") {
		t.Errorf("reports %q: want the failure, then that it writes again", l)
	}
}

// An output that cannot be opened fails at once, saying why.
func TestFileOpenFailures(t *testing.T) {
	dir := t.TempDir()
	_, lg := newTestLog()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		want       error
	}{
		{"a directory", dir, syscall.EISDIR},
		{"no permission", filepath.Join(unwritableDir(t), "events.ndjson"), syscall.EACCES},
		{"a missing directory", filepath.Join(dir, "missing", "events.ndjson"), syscall.ENOENT},
		{"under a file", filepath.Join(notDir, "events.ndjson"), syscall.ENOTDIR},
	} {
		_, err := OpenFile(FileConfig{Path: c.path, Log: lg})
		if !errors.Is(err, c.want) {
			t.Errorf("%s (%s): %v, want %v", c.name, c.path, err, c.want)
		}
	}
	if _, err := OpenFile(FileConfig{Path: "/dev/null", MaxSize: 100, Log: lg}); err == nil || !strings.Contains(err.Error(), "cannot be rotated") {
		t.Errorf("a device rotated by size: %v; want refused", err)
	}
}

// unwritableDir is a directory this process cannot create files in. Root passes file
// permissions, so for root it is /sys, whose directories take no new files.
func unwritableDir(t *testing.T) string {
	if os.Geteuid() == 0 {
		return "/sys"
	}
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	return dir
}
