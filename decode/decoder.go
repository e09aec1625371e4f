package decode

import (
	"bytes"
	"container/heap"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/discv4"
	"github.com/discotrace/discotrace/decode/discv5"
	"github.com/discotrace/discotrace/decode/internal/addrkey"
	"github.com/discotrace/discotrace/decode/internal/bounded"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// How the Decoder reports (the contract the NDJSON stream follows):
//
//   - Every record gives one event of its own, in input order: packet (pcap), send, recv,
//     read, icmp, drop or lost; datagram events carry "disc", and a read carries the
//     "disc" of the datagram it read.
//   - Handshake and exchange events come when they are decided: at the answer plus
//     SettleDelay (an ICMP error or drop quoting the answer still turns it into a
//     failure), at the timeout, or at Flush ("open" when the input ended first and
//     nothing decisive was seen). Their "time" is when they started, so the stream is
//     ordered by decision, not by "time".
//   - A failure's cause may be revised later: an ICMP error or drop that explains it
//     better (a fragment loss, after ipfrag_time) gives a revision event naming the
//     failure's seq, within FragmentTimeout of its datagram.
//   - Timeouts fire before the first record later than them: record time, not the
//     wall clock; Advance moves it on without a record.
//   - "attempts" counts, on a handshake, the WHOAREYOU challenges (the first and its
//     identical resends); on an exchange, identical copies of the request (same bytes,
//     or a discv5 request resent in the HANDSHAKE with its request ID), when more than one.

// Defaults, like go-ethereum's.
const (
	DefaultV4Timeout        = 500 * time.Millisecond // discv4 respTimeout
	DefaultV5Timeout        = 700 * time.Millisecond // discv5 respTimeoutV5
	DefaultHandshakeTimeout = time.Second            // discv5 handshakeTimeout
	// DefaultV4ExpirationWindow is how far ahead of its clock go-ethereum (also reth and
	// Erigon) sets a discv4 packet's expiration; other clients use other windows (README).
	DefaultV4ExpirationWindow = 20 * time.Second
	// DefaultSettleDelay is how long an answer waits for an ICMP error or a drop saying
	// it never reached the application (a local firewall rejecting it, a full buffer).
	// Both come from the receiving host itself, so within microseconds of the answer.
	DefaultSettleDelay        = 100 * time.Millisecond
	DefaultClockSkewThreshold = 10 * time.Second
	DefaultStormThreshold     = 5
	DefaultStormWindow        = 10 * time.Second
	DefaultFragmentTimeout    = 30 * time.Second // Linux's net.ipv4.ipfrag_time
)

// Config configures a Decoder. Zero values take the defaults.
type Config struct {
	Identity Identity

	// KeyObserver, when set, is told the discv5 local IDs and session keys the decoder
	// learns (discotrace --keylog writes them for Wireshark).
	KeyObserver discv5.KeyObserver

	V4Timeout        time.Duration // a discv4 request's answer
	V5Timeout        time.Duration // a discv5 request's answer, and a WHOAREYOU or response to a handshake
	HandshakeTimeout time.Duration // a discv5 challenge's HANDSHAKE
	SettleDelay      time.Duration

	// V4ExpirationWindow is how far ahead of their clocks peers set discv4 expirations:
	// a peer's clock offset is estimated as expiration - window - record time.
	V4ExpirationWindow time.Duration

	// ClockSkewThreshold: how far a peer's estimated clock offset may be before a
	// clock_skew anomaly.
	ClockSkewThreshold time.Duration
	// StormThreshold WHOAREYOUs to one peer within StormWindow make a whoareyou_storm.
	StormThreshold int
	StormWindow    time.Duration

	// FragmentTimeout is how long the kernel keeps an incomplete datagram's fragments
	// (net.ipv4.ipfrag_time, 30 s by default): its drop, and the ICMP time exceeded
	// that says so, come that long after the datagram, and still revise the verdict
	// of the item it belonged to (a revision event).
	FragmentTimeout time.Duration

	// Capture says the records come from a capture file, which has no reads: datagrams
	// are not queued for one (a read record is then matched to nothing).
	Capture bool

	// LossReportDelay is how long after they happen the source reports lost
	// observations at the latest (a live tracer checks its loss counters periodically;
	// zero for a capture). An item about to fail for want of an answer waits that long
	// past its deadline, so that its verdict says whether events were lost meanwhile.
	LossReportDelay time.Duration
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.V4Timeout, DefaultV4Timeout)
	def(&c.V5Timeout, DefaultV5Timeout)
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&c.SettleDelay, DefaultSettleDelay)
	def(&c.FragmentTimeout, DefaultFragmentTimeout)
	def(&c.ClockSkewThreshold, DefaultClockSkewThreshold)
	def(&c.V4ExpirationWindow, DefaultV4ExpirationWindow)
	def(&c.StormWindow, DefaultStormWindow)
	if c.StormThreshold <= 0 {
		c.StormThreshold = DefaultStormThreshold
	}
}

