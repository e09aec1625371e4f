package decode

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/discotrace/discotrace/decode/internal/addrkey"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// Datagrams seen recently, for ICMP errors, drops and reads to refer to. Each is indexed
// by the keys those lookups know (its identity, its endpoints, its socket queue), so a
// lookup costs O(1), or at most lookBack steps, however busy the flow: one peer flooding
// must not make every other record cost the size of its flood.

// quoteLen is how many payload bytes identify a datagram: the discv4 hash or the discv5
// masking IV, both unique per packet.
const quoteLen = 16

// maxSeen bounds the datagrams kept (each costs about a kilobyte with its decoded packet
// and its index entries); under a flood the oldest go first, before the retention time.
// At 60k datagrams/s that still keeps a quarter of a second: reads, ICMP errors and drops
// refer to datagrams milliseconds old.
const maxSeen = 16384

// lookBack bounds how far back from the newest datagram of a key a lookup walks when
// the key alone does not decide (a drop without payload, a short ICMP quote): what it
// looks for came within milliseconds, so it is among the newest.
const lookBack = 32

// seenDatagram is one datagram record (its event is a send, a receive or a captured
// packet). Tens of thousands are kept under load: its fields are ordered so that it packs
// into 160 bytes (a size class of Go's allocator), and its endpoints are pointer-free keys.
type seenDatagram struct {
	t   time.Time
	seq uint64 // its event's seq
	// pkt is what it decoded as, for a read or a twin to report: nil until it decodes,
	// once evicted, and in a capture (datagrams.noReads), which has neither.
	pkt *packet.Packet
	// cookie is the socket it was sent from (sent) or queued on (recv), 0 if unknown.
	cookie uint64
	owners []*tracked
	// twin is the other observation of a datagram between two local sockets (its send
	// for a receive, and the reverse): one datagram, observed twice. On loopback that is
	// every datagram, so it is not kept with the rare fields.
	twin *seenDatagram
	// rare holds what few datagrams have (ICMP errors nothing tracked): nil for most.
	rare     *sdRare
	n        int32       // UDP payload length
	netns    uint32      // the network namespace it was seen in, 0 if unknown
	src, dst addrkey.Key // unmapped
	head     [quoteLen]byte
	headLen  uint8
	inbound  bool // may be queued on a local socket (Dir in, or unknown)
	sent     bool // Dir out: a local send
	recv     bool // Dir in: a local receive
	read     bool
	evicted  bool
	// dropped: a kernel drop was attributed to it; a drop is one datagram.
	dropped bool
	// lost: a drop or an ICMP error says it never reached its receiver's application.
	lost bool
	// kept: it is in the late table too.
	kept bool
	// viaTwin: it is the second observation of a datagram with its twin's endpoints,
	// which the main table's head, flow and pair indexes hold for both (see addTwin).
	viaTwin bool
}

// sdRare is what few seen datagrams have.
type sdRare struct {
	// unowned are ICMP errors about it that came while nothing tracked it.
	unowned []netObservation
}

// rareOf returns sd.rare, made when first needed.
func (sd *seenDatagram) rareOf() *sdRare {
	if sd.rare == nil {
		sd.rare = &sdRare{}
	}
	return sd.rare
}

// evType is its event's type, which its direction decides (result.TypeOf).
func (sd *seenDatagram) evType() string {
	switch {
	case sd.sent:
		return result.TypeSend
	case sd.recv:
		return result.TypeRecv
	}
	return result.TypePacket
}

// socketOf returns the cookie of the socket that sent sd (sending) or queued it
// (receiving), from whichever of its observations saw that socket; 0 if unknown.
func (sd *seenDatagram) socketOf(sending bool) uint64 {
	for _, o := range [2]*seenDatagram{sd, sd.twin} {
		if o != nil && o.cookie != 0 && (sending && o.sent || !sending && o.recv) {
			return o.cookie
		}
	}
	return 0
}

// wasRead reports whether the application read sd (as the receive of a datagram this
// host also sent, the read is marked on that observation).
func (sd *seenDatagram) wasRead() bool {
	return sd.read || sd.twin != nil && sd.twin.read
}

