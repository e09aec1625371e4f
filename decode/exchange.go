package decode

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/ndjson"
)

// Request and response names in exchange events ("req", "resp"): the discv4 kind or the
// discv5 message name, each with its protocol version so that one field says both.
func v4Name(kind string) string { return kind + "/v4" }

// exchange is one request and its response (or failure).
type exchange struct {
	tracked
	req, resp        string
	from, to         netip.AddrPort // requester, responder
	fromID, toID     enode.ID
	hasFrom, hasTo   bool
	t, respT         time.Time
	timeout          time.Duration
	attempts         int
	expiredOnArrival bool
	answered         bool
	forget           func() // removes the exchange from its index
}

// flowKey is a directed pair of endpoints.
type flowKey struct{ from, to netip.AddrPort }

func flowOf(from, to netip.AddrPort) flowKey { return flowKey{unmapAP(from), unmapAP(to)} }

// v5ReqKey finds a discv5 request by who asked whom and its request ID.
type v5ReqKey struct {
	flow  flowKey
	reqID string
}

// exchanges pairs requests with responses: discv4 PING↔PONG and ENRREQUEST↔ENRRESPONSE
// by the reply token (the request's hash), FINDNODE↔NEIGHBORS by peer within the
// timeout (NEIGHBORS may take several packets: the first one answers); discv5 requests
// with responses by request ID.
type exchanges struct {
	d        *Decoder
	byHash   map[string]*exchange
	findnode map[flowKey][]*exchange
	v5reqs   map[v5ReqKey]*exchange
}

func (x *exchanges) init(d *Decoder) {
	x.d = d
	x.byHash = make(map[string]*exchange)
	x.findnode = make(map[flowKey][]*exchange)
	x.v5reqs = make(map[v5ReqKey]*exchange)
}

// v4 tracks a decoded discv4 packet.
func (x *exchanges) v4(r *Record, p *Packet, sd *seenDatagram, emit func(*ndjson.Event)) {
	if p.Err != nil {
		return
	}
	switch p.Kind {
	case KindV4Ping, KindV4ENRRequest:
		key := string(p.Hash)
		if ex := x.byHash[key]; ex != nil {
			// The same bytes again: a duplicate of the request, not a new one.
			ex.attempts++
			ex.addSent(sd, "duplicate "+p.Kind)
			sd.own(&ex.tracked)
			return
		}
		ex := x.open(r, p, sd, v4Name(p.Kind), x.d.cfg.V4Timeout)
		x.byHash[key] = ex
		ex.forget = func() { delete(x.byHash, key) }
	case KindV4Findnode:
		ex := x.open(r, p, sd, v4Name(p.Kind), x.d.cfg.V4Timeout)
		k := flowOf(r.Src, r.Dst)
		x.findnode[k] = append(x.findnode[k], ex)
		ex.forget = func() {
			list := x.findnode[k]
			for i, e := range list {
				if e == ex {
					list = append(list[:i:i], list[i+1:]...)
					break
				}
			}
			if len(list) == 0 {
				delete(x.findnode, k)
			} else {
				x.findnode[k] = list
			}
		}
	case KindV4Pong, KindV4ENRResponse:
		if ex := x.byHash[string(p.ReplyTok)]; ex != nil {
			x.answer(ex, r, p, sd, v4Name(p.Kind), emit)
		}
	case KindV4Neighbors:
		if list := x.findnode[flowOf(r.Dst, r.Src)]; len(list) > 0 {
			x.answer(list[0], r, p, sd, v4Name(p.Kind), emit)
		}
	}
}

// v5 tracks a decrypted discv5 message.
func (x *exchanges) v5(r *Record, p *Packet, sd *seenDatagram, emit func(*ndjson.Event)) {
	if p.Msg == nil {
		return
	}
	reqID := hex.EncodeToString(p.Msg.RequestID())
	switch p.Msg.(type) {
	case *v5wire.Ping, *v5wire.Findnode, *v5wire.TalkRequest:
		k := v5ReqKey{flowOf(r.Src, r.Dst), reqID}
		if ex := x.v5reqs[k]; ex != nil {
			// geth resends a request inside the HANDSHAKE after a WHOAREYOU, with the same
			// request ID: the same exchange, tried again.
			ex.attempts++
			ex.addSent(sd, p.Kind+" "+p.Msg.Name())
			ex.awaiting, ex.read, ex.rejected = sd, nil, nil // the challenge was answered
			sd.own(&ex.tracked)
			return
		}
		ex := x.open(r, p, sd, p.Msg.Name(), x.d.cfg.V5Timeout)
		x.v5reqs[k] = ex
		ex.forget = func() { delete(x.v5reqs, k) }
	case *v5wire.Pong, *v5wire.Nodes, *v5wire.TalkResponse:
		if ex := x.v5reqs[v5ReqKey{flowOf(r.Dst, r.Src), reqID}]; ex != nil {
			x.answer(ex, r, p, sd, p.Msg.Name(), emit)
		}
	}
}

