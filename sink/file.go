package sink

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/discotrace/discotrace/ndjson"
)

// DefaultRetryDelay is how long a file that failed waits before it is reopened.
const DefaultRetryDelay = time.Second

// FileConfig configures a file sink.
type FileConfig struct {
	Path string
	// MaxSize rotates the file before a line would take it past this many bytes
	// (0: never; logrotate can rotate it instead, with Reopen).
	MaxSize int64
	// MaxAge rotates the file at the first write once its current segment is this old
	// (0: never). A segment starts when the file is opened, reopened or rotated, or, in
	// an empty file, at its first line.
	MaxAge time.Duration
	// Keep is how many rotated files are kept: Path.1 (the newest) to Path.Keep.
	Keep int
	// RetryDelay is how long after a failure the next write reopens the file
	// (DefaultRetryDelay when zero; negative: at once).
	RetryDelay time.Duration
	Log        *log.Logger
	// Now is the clock of MaxAge (time.Now when nil).
	Now func() time.Time
}

// FileStats counts a file sink's failures.
type FileStats struct {
	Failures uint64 // writes, reopens or rotations that failed
	Lost     uint64 // events not written because of them
}

// File appends lines to a file created with mode 0600. Reopen (SIGHUP) reopens the path,
// so that logrotate can move the file away; with MaxSize or MaxAge it rotates the file
// itself. After a failure it counts the events it cannot write and reopens the file at
// the first write RetryDelay later, where it first writes a lost event (where "file")
// saying how many it missed.
type File struct {
	cfg  FileConfig
	name string

	mu      sync.Mutex
	f       *os.File // nil while failed
	w       *bufio.Writer
	size    int64     // the file's size, with what w holds
	segment time.Time // when the current segment started, for MaxAge
	pending uint64    // lines w holds
	warned  bool      // about the mode of a file others can read

	failedAt  time.Time // when the current failure started; zero when writing
	retryAt   time.Time
	lost      uint64    // events lost in the current failure, until told in the file
	lostUntil time.Time // when the last of them was lost
	torn      bool      // the failure may have left a partial line
	failures  atomic.Uint64
	lostTotal atomic.Uint64
}

// OpenFile opens (creating it 0600 if needed) the file for appending. An existing file
// that other users can read is used as it is, with a warning on cfg.Log.
func OpenFile(cfg FileConfig) (*File, error) {
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = DefaultRetryDelay
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &File{cfg: cfg, name: "--output " + cfg.Path}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *File) Name() string { return s.name }

// Stats returns the failures so far; safe to call from any goroutine.
func (s *File) Stats() FileStats {
	return FileStats{Failures: s.failures.Load(), Lost: s.lostTotal.Load()}
}

// open opens the path for appending. The caller holds mu (or owns s).
func (s *File) open() error {
	f, err := os.OpenFile(s.cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if !fi.Mode().IsRegular() {
		// A device or a pipe cannot be rotated; appending to it works, and a
		// directory was refused by the open.
		if s.cfg.MaxSize > 0 || s.cfg.MaxAge > 0 {
			f.Close()
			return fmt.Errorf("%s is not a regular file: it cannot be rotated", s.cfg.Path)
		}
	} else if perm := fi.Mode().Perm(); perm&0o077 != 0 && !s.warned {
		s.warned = true
		s.cfg.Log.Printf("%s: the file has mode %04o: other users can read the events (chmod 600 %s)", s.name, perm, s.cfg.Path)
	}
	s.f, s.size, s.segment = f, fi.Size(), s.cfg.Now()
	if s.w == nil {
		s.w = bufio.NewWriterSize(f, 64<<10)
	} else {
		s.w.Reset(f)
	}
	return nil
}

// WriteLine appends line, rotating first when it would take the file past MaxSize or the
// current segment is MaxAge old.
func (s *File) WriteLine(line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil && !s.recover() {
		s.lose(1)
		return nil
	}
	var aged bool
	if s.cfg.MaxAge > 0 {
		now := s.cfg.Now()
		if s.size == 0 {
			s.segment = now // an empty file's segment starts with its first line
		}
		aged = now.Sub(s.segment) >= s.cfg.MaxAge
	}
	if s.size > 0 && (aged || s.cfg.MaxSize > 0 && s.size+int64(len(line)) > s.cfg.MaxSize) {
		if err := s.rotate(); err != nil {
			s.fail(fmt.Errorf("rotate: %w", err))
			s.lose(1)
			return nil
		}
	}
	if _, err := s.w.Write(line); err != nil {
		s.pending++
		s.fail(err) // "write PATH: ..."
		return nil
	}
	s.size += int64(len(line))
	s.pending++
	return nil
}

// Flush writes the buffered lines to the file.
func (s *File) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flush()
	return nil
}

