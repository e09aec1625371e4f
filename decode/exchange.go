package decode

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/discv4"
	"github.com/discotrace/discotrace/decode/internal/addrkey"
	"github.com/discotrace/discotrace/decode/internal/bounded"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// Request and response names in exchange events ("req", "resp"): the discv4 kind or the
// discv5 message name, each with its protocol version so that one field says both.
func v4Name(kind string) string { return kind + "/v4" }

// undecryptedName names a discv5 message this capture cannot decrypt, as request or response.
const undecryptedName = "MESSAGE/v5"

// exchange is one request and its response (or failure).
type exchange struct {
	tracked
	share          *flowShare // what follow gave it
	req, resp      string
	from, to       netip.AddrPort // requester, responder
	fromID, toID   enode.ID
	hasFrom, hasTo bool
	t, respT       time.Time
	// lastT is when the latest copy of the request went out: identical copies cannot be
	// told apart, and the latest before the answer is the one a resend got answered.
	lastT    time.Time
	timeout  time.Duration
	attempts int
	answered bool
	// awaitsCopy: a discv4 request whose answer was lost, still within its timeout: the
	// requester waits on, and an identical answer to an identical copy (geth signs
	// deterministically: its next PING within the second has the same bytes) satisfies it.
	awaitsCopy bool
	// nodes counts the entries of the NEIGHBORS packets a discv4 FINDNODE got so far,
	// lastNeighbors is when the latest came.
	nodes         int
	lastNeighbors time.Time
	forget        func() // removes the exchange from its indexes
}

// flowKey is a directed pair of endpoints (unmapped), packed without pointers.
type flowKey struct{ from, to addrkey.Key }

func flowOf(from, to netip.AddrPort) flowKey {
	return flowKey{addrkey.Of(unmapAP(from)), addrkey.Of(unmapAP(to))}
}

// v4ReqKey finds a discv4 request by its hash and the IP it went to: requests without
// a destination in their bytes (ENRREQUEST, a FINDNODE's repeated target) are identical
// for every peer, and geth matches a reply by the IP it comes from.
type v4ReqKey struct {
	hash string
	to   netip.Addr
}

// v5ReqKey finds a discv5 request by who asked whom and its request ID.
type v5ReqKey struct {
	flow  flowKey
	reqID string
}

// v4BucketSize is how many nodes a discv4 FINDNODE asks for (go-ethereum's bucketSize):
// the answer comes as NEIGHBORS packets of at most v4wire.MaxNeighbors entries, and
// geth's requester waits for this many entries or its timeout.
const v4BucketSize = 16

// v4NeighborsSpread is how far apart the NEIGHBORS packets of one answer may arrive: the
// peer writes them back to back, so on any path they come within a few milliseconds.
const v4NeighborsSpread = 50 * time.Millisecond

// exchanges pairs requests with responses: discv4 PING↔PONG and ENRREQUEST↔ENRRESPONSE
// by the reply token (the request's hash), from the IP the request went to, as geth
// matches them; FINDNODE↔NEIGHBORS by peer, oldest request first, each FINDNODE taking
// NEIGHBORS packets until its answer is complete (16 entries, or a packet of fewer than
// 12: the last) or it times out, the first packet answering it; discv5 requests with
// responses by request ID.
//
// The indexes are keyed by what peers send, so each is bounded (package bounded: the
// oldest insertion goes first); a request pushed out of its index keeps its timer and is
// still reported, but an answer can no longer find it.
type exchanges struct {
	d        *Decoder
	byHash   *bounded.Map[v4ReqKey, *exchange]
	findnode *bounded.Map[flowKey, []*exchange]
	v5reqs   *bounded.Map[v5ReqKey, *exchange]
}

// Bounds of the request indexes: a busy node has a few hundred requests in flight.
const (
	maxPendingRequests = 16384
	// maxFindnodesPerPeer bounds the FINDNODEs one peer has waiting for NEIGHBORS (geth
	// sends a few at a time); past it the oldest stops taking answers.
	maxFindnodesPerPeer = 16
)

func (x *exchanges) init(d *Decoder) {
	x.d = d
	x.byHash = bounded.New[v4ReqKey, *exchange](maxPendingRequests)
	x.findnode = bounded.New[flowKey, []*exchange](maxPendingRequests)
	x.v5reqs = bounded.New[v5ReqKey, *exchange](maxPendingRequests)
}