// ErrNotDiscovery is disc.error for a datagram that is neither discv4 nor discv5.
var ErrNotDiscovery = errors.New("not a discv4 or discv5 packet (hash check and header unmasking both failed)")

// Bounds on learned state. Everything else expires with record time.
const (
	// maxLocalAddrs bounds the local endpoints; the first learned stay (an unsigned
	// discv5 header could claim a local ID from anywhere and must not push them out).
	maxLocalAddrs = 64
	// maxLostMarks bounds the loss reports kept for evidence (the tracer sends one a
	// second at most).
	maxLostMarks = 64
	// maxLate bounds the failures kept open to revision (failures are a small part of
	// the traffic; under a flood of them the oldest go first).
	maxLate = 4096
	// maxLearnedIDs bounds address -> node ID: a flood of spoofed source addresses
	// pushes out the oldest (the v5 decoder keeps its own map of the same size).
	maxLearnedIDs = 16384
	idRetention   = time.Hour
	sweepEvery    = time.Second
)

// Decoder turns Records into results (package result): one observation per record, plus
// the handshakes, exchanges and anomalies the records complete, numbered in output order
// (Head.Seq) so that evidence can cite them. Time is record time: timeouts fire when a
// later record (or Flush) passes them, never on the wall clock, so the same input gives
// the same output. Not safe for concurrent use.
//
// An Observation given to emit is lent for the call, as the record given to Feed is: the
// decoder reuses it for the next record (an emit that keeps events keeps result.Keep(ev)).
// The other results are emit's to keep.
type Decoder struct {
	cfg Config
	v4  *discv4.Decoder
	v5  *discv5.Decoder

	obs      result.Observation // the one lent to emit
	out      func(result.Event) // the caller's emit, for the call under way
	numbered func(result.Event) // out, after numbering: the emit everything inside gets

	now       time.Time // the latest record time
	nextSweep time.Time
	retention time.Duration // how long datagrams stay matchable by ICMP, drops and reads
	// fragRetention is how long datagrams stay matchable by what a fragment loss gives,
	// late: a reassembly timeout's drop or ICMP error.
	fragRetention time.Duration

	timers  timerHeap
	seq     uint64 // of the latest timer
	emitted uint64 // the seq of the latest event

	// pending counts the requests and messages waiting for an answer (each holds its
	// state and a timer); past maxPending new ones are not followed, only counted
	// (untracked, since untrackedSince) and reported in a shed event.
	pending        int
	untracked      uint64
	untrackedSince time.Time
	// shares counts, per requesting flow, what it has pending beyond maxPending/2.
	shares *bounded.Map[flowKey, *flowShare]

	seen datagrams
	// late keeps the datagram each failure reported was waiting on, for what a
	// fragment loss tells long after (fragRetention): a revision of its verdict.
	late datagrams
	lost []lostMark

	localIDs   map[enode.ID]bool
	localSeen  map[enode.ID]bool // the local IDs a decoded packet came from or went to
	localAddrs map[netip.AddrPort]bool
	ids        *bounded.Map[addrkey.Key, learnedID]
	held       *bounded.Map[netip.AddrPort, []heldDatagram]
	nat        natAliases

	ex exchanges
	hs handshakes
	an anomalies
}

// NewDecoder returns a Decoder for cfg.
func NewDecoder(cfg Config) *Decoder {
	cfg.setDefaults()
	d := &Decoder{
		cfg:        cfg,
		v4:         discv4.NewDecoder(),
		v5:         discv5.NewDecoder(cfg.Identity.Keys, cfg.HandshakeTimeout),
		localIDs:   make(map[enode.ID]bool),
		localSeen:  make(map[enode.ID]bool),
		localAddrs: make(map[netip.AddrPort]bool),
		ids:        bounded.New[addrkey.Key, learnedID](maxLearnedIDs),
		held:       bounded.New[netip.AddrPort, []heldDatagram](maxHeldAddrs),
		shares:     bounded.New[flowKey, *flowShare](maxPending / 2),
	}
	longest := max(cfg.V4Timeout, cfg.V5Timeout, cfg.HandshakeTimeout)
	d.retention = max(2*longest+cfg.SettleDelay, 5*time.Second)
	d.fragRetention = max(d.retention, cfg.FragmentTimeout+time.Second)
	d.numbered = d.emitNumbered // made once: a method value per record would be a closure per record
	d.seen.init(maxSeen, false)
	d.seen.noReads = cfg.Capture
	d.nat.init()
	d.late.init(maxLate, true)
	d.ex.init(d)
	d.hs.init(d)
	d.an.init(d)
	if cfg.KeyObserver != nil {
		d.v5.SetKeyObserver(cfg.KeyObserver)
	}
	for _, id := range cfg.Identity.AllIDs() {
		d.localIDs[id] = true
		d.v5.AddLocalID(id)
	}
	for _, n := range cfg.Identity.Nodes {
		if n == nil {
			continue
		}
		d.v5.AddLocalNode(n)
		d.an.advertise(n)
		if ep, ok := n.UDPEndpoint(); ok {
			d.addLocal(ep)
		}
	}
	return d
}

