package sink

import (
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/discotrace/discotrace/ndjson"
)

// DefaultReaderBuffer is how many bytes of events wait for one socket reader before
// events are dropped for it: a few seconds of a busy node's stream.
const DefaultReaderBuffer = 4 << 20

// DefaultCloseGrace is how long, at Close, the readers have to take what is queued for
// them: short, so that the process ends within a second of SIGTERM.
const DefaultCloseGrace = 300 * time.Millisecond

// acceptRetry is how long a failed accept waits before the next.
const acceptRetry = 100 * time.Millisecond

// chunkSize is how many bytes of lines are handed to the readers at once: a burst is
// split so that a reader's queue can hold several and drops only part of it.
const chunkSize = 64 << 10

// ListenConfig configures a socket sink.
type ListenConfig struct {
	Path string // the unix socket's path
	// ReaderBuffer is how many bytes may wait for one reader (DefaultReaderBuffer);
	// beyond, events are dropped for that reader alone, and told to it later.
	ReaderBuffer int
	// CloseGrace is how long Close waits for the readers (DefaultCloseGrace).
	CloseGrace time.Duration
	Log        *log.Logger
}

// ListenStats counts a socket sink's readers and their losses.
type ListenStats struct {
	Readers uint64 // connected now
	Served  uint64 // readers ever connected
	Gone    uint64 // readers whose connection failed (they went away)
	Lost    uint64 // events dropped for readers too slow to take them
}

// Listener serves the stream on a unix socket (mode 0600, removed at Close): each reader
// gets the lines written from when it connected. Every reader has its own bounded queue
// and goroutine, so a slow reader never holds up the writer or the others: what does not
// fit in its queue is dropped for it, and when it has room again a lost event (where
// "reader") tells it how many.
type Listener struct {
	cfg  ListenConfig
	name string
	ln   *net.UnixListener

	// batch collects the lines of a burst, handed to the readers as one chunk.
	batch      []byte
	batchLines int

	mu      sync.Mutex
	readers map[*reader]struct{}
	closed  bool
	nextID  int
	wg      sync.WaitGroup
	active  atomic.Int64 // len(readers), read without mu by WriteLine

	served, gone, lost atomic.Uint64
}

// Listen listens on the unix socket cfg.Path. A socket file left by a process that is
// gone is replaced; one another process listens on is refused, as is any other file.
func Listen(cfg ListenConfig) (*Listener, error) {
	if cfg.ReaderBuffer <= 0 {
		cfg.ReaderBuffer = DefaultReaderBuffer
	}
	if cfg.CloseGrace <= 0 {
		cfg.CloseGrace = DefaultCloseGrace
	}
	if err := removeStaleSocket(cfg.Path); err != nil {
		return nil, err
	}
	// The socket is created with mode 0600 from the start: a chmod after bind would leave
	// a moment in which other users could connect. The umask is the process's, but
	// nothing else creates files while the sinks open, before tracing starts.
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	l := &Listener{cfg: cfg, name: "--listen unix:" + cfg.Path, ln: ln, readers: map[*reader]struct{}{}}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// removeStaleSocket removes path if it is a socket nobody listens on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket: remove it or choose another path", path)
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: address in use: another process listens on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return err
	}
	return os.Remove(path) // a socket its process left behind
}

func (l *Listener) Name() string { return l.name }

// Stats returns the counts so far; safe to call from any goroutine.
func (l *Listener) Stats() ListenStats {
	return ListenStats{Readers: uint64(l.active.Load()), Served: l.served.Load(), Gone: l.gone.Load(), Lost: l.lost.Load()}
}

func (l *Listener) accept() {
	defer l.wg.Done()
	failing := false
	for {
		c, err := l.ln.AcceptUnix()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors, say: the readers already served go on, and new
			// ones are accepted again once it passes.
			if !failing {
				l.cfg.Log.Printf("%s: accept: %v; retrying", l.name, err)
				failing = true
			}
			time.Sleep(acceptRetry)
			continue
		}
		failing = false
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return
		}
		l.nextID++
		r := &reader{id: l.nextID, conn: c, limit: l.cfg.ReaderBuffer, l: l}
		r.cond.L = &r.mu
		l.readers[r] = struct{}{}
		l.active.Store(int64(len(l.readers)))
		l.served.Add(1)
		l.wg.Add(1)
		l.mu.Unlock()
		go r.run()
	}
}

// WriteLine adds line to the burst; nothing is kept while no reader is connected.
func (l *Listener) WriteLine(line []byte) error {
	if l.active.Load() == 0 {
		return nil
	}
	l.batch = append(l.batch, line...)
	l.batchLines++
	if len(l.batch) >= chunkSize {
		l.publish()
	}
	return nil
}

