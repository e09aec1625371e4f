package report

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	"github.com/discotrace/discotrace/ndjson"
)

// Bounds of what an Aggregator keeps, by default (Options change them).
const (
	DefaultMaxPeers        = 4096
	DefaultMaxSamples      = 256  // round trips kept per peer, for handshakes and for exchanges
	DefaultMaxTotalSamples = 8192 // round trips kept for the totals
)

const (
	maxEndpointsPerPeer = 8
	maxLocal            = 64 // local IDs and addresses learned (a host runs a few nodes)
	// maxRevisable bounds the failures remembered for a revision event to find: the
	// latest ones (revisions come within ipfrag_time, 30 s by default).
	maxRevisable = 4096
	samplerSeed  = 0x5eed
)

// Options set up an Aggregator. Zero values take the defaults.
type Options struct {
	// LocalIDs are the local node's IDs (hex, as events print them): the local node is
	// not a peer. Sends also tell the local node (their source), and so do the IDs
	// they carry.
	LocalIDs []string
	// MaxPeers bounds the peers itemised; events about further peers are counted in
	// Summary.PeersOmitted.
	MaxPeers int
	// MaxSamples bounds the round trips kept per peer and kind, MaxTotalSamples those
	// kept for the totals.
	MaxSamples      int
	MaxTotalSamples int
}

// Aggregator adds up events as they come; Summary reads the result at any time. It is
// not safe for concurrent use.
type Aggregator struct {
	opt Options
	sum Summary // the counters; Summary() fills in the rest

	first, last  string // event times, earliest and latest
	hsRTT, exRTT sample
	rng          splitmix

	localIDs map[string]bool
	localEPs map[string]bool

	peers  []*peerState
	listed int // peers not merged away: what MaxPeers bounds
	byID   map[string]*peerState
	byEP   map[string]*peerState

	// failures are the latest failures by seq, for revisions to find; failureRing
	// keeps their order for the bound.
	failures    map[uint64]*failure
	failureRing []uint64
	failureNext int
}

// failure is a failed handshake or exchange as counted: where, and under which cause.
type failure struct {
	tally *Tally
	cause string
	peers [2]*peerState
}

// peerState is a peer as it is being counted.
type peerState struct {
	Peer
	hsRTT, exRTT sample
	merged       bool       // folded into another peer, or the local node: no longer listed
	into         *peerState // the peer it was folded into
}

// New returns an empty aggregator.
func New(opt Options) *Aggregator {
	if opt.MaxPeers <= 0 {
		opt.MaxPeers = DefaultMaxPeers
	}
	if opt.MaxSamples <= 0 {
		opt.MaxSamples = DefaultMaxSamples
	}
	if opt.MaxTotalSamples <= 0 {
		opt.MaxTotalSamples = DefaultMaxTotalSamples
	}
	a := &Aggregator{
		opt:      opt,
		rng:      splitmix{state: samplerSeed},
		localIDs: map[string]bool{},
		localEPs: map[string]bool{},
		byID:     map[string]*peerState{},
		byEP:     map[string]*peerState{},
		failures: map[uint64]*failure{},
	}
	a.sum.ByType = map[string]uint64{}
	a.sum.Anomalies = map[string]uint64{}
	for _, t := range []*Tally{&a.sum.Handshakes, &a.sum.Exchanges} {
		t.ByOutcome, t.ByCause = map[string]uint64{}, map[string]uint64{}
	}
	for _, id := range opt.LocalIDs {
		a.localIDs[id] = true
	}
	return a
}