// v4Answers reports whether a discv4 packet that failed to decode completely still
// answers its request, as it does for go-ethereum: a NEIGHBORS with invalid entries
// (geth skips them and counts the rest), an ENRRESPONSE with an invalid record (geth
// matches the reply and rejects the record afterwards).
func v4Answers(p *packet.Packet) bool {
	return errors.Is(p.Err, discv4.ErrBadNeighbor) || errors.Is(p.Err, discv4.ErrBadRecord) || errors.Is(p.Err, discv4.ErrRecordNotSender)
}

// v4RequestOf names the request a discv4 response answers.
var v4RequestOf = map[string]string{
	discv4.KindPong:        discv4.KindPing,
	discv4.KindENRResponse: discv4.KindENRRequest,
	discv4.KindNeighbors:   discv4.KindFindnode,
}

// v4 tracks a decoded discv4 packet.
func (x *exchanges) v4(r *record.Record, p *packet.Packet, sd *seenDatagram, emit func(result.Event)) {
	if p.Err != nil && !v4Answers(p) {
		return
	}
	switch p.Kind {
	case discv4.KindPing, discv4.KindENRRequest, discv4.KindFindnode:
		key := v4ReqKey{string(p.Hash), r.Dst.Addr().Unmap()}
		if ex, _ := x.byHash.Get(key); ex != nil && !ex.done && (!ex.answered || ex.answerLost) {
			// The same bytes to the same peer again while it waits (its answer, if any,
			// lost): a duplicate of the request, not a new one. (geth signs
			// deterministically and expirations are whole seconds, so a new request within
			// the second after an answer has the same bytes too.)
			if ex.answered {
				ex.answered, ex.answerLost, ex.awaitsCopy, ex.answer, ex.resp = false, false, false, nil, ""
			}
			ex.attempts++
			ex.lastT = r.Time
			ex.addSent(sd, "duplicate "+p.Kind)
			sd.own(&ex.tracked)
			return
		}
		share, ok := x.d.follow(r)
		if !ok {
			return
		}
		ex := x.open(r, p, sd, v4Name(p.Kind), x.d.cfg.V4Timeout)
		ex.share = share
		x.byHash.Put(key, ex)
		unindex := func() {
			if e, _ := x.byHash.Get(key); e == ex { // not a newer request with the same bytes
				x.byHash.Delete(key)
			}
		}
		ex.forget = unindex
		if p.Kind == discv4.KindFindnode {
			k := flowOf(r.Src, r.Dst)
			// The peer answers its FINDNODEs one after the other, each answer's packets
			// back to back: one whose last packet came well before this request went out
			// is complete (it may have had exactly 12 entries, or fewer than asked for).
			list, _ := x.findnode.Get(k)
			var complete []*exchange
			for _, e := range list {
				if e.answered && r.Time.Sub(e.lastNeighbors) > v4NeighborsSpread {
					complete = append(complete, e)
				}
			}
			if len(list)-len(complete) >= maxFindnodesPerPeer {
				complete = append(complete, list[0])
			}
			for _, e := range complete {
				e.forget()
			}
			list, _ = x.findnode.Get(k)
			x.findnode.Put(k, append(list, ex))
			ex.forget = func() {
				unindex()
				list, _ := x.findnode.Get(k)
				for i, e := range list {
					if e == ex {
						list = append(list[:i:i], list[i+1:]...)
						break
					}
				}
				if len(list) == 0 {
					x.findnode.Delete(k)
				} else {
					x.findnode.Put(k, list)
				}
			}
		}
	case discv4.KindPong, discv4.KindENRResponse:
		ex, _ := x.byHash.Get(v4ReqKey{string(p.ReplyTok), r.Src.Addr().Unmap()})
		if ex == nil || ex.req != v4Name(v4RequestOf[p.Kind]) {
			return // not an answer to a request seen: before the capture, or forged
		}
		if x.expiredAnswer(ex, r, p, sd) {
			return
		}
		// Still indexed until its deadline: if this answer is lost, a copy of the request
		// is a duplicate (awaitsCopy).
		x.answer(ex, r, p, sd, v4Name(p.Kind))
	case discv4.KindNeighbors:
		list, _ := x.findnode.Get(flowOf(r.Dst, r.Src))
		if len(list) == 0 {
			return
		}
		ex := list[0] // the oldest FINDNODE still taking NEIGHBORS
		if x.expiredAnswer(ex, r, p, sd) {
			return
		}
		ex.nodes += p.Nodes
		ex.lastNeighbors = r.Time
		if ex.nodes >= v4BucketSize || p.Nodes < v4wire.MaxNeighbors {
			ex.forget() // its answer is complete: later NEIGHBORS answer the next FINDNODE
		}
		if !ex.answered {
			x.answer(ex, r, p, sd, v4Name(p.Kind))
		}
	}
}