// Feed decodes one record and emits its event, preceded by whatever timed out before
// the record's time and followed by whatever it completes.
func (d *Decoder) Feed(r *record.Record, emit func(result.Event)) {
	emit = d.number(emit)
	d.moveTo(r.Time, emit)
	switch r.Kind {
	case record.Datagram:
		d.feedDatagram(r, emit)
	case record.Read:
		d.feedRead(r, emit)
	case record.ICMP:
		d.feedICMP(r, emit)
	case record.Drop:
		d.feedDrop(r, emit)
	case record.Lost, record.Shed:
		obs := d.observe(r)
		emit(obs)
		d.markLost(r, obs.Seq)
	default:
		emit(d.observe(r))
	}
}

// Skim reports r without decoding it, for a consumer that has fallen behind: its event,
// numbered like the others but without a packet, and the timeouts its time passes. A
// skimmed datagram is not tracked: the consumer reports it as shed (record.Shed), which
// the verdicts it could have changed cite.
func (d *Decoder) Skim(r *record.Record, emit func(result.Event)) {
	emit = d.number(emit)
	d.moveTo(r.Time, emit)
	emit(d.observe(r))
}

// number returns an emit that gives each event the stream's next sequence number and
// hands it to emit (emitNumbered).
func (d *Decoder) number(emit func(result.Event)) func(result.Event) {
	d.out = emit
	return d.numbered
}

func (d *Decoder) emitNumbered(ev result.Event) {
	d.emitted++
	ev.EventHead().Seq = d.emitted
	d.out(ev)
}

// observe is the observation of r, before any decoding: the decoder's one, lent to emit.
func (d *Decoder) observe(r *record.Record) *result.Observation {
	d.obs = result.Observation{Head: result.Head{Time: r.Time}, Record: *r}
	return &d.obs
}

// markLost keeps a loss (lost by the tracer, or dropped or left undecoded by a consumer
// that fell behind) as evidence for the items waiting meanwhile.
func (d *Decoder) markLost(r *record.Record, seq uint64) {
	n := r.Count
	if r.Kind == record.Shed {
		n += r.Undecoded
	}
	if n == 0 {
		return
	}
	since := r.Since
	if since.IsZero() || since.After(r.Time) {
		since = r.Time
	}
	if len(d.lost) == maxLostMarks {
		d.lost = append(d.lost[:0], d.lost[1:]...)
	}
	d.lost = append(d.lost, lostMark{since, r.Time, n, r.Kind == record.Shed, seq})
}

// lostMark is a count of observations lost between since and t (the tracer notices
// losses only when it checks its counters), or shed by a consumer that fell behind.
type lostMark struct {
	since, t time.Time
	count    uint64
	shed     bool
	seq      uint64
}

// lostEvidence says how many observations were lost or shed while an item waited: a
// no_response verdict may then be wrong (the answer may be among them). A loss counts
// when its span overlaps the wait.
func (d *Decoder) lostEvidence(from, to time.Time) []result.Evidence {
	var ev []result.Evidence
	for _, shed := range []bool{false, true} {
		var n uint64
		var last lostMark
		for _, l := range d.lost {
			if l.shed == shed && !l.t.Before(from) && !l.since.After(to) {
				n += l.count
				last = l
			}
		}
		switch {
		case n == 0:
		case shed:
			ev = append(ev, result.Evidence{Seq: last.seq, Time: last.t, Observed: result.TypeShed,
				Detail: fmt.Sprintf("%d observations not decoded meanwhile (decoding fell behind): the answer may be among them", n)})
		default:
			ev = append(ev, result.Evidence{Seq: last.seq, Time: last.t, Observed: result.TypeLost,
				Detail: fmt.Sprintf("%d observations lost by the tracer meanwhile: the answer may be among them", n)})
		}
	}
	return ev
}

// maxPending bounds the requests and messages followed at once. A busy node has a few
// hundred in flight; a flood of requests from one peer or of new peers has thousands a
// second, each waiting up to the response timeout (plus LossReportDelay live).
const maxPending = 16384

// maxFlowShare is how many requests and messages one flow (a requester and its peer)
// may have followed beyond half of maxPending: past that half each flow gets a share, so
// that a peer flooding requests cannot take every slot and blind the decoder to the
// others until its requests time out.
const maxFlowShare = 64