// Add counts one event.
func (a *Aggregator) Add(ev *ndjson.Event) {
	a.sum.Events++
	a.sum.ByType[ev.Type]++
	// The schema writes times with a fixed nine-digit fraction, so they compare as text.
	if ev.Time != "" {
		if a.first == "" || ev.Time < a.first {
			a.first = strings.Clone(ev.Time) // kept for the run: not the renderer's block
		}
		if ev.Time > a.last {
			a.last = ev.Time
		}
	}
	var srcID, dstID string
	if ev.Disc != nil {
		srcID, dstID = ev.Disc.SrcID, ev.Disc.DstID
	}
	switch ev.Type {
	case ndjson.TypeSend:
		// The local node sent it: its source, and the ID it signed or masked with, are local.
		a.learnLocal(ev.Src, srcID)
		if p := a.peer(ev.Dst, dstID); p != nil {
			p.DatagramsOut++
		}
	case ndjson.TypeRecv:
		a.learnLocal(ev.Dst, dstID)
		if p := a.peer(ev.Src, srcID); p != nil {
			p.DatagramsIn++
		}
	case ndjson.TypePacket:
		// A capture shows both ends; the local one is known by its ID, or not at all.
		if a.localIDs[srcID] {
			a.learnLocal(ev.Src, "")
		}
		if a.localIDs[dstID] {
			a.learnLocal(ev.Dst, "")
		}
		if p := a.peer(ev.Src, srcID); p != nil {
			p.DatagramsIn++
		}
		if p := a.peer(ev.Dst, dstID); p != nil {
			p.DatagramsOut++
		}
	case ndjson.TypeLost:
		a.sum.Loss.LostEvents++
		a.sum.Loss.Lost += deref(ev.Count)
	case ndjson.TypeShed:
		a.sum.Loss.ShedEvents++
		a.sum.Loss.ShedDropped += deref(ev.Count)
		a.sum.Loss.ShedUndecoded += deref(ev.Undecoded)
		a.sum.Loss.ShedUntracked += deref(ev.Untracked)
	case ndjson.TypeHandshake:
		a.decided(ev, &a.sum.Handshakes, &a.hsRTT, ev.TotalNs, func(p *peerState) (*Count, *sample) { return &p.Handshakes, &p.hsRTT })
	case ndjson.TypeExchange:
		a.decided(ev, &a.sum.Exchanges, &a.exRTT, ev.RTTNs, func(p *peerState) (*Count, *sample) { return &p.Exchanges, &p.exRTT })
	case ndjson.TypeRevision:
		a.revise(ev)
	case ndjson.TypeAnomaly:
		a.sum.Anomalies[ev.Anomaly]++
		if p := a.peer(ev.Peer, ev.PeerID); p != nil {
			p.Anomalies = inc(p.Anomalies, ev.Anomaly)
		}
	}
}

// decided counts a handshake or an exchange in the totals and for each peer in it.
func (a *Aggregator) decided(ev *ndjson.Event, t *Tally, total *sample, rtt *int64, of func(*peerState) (*Count, *sample)) {
	t.Total++
	t.ByOutcome[ev.Outcome]++
	failed := ev.Outcome == "failed"
	if failed {
		t.ByCause[ev.Cause]++
	}
	if rtt != nil {
		total.add(*rtt, a.opt.MaxTotalSamples, &a.rng)
	}
	var f *failure
	if failed && ev.Seq != 0 {
		f = &failure{tally: t, cause: ev.Cause}
		a.remember(ev.Seq, f)
	}
	for i, side := range [2][2]string{{ev.Initiator, ev.InitiatorID}, {ev.Recipient, ev.RecipientID}} {
		p := a.peer(side[0], side[1])
		if p == nil {
			continue
		}
		if f != nil {
			f.peers[i] = p
		}
		c, s := of(p)
		switch {
		case failed:
			c.Failed++
			p.Causes = inc(p.Causes, ev.Cause)
		case ev.Outcome == "open":
			c.Open++
		default:
			c.OK++
		}
		if rtt != nil {
			s.add(*rtt, a.opt.MaxSamples, &a.rng)
		}
	}
}

// remember keeps failure f, reported as event seq, for a revision to find; the oldest
// past maxRevisable is forgotten.
func (a *Aggregator) remember(seq uint64, f *failure) {
	if len(a.failureRing) < maxRevisable {
		a.failureRing = append(a.failureRing, seq)
	} else {
		delete(a.failures, a.failureRing[a.failureNext])
		a.failureRing[a.failureNext] = seq
		a.failureNext = (a.failureNext + 1) % maxRevisable
	}
	a.failures[seq] = f
}