// is reports whether sd is x or x's other observation.
func (sd *seenDatagram) is(x *seenDatagram) bool {
	return x != nil && (sd == x || sd.twin == x || x.twin == sd)
}

func (sd *seenDatagram) own(t *tracked) {
	for _, o := range sd.owners {
		if o == t {
			return
		}
	}
	sd.owners = append(sd.owners, t)
	if sd.rare == nil {
		return
	}
	for _, ob := range sd.rare.unowned {
		t.network(ob.cause, ob.ev, sd.is(t.answer))
	}
}

// evidence is an observation about sd, citing its event.
func (sd *seenDatagram) evidence(detail string) result.Evidence {
	return result.Evidence{Seq: sd.seq, Time: sd.t, Observed: sd.evType(), Detail: detail}
}

// headMatches reports whether sd starts with the bytes of prefix (as far as both go).
func (sd *seenDatagram) headMatches(prefix []byte) bool {
	n := min(len(prefix), int(sd.headLen))
	return n == 0 || bytes.Equal(prefix[:n], sd.head[:n])
}

// netObservation is an ICMP error about a datagram that nothing tracked yet: a held
// one, tracked once its destination's ID is learned, takes it then.
type netObservation struct {
	cause result.Cause
	ev    result.Evidence
}

// sdQueue is a FIFO of datagrams, oldest first.
type sdQueue struct {
	list []*seenDatagram
	head int
}

func (q *sdQueue) push(sd *seenDatagram) { q.list = append(q.list, sd) }

func (q *sdQueue) len() int { return len(q.list) - q.head }

// at returns the i-th datagram from the oldest.
func (q *sdQueue) at(i int) *seenDatagram { return q.list[q.head+i] }

// newest returns the i-th datagram from the newest.
func (q *sdQueue) newest(i int) *seenDatagram { return q.list[len(q.list)-1-i] }

// pop removes the oldest, giving back the array's front once it is half unused.
func (q *sdQueue) pop() {
	q.list[q.head] = nil
	q.head++
	if q.head == len(q.list) {
		q.list, q.head = q.list[:0], 0
	} else if q.head >= 32 && q.head*2 >= len(q.list) {
		n := copy(q.list, q.list[q.head:])
		clear(q.list[n:])
		q.list, q.head = q.list[:n], 0
	}
}

// sdSlot is an index entry: the one datagram of its key, or, once a second came, a
// queue. Most keys (a payload head, a flow of a peer seen once) have one datagram, and
// a queue object with its array for each would cost more than the datagram's index
// entries themselves.
type sdSlot struct {
	one *seenDatagram
	q   *sdQueue
}

func (s sdSlot) len() int {
	if s.q != nil {
		return s.q.len()
	}
	if s.one != nil {
		return 1
	}
	return 0
}

// at returns the i-th datagram from the oldest.
func (s sdSlot) at(i int) *seenDatagram {
	if s.q != nil {
		return s.q.at(i)
	}
	return s.one
}

// newest returns the i-th datagram from the newest.
func (s sdSlot) newest(i int) *seenDatagram {
	if s.q != nil {
		return s.q.newest(i)
	}
	return s.one
}

// sdIndex is the datagrams of each key, oldest first.
type sdIndex[K comparable] map[K]sdSlot

func (m sdIndex[K]) push(k K, sd *seenDatagram) {
	s := m[k]
	switch {
	case s.q != nil:
		s.q.push(sd)
	case s.one != nil:
		m[k] = sdSlot{q: &sdQueue{list: []*seenDatagram{s.one, sd}}}
	default:
		m[k] = sdSlot{one: sd}
	}
}

// Index keys.
type (
	// ipPair keys datagrams by addresses only (port 0): fragment drops do not know the ports.
	ipPair struct{ src, dst addrkey.Key }
	// headKey is a datagram's identity: its first bytes (a discv4 hash, a discv5
	// masking IV), which NAT leaves alone; lookups check the endpoints they know.
	headKey [quoteLen]byte
	// readKey is a socket queue as a read sees it: the datagram's endpoints and length.
	readKey struct {
		flow flowKey
		n    int
	}
)