// flowShare counts a flow's followed items admitted past half of maxPending.
type flowShare struct{ n int }

// follow reports whether a new request or message r can be followed, and counts it as
// untracked when it cannot: too many are pending already, or, past half of them, too
// many of r's flow. The share it returns (nil below half) goes back with release.
func (d *Decoder) follow(r *record.Record) (share *flowShare, ok bool) {
	if d.pending >= maxPending/2 && d.pending < maxPending {
		k := flowOf(r.Src, r.Dst)
		if share, _ = d.shares.Get(k); share == nil {
			share = &flowShare{}
			d.shares.Put(k, share)
		}
	}
	if d.pending >= maxPending || share != nil && share.n >= maxFlowShare {
		if d.untracked == 0 {
			d.untrackedSince = r.Time
		}
		d.untracked++
		return nil, false
	}
	d.pending++
	if share != nil {
		share.n++
	}
	return share, true
}

// release ends a followed item's wait: share is what follow returned for it.
func (d *Decoder) release(share *flowShare) {
	d.pending--
	if share != nil {
		share.n--
	}
}

// reportUntracked emits what was not followed as a shed event, whose span starts at the
// first of it: at most once per sweep, and at the end.
func (d *Decoder) reportUntracked(emit func(result.Event)) {
	if d.untracked == 0 {
		return
	}
	emit(d.observe(&record.Record{Kind: record.Shed, Time: d.now, Since: d.untrackedSince, Untracked: d.untracked}))
	d.untracked = 0
}

// awaitLoss runs fail now, or, when the failure is for want of an answer (noAnswer) and
// the source reports losses late, once a loss before deadline would have been reported.
func (d *Decoder) awaitLoss(deadline time.Time, noAnswer bool, emit func(result.Event), fail func(emit func(result.Event))) {
	if !noAnswer || d.cfg.LossReportDelay <= 0 {
		fail(emit)
		return
	}
	d.pending++ // it stays in memory meanwhile
	d.after(deadline.Add(d.cfg.LossReportDelay), func(emit func(result.Event), _ bool) {
		d.pending--
		fail(emit)
	})
}

// Advance moves record time to t without a record and emits what times out before it.
// A live tracer calls it when no record has come for a while, with the current kernel
// time, so that answers settle and timeouts fire while the network is quiet. Offline
// decoding never needs it. A t before the latest record time does nothing.
func (d *Decoder) Advance(t time.Time, emit func(result.Event)) {
	d.moveTo(t, d.number(emit))
}

// moveTo moves record time to t (never back) and emits what times out before it.
func (d *Decoder) moveTo(t time.Time, emit func(result.Event)) {
	if t.After(d.now) {
		d.now = t
	}
	d.fire(emit, false)
	if d.sweep() {
		d.reportUntracked(emit)
	}
}

// Flush reports everything still open at the end of input: answers still settling as
// answered or established, requests and handshakes still waiting as open (or failed,
// when an ICMP error, a drop or a rejection already decided them), in deadline order.
func (d *Decoder) Flush(emit func(result.Event)) {
	emit = d.number(emit)
	d.fire(emit, true)
	d.reportUntracked(emit)
}

// ---- timers ----

// timer is a deadline in record time. fire runs when a record later than at arrives
// (atEnd false) or at Flush (atEnd true: at may not have passed).
// timer is a pending action at a record time (Unix nanoseconds): fire, or, for the many
// pending discv5 messages, the end of msg's wait (no closure to allocate per message).
type timer struct {
	at   int64
	seq  uint64
	fire func(emit func(result.Event), atEnd bool)
	msg  *v5Msg
	pair *pairState
}

type timerHeap []timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = timer{}
	*h = old[:len(old)-1]
	return t
}

// after schedules fn at t. Timers of finished items stay in the heap until they pass and
// then do nothing: cheaper than removal, and bounded by the longest timeout.
func (d *Decoder) after(t time.Time, fn func(emit func(result.Event), atEnd bool)) {
	d.seq++
	heap.Push(&d.timers, timer{at: t.UnixNano(), seq: d.seq, fire: fn})
}

// afterMsg schedules the end of m's wait for an answer at t (handshakes.messageTimeout).
func (d *Decoder) afterMsg(t time.Time, m *v5Msg, pair *pairState) {
	d.seq++
	heap.Push(&d.timers, timer{at: t.UnixNano(), seq: d.seq, msg: m, pair: pair})
}

// fire runs the timers whose time has passed (all of them atEnd), earliest first.
func (d *Decoder) fire(emit func(result.Event), atEnd bool) {
	for d.timers.Len() > 0 {
		t := d.timers[0]
		if !atEnd && t.at >= d.now.UnixNano() {
			return
		}
		heap.Pop(&d.timers)
		end := atEnd && t.at >= d.now.UnixNano()
		if t.msg != nil {
			d.hs.messageTimeout(t.msg, t.pair, emit, end)
		} else {
			t.fire(emit, end)
		}
	}
}

