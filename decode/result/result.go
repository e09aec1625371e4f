// Package result is what the decoder reports, as typed values: each observation with the
// discovery packet it carried, and the handshakes, exchanges and anomalies the
// observations make up, with typed outcomes, causes and evidence that cites the events
// it rests on by their sequence number. Every output (NDJSON, metrics, the text view)
// renders these values; none parses another's text.
package result

import (
	"net/netip"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
)

// Event is one item of the decoder's output: *Observation, *Handshake, *Exchange or
// *Anomaly.
type Event interface {
	EventHead() *Head
}

// Head is what every event has.
type Head struct {
	// Seq numbers a stream's events from 1, in output order.
	Seq uint64
	// Time is when it happened: an observation's own time, or when a handshake or
	// exchange started (they are reported when decided, so the stream is in decision
	// order, not in Time order).
	Time time.Time
}

// EventHead returns h.
func (h *Head) EventHead() *Head { return h }

// Event types, the names of what the stream reports (the NDJSON "type").
const (
	TypeSend      = "send"      // a datagram leaving a socket of this host (kernel)
	TypeRecv      = "recv"      // a datagram reaching the UDP layer of this host (kernel)
	TypeRead      = "read"      // the application reading a datagram (kernel)
	TypeICMP      = "icmp"      // an ICMP/ICMPv6 error quoting a watched datagram
	TypeDrop      = "drop"      // the kernel freeing a watched datagram or fragment
	TypeLost      = "lost"      // events the kernel side could not deliver
	TypeShed      = "shed"      // records the decoder dropped or did not decode: it fell behind
	TypePacket    = "packet"    // a datagram seen in a capture file
	TypeHandshake = "handshake" // one discv5 handshake attempt
	TypeExchange  = "exchange"  // one request and its response (or failure)
	TypeAnomaly   = "anomaly"   // something wrong that is not a single failure
	TypeRevision  = "revision"  // a failure's cause, revised by evidence that came later
)

// TypeOf is the event type of a record.
func TypeOf(r *record.Record) string {
	switch r.Kind {
	case record.Datagram:
		switch r.Dir {
		case record.DirOut:
			return TypeSend
		case record.DirIn:
			return TypeRecv
		}
		return TypePacket
	case record.Read:
		return TypeRead
	case record.ICMP:
		return TypeICMP
	case record.Drop:
		return TypeDrop
	case record.Lost:
		return TypeLost
	case record.Shed:
		return TypeShed
	}
	return ""
}

// Observation is one record as observed (a datagram sent, received, read or captured,
// an ICMP error, a drop, lost or shed observations), with the discovery packet it carried.
type Observation struct {
	Head
	Record record.Record
	// Packet is the decoded datagram (for a read, the datagram it read); nil when nothing
	// was decoded (another kind of record, a read not linked to its datagram, or a
	// datagram shed under load). PacketTime is when that datagram was seen: an
	// expiration is judged against it.
	Packet     *packet.Packet
	PacketTime time.Time
}

// Clone returns a copy of o to keep: the decoder lends each Observation to emit for the
// call only. The packet, never changed once observed, is shared.
func (o *Observation) Clone() *Observation {
	c := *o
	c.Record = *o.Record.Clone()
	return &c
}

// Keep returns ev as an emit that keeps it must: a lent Observation cloned, the other
// results as they are.
func Keep(ev Event) Event {
	if o, ok := ev.(*Observation); ok {
		return o.Clone()
	}
	return ev
}

// Outcome is how a handshake or an exchange ended.
type Outcome string

const (
	Established Outcome = "established" // handshake: the recipient answered after the handshake
	Answered    Outcome = "answered"    // exchange: the response arrived in time
	Failed      Outcome = "failed"
	// Open: the input ended before the deadline and nothing decisive was seen.
	Open Outcome = "open"
)

// Cause is the best-supported reason a handshake or an exchange failed.
type Cause string