func pairOf(src, dst netip.AddrPort) ipPair {
	return ipPair{addrkey.Of(netip.AddrPortFrom(src.Addr().Unmap(), 0)), addrkey.Of(netip.AddrPortFrom(dst.Addr().Unmap(), 0))}
}

// datagrams is the table of datagrams seen within the retention time (and maxSeen), or,
// as the decoder's late table, of the datagrams of failures still open to revision.
type datagrams struct {
	// bound is the count bound (maxSeen); late says the table holds datagrams that
	// the main table holds too, which its evictions must leave unmarked.
	bound int
	late  bool
	// noReads: no read records follow (a capture), so nothing is queued for one.
	noReads bool
	// inserts counts insertions since the index maps were last copied (compact).
	inserts int

	all    sdQueue // every datagram, oldest first: expiry and the count bound
	byHead sdIndex[headKey]
	byFlow sdIndex[flowKey]
	byPair sdIndex[ipPair]
	// unread are the inbound datagrams not read yet, per socket queue (and per flow,
	// for a read that does not know the length), in arrival order: a socket queue is FIFO.
	unread    sdIndex[readKey]
	unreadAny sdIndex[flowKey]
}

func (t *datagrams) init(bound int, late bool) {
	t.bound, t.late = bound, late
	t.byHead = make(sdIndex[headKey])
	t.byFlow = make(sdIndex[flowKey])
	t.byPair = make(sdIndex[ipPair])
	t.unread = make(sdIndex[readKey])
	t.unreadAny = make(sdIndex[flowKey])
}

// popFrom removes sd from the front of its queue in m, with whatever read or evicted
// datagrams precede it (skipEvicted: the main table's marks); sd is the oldest datagram
// of the table, so nothing else does. Like takeFrom it looks k up once: with many peers
// each lookup is likely a cache miss.
func popFrom[K comparable](m sdIndex[K], k K, sd *seenDatagram, skipEvicted bool) {
	s, ok := m[k]
	if !ok {
		return
	}
	gone := func(x *seenDatagram) bool { return x == sd || skipEvicted && x.evicted }
	if s.q == nil {
		if gone(s.one) {
			delete(m, k)
		}
		return
	}
	for s.q.len() > 0 && gone(s.q.at(0)) {
		s.q.pop()
	}
	if s.q.len() == 0 {
		delete(m, k)
	}
}

func (t *datagrams) add(r *record.Record, obs *result.Observation) *seenDatagram {
	sd := t.newSeen(r, obs)
	t.insert(sd)
	return sd
}

func (t *datagrams) newSeen(r *record.Record, obs *result.Observation) *seenDatagram {
	sd := &seenDatagram{
		t: r.Time, src: addrkey.Of(unmapAP(r.Src)), dst: addrkey.Of(unmapAP(r.Dst)), n: int32(r.Len), seq: obs.Seq, pkt: obs.Packet,
		inbound: r.Dir != record.DirOut && !t.noReads, sent: r.Dir == record.DirOut, recv: r.Dir == record.DirIn,
		cookie: r.Cookie, netns: r.NetNS,
	}
	if t.noReads && r.Dir == record.DirUnknown {
		// Only a read or a twin (the other observation of a datagram whose direction
		// is known) is given a seen datagram's packet: a capture's needs none.
		sd.pkt = nil
	}
	sd.headLen = uint8(copy(sd.head[:], r.Payload[:min(len(r.Payload), r.Len, quoteLen)]))
	return sd
}

// addTwin adds r, the other observation of first's datagram, and links the two. When r
// has first's endpoints (no NAT between them), the head, flow and pair indexes keep
// first alone: what looks a datagram up by them (ICMP errors, drops) reaches r through
// it (is, socketOf, wasRead, and marks made on both), and a datagram between two local
// sockets costs three index entries fewer.
func (t *datagrams) addTwin(r *record.Record, obs *result.Observation, first *seenDatagram) *seenDatagram {
	sd := t.newSeen(r, obs)
	sd.twin, first.twin = first, sd
	sd.viaTwin = sd.src == first.src && sd.dst == first.dst
	t.insert(sd)
	return sd
}

