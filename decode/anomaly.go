package decode

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/discv4"
	"github.com/discotrace/discotrace/decode/discv5"
	"github.com/discotrace/discotrace/decode/internal/bounded"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// Clock offset estimation: the median of a peer's last skewSamples packets, reported
// once per peer when there are at least skewMinSamples: one packet with an odd
// expiration (test tools send them on purpose) moves the median of three by nothing.
const (
	skewSamples    = 9
	skewMinSamples = 3
)

type skewState struct {
	samples  []time.Duration
	reported bool
	last     time.Time
}

type seqClaim struct {
	seq  uint64
	peer netip.AddrPort
	// seen is the packet that made the claim (its time the claim's), detail still unset.
	seen     result.Evidence
	reported bool
}

// mismatchKey is a local endpoint and the public IP peers report for it.
type mismatchKey struct {
	local    netip.AddrPort
	publicIP netip.Addr
}

// maxStormTimes bounds the challenges kept per pair (and listed as evidence).
const maxStormTimes = 64

type stormState struct {
	challenges []result.Evidence // the recent ones, oldest first
	reported   bool
}

// anomalies detects what is wrong without being one failure: clock skew (discv4
// expirations), ENR sequence numbers going down, NAT rewriting our endpoint (PONG's
// "to"), and WHOAREYOU storms.
// Every map is keyed by what peers send (IDs, addresses), so each has a count bound
// (bounded: the oldest insertion goes first) besides its time limit, checked on use.
type anomalies struct {
	d        *Decoder
	skew     *bounded.Map[string, *skewState]
	seqs     *bounded.Map[enode.ID, *seqClaim]
	mismatch *bounded.Map[mismatchKey, time.Time]
	// advertised is each local node's endpoint as its record (ENR) gives it: from
	// --enr, or its own record seen leaving (an ENRRESPONSE, a HANDSHAKE).
	advertised map[enode.ID]netip.AddrPort
	storms     *bounded.Map[flowKey, *stormState]
}

// maxAnomalyPeers bounds each anomaly map: a busy node talks to a few thousand peers.
const maxAnomalyPeers = 16384

func (an *anomalies) init(d *Decoder) {
	an.d = d
	an.skew = bounded.New[string, *skewState](maxAnomalyPeers)
	an.seqs = bounded.New[enode.ID, *seqClaim](maxAnomalyPeers)
	an.mismatch = bounded.New[mismatchKey, time.Time](maxAnomalyPeers)
	an.storms = bounded.New[flowKey, *stormState](maxAnomalyPeers)
	an.advertised = make(map[enode.ID]netip.AddrPort)
}

// stale reports whether state last touched at t is past its retention: it is then
// treated as absent, and replaced on the next packet.
func (an *anomalies) stale(t time.Time) bool { return an.d.now.Sub(t) > idRetention }

// packet checks one decoded packet.
func (an *anomalies) packet(r *record.Record, p *packet.Packet, sd *seenDatagram, emit func(result.Event)) {
	if p.Err != nil {
		return
	}
	switch p.Proto {
	case packet.ProtoV4:
		an.clockSkew(r, p, sd, emit)
		switch p.Kind {
		case discv4.KindPing, discv4.KindPong:
			if p.HasENRSeq && p.HasSrcID {
				an.enrSeq(r, sd, p.SrcID, p.ENRSeq, p.Kind, emit)
			}
		case discv4.KindENRResponse:
			for _, n := range p.Records {
				if n.ID() == p.SrcID {
					an.enrSeq(r, sd, n.ID(), n.Seq(), "ENRRESPONSE", emit)
					an.ownRecord(n)
				}
			}
		}
		if p.Kind == discv4.KindPong {
			an.endpoint(r, sd, p.To, "PONG", emit)
		}
	case packet.ProtoV5:
		if !p.HasSrcID || p.Kind == discv5.KindWhoareyou {
			return // a WHOAREYOU's enr-seq is the challenger's copy of the OTHER node's record
		}
		ownRecord := false
		for _, n := range p.Records {
			if n.ID() == p.SrcID {
				an.enrSeq(r, sd, n.ID(), n.Seq(), "HANDSHAKE record", emit)
				an.ownRecord(n)
				ownRecord = true
			}
		}
		// A signed record in the packet outranks the message's enr-seq beside it
		// (which test tools fill from a stale copy).
		switch m := p.Msg.(type) {
		case *v5wire.Ping:
			if !ownRecord {
				an.enrSeq(r, sd, p.SrcID, m.ENRSeq, m.Name(), emit)
			}
		case *v5wire.Pong:
			if !ownRecord {
				an.enrSeq(r, sd, p.SrcID, m.ENRSeq, m.Name(), emit)
			}
			if p.To.IsValid() {
				an.endpoint(r, sd, p.To, m.Name(), emit)
			}
		}
	}
}