// revise moves the failure a revision event names to its new cause.
func (a *Aggregator) revise(ev *ndjson.Event) {
	f := a.failures[ev.Revises]
	if f == nil || ev.Cause == "" || ev.Cause == f.cause {
		return
	}
	f.tally.Revised++
	f.tally.ByCause[f.cause]--
	if f.tally.ByCause[f.cause] == 0 {
		delete(f.tally.ByCause, f.cause)
	}
	f.tally.ByCause[ev.Cause]++
	for _, p := range f.peers {
		for p != nil && p.into != nil {
			p = p.into // its counts went there
		}
		if p == nil || p.merged {
			continue
		}
		if p.Causes[f.cause]--; p.Causes[f.cause] == 0 {
			delete(p.Causes, f.cause)
		}
		p.Causes = inc(p.Causes, ev.Cause)
	}
	f.cause = ev.Cause
}

// learnLocal notes an endpoint and an ID of the local node. A peer listed by that ID,
// or by that address alone, until now was the local node: it leaves the table.
func (a *Aggregator) learnLocal(ep, id string) {
	if id != "" && !a.localIDs[id] && len(a.localIDs) < maxLocal {
		a.localIDs[id] = true
		if p := a.byID[id]; p != nil {
			a.unlist(p)
		}
	}
	if ep == "" || a.localEPs[ep] || len(a.localEPs) >= maxLocal {
		return
	}
	a.localEPs[ep] = true
	if p := a.byEP[ep]; p != nil && p.ID == "" {
		a.unlist(p)
	}
}

// unlist drops p from the table: it was the local node.
func (a *Aggregator) unlist(p *peerState) {
	p.merged = true
	a.listed--
	if p.ID != "" {
		delete(a.byID, p.ID)
	}
	for _, ep := range p.Endpoints {
		if a.byEP[ep] == p {
			delete(a.byEP, ep)
		}
	}
}

// peer finds or starts the peer at ep with node ID id (either may be empty); nil for
// the local node, an event naming neither, or a full table (the event is then counted
// in PeersOmitted).
func (a *Aggregator) peer(ep, id string) *peerState {
	if a.localIDs[id] || (id == "" && a.localEPs[ep]) || (ep == "" && id == "") {
		return nil
	}
	if id == "" {
		if p := a.byEP[ep]; p != nil {
			return p
		}
		return a.newPeer(ep, "")
	}
	p := a.byID[id]
	byAddr := a.byEP[ep]
	switch {
	case p == nil && byAddr != nil && byAddr.ID == "":
		// The address's events so far were this node's: it gets its name.
		p = byAddr
		p.ID = id
		a.byID[id] = p
	case p == nil:
		if p = a.newPeer(ep, id); p == nil {
			return nil
		}
	case byAddr != nil && byAddr != p && byAddr.ID == "":
		a.fold(byAddr, p)
	}
	if ep != "" && !a.localEPs[ep] {
		a.addEndpoint(p, ep)
	}
	return p
}

func (a *Aggregator) newPeer(ep, id string) *peerState {
	if a.listed >= a.opt.MaxPeers {
		a.sum.PeersOmitted++
		return nil
	}
	if len(a.peers) > 2*a.listed+64 {
		// Peers merged away are dropped from the list now and then, not each time.
		a.peers = slices.DeleteFunc(a.peers, func(p *peerState) bool { return p.merged })
	}
	p := &peerState{Peer: Peer{ID: id}}
	a.peers = append(a.peers, p)
	a.listed++
	if id != "" {
		a.byID[id] = p
	}
	if ep != "" {
		a.addEndpoint(p, ep)
	}
	return p
}

// addEndpoint records that p was seen at ep; ep's events without an ID go to p from now on.
// Only listed endpoints are indexed, so that the index stays bounded by the table.
func (a *Aggregator) addEndpoint(p *peerState, ep string) {
	if slices.Contains(p.Endpoints, ep) {
		a.byEP[ep] = p
		return
	}
	if len(p.Endpoints) >= maxEndpointsPerPeer {
		p.UnlistedEndpointEvents++
		return
	}
	p.Endpoints = append(p.Endpoints, ep)
	a.byEP[ep] = p
}