// insert indexes sd, forgetting the oldest beyond the count bound.
func (t *datagrams) insert(sd *seenDatagram) {
	flow := flowKey{sd.src, sd.dst}
	t.all.push(sd)
	if t.all.len() > t.bound {
		t.expire(time.Time{})
	}
	if t.inserts++; t.inserts >= 4*t.bound {
		t.compact()
	}
	if !t.sharesEntries(sd) {
		t.byHead.push(headKey(sd.head), sd)
		t.byFlow.push(flow, sd)
		t.byPair.push(pairOf(sd.src.AddrPort(), sd.dst.AddrPort()), sd)
	}
	if sd.inbound {
		t.unread.push(readKey{flow, int(sd.n)}, sd)
		t.unreadAny.push(flow, sd)
	}
}

// sharesEntries reports whether sd is left out of the head, flow and pair indexes, its
// twin's entries standing for it: in the main table only, where both observations are.
func (t *datagrams) sharesEntries(sd *seenDatagram) bool { return sd.viaTwin && !t.late }

// compact copies the index maps into fresh ones sized for what they hold. Go maps never
// shrink, and the churn of keys (every datagram's head, the flows of many peers) leaves
// tombstones that grow their tables: copied every few turns of the table, they stay at
// the size of their contents. O(1) per insertion, amortized.
func (t *datagrams) compact() {
	t.inserts = 0
	t.byHead = copyMap(t.byHead)
	t.byFlow = copyMap(t.byFlow)
	t.byPair = copyMap(t.byPair)
	t.unread = copyMap(t.unread)
	t.unreadAny = copyMap(t.unreadAny)
}

func copyMap[K comparable](m sdIndex[K]) sdIndex[K] {
	c := make(sdIndex[K], len(m))
	for k, q := range m {
		c[k] = q
	}
	return c
}

// expire forgets the datagrams older than cut, and the oldest beyond maxSeen.
func (t *datagrams) expire(cut time.Time) {
	for t.all.len() > 0 && (t.all.len() > t.bound || t.all.at(0).t.Before(cut)) {
		sd := t.all.at(0)
		t.all.pop()
		if !t.late {
			// Reads and twins find only the datagrams of the table: the trackers still
			// holding it need its evidence, not its decoded packet.
			sd.evicted, sd.pkt = true, nil
		}
		flow := flowKey{sd.src, sd.dst}
		if !t.sharesEntries(sd) {
			popFrom(t.byHead, headKey(sd.head), sd, !t.late)
			popFrom(t.byFlow, flow, sd, !t.late)
			popFrom(t.byPair, pairOf(sd.src.AddrPort(), sd.dst.AddrPort()), sd, !t.late)
		}
		if sd.inbound {
			popFrom(t.unread, readKey{flow, int(sd.n)}, sd, !t.late)
			popFrom(t.unreadAny, flow, sd, !t.late)
		}
	}
}

// twinOf returns the other observation of the datagram r is, when this host both sent
// and received it: the send for a receive, or the receive for a send (per-CPU buffers
// may deliver the receive first). Its bytes and length identify it; its endpoints are
// the same, or, when it crossed a NAT between two namespaces of this host, one of them
// differs (masquerading rewrites the source, the reply's destination).
func (t *datagrams) twinOf(r *record.Record) *seenDatagram {
	if r.Dir == record.DirUnknown {
		return nil
	}
	var head [quoteLen]byte
	copy(head[:], r.Payload[:min(len(r.Payload), r.Len, quoteLen)])
	q := t.byHead[headKey(head)]
	src, dst := addrkey.Of(unmapAP(r.Src)), addrkey.Of(unmapAP(r.Dst))
	var natted *seenDatagram
	for i := 0; i < min(q.len(), lookBack); i++ {
		sd := q.newest(i)
		if r.Time.Sub(sd.t) > maxTwinDelay {
			break
		}
		// A send the kernel reports failed after it left the socket (a device refusing it,
		// with IP_RECVERR) is the datagram its egress showed.
		failedAfter := sd.sent && r.Dir == record.DirOut && r.HasSendRet && r.SendRet < 0
		other := sd.sent && r.Dir == record.DirIn || sd.recv && r.Dir == record.DirOut || failedAfter
		if !other || sd.twin != nil || int(sd.n) != r.Len || !sd.headMatches(r.Payload) {
			continue
		}
		switch {
		case sd.src == src && sd.dst == dst:
			return sd
		case failedAfter:
			continue
		case natted == nil && (sd.src == src) != (sd.dst == dst) && (sd.netns == 0 || r.NetNS == 0 || sd.netns != r.NetNS):
			natted = sd
		}
	}
	return natted
}