// Flush hands the burst to every reader's queue.
func (l *Listener) Flush() error {
	l.publish()
	return nil
}

func (l *Listener) publish() {
	if l.batchLines == 0 {
		return
	}
	c := &chunk{data: append([]byte(nil), l.batch...), lines: uint64(l.batchLines)}
	l.batch, l.batchLines = l.batch[:0], 0
	l.mu.Lock()
	defer l.mu.Unlock()
	for r := range l.readers {
		r.push(c)
	}
}

// Close stops accepting, gives the readers CloseGrace to take what is queued for them,
// closes them and removes the socket file.
func (l *Listener) Close() error {
	l.publish()
	err := l.ln.Close() // removes the socket file
	l.mu.Lock()
	l.closed = true
	deadline := time.Now().Add(l.cfg.CloseGrace)
	for r := range l.readers {
		r.conn.SetWriteDeadline(deadline)
		r.close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

// remove forgets r, whose goroutine ends.
func (l *Listener) remove(r *reader) {
	l.mu.Lock()
	delete(l.readers, r)
	l.active.Store(int64(len(l.readers)))
	l.mu.Unlock()
}

// chunk is a run of whole lines, shared read-only by every reader's queue.
type chunk struct {
	data  []byte
	lines uint64
}

// reader is one connection and the lines queued for it.
type reader struct {
	id   int
	conn *net.UnixConn
	l    *Listener

	mu      sync.Mutex
	cond    sync.Cond
	queue   [][]byte
	queued  int // bytes in queue
	limit   int
	closing bool

	// Dropped and not told yet: lost events between lostSince and lostUntil.
	lost                 uint64
	lostSince, lostUntil time.Time
	sent, lostTotal      uint64
}

// push queues c for the reader, or drops it when the queue is full. Before the first
// chunk queued after a drop goes the lost event that tells the reader what it missed.
func (r *reader) push(c *chunk) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return
	}
	if r.queued > 0 && r.queued+len(c.data) > r.limit {
		now := time.Now()
		if r.lost == 0 {
			r.lostSince = now
		}
		r.lost += c.lines
		r.lostUntil = now
		r.lostTotal += c.lines
		r.l.lost.Add(c.lines)
		return
	}
	r.tellLost()
	r.queue = append(r.queue, c.data)
	r.queued += len(c.data)
	r.sent += c.lines
	r.cond.Signal()
}

// tellLost queues the lost event for what was dropped since the last one. A line this
// small may pass the limit: it is what the reader most needs. The caller holds mu.
func (r *reader) tellLost() {
	if r.lost == 0 {
		return
	}
	line := lostLine(ndjson.WhereReader, r.lost, r.lostSince, r.lostUntil)
	r.queue = append(r.queue, line)
	r.queued += len(line)
	r.lost = 0
}

// close has the reader's goroutine write what is queued and end. The caller holds l.mu.
func (r *reader) close() {
	r.mu.Lock()
	r.closing = true
	r.tellLost()
	r.cond.Signal()
	r.mu.Unlock()
}

// run writes the queue to the connection until the listener closes or the reader goes.
func (r *reader) run() {
	defer r.l.wg.Done()
	defer r.conn.Close()
	for {
		r.mu.Lock()
		for len(r.queue) == 0 && !r.closing {
			r.cond.Wait()
		}
		if len(r.queue) == 0 {
			r.mu.Unlock()
			r.report(nil)
			return
		}
		data := r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		r.queued -= len(data)
		r.mu.Unlock()
		if _, err := r.conn.Write(data); err != nil {
			r.mu.Lock()
			r.closing = true
			r.queue, r.queued = nil, 0
			r.mu.Unlock()
			r.l.remove(r)
			r.report(err)
			return
		}
	}
}

// report says how the reader ended, and what it lost, when it lost any or went away.
func (r *reader) report(err error) {
	r.mu.Lock()
	sent, lost := r.sent, r.lostTotal
	r.mu.Unlock()
	switch {
	case err != nil && !r.l.isClosed():
		r.l.gone.Add(1)
		r.l.cfg.Log.Printf("%s: reader %d gone (%v) after %d events; %d dropped for it, too slow", r.l.name, r.id, err, sent, lost)
	case lost > 0:
		r.l.cfg.Log.Printf("%s: reader %d: %d events dropped for it, too slow; %d sent", r.l.name, r.id, lost, sent)
	}
}

func (l *Listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}
