package decode

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/discv5"
	"github.com/discotrace/discotrace/decode/internal/addrkey"
	"github.com/discotrace/discotrace/decode/internal/bounded"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// discv5 handshake reconstruction, from the wire alone:
//
//	initiator → recipient  MESSAGE (nonce N; random bytes when there is no session)
//	recipient → initiator  WHOAREYOU (echoes N; resent identically while it is pending)
//	initiator → recipient  HANDSHAKE (id proof, ephemeral key, ENR, the message again)
//	recipient → initiator  MESSAGE (the first response: the recipient accepted)
//
// A different WHOAREYOU answering the HANDSHAKE means the recipient could not verify
// it (rejected).
//
// A handshake's first packet is random bytes of a size the implementation chooses
// (go-ethereum: 20, others more), so no size tells it from a short message of a session
// this capture cannot open (a 91-byte TALKRESP has a 20-byte message too). It is known
// for one by what the spec guarantees: a WHOAREYOU echoing its nonce answers it, and a
// HANDSHAKE follows it. Nothing else makes a MESSAGE a first packet, with one exception
// for what nothing answered at all: a first contact (no HANDSHAKE of the pair, no packet
// of the peer shortly before, so it can be no response) of go-ethereum's size is
// reported as a failed handshake, since that is all the size can hint at; any other
// undecryptable MESSAGE is a message of a session (a response, or a request).

type attemptState uint8

const (
	stateChallenged    attemptState = iota + 1 // WHOAREYOU seen, HANDSHAKE awaited
	stateHandshakeSent                         // HANDSHAKE seen, response awaited
	stateEstablished                           // response seen, settling
)

// attempt is one handshake: one challenge (with its identical resends) and what answered it.
type attempt struct {
	tracked
	initiator, recipient       netip.AddrPort
	initID, recipID            enode.ID
	hasInitID, hasRecipID      bool
	state                      attemptState
	start                      time.Time // the packet the first challenge answers
	hasStart                   bool
	challengeT, hsT, respT     time.Time
	hasChallenge, hasHandshake bool
	challenge                  []byte // the first WHOAREYOU's challenge-data
	challenges                 int    // the first WHOAREYOU and its identical resends
	hsNonce                    []byte
	challengeNonce             []byte // the nonce the first WHOAREYOU echoes
	answerNonce                []byte // the answer's (its datagram forgets its packet)
	// carried is the exchange of the request its HANDSHAKE carries, when this capture
	// cannot decrypt it: the first response answers it.
	carried *exchange
}

// v5Msg is a MESSAGE nothing has answered yet.
type v5Msg struct {
	// tracked.awaiting is the message's datagram, set once: its time is the message's.
	tracked
	share *flowShare // what follow gave it
	srcID enode.ID
	dstID enode.ID
	// nonce is its header nonce (nonceLen bytes of it: 12), kept inline: thousands of
	// messages are pending, and v5Msg fits a 256-byte allocation.
	nonce     [12]byte
	nonceLen  uint8
	decrypted bool
	// sizeHint: undecryptable and of go-ethereum's random packet size. A hint only:
	// it decides nothing a WHOAREYOU, a HANDSHAKE or a session can decide.
	sizeHint  bool
	inSession bool // sent after a handshake of the same pair
	// peerRecent says the peer sent a discv5 packet to the sender shortly before: an
	// undecryptable message is then more likely a response than a request.
	peerRecent bool
	hasSrcID   bool
	hasDstID   bool
}

// pairState is what is pending from one initiator to one recipient.
type pairState struct {
	msgs []*v5Msg // oldest first
	att  *attempt
	last time.Time // the latest discv5 packet from initiator to recipient
}