// expiredAnswer handles a discv4 response that arrived already expired: go-ethereum
// drops those before matching them to a request, so for the requester it does not
// answer; it becomes the evidence of the failure instead. It reports whether p was one.
func (x *exchanges) expiredAnswer(ex *exchange, r *record.Record, p *packet.Packet, sd *seenDatagram) bool {
	if !p.ExpiredAt(r.Time) {
		return false
	}
	if ex.expired() == nil {
		ex.note().expired = expiredEvidence(r, sd, fmt.Sprintf("%s from %s", p.Kind, addrText(r.Src)), "requester")
	}
	sd.own(&ex.tracked)
	return true
}

// expiredEvidence is the observation that what (a request or an answer) arrived expired,
// so that who ignores it.
func expiredEvidence(r *record.Record, sd *seenDatagram, what, who string) *result.Evidence {
	return ptr(sd.evidence(fmt.Sprintf("%s expired on arrival: the %s ignores it", what, who)))
}

// v5 tracks a decrypted discv5 message.
func (x *exchanges) v5(r *record.Record, p *packet.Packet, sd *seenDatagram, emit func(result.Event)) {
	if p.Msg == nil {
		return
	}
	reqID := hex.EncodeToString(p.Msg.RequestID())
	switch p.Msg.(type) {
	case *v5wire.Ping, *v5wire.Findnode, *v5wire.TalkRequest:
		var refused *result.Evidence
		if v5HandshakeRefused(p) {
			// The HANDSHAKE carrying it is one the recipient cannot accept (late, or a bad
			// id-signature): it never reads the request.
			refused = ptr(sd.evidence("carried by a HANDSHAKE the recipient cannot accept: " + p.Err.Error()))
		}
		k := v5ReqKey{flowOf(r.Src, r.Dst), reqID}
		if ex, _ := x.v5reqs.Get(k); ex != nil {
			// geth resends a request inside the HANDSHAKE after a WHOAREYOU, with the same
			// request ID: the same exchange, tried again.
			ex.attempts++
			ex.lastT = r.Time
			ex.addSent(sd, p.Kind+" "+p.Msg.Name())
			ex.awaiting = sd // the challenge was answered
			ex.setRead(nil)
			ex.setRejected(refused)
			sd.own(&ex.tracked)
			return
		}
		share, ok := x.d.follow(r)
		if !ok {
			return
		}
		ex := x.open(r, p, sd, p.Msg.Name(), x.d.cfg.V5Timeout)
		ex.share = share
		x.v5reqs.Put(k, ex)
		ex.forget = func() {
			if e, _ := x.v5reqs.Get(k); e == ex {
				x.v5reqs.Delete(k)
			}
		}
		ex.setRejected(refused)
	case *v5wire.Pong, *v5wire.Nodes, *v5wire.TalkResponse:
		if ex, _ := x.v5reqs.Get(v5ReqKey{flowOf(r.Dst, r.Src), reqID}); ex != nil {
			ex.forget()
			x.answer(ex, r, p, sd, p.Msg.Name())
		}
	}
}

