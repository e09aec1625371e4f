package live

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/discotrace/discotrace/decode/record"
)

// DefaultCapacity is the queue's size in records. Chosen by memory: a slot is 440 bytes
// (7 MiB for each of the two arrays the reader and the consumer swap) and a queued record
// holds a payload copy of up to 1280 bytes (the snap length), so a full queue takes at
// most about 35 MiB. At 200k kernel events/s it is 80 ms of input: enough to ride out a
// GC pause or a slow batch. A longer gap is met by shedding, not by queueing, which would
// only make every record older when decided.
const DefaultCapacity = 16384

// item is one queued record, with the records dropped just before it because the queue
// was full: the consumer learns of drops where they happened in the stream.
type item struct {
	rec   record.Record
	drops dropSpan
	// heavy: the reader's load estimate counted rec's flow as heavy when it pushed it.
	heavy bool
}

// dropSpan counts records dropped unseen and the record time they span.
type dropSpan struct {
	count       uint64
	first, last time.Time
}

func (s *dropSpan) add(t time.Time) {
	if s.count == 0 || t.Before(s.first) {
		s.first = t
	}
	if t.After(s.last) {
		s.last = t
	}
	s.count++
}

// queue is the bounded queue between the reader and the consumer. push never waits: when
// the queue is full the record is dropped and counted, and from its guard length on so
// are the datagrams, reads and kernel drops of heavy flows (a flood overflowing a receive
// buffer makes as many drops as datagrams), which keeps the rest of the queue for the
// other peers: a flood cannot fill it alone.
//
// The consumer takes what was pushed a batch at a time (take): one lock and one copy a
// record, where a channel cost two copies and a lock on each side.
type queue struct {
	capacity, guard int
	load            *sourceLoad   // the reader's: only push uses it, and items carry its verdict
	pushed          atomic.Uint64 // records offered to the queue, dropped or not
	// depth counts the records queued and not yet taken one by one by the consumer: those
	// pushed since its last take and the rest of the batch it works through.
	depth atomic.Int64
	ready chan struct{} // signalled when a push finds nothing pushed before it, and on close

	mu      sync.Mutex // guards what follows
	in      []item     // pushed since the consumer's last take
	second  []item     // the array the first take hands the pushes, when none is done yet
	pending dropSpan   // drops not yet attached to a queued record
	closed  bool       // the reader ended
}

// newQueue allocates both arrays at their full size up front: growing one under the lock
// stalls the reader long enough for the kernel's ring to overflow (seen at start-up).
// Their pages are the kernel's zero pages until used.
func newQueue(capacity, guard int) *queue {
	return &queue{capacity: capacity, guard: guard, load: newSourceLoad(), ready: make(chan struct{}, 1),
		in: make([]item, 0, capacity), second: make([]item, 0, capacity)}
}

// len is how many records are queued.
func (q *queue) len() int { return int(q.depth.Load()) }

// push queues r, carrying the drops before it, or drops it when the queue is full or r
// is a heavy flow's from the guard length on.
func (q *queue) push(r *record.Record) {
	q.pushed.Add(1)
	heavy := (r.Kind == record.Datagram || r.Kind == record.Read || r.Kind == record.Drop) && q.load.add(flowOf(r))
	q.mu.Lock()
	if depth := q.len(); depth >= q.capacity || heavy && depth >= q.guard {
		q.pending.add(r.Time)
		q.mu.Unlock()
		return
	}
	q.in = append(q.in, item{rec: *r, drops: q.pending, heavy: heavy})
	q.pending = dropSpan{}
	q.depth.Add(1)
	first := len(q.in) == 1
	q.mu.Unlock()
	if first {
		q.signal()
	}
}

func (q *queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default: // a signal is pending already
	}
}

// take returns the records pushed since the last take, in order, and whether the reader
// may push more. done is the batch the consumer finished, whose array the next pushes
// reuse; the consumer counts each record of the new batch with taken as it takes it.
func (q *queue) take(done []item) (batch []item, open bool) {
	clear(done) // the payloads it holds are garbage now
	if done == nil {
		done, q.second = q.second, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	batch, q.in = q.in, done[:0]
	return batch, !q.closed || len(batch) > 0
}

// taken counts one record of a batch as taken by the consumer.
func (q *queue) taken() { q.depth.Add(-1) }

// close ends the queue: what was pushed is still taken.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// takeDrops returns the drops no queued record carries, for the consumer to report while
// the queue is empty or after the reader ended.
func (q *queue) takeDrops() dropSpan {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.pending
	q.pending = dropSpan{}
	return s
}

// fill reads src into the queue until src ends, then closes the queue and returns the
// error that ended it.
func (q *queue) fill(src Source) error {
	defer q.close()
	for {
		r, err := src.Read()
		if err != nil {
			return err
		}
		q.push(&r)
	}
}