// handshakes keeps what is pending per pair of endpoints: bounded (the oldest pair goes
// first; what it had pending is still reported by its timers) and swept when idle.
type handshakes struct {
	d     *Decoder
	pairs *bounded.Map[flowKey, *pairState]
	// lastCarried is, per pair, the latest request a HANDSHAKE carried undecrypted,
	// while it waits for its answer.
	lastCarried *bounded.Map[flowKey, *exchange]
	// msgTo is the latest "MESSAGE to ADDR" evidence detail and msgToAddr its address:
	// the messages of many peers go to the same few local addresses, and thousands are
	// pending, each of which would otherwise keep its own copy of the text.
	msgTo     string
	msgToAddr netip.AddrPort
}

// msgDetail returns "MESSAGE to " and dst's text, shared with the previous message to dst.
func (h *handshakes) msgDetail(dst netip.AddrPort) string {
	if h.msgTo == "" || h.msgToAddr != dst {
		h.msgTo, h.msgToAddr = "MESSAGE to "+addrText(dst), dst
	}
	return h.msgTo
}

// maxPairs bounds the endpoint pairs followed: a few thousand peers, both directions (a
// pair is made by a packet in its direction: a peer the local node never answers costs one).
const maxPairs = 16384

func (h *handshakes) init(d *Decoder) {
	h.d = d
	h.pairs = bounded.New[flowKey, *pairState](maxPairs)
	h.lastCarried = bounded.New[flowKey, *exchange](maxPairs)
}

func (h *handshakes) pair(from, to netip.AddrPort) *pairState {
	k := flowOf(from, to)
	st, _ := h.pairs.Get(k)
	if st == nil {
		st = &pairState{}
		h.pairs.Put(k, st)
	}
	return st
}

// sweep forgets pairs with nothing pending and no recent traffic.
func (h *handshakes) sweep(cut time.Time) {
	h.pairs.All(func(k flowKey, st *pairState) bool {
		st.msgs = compactMsgs(st.msgs)
		if len(st.msgs) == 0 && (st.att == nil || st.att.done) && st.last.Before(cut) {
			h.pairs.Delete(k)
		}
		return true
	})
}

// packet tracks one discv5 packet.
func (h *handshakes) packet(r *record.Record, p *packet.Packet, sd *seenDatagram, emit func(result.Event)) {
	fwd := h.pair(r.Src, r.Dst)
	defer func() {
		if r.Time.After(fwd.last) {
			fwd.last = r.Time
		}
	}()
	switch p.Kind {
	case discv5.KindMessage:
		// The reverse pair is only read: a peer that never answers costs one pair, not two.
		var none pairState
		rev, _ := h.pairs.Get(flowOf(r.Dst, r.Src))
		if rev == nil {
			rev = &none
		}
		h.message(r, p, sd, fwd, rev, rev.last, emit)
	case discv5.KindWhoareyou:
		h.whoareyou(r, p, sd, h.pair(r.Dst, r.Src), emit)
	case discv5.KindHandshake:
		h.handshake(r, p, sd, fwd, emit)
	}
}