// sweep forgets datagrams and learned state too old to matter, once per sweepEvery of
// record time, so memory follows the traffic rate, not the capture length. It reports
// whether it ran.
func (d *Decoder) sweep() bool {
	if d.now.Before(d.nextSweep) {
		return false
	}
	d.nextSweep = d.now.Add(sweepEvery)
	cut := d.now.Add(-d.retention)
	d.seen.expire(cut)
	d.late.expire(d.now.Add(-d.fragRetention))
	heldCut := d.now.Add(-d.cfg.HandshakeTimeout - d.cfg.V5Timeout)
	d.held.All(func(k netip.AddrPort, list []heldDatagram) bool {
		if list[len(list)-1].r.Time.Before(heldCut) {
			d.held.Delete(k)
		}
		return true
	})
	i := 0
	for i < len(d.lost) && d.lost[i].t.Before(cut) {
		i++
	}
	d.lost = append(d.lost[:0], d.lost[i:]...)
	d.hs.sweep(cut)
	return true
}

// ---- identity learning ----

// LocalIDSeen reports whether a packet decoded so far came from or went to id, one of the
// local nodes of the configuration's Identity. A key or ID no packet matches decrypts and
// unmasks nothing: most likely another node's, which the user should hear about.
func (d *Decoder) LocalIDSeen(id enode.ID) bool { return d.localSeen[id] }

type learnedID struct {
	id enode.ID
	t  int64 // when, in Unix nanoseconds: a time.Time would hold a pointer and 16 bytes more
}

func (d *Decoder) addLocal(a netip.AddrPort) {
	a = unmapAP(a)
	if a.IsValid() && !d.localAddrs[a] && len(d.localAddrs) < maxLocalAddrs {
		d.localAddrs[a] = true
	}
}

func (d *Decoder) isLocal(a netip.AddrPort) bool { return d.localAddrs[unmapAP(a)] }

// IsLocal reports whether a is the endpoint of a local node, as learned so far from the
// datagrams sent and received and the local identity. Like the decoder's other methods,
// it is called from the goroutine that feeds it (outputs writing its events may).
func (d *Decoder) IsLocal(a netip.AddrPort) bool { return d.isLocal(a) }

// isLocalIP reports whether a local node uses the IP of a (ICMP errors have no ports).
func (d *Decoder) isLocalIP(a netip.AddrPort) bool {
	ip := a.Addr().Unmap()
	for l := range d.localAddrs {
		if l.Addr() == ip {
			return true
		}
	}
	return false
}