// maxTwinDelay is how long after its send a local datagram's receive may be seen.
const maxTwinDelay = time.Second

// takeRead returns the datagram a read of r takes from its socket queue: the oldest
// unread one of its flow with its length (any length when the read does not say), or nil.
func (t *datagrams) takeRead(r *record.Record) *seenDatagram {
	flow := flowOf(r.Src, r.Dst)
	if r.Len > 0 {
		return takeFrom(t.unread, readKey{flow, r.Len}, r.Time)
	}
	return takeFrom(t.unreadAny, flow, r.Time)
}

// takeFrom returns the oldest datagram of k not read yet and not after at, taking it
// (and what precedes it) from the index, or nil.
func takeFrom[K comparable](m sdIndex[K], k K, at time.Time) *seenDatagram {
	s, ok := m[k]
	if !ok {
		return nil
	}
	if s.q == nil {
		if s.one.t.After(at) {
			return nil
		}
		delete(m, k)
		return markRead(s.one)
	}
	var sd *seenDatagram
	for sd == nil && s.q.len() > 0 && !s.q.at(0).t.After(at) {
		sd = markRead(s.q.at(0))
		s.q.pop()
	}
	if s.q.len() == 0 {
		delete(m, k)
	}
	return sd
}

// markRead marks sd read and returns it, or nil when a read took it already or it left
// the table.
func markRead(sd *seenDatagram) *seenDatagram {
	if sd.read || sd.evicted {
		return nil
	}
	sd.read = true
	return sd
}

// quoted returns the datagram an ICMP error quotes: the newest one of the quoted flow
// sent before the error whose first bytes match the quoted payload, when there is one.
func (t *datagrams) quoted(r *record.Record) *seenDatagram {
	src, dst := unmapAP(r.QuotedSrc), unmapAP(r.QuotedDst)
	ports := src.Port() != 0 && dst.Port() != 0
	if len(r.Payload) >= quoteLen && ports {
		// The quoted bytes name the datagram, however many its flow had since.
		if sd := newestMatching(t.byHead[headKey(r.Payload[:quoteLen])], r); sd != nil {
			return sd
		}
	}
	if ports {
		return newestMatching(t.byFlow[flowOf(src, dst)], r) // a shorter quote, or datagrams kept without payload
	}
	return newestMatching(t.byPair[pairOf(src, dst)], r)
}

// newestMatching returns the newest datagram of q, among the lookBack newest, that an
// ICMP error r can quote.
func newestMatching(q sdSlot, r *record.Record) *seenDatagram {
	src, dst := unmapAP(r.QuotedSrc), unmapAP(r.QuotedDst)
	for i := 0; i < min(q.len(), lookBack); i++ {
		sd := q.newest(i)
		if !sd.t.After(r.Time) && sameEndpoint(sd.src.AddrPort(), src) && sameEndpoint(sd.dst.AddrPort(), dst) && sd.headMatches(r.Payload) {
			return sd
		}
	}
	return nil
}

// newestOf calls fn for the newest datagrams from src to dst (a zero port matches any)
// seen between from and to, newest first, at most lookBack of them.
func (t *datagrams) newestOf(src, dst netip.AddrPort, from, to time.Time, fn func(*seenDatagram)) {
	src, dst = unmapAP(src), unmapAP(dst)
	q := t.byFlow[flowOf(src, dst)]
	if src.Port() == 0 || dst.Port() == 0 {
		q = t.byPair[pairOf(src, dst)]
	}
	for i, seen := 0, 0; i < min(q.len(), 4*lookBack) && seen < lookBack; i++ {
		sd := q.newest(i)
		if sd.t.After(to) {
			continue
		}
		if sd.t.Before(from) {
			return
		}
		if sameEndpoint(sd.src.AddrPort(), src) && sameEndpoint(sd.dst.AddrPort(), dst) {
			fn(sd)
			seen++
		}
	}
}