func (h *handshakes) message(r *record.Record, p *packet.Packet, sd *seenDatagram, fwd, rev *pairState, prevFromPeer time.Time, emit func(result.Event)) {
	// As an answer: the recipient of a handshake responds, or a peer in session answers.
	// Whatever its size, a MESSAGE from the recipient after the HANDSHAKE, instead of a
	// new WHOAREYOU, proves that it derived the keys; should the initiator challenge it
	// (it was the recipient's own first contact), unanswer takes that back.
	firstResponse := false
	// A HANDSHAKE that was dropped, or that an ICMP error quotes, set up no session:
	// the peer's messages after it belong to an older one (issue 10, item 1).
	if a := rev.att; a != nil && !a.done && a.state == stateHandshakeSent && !a.awaiting.lost {
		a.state, a.respT, a.answerNonce = stateEstablished, r.Time, p.Nonce
		if p.HasSrcID {
			a.recipID, a.hasRecipID = p.SrcID, true
		}
		// Established even when the response never reached the initiator's application
		// (dropped, or quoted by an ICMP error): sent, it proves the recipient derived
		// the keys, and the initiator holds them since its HANDSHAKE, so the session
		// stands and carries what follows. The request the HANDSHAKE carried is what
		// failed, and its exchange says so.
		a.settleAnswer(h.d, sd, r.Time, result.Established, func(_ result.Outcome, emit func(result.Event)) {
			h.emit(a, result.Established, emit)
		})
		// The recipient's first response: when this capture cannot open it, however
		// late it came, it is no request of its own, but the answer to the request
		// the HANDSHAKE carried.
		firstResponse = p.Msg == nil
		if ex := a.carried; ex != nil && firstResponse {
			ex.forget()
			h.d.ex.answer(ex, r, p, sd, undecryptedName)
		}
	}
	sizeHint := errors.Is(p.Err, discv5.ErrRandomPacket)
	ownFirst := sizeHint && prevFromPeer.IsZero() && fwd.att == nil // the peer's own first contact, by the hint
	for _, m := range rev.msgs {
		// A message from the peer answers the sender's earlier messages that reached it
		// (a peer without a session answers WHOAREYOU instead), unless both look like
		// first packets crossing.
		if !m.sentAt().After(r.Time) && !(m.awaiting != nil && m.awaiting.lost) && !(ownFirst && m.sizeHint && m.firstContact()) {
			m.done = true
		}
	}
	rev.msgs = compactMsgs(rev.msgs)
	if firstResponse {
		return
	}

	if a := fwd.att; a != nil && !a.done && a.state == stateChallenged && !a.hasStart &&
		bytes.Equal(a.challengeNonce, p.Nonce) && !r.Time.After(a.challengeT) {
		// The packet the challenge answered, decoded only now (the decoder learned its
		// recipient's ID after it went out): the attempt's first packet.
		a.start, a.hasStart = r.Time, true
		first := sd.evidence(h.msgDetail(r.Dst))
		if len(a.sent) >= maxSentEvidence {
			a.sent = a.sent[:maxSentEvidence-1]
			a.more++
		}
		a.sent = append([]result.Evidence{first}, a.sent...)
		sd.own(&a.tracked)
		return
	}

	// As a request.
	share, ok := h.d.follow(r)
	if !ok {
		return
	}
	m := &v5Msg{
		share:     share,
		decrypted: p.Msg != nil, sizeHint: sizeHint,
		peerRecent: !prevFromPeer.IsZero() && r.Time.Sub(prevFromPeer) < h.d.cfg.V5Timeout,
		srcID:      p.SrcID, hasSrcID: p.HasSrcID, dstID: p.DstID, hasDstID: p.HasDstID,
	}
	m.awaiting = sd
	m.nonceLen = uint8(copy(m.nonce[:], p.Nonce))
	if a := fwd.att; a != nil && (a.state == stateHandshakeSent || a.state == stateEstablished) &&
		r.Time.Sub(a.hsT) < h.d.retention {
		m.inSession = true
	}
	m.addSent(sd, h.msgDetail(r.Dst))
	sd.own(&m.tracked)
	fwd.msgs = appendMsg(fwd.msgs, m)
	// Its endpoints are kept in tracked's fields for its report, and its timer names it
	// and its pair instead of a closure capturing them: of thousands pending, every byte
	// per message counts.
	m.initiator, m.recipient = addrkey.Of(r.Src), addrkey.Of(r.Dst)
	h.d.afterMsg(r.Time.Add(h.d.cfg.V5Timeout), m, fwd)
}