func unmapAP(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func (d *Decoder) learnID(a netip.AddrPort, id enode.ID, t time.Time) {
	if !a.IsValid() {
		return
	}
	d.ids.Put(addrkey.Of(unmapAP(a)), learnedID{id, t.UnixNano()})
}

// idAt returns the node ID last seen at a, if any.
func (d *Decoder) idAt(a netip.AddrPort) (enode.ID, bool) {
	l, ok := d.ids.Get(addrkey.Of(unmapAP(a)))
	if !ok || time.Duration(d.now.UnixNano()-l.t) > idRetention {
		return enode.ID{}, false
	}
	return l.id, true
}

// learn takes what a decoded packet tells about node IDs, addresses and the local side,
// and hands it to the discv5 decoder so that later headers unmask cheaply.
func (d *Decoder) learn(r *record.Record, p *packet.Packet) {
	switch r.Dir {
	case record.DirOut:
		d.addLocal(r.Src)
	case record.DirIn:
		d.addLocal(r.Dst)
	}
	if p.HasSrcID && p.Kind != discv5.KindWhoareyou {
		d.learnID(r.Src, p.SrcID, r.Time)
		if p.Proto == packet.ProtoV4 {
			d.v5.LearnAddr(p.SrcID, r.Src)
		}
		if d.localIDs[p.SrcID] {
			d.addLocal(r.Src)
			d.localSeen[p.SrcID] = true
		}
	}
	if p.HasDstID {
		d.learnID(r.Dst, p.DstID, r.Time)
		if d.localIDs[p.DstID] {
			d.addLocal(r.Dst)
			d.localSeen[p.DstID] = true
		}
	}
	for _, n := range p.Records {
		if n == nil {
			continue
		}
		d.v5.AddNode(n)
		if ep, ok := n.UDPEndpoint(); ok {
			if _, known := d.idAt(ep); !known || n.ID() == p.SrcID {
				d.learnID(ep, n.ID(), r.Time)
			}
		}
	}
}

// ---- per record kind ----

func (d *Decoder) decodePacket(r *record.Record) packet.Packet {
	if p, ok := d.v4.Decode(r); ok {
		return p
	}
	if p, ok := d.v5.Decode(r); ok {
		return p
	}
	p := packet.Packet{Proto: packet.ProtoUnknown, Err: ErrNotDiscovery}
	switch {
	case len(r.Payload) < r.Len:
		p.Err = fmt.Errorf("%w; the payload was truncated to %d of %d bytes by the capture", ErrNotDiscovery, len(r.Payload), r.Len)
	case r.Len >= discv5.MinPacketSize && (r.Dir == record.DirOut || d.isLocal(r.Src)):
		p.Err = errUnknownDestination
	}
	return p
}

// errUnknownDestination is disc.error for a datagram a local node sent that decodes as
// neither protocol: most likely a discv5 packet to a node whose ID the decoder has not
// seen yet, which masks its header. It is kept, and tracked once the peer's own packet
// names its ID.
var errUnknownDestination = fmt.Errorf("%w: sent by a local node, so most likely discv5 to a node whose ID is not known yet (its header is masked with that ID); the handshake it starts is reported once the peer's answer names it", ErrNotDiscovery)

func (d *Decoder) feedDatagram(r *record.Record, emit func(result.Event)) {
	if r.FailedUnseen() {
		// Nothing of it is known but that it did not leave: nothing to decode or track.
		emit(d.observe(r))
		return
	}
	if first := d.seen.twinOf(r); first != nil {
		// This host sent and received it: the same datagram, already decoded and
		// tracked. Decoding it again would count it twice (a duplicate request, a
		// resent challenge).
		obs := d.observe(r)
		obs.Packet, obs.PacketTime = first.pkt, first.t
		emit(obs)
		second := d.seen.addTwin(r, obs, first)
		second.owners = first.owners
		d.nat.link(first, r)
		d.sendFailed(r, second)
		return
	}
	// Decoded and tracked with the endpoints a NAT between traced namespaces aliases
	// resolved; observed with those the kernel saw.
	tr := d.nat.canonical(r)
	p := d.decodePacket(tr)
	d.learn(tr, &p)
	if _, ok := d.held.Get(unmapAP(tr.Src)); ok && p.Proto != packet.ProtoUnknown {
		// Before r, which may answer one of them, and which they may explain.
		if d.replayHeld(tr.Src, emit) {
			d.v5.Reexplain(&p)
		}
	}
	obs := d.observe(r)
	obs.Packet, obs.PacketTime = &p, r.Time
	emit(obs)
	sd := d.seen.add(r, obs)
	if p.Proto == packet.ProtoUnknown {
		d.hold(tr, sd)
	}
	d.track(tr, &p, sd, emit)
}

// track hands a decoded datagram to the exchange, handshake and anomaly trackers.
func (d *Decoder) track(r *record.Record, p *packet.Packet, sd *seenDatagram, emit func(result.Event)) {
	switch p.Proto {
	case packet.ProtoV4:
		d.ex.v4(r, p, sd, emit)
	case packet.ProtoV5:
		d.hs.packet(r, p, sd, emit)
		d.ex.v5(r, p, sd, emit)
	}
	d.an.packet(r, p, sd, emit)
	d.sendFailed(r, sd)
}

// sendFailed tells the owners of sd when r, its observation, is a send the kernel refused
// (a local firewall's EPERM, no route...): the peer never saw it.
func (d *Decoder) sendFailed(r *record.Record, sd *seenDatagram) {
	if !r.HasSendRet || r.SendRet >= 0 {
		return
	}
	e := sd.evidence(sendErrDetail(r.SendRet))
	cause := sendErrCause(r.SendRet)
	for _, o := range sd.owners {
		o.network(cause, e, sd.is(o.answer))
	}
}

// Datagrams that decoded as nothing wait, by destination, for what a later packet
// teaches: a discv5 packet to a node whose ID is not known yet (the local node's first
// contact with a peer only it knows, such as a bootnode) unmasks once the peer's own
// packet names its ID. Their events are out already; the trackers get them late, in
// their order, before the packet that taught the ID, which may answer them.
const (
	maxHeldAddrs   = 1024
	maxHeldPerAddr = 4 // a random first packet, a HANDSHAKE, and a resend or two
)

type heldDatagram struct {
	r  record.Record
	sd *seenDatagram
}

// hold keeps a copy of r (the payload may be the producer's buffer) if it could be a
// discv5 packet.
func (d *Decoder) hold(r *record.Record, sd *seenDatagram) {
	if r.Len < discv5.MinPacketSize || len(r.Payload) < r.Len {
		return
	}
	k := unmapAP(r.Dst)
	list, _ := d.held.Get(k)
	if len(list) >= maxHeldPerAddr {
		return
	}
	c := *r
	c.Payload = bytes.Clone(r.Payload[:r.Len])
	d.held.Put(k, append(list, heldDatagram{c, sd}))
}

// replayHeld decodes again what was held for addr, now that a packet from addr taught
// the decoder more, and tracks what decodes, in the order it happened, each at its own
// time. What addr sent to those peers is held too when the peers' IDs were unknown
// (nothing named either node yet): the first packet that decodes names its sender, whose
// ID unmasks the other direction, so both directions are replayed together, interleaved
// by time (one direction before the other makes a WHOAREYOU come after the HANDSHAKE
// that answered it: a handshake of milliseconds reported failed after hundreds). The
// timers that sets and that are already due fire before the packet that triggered the
// replay, which gives the verdicts of IDs known all along. (They are not interleaved
// with the held datagrams themselves: no case was found where that would change a
// verdict.) It reports whether anything was tracked.
func (d *Decoder) replayHeld(addr netip.AddrPort, emit func(result.Event)) bool {
	k := unmapAP(addr)
	list, _ := d.held.Get(k)
	d.held.Delete(k)
	// The reverse flows: what addr sent to the peers that sent these, held under each peer.
	var replay []heldDatagram
	replay = append(replay, list...)
	for _, h := range list {
		peer := unmapAP(h.r.Src)
		rev, ok := d.held.Get(peer)
		if !ok || peer == k {
			continue
		}
		var keep []heldDatagram
		for _, x := range rev {
			if unmapAP(x.r.Src) == k {
				replay = append(replay, x)
			} else {
				keep = append(keep, x)
			}
		}
		if len(keep) == len(rev) {
			continue
		}
		if len(keep) > 0 {
			d.held.Put(peer, keep)
		} else {
			d.held.Delete(peer)
		}
	}
	slices.SortStableFunc(replay, func(x, y heldDatagram) int { return x.r.Time.Compare(y.r.Time) })
	tracked := false
	for _, h := range replay {
		if d.now.Sub(h.r.Time) > d.cfg.HandshakeTimeout+d.cfg.V5Timeout {
			continue // whatever it started has been decided
		}
		p, ok := d.v5.Decode(&h.r)
		if !ok {
			// A WHOAREYOU names no sender: wait for more.
			dst := unmapAP(h.r.Dst)
			still, _ := d.held.Get(dst)
			d.held.Put(dst, append(still, h))
			continue
		}
		d.learn(&h.r, &p)
		h.sd.pkt = &p
		d.track(&h.r, &p, h.sd, emit)
		tracked = true
	}
	d.fire(emit, false)
	return tracked
}

// sendErrCause classifies a failed send: ECONNREFUSED is an earlier ICMP port
// unreachable reported on a connected socket, EMSGSIZE a path MTU too small for the
// datagram; anything else is the local kernel refusing it.
func sendErrCause(ret int64) result.Cause {
	switch syscall.Errno(-ret) {
	case syscall.ECONNREFUSED:
		return result.ICMPUnreachable
	case syscall.EMSGSIZE:
		return result.FragmentLoss
	}
	return result.KernelDrop
}

// sendErrDetail describes a failed send: "send failed: operation not permitted (-1)".
func sendErrDetail(ret int64) string {
	return fmt.Sprintf("send failed: %s (%d)", syscall.Errno(-ret).Error(), ret)
}

// feedRead attaches to a read the decoded packet it reads (the oldest unread datagram
// of the flow with its length: the socket queue is FIFO), and records that the local
// application got it.
func (d *Decoder) feedRead(r *record.Record, emit func(result.Event)) {
	obs := d.observe(r)
	sd := d.seen.takeRead(r)
	if sd != nil {
		obs.Packet, obs.PacketTime = sd.pkt, sd.t
	}
	emit(obs)
	if sd == nil {
		return
	}
	e := result.Evidence{Seq: obs.Seq, Time: r.Time, Observed: result.TypeRead, Detail: readDetail(r)}
	for _, o := range sd.owners {
		if !o.done && sd.is(o.awaiting) {
			o.setRead(&e)
		}
	}
}

// feedICMP attributes an ICMP error to the datagram it quotes: the one whose first bytes
// match the quoted payload when the record carries it, else the latest one of the quoted
// flow sent before the error.
func (d *Decoder) feedICMP(r *record.Record, emit func(result.Event)) {
	obs := d.observe(r)
	if r.Dir == record.DirUnknown {
		switch {
		case d.isLocalIP(r.Dst):
			obs.Record.Dir = record.DirIn
		case d.isLocalIP(r.Src):
			obs.Record.Dir = record.DirOut
		}
	}
	emit(obs)
	sd := d.seen.quoted(r)
	if sd == nil && icmpCause(r) == result.FragmentLoss {
		sd = d.late.quoted(r) // a reassembly timeout's, ipfrag_time after the datagram
	}
	if sd == nil {
		return
	}
	sd.lost = true
	if tw := sd.twin; tw != nil {
		tw.lost = true
	}
	cause := icmpCause(r)
	e := result.Evidence{Seq: obs.Seq, Time: r.Time, Observed: result.TypeICMP, Detail: icmpDetail(r)}
	for _, o := range sd.owners {
		d.attribute(o, cause, e, sd.is(o.answer), emit)
	}
	if len(sd.owners) == 0 && (sd.rare == nil || len(sd.rare.unowned) < maxSentEvidence) {
		sd.rareOf().unowned = append(sd.rareOf().unowned, netObservation{cause, e})
	}
}

// feedDrop attributes a kernel drop to the one datagram it is: the newest of its flow and
// length not already dropped (an unread one first: a datagram read cannot be dropped
// afterwards), a request of an item or the answer it got; failing that, an answer to a
// request of the reverse flow, dropped before anything saw it. The socket the kernel
// dropped it at, when it says, must be the one that datagram was for: a drop of another
// process's packet from the same peer is not this item's. A fragment loss, known only
// after ipfrag_time, is also looked for among the failures already reported.
func (d *Decoder) feedDrop(r *record.Record, emit func(result.Event)) {
	obs := d.observe(r)
	emit(obs)
	if !r.Src.Addr().IsValid() || !r.Dst.Addr().IsValid() {
		return
	}
	cause := dropCause(r.Reason)
	e := result.Evidence{Seq: obs.Seq, Time: r.Time, Observed: result.TypeDrop, Detail: dropDetail(r)}
	if d.dropIn(&d.seen, r, r.Time.Add(-d.retention/2), cause, e, emit) || cause != result.FragmentLoss {
		return
	}
	d.dropIn(&d.late, r, r.Time.Add(-d.fragRetention), cause, e, emit)
}

// dropIn attributes drop r to a datagram of table t seen since window; it reports
// whether it found one.
func (d *Decoder) dropIn(t *datagrams, r *record.Record, window time.Time, cause result.Cause, e result.Evidence, emit func(result.Event)) bool {
	var unread, read *seenDatagram
	t.newestOf(r.Src, r.Dst, window, r.Time, func(sd *seenDatagram) {
		if unread != nil || sd.dropped || r.Len != 0 && r.Len != int(sd.n) || !sameSocket(r.Cookie, sd.socketOf(false)) {
			return
		}
		if !sd.wasRead() {
			unread = sd
		} else if read == nil {
			read = sd
		}
	})
	if unread != nil {
		d.dropped(unread, cause, e, emit)
		return true
	}
	attributed := false
	t.newestOf(r.Dst, r.Src, window, r.Time, func(sd *seenDatagram) {
		if !sameSocket(r.Cookie, sd.socketOf(true)) {
			return
		}
		for _, o := range sd.owners {
			if o.answer == nil && sd.is(o.awaiting) {
				d.attribute(o, cause, e, false, emit) // an answer to it, dropped unseen
				attributed = true
			}
		}
	})
	if !attributed && read != nil {
		// A datagram recvmsg dequeued and dropped (a bad checksum) is taken for read.
		d.dropped(read, cause, e, emit)
		return true
	}
	return attributed
}

// dropped attributes a drop to sd, the datagram it is.
func (d *Decoder) dropped(sd *seenDatagram, cause result.Cause, e result.Evidence, emit func(result.Event)) {
	sd.dropped, sd.lost = true, true
	if tw := sd.twin; tw != nil {
		tw.dropped, tw.lost = true, true
	}
	for _, o := range sd.owners {
		switch {
		case sd.is(o.answer), sd.is(o.challenge()):
			d.attribute(o, cause, e, true, emit) // the answer itself, seen and then dropped
		case o.answer == nil && sd.is(o.awaiting) && !sd.wasRead():
			// The request, dropped before its receiver read it (a read request is not
			// the one dropped: the drop is another's of its length).
			d.attribute(o, cause, e, false, emit)
		}
	}
}

// attribute gives item o a network observation about one of its datagrams: weighed
// while it waits; once it was reported failed, a revision of that verdict when the
// observation explains it better (a fragment loss known only after ipfrag_time).
func (d *Decoder) attribute(o *tracked, cause result.Cause, e result.Evidence, onAnswer bool, emit func(result.Event)) {
	if !o.done {
		o.network(cause, e, onAnswer)
		return
	}
	if onAnswer || !o.revisable(cause) {
		return
	}
	o.cause = codeOf(cause)
	emit(&result.Revision{
		Head:    result.Head{Time: e.Time},
		Revises: o.seq, Of: failureTypes[o.evType], Initiator: o.initiator.AddrPort(), Recipient: o.recipient.AddrPort(),
		Cause: cause, Evidence: []result.Evidence{e},
	})
}

// sameSocket reports whether two socket cookies may name one socket: 0 is unknown.
func sameSocket(a, b uint64) bool { return a == 0 || b == 0 || a == b }
