package decode

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/internal/addrkey"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// maxSentEvidence bounds the datagrams one handshake or exchange lists as evidence
// (a storm of retransmissions must not grow an event without limit).
const maxSentEvidence = 16

// tracked is the failure bookkeeping shared by exchanges, handshake attempts and
// unanswered discv5 messages: what was sent, and what the network, the kernel and the
// application said about it.
type tracked struct {
	// sent lists the item's datagrams: the evidence behind no_response.
	sent []result.Evidence
	// awaiting is the datagram whose receiver must act next; read says the local
	// application read it (tracer only).
	awaiting *seenDatagram
	// answer is the datagram that completed the item.
	answer *seenDatagram
	// notes are the observations few items get (netEv, read, rejected, expired): one
	// pointer, nil for most, instead of four fields in each of thousands pending.
	notes *trackedNotes

	// Once reported failed: its event (seq, type, endpoints) and cause, which evidence
	// coming later may still revise (Decoder.attribute).
	seq                  uint64
	initiator, recipient addrkey.Key
	evType               uint8 // an index of failureTypes
	cause                causeCode
	// netCause is the strongest network cause seen (ICMP error, kernel drop).
	netCause causeCode

	done bool
	// answerLost says an ICMP error or a drop shows the answer never reached the
	// application.
	answerLost bool
	// more counts the observations left out of sent and netEv (evidence_more).
	more int32
}

// trackedNotes are a tracked item's rarer observations.
type trackedNotes struct {
	// netEv are the observations behind netCause.
	netEv []result.Evidence
	// read says the local application read the awaited datagram (tracer only).
	read *result.Evidence
	// rejected, when set, is the observation showing the peer refused a handshake.
	rejected *result.Evidence
	// expired, when set, is a discv4 request or answer that arrived already expired.
	expired *result.Evidence
	// challenge is the WHOAREYOU that answered the request for want of a session: lost
	// on its way back, it is why the request failed.
	challenge *seenDatagram
}

// note returns t's notes, made when first needed.
func (t *tracked) note() *trackedNotes {
	if t.notes == nil {
		t.notes = &trackedNotes{}
	}
	return t.notes
}

func (t *tracked) netEv() []result.Evidence {
	if t.notes == nil {
		return nil
	}
	return t.notes.netEv
}

func (t *tracked) read() *result.Evidence {
	if t.notes == nil {
		return nil
	}
	return t.notes.read
}

func (t *tracked) challenge() *seenDatagram {
	if t.notes == nil {
		return nil
	}
	return t.notes.challenge
}

func (t *tracked) rejected() *result.Evidence {
	if t.notes == nil {
		return nil
	}
	return t.notes.rejected
}

func (t *tracked) expired() *result.Evidence {
	if t.notes == nil {
		return nil
	}
	return t.notes.expired
}

// setRead sets (or, with nil, clears) the read observation.
func (t *tracked) setRead(e *result.Evidence) {
	if e != nil || t.notes != nil {
		t.note().read = e
	}
}

// setRejected sets (or, with nil, clears) the refusal observation.
func (t *tracked) setRejected(e *result.Evidence) {
	if e != nil || t.notes != nil {
		t.note().rejected = e
	}
}

// setNetEv sets the network observations (netCause's evidence).
func (t *tracked) setNetEv(list []result.Evidence) {
	if list != nil || t.notes != nil {
		t.note().netEv = list
	}
}

// clone returns a copy of t that shares no notes with it: an item taking over another's
// state (a message becoming an attempt or an exchange) records its own from then on.
func (t *tracked) clone() tracked {
	c := *t
	if t.notes != nil {
		n := *t.notes
		c.notes = &n
	}
	return c
}

// causeCode is a result.Cause as an index of causes: a tracked item keeps two, and
// thousands are pending.
type causeCode uint8

var causes = [...]result.Cause{"", result.NoResponse, result.ICMPUnreachable, result.KernelDrop,
	result.FragmentLoss, result.Rejected, result.AppDrop, result.Expired}

func codeOf(c result.Cause) causeCode {
	for i, k := range causes {
		if k == c {
			return causeCode(i)
		}
	}
	panic("decode: " + string(c) + " is not a result.Cause")
}

func (c causeCode) cause() result.Cause { return causes[c] }

// failureTypes are the event types a tracked item is reported failed as; tracked.evType
// is an index (thousands are pending: every byte of them counts).
var failureTypes = [...]string{"", result.TypeHandshake, result.TypeExchange}

func failureType(evType string) uint8 {
	for i, t := range failureTypes {
		if t == evType {
			return uint8(i)
		}
	}
	panic("decode: " + evType + " is not a failure event type")
}

