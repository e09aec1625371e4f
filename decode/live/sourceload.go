package live

import (
	"net/netip"

	"github.com/discotrace/discotrace/decode/record"
)

// Bounds of the load estimate. A flow is heavy when it has at least heavyMin of the
// recent datagrams and at least 1/heavyShare of them: no discovery peer sends that much
// on its own, a flood does.
const (
	maxSources = 256  // counters kept
	decayEvery = 4096 // datagrams between halvings: "recent" is the last few thousand
	heavyShare = 16
	heavyMin   = 32
)

// sourceLoad estimates which flows (from one endpoint to another, ports included: peers
// behind one NAT or on one host share an address, and the local node is one end of every
// flow) account for most of the recent datagrams, in fixed memory: the Space-Saving
// algorithm (Metwally, Agrawal, El Abbadi, 2005) over maxSources counters in a min-heap.
// Eviction policy: a flow not tracked takes the counter of the least loaded tracked one
// and inherits its count as possible error, so a flood of spoofed addresses only churns
// the bottom of the heap, never grows it, and cannot evict a flow that has more than
// 1/maxSources of the traffic. Every decayEvery datagrams all counts halve, so load is
// recent load.
//
// The counters stay in their slots while the heap orders the slot numbers, so that
// moving one in the heap writes two integers instead of two map entries: under a flood
// of new addresses every datagram moves one from the root to the bottom.
type sourceLoad struct {
	counts [maxSources]sourceCount
	heap   []int32        // slots in use, a min-heap by count
	index  map[flow]int32 // flow -> its slot
	total  uint64         // datagrams counted (halved with the counts)
	since  int            // datagrams since the last halving
}

type sourceCount struct {
	addr  flow
	count uint64 // estimated datagrams, an overestimate by at most err
	err   uint64
	pos   int32 // its place in the heap
}

func newSourceLoad() *sourceLoad {
	return &sourceLoad{index: make(map[flow]int32, maxSources), heap: make([]int32, 0, maxSources)}
}

// flow is a datagram's sender and receiver: a read's is the datagram's it read.
type flow struct{ src, dst netip.AddrPort }

func flowOf(r *record.Record) flow { return flow{r.Src, r.Dst} }

// add counts one datagram of addr and reports whether its flow is heavy.
func (l *sourceLoad) add(addr flow) (heavy bool) {
	l.total++
	if l.since++; l.since >= decayEvery {
		l.halve()
	}
	slot, ok := l.index[addr]
	switch {
	case ok:
		l.counts[slot].count++
		l.down(int(l.counts[slot].pos)) // counts only grow here: it can only move away from the root
	case len(l.heap) < maxSources:
		slot = int32(len(l.heap))
		l.counts[slot] = sourceCount{addr: addr, count: 1, pos: slot}
		l.heap = append(l.heap, slot)
		l.index[addr] = slot
		l.up(int(slot))
	default:
		// Replace the least loaded address (the root).
		slot = l.heap[0]
		c := &l.counts[slot]
		delete(l.index, c.addr)
		floor := c.count
		*c = sourceCount{addr: addr, count: floor + 1, err: floor, pos: 0}
		l.index[addr] = slot
		l.down(0)
	}
	return l.isHeavy(&l.counts[slot])
}

func (l *sourceLoad) isHeavy(c *sourceCount) bool {
	sure := c.count - c.err // datagrams certainly from this address
	return sure >= heavyMin && sure*heavyShare >= l.total
}

// halve ages every count; the heap order survives (halving keeps order).
func (l *sourceLoad) halve() {
	l.since = 0
	l.total /= 2
	for _, slot := range l.heap {
		l.counts[slot].count /= 2
		l.counts[slot].err /= 2
	}
}

func (l *sourceLoad) less(i, j int) bool {
	return l.counts[l.heap[i]].count < l.counts[l.heap[j]].count
}

func (l *sourceLoad) swap(i, j int) {
	l.heap[i], l.heap[j] = l.heap[j], l.heap[i]
	l.counts[l.heap[i]].pos = int32(i)
	l.counts[l.heap[j]].pos = int32(j)
}

func (l *sourceLoad) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !l.less(i, p) {
			return
		}
		l.swap(i, p)
		i = p
	}
}

func (l *sourceLoad) down(i int) {
	for {
		c := 2*i + 1
		if c >= len(l.heap) {
			return
		}
		if c+1 < len(l.heap) && l.less(c+1, c) {
			c++
		}
		if !l.less(c, i) {
			return
		}
		l.swap(i, c)
		i = c
	}
}
