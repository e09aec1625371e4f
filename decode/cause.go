package decode

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/ndjson"
)

// Failure causes, the value of "cause" on failed handshakes and exchanges.
const (
	// CauseNoResponse: nothing came back, and nothing observed explains why.
	CauseNoResponse = "no_response"
	// CauseICMPUnreachable: an ICMP error quotes one of the datagrams. The application
	// (with an unconnected socket) only ever saw a timeout.
	CauseICMPUnreachable = "icmp_unreachable"
	// CauseKernelDrop: the kernel dropped the request or the answer (the reason says why).
	CauseKernelDrop = "kernel_drop"
	// CauseFragmentLoss: fragment reassembly failed, or the path needs a smaller packet.
	CauseFragmentLoss = "fragment_loss"
	// CauseRejected: the peer could not verify the handshake and challenged again (or the
	// handshake is invalid on the wire).
	CauseRejected = "rejected"
	// CauseAppDrop: the local application read the datagram and never answered.
	CauseAppDrop = "app_drop"
	// CauseExpired: a discv4 request or its answer arrived after its expiration, so its
	// receiver ignored it: the two clocks disagree by more than the packet's lifetime
	// (20 s for go-ethereum), or the packet was held up that long.
	CauseExpired = "expired"
)

// Outcomes, the value of "outcome".
const (
	OutcomeEstablished = "established" // handshake: the recipient answered after the handshake
	OutcomeAnswered    = "answered"    // exchange: the response arrived in time
	OutcomeFailed      = "failed"
	// OutcomeOpen: the input ended before the deadline and nothing decisive was seen.
	OutcomeOpen = "open"
)

// maxSentEvidence bounds the datagrams one handshake or exchange lists as evidence
// (a storm of retransmissions must not grow an event without limit).
const maxSentEvidence = 16

// tracked is the failure bookkeeping shared by exchanges, handshake attempts and
// unanswered discv5 messages: what was sent, and what the network, the kernel and the
// application said about it.
type tracked struct {
	done bool

	// sent lists the item's datagrams: the evidence behind no_response.
	sent []ndjson.Evidence
	// netCause is the strongest network cause seen (ICMP error, kernel drop), netEv the
	// observations behind it.
	netCause string
	netEv    []ndjson.Evidence
	// awaiting is the datagram whose receiver must act next; read says the local
	// application read it (tracer only).
	awaiting *seenDatagram
	read     *ndjson.Evidence
	// answer is the datagram that completed the item; answerLost says an ICMP error or
	// a drop shows it never reached the application.
	answer     *seenDatagram
	answerLost bool
	// rejected, when set, is the observation showing the peer refused a handshake.
	rejected *ndjson.Evidence
	// expired, when set, is a discv4 request or answer that arrived already expired.
	expired *ndjson.Evidence
	// more counts the observations left out of sent and netEv (evidence_more).
	more int
}