// reported notes the failure event t was reported as, and keeps the datagram it waited
// on in the late table: what a fragment loss tells long after may revise the verdict.
func (t *tracked) reported(d *Decoder, h *result.Head, evType string, initiator, recipient netip.AddrPort, outcome result.Outcome, cause result.Cause) {
	if outcome != result.Failed {
		return
	}
	t.seq, t.evType, t.initiator, t.recipient, t.cause = h.Seq, failureType(evType), addrkey.Of(initiator), addrkey.Of(recipient), codeOf(cause)
	if sd := t.awaiting; sd != nil && !sd.kept && fragmentable(sd) && t.revisable(result.FragmentLoss) {
		sd.kept = true
		d.late.insert(sd)
	}
}

// fragmentable reports whether sd may have been fragmented on its way: longer than what
// every IPv4 path carries whole (576 bytes, less the IP and UDP headers), or on IPv6
// than its minimum MTU (1280) carries. Only those can have a fragment loss to learn of late.
func fragmentable(sd *seenDatagram) bool {
	if sd.dst.AddrPort().Addr().Is4() {
		return int(sd.n) > 576-20-8
	}
	return int(sd.n) > 1280-40-8
}

// revisable reports whether a network cause seen after t's failure was reported
// explains it better: silence, or a drop, that a fragment loss or an ICMP error turns
// out to be behind.
func (t *tracked) revisable(cause result.Cause) bool {
	switch t.cause.cause() {
	case result.NoResponse, result.KernelDrop, result.ICMPUnreachable:
		return t.seq != 0 && causeRank(cause) > causeRank(t.cause.cause())
	}
	return false
}

// keep appends evs to list up to maxSentEvidence and counts the rest in t.more. An event
// already cited is not cited again: one drop or ICMP error reaches an item through each
// observation of the datagram it is about.
func (t *tracked) keep(list *[]result.Evidence, evs ...result.Evidence) {
	for _, e := range evs {
		if e.Seq != 0 && cites(*list, e.Seq) {
			continue
		}
		if len(*list) >= maxSentEvidence {
			t.more++
			continue
		}
		*list = append(*list, e)
	}
}

func cites(list []result.Evidence, seq uint64) bool {
	for _, e := range list {
		if e.Seq == seq {
			return true
		}
	}
	return false
}

// absorb takes over the evidence of o (a message that turned out to start a handshake).
func (t *tracked) absorb(o *tracked) {
	t.keep(&t.sent, o.sent...)
	t.more += o.more
}

// settleAnswer records sd as the datagram that completed the item and decides the item
// after the settle delay, not at once: an ICMP error or a drop quoting the answer may still
// show it never reached the application (answerLost), which makes the item failed rather
// than ok. decide emits the item with the outcome.
func (t *tracked) settleAnswer(d *Decoder, sd *seenDatagram, at time.Time, ok result.Outcome, decide func(outcome result.Outcome, emit func(result.Event))) {
	t.answer = sd
	sd.own(t)
	d.after(at.Add(d.cfg.SettleDelay), func(emit func(result.Event), _ bool) {
		if t.done || t.answer != sd { // decided, or the answer was taken back
			return
		}
		outcome := ok
		if t.answerLost {
			outcome = result.Failed
		}
		decide(outcome, emit)
	})
}

// addSent records one of the item's datagrams as evidence.
func (t *tracked) addSent(sd *seenDatagram, detail string) {
	if len(t.sent) >= maxSentEvidence {
		t.more++
		return
	}
	t.sent = append(t.sent, sd.evidence(detail))
}

// causeRank orders causes by how directly they explain a failure.
func causeRank(c result.Cause) int {
	switch c {
	case result.FragmentLoss:
		return 3
	case result.ICMPUnreachable:
		return 2
	case result.KernelDrop:
		return 1
	}
	return 0
}

// network records an ICMP error or a drop concerning the item. onAnswer says it concerns
// the datagram that answered the item.
func (t *tracked) network(cause result.Cause, ev result.Evidence, onAnswer bool) {
	if t.done {
		return
	}
	if causeRank(cause) > causeRank(t.netCause.cause()) {
		t.netCause = codeOf(cause)
	}
	t.keep(&t.note().netEv, ev)
	if onAnswer {
		t.answerLost = true
	}
}

// decisive reports whether the item has failed whatever comes next.
func (t *tracked) decisive() bool {
	return t.netCause != 0 || t.rejected() != nil || t.expired() != nil
}

// verdict returns the best-supported cause of the item's failure and its evidence.
func (t *tracked) verdict() (result.Cause, []result.Evidence) {
	ev := append([]result.Evidence(nil), t.sent...)
	switch {
	case t.netCause != 0:
		return t.netCause.cause(), withDetails(ev, t.netEv())
	case t.expired() != nil:
		// Before app_drop: an expired request is read, then ignored for its expiration.
		return result.Expired, append(ev, *t.expired())
	case t.rejected() != nil:
		return result.Rejected, append(ev, *t.rejected())
	case t.read() != nil:
		return result.AppDrop, append(ev, *t.read())
	}
	return result.NoResponse, ev
}

// fromSilence reports whether cause was concluded from an answer not seen (none came, or
// the application read the request and sent nothing): observations lost or shed meanwhile
// may be that answer, so the verdict cites them.
func fromSilence(cause result.Cause) bool {
	return cause == result.NoResponse || cause == result.AppDrop
}