func (an *anomalies) event(r *record.Record, kind result.AnomalyKind, peer netip.AddrPort) *result.Anomaly {
	return &result.Anomaly{Head: result.Head{Time: r.Time}, Kind: kind, Peer: peer}
}

// evidence is the packet sd that shows an anomaly.
func (an *anomalies) evidence(sd *seenDatagram, detail string) result.Evidence {
	return sd.evidence(detail)
}

// clockSkew estimates a remote sender's clock offset from a discv4 expiration.
func (an *anomalies) clockSkew(r *record.Record, p *packet.Packet, sd *seenDatagram, emit func(result.Event)) {
	if p.Expiration.IsZero() || p.ExpirationNegative() || r.Dir == record.DirOut || an.d.isLocal(r.Src) {
		return // the local clock is the capture's clock
	}
	key := addrText(r.Src)
	if p.HasSrcID {
		key = p.SrcID.String()
	}
	s, ok := an.skew.Get(key)
	if !ok || an.stale(s.last) {
		s = &skewState{}
		an.skew.Put(key, s)
	}
	s.last = r.Time
	if s.reported {
		return
	}
	// Expirations are whole seconds, truncated: +0.5 s centres the estimate.
	window := an.d.cfg.V4ExpirationWindow
	off := p.Expiration.Add(500*time.Millisecond).Sub(r.Time) - window
	if len(s.samples) == skewSamples {
		s.samples = append(s.samples[:0], s.samples[1:]...) // the latest samples: a clock can change
	}
	s.samples = append(s.samples, off)
	if len(s.samples) < skewMinSamples {
		return
	}
	sorted := slices.Clone(s.samples)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	if lower := sorted[(len(sorted)-1)/2]; lower.Abs() < median.Abs() {
		median = lower // of an even count's two middle samples, the one nearer no offset
	}
	if median.Abs() < an.d.cfg.ClockSkewThreshold {
		return
	}
	s.reported = true
	ev := an.event(r, result.ClockSkew, r.Src)
	if p.HasSrcID {
		ev.PeerID = &p.SrcID
	}
	ev.Offset = durPtr(median)
	dir := "ahead of"
	if median < 0 {
		dir = "behind"
	}
	ev.Detail = fmt.Sprintf("the peer's clock is about %s %s the capture's (median of %d discv4 expirations, assuming a %s expiration window: --v4-expiration-window)",
		median.Abs().Round(time.Second), dir, len(s.samples), window)
	if median <= -window {
		ev.Detail += "; its packets arrive already expired and are ignored"
	}
	ev.Evidence = []result.Evidence{an.evidence(sd, fmt.Sprintf("%s expiration %s", p.Kind, p.Expiration.UTC().Format(time.RFC3339)))}
	emit(ev)
}

// enrSeq records a node's own claim of its ENR sequence number and reports when it
// goes down. Only first-hand claims count: a NEIGHBORS or NODES entry may be stale.
func (an *anomalies) enrSeq(r *record.Record, sd *seenDatagram, id enode.ID, seq uint64, from string, emit func(result.Event)) {
	if seq == 0 {
		return // "no record" (test tools send it), not a claim about one
	}
	c, ok := an.seqs.Get(id)
	if !ok || an.stale(c.seen.Time) {
		an.seqs.Put(id, &seqClaim{seq: seq, peer: r.Src, seen: sd.evidence("")})
		return
	}
	if seq >= c.seq {
		c.seq, c.peer, c.seen = seq, r.Src, sd.evidence("")
		return
	}
	if c.reported {
		return // once per node: the evidence of one drop is enough
	}
	c.reported = true
	ev := an.event(r, result.ENRSeqRegression, r.Src)
	ev.PeerID = &id
	ev.Detail = fmt.Sprintf("ENR sequence number went down from %d to %d (%s): the node lost its record and restarted from an older one, or two nodes share a key", c.seq, seq, from)
	first := c.seen
	first.Detail = fmt.Sprintf("seq %d from %s", c.seq, addrText(c.peer))
	ev.Evidence = []result.Evidence{
		first,
		an.evidence(sd, fmt.Sprintf("seq %d from %s in %s", seq, addrText(r.Src), from)),
	}
	emit(ev)
}