// messageTimeout is the end of a message's wait for an answer (its timer).
func (h *handshakes) messageTimeout(m *v5Msg, fwd *pairState, emit func(result.Event), atEnd bool) {
	h.d.release(m.share)
	initiator, recipient, deadline := m.initiator.AddrPort(), m.recipient.AddrPort(), m.sentAt().Add(h.d.cfg.V5Timeout)
	if m.done {
		return
	}
	m.done = true
	// Out of the pair's list at once: a finished message there would keep its
	// datagram and decoded packet in memory until the next sweep.
	fwd.msgs = compactMsgs(fwd.msgs)
	if !m.firstContact() || !m.sizeHint {
		if !m.decrypted && (m.firstContact() || m.rejected() != nil) {
			// A request in a session this capture cannot decrypt: not a handshake,
			// but an exchange nothing answered (or that met a stale challenge).
			if atEnd && !m.decisive() {
				h.d.ex.undecrypted(m, initiator, recipient, true, emit)
				return
			}
			h.d.awaitLoss(deadline, !m.decisive(), emit, func(emit func(result.Event)) {
				h.d.ex.undecrypted(m, initiator, recipient, false, emit)
			})
		}
		return // a decrypted message's exchange reports it
	}
	a := &attempt{
		tracked: m.tracked.clone(), initiator: initiator, recipient: recipient,
		initID: m.srcID, hasInitID: m.hasSrcID, recipID: m.dstID, hasRecipID: m.hasDstID,
		start: m.sentAt(), hasStart: true,
	}
	a.done = false // the attempt takes over the message's evidence
	if atEnd && !a.decisive() {
		h.emit(a, result.Open, emit)
		return
	}
	h.d.awaitLoss(deadline, !a.decisive(), emit, func(emit func(result.Event)) {
		h.emit(a, result.Failed, emit)
	})
}

// sentAt is when m was sent.
func (m *v5Msg) sentAt() time.Time { return m.awaiting.t }

// firstContact reports whether m is undecryptable and neither in a session the capture
// saw set up nor after a packet of the peer (which it could answer).
func (m *v5Msg) firstContact() bool {
	return !m.decrypted && !m.inSession && !m.peerRecent
}

// reject marks m, and the exchange of its request when the decoder could decrypt it, as
// rejected by the challenge sd, which the sender ignores.
func (m *v5Msg) reject(ev result.Evidence, sd *seenDatagram) {
	m.note().rejected = ptr(ev)
	if m.awaiting != nil {
		for _, o := range m.awaiting.owners {
			if !o.done && o.answer == nil {
				o.note().rejected = ptr(ev)
			}
		}
	}
	sd.own(&m.tracked)
}

// maxPendingMsgs bounds the unanswered messages followed per pair: of a peer flooding
// messages the latest are followed; older ones keep their timers and are reported, but
// can no longer be answered or challenged. It keeps each message's cost O(1).
const maxPendingMsgs = 64

// appendMsg adds m to a pair's pending messages, making room by dropping finished ones
// and then, if need be, the oldest.
func appendMsg(list []*v5Msg, m *v5Msg) []*v5Msg {
	if len(list) >= maxPendingMsgs {
		list = compactMsgs(list)
	}
	if len(list) >= maxPendingMsgs {
		n := copy(list, list[1:])
		list[n] = nil
		list = list[:n]
	}
	return append(list, m)
}

// compactMsgs drops finished messages, keeping order.
func compactMsgs(list []*v5Msg) []*v5Msg {
	out := list[:0]
	for _, m := range list {
		if !m.done {
			out = append(out, m)
		}
	}
	for i := len(out); i < len(list); i++ {
		list[i] = nil
	}
	if len(out) == 0 {
		return nil // an idle pair keeps no array
	}
	return out
}

