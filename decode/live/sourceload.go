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
type sourceLoad struct {
	heap  []sourceCount // min-heap by count
	index map[flow]int  // flow -> position in heap
	total uint64        // datagrams counted (halved with the counts)
	since int           // datagrams since the last halving
}

type sourceCount struct {
	addr  flow
	count uint64 // estimated datagrams, an overestimate by at most err
	err   uint64
}

func newSourceLoad() *sourceLoad {
	return &sourceLoad{index: make(map[flow]int, maxSources)}
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
	i, ok := l.index[addr]
	switch {
	case ok:
		l.heap[i].count++
	case len(l.heap) < maxSources:
		i = len(l.heap)
		l.heap = append(l.heap, sourceCount{addr: addr, count: 1})
		l.index[addr] = i
		l.up(i)
		return l.isHeavy(l.index[addr])
	default:
		// Replace the least loaded address (the root).
		delete(l.index, l.heap[0].addr)
		floor := l.heap[0].count
		l.heap[0] = sourceCount{addr: addr, count: floor + 1, err: floor}
		l.index[addr] = 0
		i = 0
	}
	l.down(i) // counts only grow here: the entry can only move away from the root
	return l.isHeavy(l.index[addr])
}

func (l *sourceLoad) isHeavy(i int) bool {
	sure := l.heap[i].count - l.heap[i].err // datagrams certainly from this address
	return sure >= heavyMin && sure*heavyShare >= l.total
}

// halve ages every count; the heap order survives (halving keeps order).
func (l *sourceLoad) halve() {
	l.since = 0
	l.total /= 2
	for i := range l.heap {
		l.heap[i].count /= 2
		l.heap[i].err /= 2
	}
}

func (l *sourceLoad) less(i, j int) bool { return l.heap[i].count < l.heap[j].count }

func (l *sourceLoad) swap(i, j int) {
	l.heap[i], l.heap[j] = l.heap[j], l.heap[i]
	l.index[l.heap[i].addr] = i
	l.index[l.heap[j].addr] = j
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