// ownRecord takes a node's own record seen in a packet it sent: a local node's says
// what it advertises.
func (an *anomalies) ownRecord(n *enode.Node) {
	if an.d.localIDs[n.ID()] {
		an.advertise(n)
	}
}

// advertise notes the endpoint a local node's record gives (the latest record seen).
func (an *anomalies) advertise(n *enode.Node) {
	if ep, ok := n.UDPEndpoint(); ok && len(an.advertised) < maxLocalAddrs {
		an.advertised[n.ID()] = unmapAP(ep)
	}
}

// endpoint compares the address a peer says it saw us at (PONG's "to") with what our
// node advertises in its record, when known: peers that take the record cannot reach a
// node that advertises another endpoint. Without the record it compares with the address
// the answer was sent to here, which a NAT rewrites: informational, since a node behind
// NAT that advertises its public endpoint is fine.
func (an *anomalies) endpoint(r *record.Record, sd *seenDatagram, reported netip.AddrPort, what string, emit func(result.Event)) {
	if !reported.IsValid() || reported.Addr().IsUnspecified() {
		return
	}
	if r.Dir == record.DirOut || r.Dir == record.DirUnknown && len(an.d.localAddrs) > 0 && !an.d.isLocal(r.Dst) {
		return // a PONG the local node sends: the peer's address, not ours
	}
	local := unmapAP(r.Dst)
	reported = unmapAP(reported)
	adv, hasAdv := netip.AddrPort{}, false
	if id, ok := an.d.idAt(r.Dst); ok && an.d.localIDs[id] {
		adv, hasAdv = an.advertised[id]
	}
	if hasAdv && reported == adv || !hasAdv && reported == local {
		return
	}
	// Once per local endpoint and public IP: a NAT that maps each peer to another port
	// (symmetric NAT) is one finding, not one per peer.
	k := mismatchKey{local, reported.Addr()}
	if last, done := an.mismatch.Get(k); done && !an.stale(last) {
		an.mismatch.Put(k, r.Time)
		return
	}
	an.mismatch.Put(k, r.Time)
	ev := an.event(r, result.EndpointMismatch, r.Src)
	if id, ok := an.d.idAt(r.Src); ok {
		ev.PeerID = &id
	}
	if hasAdv {
		ev.Detail = fmt.Sprintf("%s from %s says it reached us at %s, but our record advertises %s: peers that take the record from others cannot reach us (set the node's --nat or advertised address to %s)",
			what, addrText(r.Src), addrText(reported), addrText(adv), addrText(reported))
	} else {
		ev.Detail = fmt.Sprintf("%s from %s says it reached us at %s, but we are at %s: a NAT rewrites our address. Informational: fine if our record advertises %s (give --enr to check)",
			what, addrText(r.Src), addrText(reported), addrText(local), addrText(reported))
	}
	ev.Evidence = []result.Evidence{an.evidence(sd, fmt.Sprintf("%s to=%s", what, addrText(reported)))}
	emit(ev)
}

// whoareyou counts challenges from one node to one peer; StormThreshold of them within
// StormWindow is a storm, reported once until the rate falls again.
func (an *anomalies) whoareyou(r *record.Record, sd *seenDatagram, emit func(result.Event)) {
	k := flowOf(r.Src, r.Dst)
	s, ok := an.storms.Get(k)
	if !ok {
		s = &stormState{}
		an.storms.Put(k, s)
	}
	cut := r.Time.Add(-an.d.cfg.StormWindow)
	i := 0
	for i < len(s.challenges) && !s.challenges[i].Time.After(cut) {
		i++
	}
	s.challenges = append(s.challenges[:0], s.challenges[i:]...)
	if len(s.challenges) >= maxStormTimes {
		s.challenges = append(s.challenges[:0], s.challenges[1:]...)
	}
	s.challenges = append(s.challenges, sd.evidence("WHOAREYOU"))
	if len(s.challenges) < an.d.cfg.StormThreshold {
		s.reported = false
		return
	}
	if s.reported {
		return
	}
	s.reported = true
	ev := an.event(r, result.WhoareyouStorm, r.Dst)
	if id, ok := an.d.idAt(r.Dst); ok {
		ev.PeerID = &id
	}
	ev.Detail = fmt.Sprintf("%d WHOAREYOU from %s to %s within %s: the peer keeps failing or losing its sessions",
		len(s.challenges), addrText(r.Src), addrText(r.Dst), an.d.cfg.StormWindow)
	ev.Evidence = append(ev.Evidence, s.challenges...)
	emit(ev)
}