const (
	// NoResponse: nothing came back, and nothing observed explains why.
	NoResponse Cause = "no_response"
	// ICMPUnreachable: an ICMP error quotes one of the datagrams. The application (with an
	// unconnected socket) only ever saw a timeout.
	ICMPUnreachable Cause = "icmp_unreachable"
	// KernelDrop: a kernel the tracer watches dropped the request or its answer before
	// the application read it (the drop says why), or refused to send the request (the
	// failed send's errno says why).
	KernelDrop Cause = "kernel_drop"
	// FragmentLoss: fragment reassembly failed, or the path needs a smaller packet.
	FragmentLoss Cause = "fragment_loss"
	// Rejected: the peer could not verify the handshake and challenged again (or the
	// handshake is invalid on the wire).
	Rejected Cause = "rejected"
	// AppDrop: the local application read the datagram and never answered.
	AppDrop Cause = "app_drop"
	// Expired: a discv4 request or its answer arrived after its expiration, so its
	// receiver ignored it.
	Expired Cause = "expired"
)

// Evidence is one observation behind a cause or an anomaly.
type Evidence struct {
	// Seq is the cited event's sequence number; 0 when the observation is not an event
	// of the stream (a step that never happened, events lost).
	Seq  uint64
	Time time.Time
	// Observed is the event type observed (TypeSend, TypeICMP, ...; TypeHandshake for
	// a step that never came).
	Observed string
	// Detail says what it shows, for people.
	Detail string
}

// Handshake is one discv5 handshake attempt: message, WHOAREYOU, HANDSHAKE, response.
type Handshake struct {
	Head
	Initiator, Recipient     netip.AddrPort
	InitiatorID, RecipientID *enode.ID
	Outcome                  Outcome
	Cause                    Cause // when Failed
	// Attempts counts the WHOAREYOU challenges: the first and its identical resends.
	Attempts int
	// Round trips, when the steps were seen.
	WhoareyouRTT, HandshakeRTT, Total *time.Duration
	Evidence                          []Evidence
	// EvidenceMore counts the observations left out of Evidence to keep it bounded.
	EvidenceMore int
}

// Exchange is one request and its response, or its failure.
type Exchange struct {
	Head
	Initiator, Recipient     netip.AddrPort
	InitiatorID, RecipientID *enode.ID
	// Req and Resp name the request and the response with the protocol, e.g. PING/v4.
	Req, Resp string
	Outcome   Outcome
	Cause     Cause // when Failed
	RTT       *time.Duration
	// Attempts counts identical copies of the request, when more than one.
	Attempts     int
	Evidence     []Evidence
	EvidenceMore int
}

// Revision revises the cause of a failed handshake or exchange already reported, when
// evidence that explains it better comes later: a fragment reassembly times out only
// after net.ipv4.ipfrag_time (30 s by default), long after the request timed out.
type Revision struct {
	Head
	// Revises is the Seq of the handshake or exchange event it revises; Of is that
	// event's type (TypeHandshake or TypeExchange).
	Revises              uint64
	Of                   string
	Initiator, Recipient netip.AddrPort
	Cause                Cause
	Evidence             []Evidence
}

// AnomalyKind names what is wrong without being one failure.
type AnomalyKind string

const (
	ClockSkew        AnomalyKind = "clock_skew"
	ENRSeqRegression AnomalyKind = "enr_seq_regression"
	EndpointMismatch AnomalyKind = "endpoint_mismatch"
	WhoareyouStorm   AnomalyKind = "whoareyou_storm"
)

// Anomaly is something wrong that is not one failure.
type Anomaly struct {
	Head
	Kind   AnomalyKind
	Peer   netip.AddrPort
	PeerID *enode.ID
	// Offset is the peer's estimated clock offset (ClockSkew).
	Offset   *time.Duration
	Detail   string
	Evidence []Evidence
}

// The events are the result types.
var (
	_ Event = (*Observation)(nil)
	_ Event = (*Handshake)(nil)
	_ Event = (*Exchange)(nil)
	_ Event = (*Anomaly)(nil)
)

// ICMPName names the ICMP (v6: ICMPv6) errors that quote UDP datagrams, "" for others.
func ICMPName(v6 bool, typ, code uint8) string {
	if v6 {
		switch typ {
		case 1:
			switch code {
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
	switch typ {
	case 3:
		switch code {
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
		if code == 1 {
			return "fragment reassembly time exceeded"
		}
		return "time exceeded"
	}
	return ""
}