// whoareyou handles a challenge from the recipient (r.Src) to the initiator (r.Dst);
// st is the initiator→recipient pair.
func (h *handshakes) whoareyou(r *record.Record, p *packet.Packet, sd *seenDatagram, st *pairState, emit func(result.Event)) {
	if a := st.att; a != nil && len(p.ChallengeData) > 0 && bytes.Equal(a.challenge, p.ChallengeData) {
		// An identical resend: the recipient repeats its pending challenge to every new
		// packet of the initiator it cannot decrypt.
		if a.done || a.state != stateChallenged {
			h.repeatedChallenge(a, r, sd, st)
			st.msgs = compactMsgs(st.msgs)
			return
		}
		// Before the HANDSHAKE: packets that crossed the challenge, part of this attempt;
		// but a packet sent after the initiator gave up waiting for the challenge (it never
		// came, or came too late) starts a new call, whose first packet meets this stale
		// challenge: the initiator ignores a WHOAREYOU for another packet's nonce.
		began := a.challengeT
		if a.hasStart {
			began = a.start
		}
		ev := sd.evidence("the recipient repeated its challenge to an earlier packet (the initiator's earlier call gave up on it): the sender ignores a challenge for another packet's nonce")
		crossed := false
		for _, m := range st.msgs {
			if m.done || m.sentAt().After(r.Time) || !m.sentAt().After(a.challengeT) {
				continue
			}
			if m.sentAt().Sub(began) <= h.d.cfg.V5Timeout {
				m.done, crossed = true, true
				continue
			}
			m.reject(ev, sd)
		}
		if crossed || len(st.msgs) == 0 {
			a.challenges++
			a.addSent(sd, "WHOAREYOU resent")
			sd.own(&a.tracked)
			a.awaiting = sd
			a.setRead(nil)
		}
		st.msgs = compactMsgs(st.msgs)
		return
	}
	// Only a new challenge counts towards a storm: resends are one challenge repeated.
	h.d.an.whoareyou(r, sd, emit)
	var start time.Time
	hasStart := false
	if first := h.unanswer(r, p); first != nil {
		// The challenged packet is the peer's own first contact, not a response.
		start, hasStart = first.t, true
	}
	if a := st.att; a != nil && !a.done {
		switch a.state {
		case stateHandshakeSent:
			// A new challenge instead of a response: the recipient could not use the
			// handshake.
			a.note().rejected = ptr(sd.evidence("a new WHOAREYOU answered the HANDSHAKE"))
			h.emit(a, result.Failed, emit)
			if bytes.Equal(a.hsNonce, p.Nonce) {
				start, hasStart = a.hsT, true
			}
		case stateChallenged:
			// A new challenge while the old one was never answered.
			h.emit(a, result.Failed, emit)
		}
	}
	a := &attempt{
		initiator: r.Dst, recipient: r.Src, state: stateChallenged,
		challengeT: r.Time, hasChallenge: true, challenge: p.ChallengeData, challenges: 1, challengeNonce: p.Nonce,
		start: start, hasStart: hasStart,
	}
	if p.HasDstID {
		a.initID, a.hasInitID = p.DstID, true
	}
	if p.HasSrcID {
		a.recipID, a.hasRecipID = p.SrcID, true
	} else {
		a.recipID, a.hasRecipID = h.d.idAt(r.Src)
	}
	for _, m := range st.msgs {
		if !m.done && bytes.Equal(m.nonce[:m.nonceLen], p.Nonce) {
			// A request the recipient could not decrypt: it has no session (any more).
			if m.awaiting != nil {
				for _, o := range m.awaiting.owners {
					if o != &m.tracked && !o.done && o.answer == nil {
						o.note().rejected = ptr(sd.evidence("the recipient answered the request with WHOAREYOU: it has no session with the sender"))
						o.note().challenge = sd
						sd.own(o)
					}
				}
			}
			a.start, a.hasStart = m.sentAt(), true
			a.absorb(&m.tracked)
			a.setNetEv(m.netEv())
			a.netCause = m.netCause
			if !a.hasRecipID && m.hasDstID {
				a.recipID, a.hasRecipID = m.dstID, true
			}
			m.done = true
		}
	}
	st.msgs = compactMsgs(st.msgs)
	a.addSent(sd, "WHOAREYOU to "+addrText(r.Dst))
	a.awaiting = sd
	sd.own(&a.tracked)
	st.att = a
	// A HANDSHAKE arriving after the challenge expired is late (rejected: the recipient
	// ignores it), not silence.
	h.expire(a, r.Time, h.d.cfg.HandshakeTimeout, func() bool { return a.state == stateChallenged })
}