func (x *exchanges) open(r *Record, p *Packet, sd *seenDatagram, name string, timeout time.Duration) *exchange {
	ex := &exchange{req: name, from: r.Src, to: r.Dst, t: r.Time, timeout: timeout, attempts: 1}
	ex.fromID, ex.hasFrom = p.SrcID, p.HasSrcID
	ex.toID, ex.hasTo = p.DstID, p.HasDstID
	if !ex.hasTo {
		ex.toID, ex.hasTo = x.d.idAt(r.Dst)
	}
	ex.expiredOnArrival = expiredOnArrival(r, p)
	detail := fmt.Sprintf("%s to %s", name, ndjson.Addr(r.Dst))
	if ex.expiredOnArrival {
		detail += ", expired on arrival (the receiver ignores it)"
	}
	ex.addSent(sd, detail)
	ex.awaiting = sd
	sd.own(&ex.tracked)
	x.d.after(r.Time.Add(timeout), func(emit func(*ndjson.Event), atEnd bool) {
		if ex.answered || ex.done {
			return
		}
		ex.forget()
		if atEnd && !ex.decisive() {
			x.emit(ex, OutcomeOpen, emit)
			return
		}
		x.emit(ex, OutcomeFailed, emit)
	})
	return ex
}

// answer completes an exchange. The verdict waits SettleDelay: an ICMP error or drop
// quoting the answer means it never reached the requester's application.
func (x *exchanges) answer(ex *exchange, r *Record, p *Packet, sd *seenDatagram, name string, emit func(*ndjson.Event)) {
	if ex.answered || ex.done {
		return
	}
	ex.forget()
	ex.answered, ex.resp, ex.respT = true, name, r.Time
	if p.HasSrcID {
		ex.toID, ex.hasTo = p.SrcID, true
	}
	ex.settleAnswer(x.d, sd, r.Time, OutcomeAnswered, func(outcome string, emit func(*ndjson.Event)) {
		x.emit(ex, outcome, emit)
	})
}

func (x *exchanges) emit(ex *exchange, outcome string, emit func(*ndjson.Event)) {
	ex.done = true
	ev := &ndjson.Event{
		Type:      ndjson.TypeExchange,
		Time:      ndjson.Time(ex.t),
		Initiator: ndjson.Addr(ex.from),
		Recipient: ndjson.Addr(ex.to),
		Req:       ex.req,
		Resp:      ex.resp,
		Outcome:   outcome,
	}
	if ex.hasFrom {
		ev.InitiatorID = ex.fromID.String()
	}
	if ex.hasTo {
		ev.RecipientID = ex.toID.String()
	}
	if ex.attempts > 1 {
		ev.Attempts = ex.attempts
	}
	if ex.answered {
		ev.RTTNs = nsPtr(ex.respT.Sub(ex.t))
	}
	if outcome == OutcomeFailed {
		ev.Cause, ev.Evidence = ex.verdict()
		if ev.Cause == CauseNoResponse {
			ev.Evidence = append(ev.Evidence, x.d.lostEvidence(ex.t, ex.t.Add(ex.timeout))...)
		}
	} else if outcome == OutcomeOpen {
		ev.Evidence = append(ev.Evidence, ex.sent...)
	}
	emit(ev)
}

// undecrypted reports a discv5 MESSAGE that could not be decrypted, was not a
// handshake's random first packet, and that nothing answered: a request of a session the
// capture cannot decrypt.
func (x *exchanges) undecrypted(m *v5Msg, from, to netip.AddrPort, atEnd bool, emit func(*ndjson.Event)) {
	ex := &exchange{tracked: m.tracked, req: "MESSAGE/v5", from: from, to: to, t: m.t, attempts: 1}
	ex.done = false
	ex.fromID, ex.hasFrom = m.srcID, m.hasSrcID
	ex.toID, ex.hasTo = m.dstID, m.hasDstID
	if atEnd && !ex.decisive() {
		x.emit(ex, OutcomeOpen, emit)
		return
	}
	x.emit(ex, OutcomeFailed, emit)
}