// keep appends evs to list up to maxSentEvidence and counts the rest in t.more.
func (t *tracked) keep(list *[]ndjson.Evidence, evs ...ndjson.Evidence) {
	n := min(len(evs), max(0, maxSentEvidence-len(*list)))
	*list = append(*list, evs[:n]...)
	t.more += len(evs) - n
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
func (t *tracked) settleAnswer(d *Decoder, sd *seenDatagram, at time.Time, ok string, decide func(outcome string, emit func(*ndjson.Event))) {
	t.answer = sd
	sd.own(t)
	d.after(at.Add(d.cfg.SettleDelay), func(emit func(*ndjson.Event), _ bool) {
		if t.done {
			return
		}
		outcome := ok
		if t.answerLost {
			outcome = OutcomeFailed
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
	t.sent = append(t.sent, ndjson.Evidence{Time: ndjson.Time(sd.t), Type: sd.evType, Detail: detail})
}

// causeRank orders causes by how directly they explain a failure.
func causeRank(c string) int {
	switch c {
	case CauseFragmentLoss:
		return 3
	case CauseICMPUnreachable:
		return 2
	case CauseKernelDrop:
		return 1
	}
	return 0
}

// network records an ICMP error or a drop concerning the item. onAnswer says it concerns
// the datagram that answered the item.
func (t *tracked) network(cause string, ev ndjson.Evidence, onAnswer bool) {
	if t.done {
		return
	}
	if causeRank(cause) > causeRank(t.netCause) {
		t.netCause = cause
	}
	t.keep(&t.netEv, ev)
	if onAnswer {
		t.answerLost = true
	}
}

// decisive reports whether the item has failed whatever comes next.
func (t *tracked) decisive() bool {
	return t.netCause != "" || t.rejected != nil || t.expired != nil
}

// verdict returns the best-supported cause of the item's failure and its evidence.
func (t *tracked) verdict() (string, []ndjson.Evidence) {
	ev := append([]ndjson.Evidence(nil), t.sent...)
	switch {
	case t.netCause != "":
		return t.netCause, append(ev, t.netEv...)
	case t.expired != nil:
		// Before app_drop: an expired request is read, then ignored for its expiration.
		return CauseExpired, append(ev, *t.expired)
	case t.rejected != nil:
		return CauseRejected, append(ev, *t.rejected)
	case t.read != nil:
		return CauseAppDrop, append(ev, *t.read)
	}
	return CauseNoResponse, ev
}

// icmpCause classifies an ICMP or ICMPv6 error: fragmentation trouble (needs
// fragmentation, packet too big, reassembly time exceeded) or unreachability.
func icmpCause(r *record.Record) string {
	v6 := r.Src.Addr().Is6() && !r.Src.Addr().Is4In6() ||
		r.QuotedSrc.Addr().Is6() && !r.QuotedSrc.Addr().Is4In6()
	if v6 {
		switch {
		case r.ICMPType == 2: // packet too big
			return CauseFragmentLoss
		case r.ICMPType == 3 && r.ICMPCode == 1: // fragment reassembly time exceeded
			return CauseFragmentLoss
		}
		return CauseICMPUnreachable
	}
	switch {
	case r.ICMPType == 3 && r.ICMPCode == 4: // fragmentation needed and DF set
		return CauseFragmentLoss
	case r.ICMPType == 11 && r.ICMPCode == 1: // fragment reassembly time exceeded
		return CauseFragmentLoss
	}
	return CauseICMPUnreachable
}

// icmpDetail describes an ICMP error for evidence: "icmp 3/3 port unreachable from
// 10.0.0.2 quoting 10.0.0.1:30303 > 10.0.0.2:30303".
func icmpDetail(r *record.Record) string {
	name := icmpName(r)
	if name != "" {
		name = " " + name
	}
	s := fmt.Sprintf("icmp %d/%d%s from %s quoting %s > %s", r.ICMPType, r.ICMPCode, name,
		r.Src.Addr().Unmap(), ndjson.Addr(r.QuotedSrc), ndjson.Addr(r.QuotedDst))
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
	if r.Src.Addr().Is6() && !r.Src.Addr().Is4In6() {
		switch r.ICMPType {
		case 1:
			switch r.ICMPCode {
			case 0:
				return "no route"
			case 1:
				return "administratively prohibited"
			case 3:
				return "address unreachable"
			case 4:
				return "port unreachable"
			}
			return "destination unreachable"
		case 2:
			return "packet too big"
		case 3:
			return "time exceeded"
		}
		return ""
	}
	switch r.ICMPType {
	case 3:
		switch r.ICMPCode {
		case 0:
			return "net unreachable"
		case 1:
			return "host unreachable"
		case 3:
			return "port unreachable"
		case 4:
			return "fragmentation needed"
		case 9, 10, 13:
			return "administratively prohibited"
		}
		return "destination unreachable"
	case 11:
		if r.ICMPCode == 1 {
			return "fragment reassembly time exceeded"
		}
		return "time exceeded"
	}
	return ""
}

// dropCause classifies a kernel drop by its reason name.
func dropCause(reason string) string {
	if strings.Contains(reason, "FRAG") || reason == "PKT_TOO_BIG" {
		return CauseFragmentLoss
	}
	return CauseKernelDrop
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
	return fmt.Sprintf("%s: %s > %s", reason, ndjson.Addr(r.Src), ndjson.Addr(r.Dst))
}

// readDetail describes the application reading a datagram.
func readDetail(r *record.Record) string {
	who := "the application"
	if r.HasProc {
		who = fmt.Sprintf("pid %d (%s)", r.PID, r.Comm)
	}
	if !r.HasQueueTime {
		return fmt.Sprintf("read by %s, never answered", who)
	}
	return fmt.Sprintf("read by %s after %s in the socket queue, never answered", who, r.QueueTime)
}

// sameEndpoint compares addresses the way a flow match needs: IPv4-mapped IPv6 equals
// IPv4, and a zero port (a non-first fragment, whose ports are unknown) matches any.
func sameEndpoint(a, b netip.AddrPort) bool {
	if a.Addr().Unmap() != b.Addr().Unmap() {
		return false
	}
	return a.Port() == 0 || b.Port() == 0 || a.Port() == b.Port()
}

// nsPtr returns d in nanoseconds for the schema's optional duration fields.
func nsPtr(d time.Duration) *int64 { return ndjson.Ptr(int64(d)) }