// unanswer takes back a response that a WHOAREYOU from the initiator (r.Src) now
// challenges: the initiator could not decrypt it, so it was no message of the session
// just set up but the recipient's own first contact (a random packet of a size this
// decoder does not know) or a stale session's, and the attempt still waits for its
// response. It returns the datagram taken back.
func (h *handshakes) unanswer(r *record.Record, p *packet.Packet) *seenDatagram {
	st, _ := h.pairs.Get(flowOf(r.Src, r.Dst))
	if st == nil || st.att == nil {
		return nil
	}
	a := st.att
	if a.done || a.state != stateEstablished || a.answer == nil || !bytes.Equal(a.answerNonce, p.Nonce) {
		return nil
	}
	answer := a.answer
	a.state, a.answer, a.respT = stateHandshakeSent, nil, time.Time{}
	return answer
}

// repeatedChallenge handles a repeat of attempt a's challenge that came after its
// HANDSHAKE (or after it ended). The initiator's packets since the HANDSHAKE, still
// unanswered, are what the recipient answered with it: it still holds the challenge, so
// it has no session from that HANDSHAKE, and the initiator ignores a WHOAREYOU whose
// nonce is not its latest packet's. Each of those packets fails on its own, rejected;
// with none, the repeat merely crossed the HANDSHAKE.
func (h *handshakes) repeatedChallenge(a *attempt, r *record.Record, sd *seenDatagram, st *pairState) {
	since := a.challengeT
	if a.hasHandshake {
		since = a.hsT
	}
	ev := sd.evidence("the recipient repeated its challenge to an earlier packet: it has no session with the sender, and the sender ignores a challenge for another packet's nonce")
	stale := false
	for _, m := range st.msgs {
		if m.done || m.sentAt().After(r.Time) || !m.sentAt().After(a.challengeT) {
			continue
		}
		if !m.sentAt().After(since) {
			if !a.done && a.state == stateHandshakeSent {
				m.done = true // it crossed the challenge: part of the attempt, as resends are
			}
			continue
		}
		stale = true
		m.reject(ev, sd)
	}
	if !stale {
		if !a.done && a.state == stateHandshakeSent {
			a.challenges++
			a.addSent(sd, "WHOAREYOU resent")
			sd.own(&a.tracked)
		}
		return
	}
	if !a.done && a.state == stateHandshakeSent && a.rejected() == nil {
		a.note().rejected = ptr(sd.evidence("the recipient repeated its challenge after the HANDSHAKE: it never took the HANDSHAKE"))
	}
}

// expire decides attempt a when the step begun at since gets no answer within timeout:
// failed, or open when the input ends before the timeout. The verdict waits one response
// timeout longer (go-ethereum does not), so that an answer just too late shows as late
// (a HANDSHAKE after its challenge expired) or slow (a response after the request
// timed out) instead of as silence. waiting says a is still at that step.
func (h *handshakes) expire(a *attempt, since time.Time, timeout time.Duration, waiting func() bool) {
	h.d.after(since.Add(timeout+h.d.cfg.V5Timeout), func(emit func(result.Event), atEnd bool) {
		if a.done || !waiting() {
			return
		}
		if atEnd && !a.decisive() && !h.d.now.After(since.Add(timeout)) {
			h.emit(a, result.Open, emit)
			return
		}
		h.d.awaitLoss(since.Add(timeout), !a.decisive(), emit, func(emit func(result.Event)) {
			if !a.done && waiting() {
				h.emit(a, result.Failed, emit)
			}
		})
	})
}

// v5HandshakeRefused reports whether p is a HANDSHAKE its recipient's own checks refuse
// (late, bad id-signature, record or message), as opposed to one this decoder merely
// cannot open (no key, a capture's snap length).
func v5HandshakeRefused(p *packet.Packet) bool {
	return p.Kind == discv5.KindHandshake && p.Err != nil && !errors.Is(p.Err, discv5.ErrNoKey) && !errors.Is(p.Err, discv5.ErrTruncated)
}

