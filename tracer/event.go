package tracer

import (
	"net/netip"
	"time"
)

// Kind is the class of a kernel event.
type Kind uint8

const (
	KindSend Kind = iota + 1 // a datagram leaving a UDP socket of a watched port
	KindRecv                 // a datagram for a watched port reaching the UDP layer
	KindRead                 // the application reading a datagram (recvmsg)
	KindICMP                 // an ICMP/ICMPv6 error quoting a datagram of a watched port
	KindDrop                 // the kernel freeing a datagram or fragment of a watched port
	KindLost                 // events the kernel side could not deliver (ring buffer full)
)

func (k Kind) String() string {
	switch k {
	case KindSend:
		return "send"
	case KindRecv:
		return "recv"
	case KindRead:
		return "read"
	case KindICMP:
		return "icmp"
	case KindDrop:
		return "drop"
	case KindLost:
		return "lost"
	}
	return "unknown"
}

// ICMPDir says which way an ICMP error went.
type ICMPDir uint8

const (
	ICMPIn  ICMPDir = iota + 1 // received by this host
	ICMPOut                    // sent by this host
)

// Event is one kernel event, decoded from the ring buffer into Go types.
// Fields that do not apply to Kind are zero.
type Event struct {
	Kind Kind
	Time time.Time // wall clock, converted from the kernel's monotonic clock

	// Task context; HasProc is false where the hook runs outside the owning task
	// (softirq receive, drops, ICMP).
	HasProc  bool
	PID      uint32 // tgid, as ps shows it
	TID      uint32
	Comm     string
	CgroupID uint64

	NetNS   uint32 // network namespace inode
	Ifindex uint32
	Cookie  uint64 // socket cookie, 0 when no socket

	Src, Dst netip.AddrPort // the UDP datagram's addresses
	Len      int            // UDP payload length
	Payload  []byte         // the first SnapLen bytes of the payload (owned by the event)

	// Send: the sendmsg return value (bytes or -errno), when HasRet.
	HasRet bool
	Ret    int64

	// Read: how long the datagram waited in the socket's receive queue, when HasQueueTime.
	HasQueueTime bool
	QueueTime    time.Duration

	// ICMP: direction, type and code; Src/Dst are the ICMP packet's own addresses
	// (ports zero) and QuotedSrc/QuotedDst the tuple of the UDP datagram it quotes.
	ICMPDir              ICMPDir
	ICMPType, ICMPCode   uint8
	QuotedSrc, QuotedDst netip.AddrPort
	// Notified: the owning socket is told of the error, when HasNotified.
	HasNotified bool
	Notified    bool

	// Drop: the kernel's reason name (from its BTF enum skb_drop_reason, without the
	// SKB_DROP_REASON_ prefix) and the kernel function that freed it, when known. A
	// kernel before Linux 5.17 names no reason: Reason is then empty, or, where the
	// tracer could tell it for certain (a full receive buffer), the name later kernels
	// give, with ReasonInferred set.
	Reason         string
	ReasonInferred bool
	Location       string

	// Lost: how many events could not be delivered since the last report. They were lost
	// between LostSince (the previous check of the counters, or Open) and Time.
	Lost      uint64
	LostSince time.Time
}