// withDetails appends more to list, except that an observation list cites already (a
// send that failed is the datagram sent and the failure) gets the detail added to its
// entry: each event is cited once.
func withDetails(list, more []result.Evidence) []result.Evidence {
	for _, e := range more {
		i := slices.IndexFunc(list, func(l result.Evidence) bool { return e.Seq != 0 && l.Seq == e.Seq })
		if i < 0 {
			list = append(list, e)
			continue
		}
		if !strings.Contains(list[i].Detail, e.Detail) {
			list[i].Detail += "; " + e.Detail
		}
	}
	return list
}

// icmpCause classifies an ICMP or ICMPv6 error: fragmentation trouble (needs
// fragmentation, packet too big, reassembly time exceeded) or unreachability.
func icmpCause(r *record.Record) result.Cause {
	v6 := r.Src.Addr().Is6() && !r.Src.Addr().Is4In6() ||
		r.QuotedSrc.Addr().Is6() && !r.QuotedSrc.Addr().Is4In6()
	if v6 {
		switch {
		case r.ICMPType == 2: // packet too big
			return result.FragmentLoss
		case r.ICMPType == 3 && r.ICMPCode == 1: // fragment reassembly time exceeded
			return result.FragmentLoss
		}
		return result.ICMPUnreachable
	}
	switch {
	case r.ICMPType == 3 && r.ICMPCode == 4: // fragmentation needed and DF set
		return result.FragmentLoss
	case r.ICMPType == 11 && r.ICMPCode == 1: // fragment reassembly time exceeded
		return result.FragmentLoss
	}
	return result.ICMPUnreachable
}

// icmpDetail describes an ICMP error for evidence: "icmp 3/3 port unreachable from
// 10.0.0.2 quoting 10.0.0.1:30303 > 10.0.0.2:30303".
func icmpDetail(r *record.Record) string {
	name := icmpName(r)
	if name != "" {
		name = " " + name
	}
	s := fmt.Sprintf("icmp %d/%d%s from %s quoting %s > %s", r.ICMPType, r.ICMPCode, name,
		r.Src.Addr().Unmap(), addrText(r.QuotedSrc), addrText(r.QuotedDst))
	if r.HasNotified {
		if r.Notified {
			s += "; the socket was told"
		} else {
			s += "; the socket was not told: the application only sees a timeout"
		}
	}
	return s
}

func icmpName(r *record.Record) string {
	return result.ICMPName(r.Src.Addr().Is6() && !r.Src.Addr().Is4In6(), r.ICMPType, r.ICMPCode)
}

// dropCause classifies a kernel drop by its reason name.
func dropCause(reason string) result.Cause {
	if strings.Contains(reason, "FRAG") || reason == "PKT_TOO_BIG" {
		return result.FragmentLoss
	}
	return result.KernelDrop
}

// dropDetail describes a drop for evidence: "SOCKET_RCVBUFF in udp_queue_rcv_one_skb".
func dropDetail(r *record.Record) string {
	reason := r.Reason
	if reason == "" {
		reason = "drop (no reason given)"
	}
	if r.Location != "" {
		reason += " in " + r.Location
	}
	return fmt.Sprintf("%s: %s > %s", reason, addrText(r.Src), addrText(r.Dst))
}

// readDetail describes the application reading a datagram: "read by pid 42 (geth)
// after 1.2ms in the socket queue, never answered". Made for every read of a request,
// so built without fmt.
func readDetail(r *record.Record) string {
	b := make([]byte, 0, 96)
	b = append(b, "read by "...)
	if r.HasProc {
		b = append(b, "pid "...)
		b = strconv.AppendUint(b, uint64(r.PID), 10)
		b = append(append(append(b, " ("...), r.Comm...), ')')
	} else {
		b = append(b, "the application"...)
	}
	if r.HasQueueTime {
		b = append(append(append(b, " after "...), r.QueueTime.String()...), " in the socket queue"...)
	}
	return string(append(b, ", never answered"...))
}

// sameEndpoint compares addresses the way a flow match needs: IPv4-mapped IPv6 equals
// IPv4, and a zero port (a non-first fragment, whose ports are unknown) matches any.
func sameEndpoint(a, b netip.AddrPort) bool {
	if a.Addr().Unmap() != b.Addr().Unmap() {
		return false
	}
	return a.Port() == 0 || b.Port() == 0 || a.Port() == b.Port()
}

// durPtr returns d for the results' optional durations.
func durPtr(d time.Duration) *time.Duration { return &d }

// ptr returns a pointer to a copy of e.
func ptr(e result.Evidence) *result.Evidence { return &e }

// idPtr returns id when known, for the results' optional node IDs.
func idPtr(id enode.ID, known bool) *enode.ID {
	if !known {
		return nil
	}
	return &id
}

// addrText writes an address for evidence and details as the schema does: "ip:port",
// "[v6]:port", IPv4-mapped IPv6 as IPv4.
func addrText(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()).String()
}