// handshake handles a HANDSHAKE from the initiator (r.Src); st is initiator→recipient.
func (h *handshakes) handshake(r *record.Record, p *packet.Packet, sd *seenDatagram, st *pairState, emit func(result.Event)) {
	a := st.att
	if a != nil && !a.done && a.state == stateChallenged && a.hasChallenge && r.Time.Sub(a.challengeT) > h.d.cfg.HandshakeTimeout {
		// The answer to a challenge the recipient has already dropped: it ignores it.
		a.addSent(sd, "HANDSHAKE to "+addrText(r.Dst))
		sd.own(&a.tracked)
		a.note().rejected = ptr(sd.evidence(fmt.Sprintf("the HANDSHAKE came %s after the challenge; the recipient keeps a challenge for %s and ignores it",
			r.Time.Sub(a.challengeT).Round(time.Millisecond), h.d.cfg.HandshakeTimeout)))
		h.emit(a, result.Failed, emit)
		return
	}
	if a == nil || a.done || a.state != stateChallenged {
		if a != nil && !a.done && a.state == stateHandshakeSent {
			h.emit(a, result.Failed, emit) // a second HANDSHAKE without a new challenge
		}
		// The challenge was not captured. The initiator's undecryptable packets shortly
		// before, outside a session and still unanswered, are what it answered: the recipient challenged the first
		// and repeated that challenge to the others, so the first starts the attempt.
		a = &attempt{initiator: r.Src, recipient: r.Dst}
		for _, m := range st.msgs {
			if m.decrypted || m.inSession || m.done || r.Time.Sub(m.sentAt()) > h.d.cfg.HandshakeTimeout {
				continue
			}
			if !a.hasStart {
				a.start, a.hasStart = m.sentAt(), true
				a.setNetEv(m.netEv())
				a.netCause = m.netCause
			}
			a.absorb(&m.tracked)
			m.done = true
		}
		st.msgs = compactMsgs(st.msgs)
		st.att = a
	}
	a.state, a.hsT, a.hasHandshake, a.hsNonce = stateHandshakeSent, r.Time, true, p.Nonce
	if p.HasSrcID {
		a.initID, a.hasInitID = p.SrcID, true
	}
	if p.HasDstID {
		a.recipID, a.hasRecipID = p.DstID, true
	}
	a.addSent(sd, "HANDSHAKE to "+addrText(r.Dst))
	if v5HandshakeRefused(p) {
		// The recipient's own checks fail on these bytes (bad id-signature, record or
		// message): it drops the HANDSHAKE and will not answer.
		a.note().rejected = ptr(sd.evidence("the recipient cannot accept this HANDSHAKE: " + p.Err.Error()))
	}
	a.awaiting = sd
	a.setRead(nil)
	sd.own(&a.tracked)
	if p.Msg == nil {
		h.carry(a, r, p, sd)
	}
	// The request in the HANDSHAKE times out at the initiator, but the session it set up
	// stands: a later response still shows the handshake established, slowly, and is
	// not taken for a request of its own.
	hsT := r.Time
	h.expire(a, hsT, h.d.cfg.V5Timeout, func() bool { return a.state == stateHandshakeSent && a.hsT == hsT })
}