func (x *exchanges) open(r *record.Record, p *packet.Packet, sd *seenDatagram, name string, timeout time.Duration) *exchange {
	ex := &exchange{req: name, from: r.Src, to: r.Dst, t: r.Time, lastT: r.Time, timeout: timeout, attempts: 1}
	ex.fromID, ex.hasFrom = p.SrcID, p.HasSrcID
	ex.toID, ex.hasTo = p.DstID, p.HasDstID
	if !ex.hasTo {
		ex.toID, ex.hasTo = x.d.idAt(r.Dst)
	}
	detail := fmt.Sprintf("%s to %s", name, addrText(r.Dst))
	ex.addSent(sd, detail)
	if p.ExpiredAt(r.Time) {
		ex.note().expired = expiredEvidence(r, sd, fmt.Sprintf("%s to %s", name, addrText(r.Dst)), "receiver")
	}
	ex.awaiting = sd
	sd.own(&ex.tracked)
	deadline := r.Time.Add(timeout)
	x.d.after(deadline, func(emit func(result.Event), atEnd bool) {
		x.d.release(ex.share)
		ex.forget() // a FINDNODE answered in part stops taking NEIGHBORS here too
		if ex.answered && !ex.awaitsCopy || ex.done {
			return
		}
		if atEnd && !ex.decisive() {
			x.emit(ex, result.Open, emit)
			return
		}
		x.d.awaitLoss(deadline, !ex.decisive(), emit, func(emit func(result.Event)) {
			if !ex.done {
				x.emit(ex, result.Failed, emit)
			}
		})
	})
	return ex
}

// answer completes an exchange (the caller takes it out of the indexes it no longer
// belongs in). The verdict waits SettleDelay: an ICMP error or drop quoting the answer
// means it never reached the requester's application.
func (x *exchanges) answer(ex *exchange, r *record.Record, p *packet.Packet, sd *seenDatagram, name string) {
	if ex.answered || ex.done {
		return
	}
	ex.answered, ex.resp, ex.respT = true, name, r.Time
	if p.HasSrcID {
		ex.toID, ex.hasTo = p.SrcID, true
	}
	deadline := ex.t.Add(ex.timeout)
	ex.settleAnswer(x.d, sd, r.Time, result.Answered, func(outcome result.Outcome, emit func(result.Event)) {
		if outcome == result.Failed && ex.answerLost && p.Proto == packet.ProtoV4 && p.Kind != discv4.KindNeighbors && x.d.now.Before(deadline) {
			ex.awaitsCopy = true // the deadline decides, unless a copy is answered first
			return
		}
		x.emit(ex, outcome, emit)
	})
}

func (x *exchanges) emit(ex *exchange, outcome result.Outcome, emit func(result.Event)) {
	ex.done = true
	ev := &result.Exchange{
		Head:      result.Head{Time: ex.t},
		Initiator: ex.from, Recipient: ex.to,
		InitiatorID: idPtr(ex.fromID, ex.hasFrom), RecipientID: idPtr(ex.toID, ex.hasTo),
		Req: ex.req, Resp: ex.resp, Outcome: outcome,
	}
	if ex.attempts > 1 {
		ev.Attempts = ex.attempts
	}
	if ex.answered {
		ev.RTT = durPtr(ex.respT.Sub(ex.lastT))
	}
	if outcome == result.Failed {
		ev.Cause, ev.Evidence = ex.verdict()
		if fromSilence(ev.Cause) {
			ev.Evidence = append(ev.Evidence, x.d.lostEvidence(ex.t, ex.t.Add(ex.timeout))...)
		}
	} else if outcome == result.Open {
		ev.Evidence = append(ev.Evidence, ex.sent...)
	}
	if len(ev.Evidence) > 0 {
		ev.EvidenceMore = int(ex.more)
	}
	emit(ev)
	ex.reported(x.d, &ev.Head, result.TypeExchange, ex.from, ex.to, outcome, ev.Cause)
}

// undecrypted reports a discv5 MESSAGE that could not be decrypted, was not a
// handshake's random first packet, and that nothing answered: a request of a session the
// capture cannot decrypt.
func (x *exchanges) undecrypted(m *v5Msg, from, to netip.AddrPort, atEnd bool, emit func(result.Event)) {
	ex := &exchange{tracked: m.tracked.clone(), req: undecryptedName, from: from, to: to, t: m.sentAt(), attempts: 1}
	ex.done = false
	ex.fromID, ex.hasFrom = m.srcID, m.hasSrcID
	ex.toID, ex.hasTo = m.dstID, m.hasDstID
	if atEnd && !ex.decisive() {
		x.emit(ex, result.Open, emit)
		return
	}
	x.emit(ex, result.Failed, emit)
}
