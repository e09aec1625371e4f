package live

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/discotrace/discotrace/decode/record"
)

// DefaultCapacity is the queue's size in records. Chosen by memory: a slot is 440 bytes
// (7 MiB allocated up front) and a queued record holds a payload copy of up to 1280 bytes
// (the snap length), so a full queue takes at most about 28 MiB. At 200k kernel events/s
// it is 80 ms of input: enough to ride out a GC pause or a slow batch. A longer gap is met
// by shedding, not by queueing, which would only make every record older when decided.
const DefaultCapacity = 16384

// item is one queued record, with the records dropped just before it because the queue
// was full: the consumer learns of drops where they happened in the stream.
type item struct {
	rec   record.Record
	drops dropSpan
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
type queue struct {
	ch     chan item
	guard  int
	load   *sourceLoad   // the reader's own estimate: only push uses it
	pushed atomic.Uint64 // records offered to the queue, dropped or not

	mu      sync.Mutex // guards pending: push adds to it, the consumer may take it while idle
	pending dropSpan   // drops not yet attached to a queued record
}

func newQueue(capacity, guard int) *queue {
	return &queue{ch: make(chan item, capacity), guard: guard, load: newSourceLoad()}
}

// push queues r, carrying the drops before it, or drops it when the queue is full or r
// is a heavy flow's from the guard length on.
func (q *queue) push(r *record.Record) {
	q.pushed.Add(1)
	heavy := (r.Kind == record.Datagram || r.Kind == record.Read || r.Kind == record.Drop) && q.load.add(flowOf(r))
	q.mu.Lock()
	defer q.mu.Unlock()
	if heavy && len(q.ch) >= q.guard {
		q.pending.add(r.Time)
		return
	}
	select {
	case q.ch <- item{rec: *r, drops: q.pending}:
		q.pending = dropSpan{}
	default:
		q.pending.add(r.Time)
	}
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
	defer close(q.ch)
	for {
		r, err := src.Read()
		if err != nil {
			return err
		}
		q.push(&r)
	}
}