// carry follows the request in a HANDSHAKE this capture cannot decrypt (the initiator's
// ephemeral secret is never stored; a key that would open it is not given) as a
// MESSAGE/v5 exchange: a HANDSHAKE always carries a message, and a session proves it was
// a request by its first response, which answers it. Its copy in a later HANDSHAKE (to a
// new challenge of the same pair) is the same request tried again, as go-ethereum does.
func (h *handshakes) carry(a *attempt, r *record.Record, p *packet.Packet, sd *seenDatagram) {
	var refused *result.Evidence
	if v5HandshakeRefused(p) {
		refused = ptr(sd.evidence("carried by a HANDSHAKE the recipient cannot accept: " + p.Err.Error()))
	}
	if ex := h.carriedBefore(r); ex != nil {
		ex.attempts++
		ex.lastT = r.Time
		ex.addSent(sd, "HANDSHAKE "+undecryptedName+" again")
		ex.awaiting = sd
		ex.setRead(nil)
		ex.setRejected(refused)
		sd.own(&ex.tracked)
		a.carried = ex
		return
	}
	share, ok := h.d.follow(r)
	if !ok {
		return
	}
	ex := h.d.ex.open(r, p, sd, undecryptedName, h.d.cfg.V5Timeout)
	ex.share = share
	k := flowOf(r.Src, r.Dst)
	ex.forget = func() { // at its deadline, or answered: a later HANDSHAKE starts another
		if e, _ := h.lastCarried.Get(k); e == ex {
			h.lastCarried.Delete(k)
		}
	}
	ex.setRejected(refused)
	a.carried = ex
	h.lastCarried.Put(k, ex)
}

// carriedBefore returns the request of the pair's previous HANDSHAKE still waiting for
// its answer: a HANDSHAKE to a new challenge resends it.
func (h *handshakes) carriedBefore(r *record.Record) *exchange {
	ex, _ := h.lastCarried.Get(flowOf(r.Src, r.Dst))
	if ex == nil || ex.done || ex.answered {
		return nil
	}
	return ex
}

// emit reports an attempt. Its time is when it started: the packet the first challenge
// answers, else the challenge, else the HANDSHAKE.
func (h *handshakes) emit(a *attempt, outcome result.Outcome, emit func(result.Event)) {
	a.done = true
	t := a.start
	switch {
	case a.hasStart:
	case a.hasChallenge:
		t = a.challengeT
	default:
		t = a.hsT
	}
	ev := &result.Handshake{
		Head:      result.Head{Time: t},
		Initiator: a.initiator, Recipient: a.recipient,
		InitiatorID: idPtr(a.initID, a.hasInitID), RecipientID: idPtr(a.recipID, a.hasRecipID),
		Outcome: outcome, Attempts: a.challenges,
	}
	if a.hasStart && a.hasChallenge {
		ev.WhoareyouRTT = durPtr(a.challengeT.Sub(a.start))
	}
	if a.state == stateEstablished {
		ev.HandshakeRTT = durPtr(a.respT.Sub(a.hsT))
		if a.hasStart {
			ev.Total = durPtr(a.respT.Sub(a.start))
		} else if a.hasChallenge {
			ev.Total = durPtr(a.respT.Sub(a.challengeT))
		}
	}
	switch outcome {
	case result.Failed:
		ev.Cause, ev.Evidence = a.verdict()
		if ev.Cause == result.NoResponse {
			ev.Evidence = append(ev.Evidence, result.Evidence{Time: t, Observed: result.TypeHandshake, Detail: a.stalled()})
		}
		if fromSilence(ev.Cause) {
			ev.Evidence = append(ev.Evidence, h.d.lostEvidence(t, h.d.now)...)
		}
	case result.Open:
		ev.Evidence = append(ev.Evidence, a.sent...)
	}
	if len(ev.Evidence) > 0 {
		ev.EvidenceMore = int(a.more)
	}
	emit(ev)
	a.reported(h.d, &ev.Head, result.TypeHandshake, a.initiator, a.recipient, outcome, ev.Cause)
}

// stalled says at which step a handshake stopped.
func (a *attempt) stalled() string {
	switch a.state {
	case stateChallenged:
		return fmt.Sprintf("the initiator %s never answered the challenge", addrText(a.initiator))
	case stateHandshakeSent:
		return fmt.Sprintf("the recipient %s never answered the HANDSHAKE", addrText(a.recipient))
	case stateEstablished:
		return "the response never reached the initiator"
	}
	return fmt.Sprintf("the recipient %s never answered the first MESSAGE", addrText(a.recipient))
}
