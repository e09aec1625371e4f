// Package record defines what the tracer or a capture observed: the decoder's input.
// The tracer (cmd/discotrace) and the capture reader (decode/capture) produce Records;
// package decode consumes them.
package record

import (
	"bytes"
	"net/netip"
	"time"
)

// Kind says what was observed.
type Kind uint8

const (
	// Datagram is a UDP datagram with its payload: sent or received by this host (tracer)
	// or seen on the wire (pcap).
	Datagram Kind = iota + 1
	// Read is the local application reading a datagram from its socket (tracer only).
	Read
	// ICMP is an ICMP or ICMPv6 error quoting a UDP datagram.
	ICMP
	// Drop is the kernel dropping a datagram or fragment (tracer; pcap for reassembly loss).
	Drop
	// Lost counts observations the capture could not deliver.
	Lost
	// Shed counts records the consumer did not decode in full because decoding fell
	// behind the input: Count were dropped unseen, Undecoded were reported without
	// protocol decoding.
	Shed
)

// Direction tells, for a Datagram or ICMP record, which way it went relative to this host.
type Direction uint8

const (
	DirUnknown Direction = iota // a pcap: the decoder works it out from the local identity
	DirOut                      // sent by this host
	DirIn                       // received by this host
)

// Record is one observation. Fields that do not apply to Kind are zero.
type Record struct {
	Kind Kind
	Time time.Time
	Dir  Direction

	// Src and Dst are the datagram's addresses; for ICMP, the error's own sender and receiver.
	Src, Dst netip.AddrPort
	// Len is the UDP payload length from the UDP header (never the padded frame).
	Len int
	// Payload holds the first bytes of the UDP payload (all of it from a pcap; up to the
	// snap length from the tracer). len(Payload) < Len means it was truncated.
	Payload []byte

	// Process that sent or read it, when the kernel knows (HasProc).
	HasProc bool
	PID     uint32
	TID     uint32
	Comm    string
	// Kernel context, zero when unknown.
	Cgroup  uint64
	NetNS   uint32
	Ifindex uint32
	Cookie  uint64

	// SendRet is the send's return value (bytes or -errno), when HasSendRet.
	HasSendRet bool
	SendRet    int64
	// QueueTime is, for a Read, how long the datagram waited in the socket queue, when
	// HasQueueTime (the tracer cannot always link a read to its datagram).
	HasQueueTime bool
	QueueTime    time.Duration

	// ICMP errors: type and code, and the tuple of the UDP datagram the error quotes.
	ICMPType, ICMPCode   uint8
	QuotedSrc, QuotedDst netip.AddrPort
	// Notified: the owning socket is told of the error (HasNotified when the hook knows).
	HasNotified bool
	Notified    bool

	// Drops: the kernel's reason name (SOCKET_RCVBUFF, UDP_CSUM, NO_SOCKET,
	// ReasonFragReasmTimeout, ...) and where it happened. ReasonInferred: the kernel
	// named no reason (before Linux 5.17) and the tracer inferred it where certain.
	Reason         string
	ReasonInferred bool
	Location       string

	// Lost and Shed: how many observations were lost or shed, between Since and Time
	// (a Lost record is stamped when the loss was noticed; it happened in that span).
	Count uint64
	Since time.Time
	// Shed: how many records were reported without protocol decoding, and how many
	// requests and messages were decoded but not followed (the decoder had too many
	// waiting for answers already).
	Undecoded uint64
	Untracked uint64
}

// Clone returns a copy of r that owns its payload: for a consumer that keeps a record a
// reader lends it only for the call (capture.Read reuses its records).
func (r *Record) Clone() *Record {
	c := *r
	c.Payload = bytes.Clone(r.Payload)
	return &c
}

// ReasonFragReasmTimeout is the kernel's drop reason for a datagram whose fragments never
// all arrived (SKB_DROP_REASON_FRAG_REASM_TIMEOUT); the capture reader uses it too.
const ReasonFragReasmTimeout = "FRAG_REASM_TIMEOUT"

// FailedUnseen reports whether r is a send the kernel refused whose message the hook
// did not see (the tracepoint backend sees only the socket and the error): its length,
// payload and, for an unconnected socket, destination are unknown, not zero.
func (r *Record) FailedUnseen() bool {
	return r.Kind == Datagram && r.HasSendRet && r.SendRet < 0 && r.Len == 0 && len(r.Payload) == 0
}