// flush writes what w holds; the caller holds mu.
func (s *File) flush() {
	if s.f == nil {
		return
	}
	if err := s.w.Flush(); err != nil {
		s.fail(err) // "write PATH: ..."
		return
	}
	s.pending = 0
	s.lost = 0 // told in the lost event written after the reopen
	if !s.failedAt.IsZero() {
		s.cfg.Log.Printf("%s: writing again", s.name)
		s.failedAt = time.Time{}
	}
}

// Reopen flushes and closes the file and opens its path again: after logrotate renamed
// it, a new file. Nothing written before is lost: it went to the old file.
func (s *File) Reopen() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.flush()
	}
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.retryAt = time.Time{} // reopen now, failed or not
	s.recover()
}

// Close flushes and closes the file.
func (s *File) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flush()
	if s.f == nil {
		if s.lost > 0 {
			s.cfg.Log.Printf("%s: %d events not written", s.name, s.lost)
		}
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// recover reopens the file after a failure once RetryDelay has passed, and writes there
// the lost event for what the failure cost. It reports whether the file is open.
func (s *File) recover() bool {
	now := time.Now()
	if now.Before(s.retryAt) {
		return false
	}
	if err := s.open(); err != nil {
		s.retryAt = now.Add(s.cfg.RetryDelay)
		s.failures.Add(1)
		if s.failedAt.IsZero() {
			s.failedAt = now
			s.cfg.Log.Printf("%s: reopen: %v; events are counted and not written; retrying every %v", s.name, err, s.cfg.RetryDelay)
		}
		return false
	}
	if s.torn {
		s.endTornLine()
	}
	if s.lost > 0 {
		line := lostLine(ndjson.WhereFile, s.lost, s.failedAt, s.lostUntil)
		s.w.Write(line)
		s.size += int64(len(line))
		// lost is cleared once the line is flushed: should that fail too, the next lost
		// event counts these as well.
	}
	return true
}

// endTornLine ends the partial line a failed write may have left, so that the next
// line stands on its own; the caller holds mu with the file open.
func (s *File) endTornLine() {
	s.torn = false
	if s.size == 0 {
		return
	}
	f, err := os.Open(s.cfg.Path)
	if err != nil {
		return
	}
	defer f.Close()
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, s.size-1); err == nil && last[0] != '\n' {
		s.w.WriteByte('\n')
		s.size++
	}
}

// fail closes the file after err, counting the lines it held as lost; the next write
// after RetryDelay reopens it. The caller holds mu.
func (s *File) fail(err error) {
	now := time.Now()
	s.failures.Add(1)
	if s.failedAt.IsZero() {
		s.failedAt = now
		s.cfg.Log.Printf("%s: %v; events are counted and not written; reopening in %v", s.name, err, s.cfg.RetryDelay)
	}
	s.lose(s.pending)
	s.pending = 0
	s.torn = true
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.w.Reset(io.Discard)
	s.retryAt = now.Add(s.cfg.RetryDelay)
}

func (s *File) lose(n uint64) {
	s.lost += n
	s.lostTotal.Add(n)
	s.lostUntil = time.Now()
}

// rotate moves the file to Path.1, Path.1 to Path.2 and so on, dropping Path.Keep, and
// opens a new file at Path. The caller holds mu with the file open.
func (s *File) rotate() error {
	s.flush()
	if s.f == nil {
		return errors.New("flush before rotating failed")
	}
	if err := s.f.Close(); err != nil {
		s.f = nil
		return err
	}
	s.f = nil
	for i := s.cfg.Keep - 1; i >= 1; i-- {
		err := os.Rename(fmt.Sprintf("%s.%d", s.cfg.Path, i), fmt.Sprintf("%s.%d", s.cfg.Path, i+1))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if s.cfg.Keep > 0 {
		if err := os.Rename(s.cfg.Path, s.cfg.Path+".1"); err != nil {
			return err
		}
	} else if err := os.Remove(s.cfg.Path); err != nil {
		return err
	}
	return s.open()
}