// fold adds the counts of from, a peer known by its address alone, to into, the node
// now seen at that address, and lists from no more.
func (a *Aggregator) fold(from, into *peerState) {
	into.DatagramsIn += from.DatagramsIn
	into.DatagramsOut += from.DatagramsOut
	for _, c := range [][2]*Count{{&into.Handshakes, &from.Handshakes}, {&into.Exchanges, &from.Exchanges}} {
		c[0].OK += c[1].OK
		c[0].Failed += c[1].Failed
		c[0].Open += c[1].Open
	}
	into.hsRTT.merge(&from.hsRTT, a.opt.MaxSamples, &a.rng)
	into.exRTT.merge(&from.exRTT, a.opt.MaxSamples, &a.rng)
	into.Causes = addAll(into.Causes, from.Causes)
	into.Anomalies = addAll(into.Anomalies, from.Anomalies)
	for _, ep := range from.Endpoints {
		a.addEndpoint(into, ep)
	}
	a.unlist(from)
	from.into = into
}

// Summary returns what the events so far add up to.
func (a *Aggregator) Summary() Summary {
	s := a.sum
	s.ByType = nonEmpty(s.ByType)
	s.Anomalies = nonEmpty(s.Anomalies)
	s.Handshakes = tally(a.sum.Handshakes, &a.hsRTT)
	s.Exchanges = tally(a.sum.Exchanges, &a.exRTT)
	s.First, s.Last = a.first, a.last
	s.LocalIDs = slices.Sorted(maps.Keys(a.localIDs))
	s.LocalEndpoints = slices.Sorted(maps.Keys(a.localEPs))
	if len(s.LocalIDs) == 0 {
		s.LocalIDs = nil
	}
	if len(s.LocalEndpoints) == 0 {
		s.LocalEndpoints = nil
	}
	s.Peers = nil
	for _, p := range a.peers {
		if p.merged {
			continue
		}
		out := p.Peer
		out.Endpoints = slices.Clone(p.Endpoints)
		out.Causes = maps.Clone(p.Causes)
		out.Anomalies = maps.Clone(p.Anomalies)
		out.HandshakeRTT = p.hsRTT.percentiles()
		out.ExchangeRTT = p.exRTT.percentiles()
		s.Peers = append(s.Peers, out)
	}
	slices.SortStableFunc(s.Peers, worstFirst)
	s.RTTSampling = samplingNote(a.opt.MaxSamples, a.opt.MaxTotalSamples)
	return s
}

// worstFirst orders peers by failures, then anomalies, then traffic, all descending;
// then by ID and address, so that the order is the same for the same events.
func worstFirst(x, y Peer) int {
	return cmp.Or(
		cmp.Compare(y.Failures(), x.Failures()),
		cmp.Compare(sum(y.Anomalies), sum(x.Anomalies)),
		cmp.Compare(y.DatagramsIn+y.DatagramsOut, x.DatagramsIn+x.DatagramsOut),
		cmp.Compare(x.ID, y.ID),
		cmp.Compare(first(x.Endpoints), first(y.Endpoints)),
	)
}

func tally(t Tally, rtt *sample) Tally {
	return Tally{Total: t.Total, ByOutcome: nonEmpty(t.ByOutcome), ByCause: nonEmpty(t.ByCause), Revised: t.Revised, RTT: rtt.percentiles()}
}

func nonEmpty(m map[string]uint64) map[string]uint64 {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

func inc(m map[string]uint64, k string) map[string]uint64 {
	if m == nil {
		m = map[string]uint64{}
	}
	m[k]++
	return m
}

func addAll(into, from map[string]uint64) map[string]uint64 {
	for k, v := range from {
		if into == nil {
			into = map[string]uint64{}
		}
		into[k] += v
	}
	return into
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}
