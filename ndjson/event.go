// Package ndjson is discotrace's output format: one JSON object per line, the same schema
// whether the events come from the kernel (trace) or from a capture file (decode).
//
// The schema is versioned: every line carries "v" (SchemaVersion). Fields are added in a
// compatible way (new keys) within a version; renaming or changing the meaning of a key
// bumps the version. Fields that do not apply to an event's type are left out.
package ndjson

import "github.com/discotrace/discotrace/decode/result"

// SchemaVersion is the version of the event schema written in every line as "v".
const SchemaVersion = 1

// Event types, the value of "type": the decoder's names (package result).
const (
	TypeSend      = result.TypeSend
	TypeRecv      = result.TypeRecv
	TypeRead      = result.TypeRead
	TypeICMP      = result.TypeICMP
	TypeDrop      = result.TypeDrop
	TypeLost      = result.TypeLost
	TypeShed      = result.TypeShed
	TypePacket    = result.TypePacket
	TypeHandshake = result.TypeHandshake
	TypeExchange  = result.TypeExchange
	TypeAnomaly   = result.TypeAnomaly
	TypeRevision  = result.TypeRevision
)

// Values of a lost event's "where": who lost the events (absent: the kernel's ring buffer).
const (
	WhereReader = "reader" // a --listen reader too slow to take them
	WhereFile   = "file"   // an --output file that could not be written
)

// Event is one line of the stream. Time is RFC 3339 with nanoseconds, addresses are
// "ip:port" ("[v6]:port" for IPv6). Pointers mark fields whose zero value is meaningful
// (a zero-length datagram, pid 0 for kernel context), so that "absent" and "zero" differ.
type Event struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	Time string `json:"time"`
	// Seq numbers the events of one stream from 1, in output order; evidence cites
	// events by it.
	Seq uint64 `json:"seq,omitempty"`

	// Datagram fields (send, recv, read, packet; drop and icmp where known).
	Src     string  `json:"src,omitempty"`
	Dst     string  `json:"dst,omitempty"`
	Len     *int    `json:"len,omitempty"`
	PID     *uint32 `json:"pid,omitempty"`
	TID     *uint32 `json:"tid,omitempty"`
	Comm    string  `json:"comm,omitempty"`
	Cgroup  uint64  `json:"cgroup,omitempty"`
	NetNS   uint32  `json:"netns,omitempty"`
	Ifindex uint32  `json:"ifindex,omitempty"`
	Cookie  uint64  `json:"cookie,omitempty"`
	// Ret is the send's return value (bytes sent or -errno) where the hook can tell.
	Ret *int64 `json:"ret,omitempty"`
	// QueueNs is, for a read, how long the datagram waited in the socket's receive queue.
	QueueNs *int64 `json:"queue_ns,omitempty"`
	// Payload is the captured UDP payload (up to the snap length), hex, when asked for.
	Payload string `json:"payload,omitempty"`

	// ICMP errors.
	Dir       string `json:"dir,omitempty"` // "in" (received by this host) or "out" (sent)
	ICMPType  *uint8 `json:"icmp_type,omitempty"`
	ICMPCode  *uint8 `json:"icmp_code,omitempty"`
	QuotedSrc string `json:"quoted_src,omitempty"`
	QuotedDst string `json:"quoted_dst,omitempty"`
	// Notified tells, for an incoming ICMP error, whether the owning socket is told
	// (connected or IP_RECVERR sockets are; unconnected sockets without it are not).
	Notified *bool `json:"notified,omitempty"`

	// Drops.
	Reason string `json:"reason,omitempty"` // the kernel's skb_drop_reason name, e.g. SOCKET_RCVBUFF
	// ReasonInferred is true when the kernel named no reason (before Linux 5.17) and the
	// tracer inferred it where the kernel's code leaves no doubt (a full receive buffer).
	ReasonInferred *bool  `json:"reason_inferred,omitempty"`
	Location       string `json:"location,omitempty"` // kernel function that dropped it, when known

	// Lost and shed events: how many, and since when (the span they happened in ends at
	// "time"). Undecoded is, for shed, how many records were reported without "disc".
	Count     *uint64 `json:"count,omitempty"`
	Since     string  `json:"since,omitempty"`
	Undecoded *uint64 `json:"undecoded,omitempty"`
	// Untracked is, for shed, how many requests and messages were decoded but not
	// followed into exchanges and handshakes: too many were waiting for answers.
	Untracked *uint64 `json:"untracked,omitempty"`
	// Where is, for lost, who lost the events: absent for the kernel's ring buffer (the
	// tracer could not deliver them), "reader" in the stream of a --listen reader that
	// read too slowly (the events were dropped for it alone), "file" in an --output file
	// that could not be written meanwhile (disk full, say).
	Where string `json:"where,omitempty"`

	// Disc is the decoded discovery packet carried by a datagram event.
	Disc *Disc `json:"disc,omitempty"`

	// Handshake and exchange events.
	Initiator      string `json:"initiator,omitempty"`
	Recipient      string `json:"recipient,omitempty"`
	InitiatorID    string `json:"initiator_id,omitempty"`
	RecipientID    string `json:"recipient_id,omitempty"`
	Req            string `json:"req,omitempty"`
	Resp           string `json:"resp,omitempty"`
	Outcome        string `json:"outcome,omitempty"` // established/failed, answered/failed, open
	Cause          string `json:"cause,omitempty"`
	Attempts       int    `json:"attempts,omitempty"`
	WhoareyouRTTNs *int64 `json:"whoareyou_rtt_ns,omitempty"`
	HandshakeRTTNs *int64 `json:"handshake_rtt_ns,omitempty"`
	TotalNs        *int64 `json:"total_ns,omitempty"`
	RTTNs          *int64 `json:"rtt_ns,omitempty"`

	// Revision events: the "seq" and "type" of the handshake or exchange whose cause
	// they revise (the new one in "cause", the observation behind it in "evidence").
	Revises     uint64 `json:"revises,omitempty"`
	RevisesType string `json:"revises_type,omitempty"`

	// Anomaly events.
	Anomaly  string `json:"anomaly,omitempty"` // clock_skew, enr_seq_regression, endpoint_mismatch, whoareyou_storm
	Peer     string `json:"peer,omitempty"`
	PeerID   string `json:"peer_id,omitempty"`
	OffsetNs *int64 `json:"offset_ns,omitempty"`
	Detail   string `json:"detail,omitempty"`

	// Evidence lists the observations that support a cause or an anomaly; EvidenceMore
	// counts those left out to keep the event bounded.
	Evidence     []Evidence `json:"evidence,omitempty"`
	EvidenceMore int        `json:"evidence_more,omitempty"`
}

// Disc is a decoded discovery packet.
type Disc struct {
	Proto  string  `json:"proto"`             // discv4, discv5, unknown
	Kind   string  `json:"kind,omitempty"`    // PING, PONG, ... / MESSAGE, WHOAREYOU, HANDSHAKE
	Msg    string  `json:"msg,omitempty"`     // decrypted discv5 message type
	ReqID  string  `json:"req_id,omitempty"`  // discv5 request id, hex
	Nonce  string  `json:"nonce,omitempty"`   // discv5 nonce, hex
	SrcID  string  `json:"src_id,omitempty"`  // node ID, hex
	DstID  string  `json:"dst_id,omitempty"`  // node ID, hex
	ENRSeq *uint64 `json:"enr_seq,omitempty"` // ENR sequence number carried by the packet
	Nodes  *int    `json:"nodes,omitempty"`   // NEIGHBORS / NODES: how many records
	// From and To are the endpoints a packet names ("ip:port"): discv4 PING's from (the
	// sender's own idea of its address) and to (the recipient as the sender sees it);
	// discv4 PONG's and discv5 PONG's to: the address the answering node saw the request
	// come from, which differs from the requester's own when a NAT rewrote it.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Expiration is a discv4 packet's expiration (RFC 3339): the receiver ignores the
	// packet after it.
	Expiration string `json:"expiration,omitempty"`
	// Target is a discv4 FINDNODE's target, as a node ID (keccak256 of the target key).
	Target string `json:"target,omitempty"`
	// Distances are a discv5 FINDNODE's log2 distances.
	Distances []uint `json:"distances,omitempty"`
	// TalkProtocol is a discv5 TALKREQ's protocol name: as text when it is printable
	// ASCII, else hex with a "0x" prefix.
	TalkProtocol string `json:"talk_protocol,omitempty"`
	Error        string `json:"error,omitempty"` // why decoding (or decryption) failed

	// encoded is where a Renderer keeps this object's JSON once it was written, for the
	// next events that carry the same packet (a datagram's send, recv and read).
	encoded *encodedDisc
}

// encodedDisc is a disc object's JSON, when valid.
type encodedDisc struct {
	valid bool
	json  []byte
}

// Evidence is one observation behind a cause or anomaly.
type Evidence struct {
	// Seq is the cited event's "seq", when the observation is an event of the stream.
	Seq    uint64 `json:"seq,omitempty"`
	Time   string `json:"time"`
	Type   string `json:"type"`             // the event type observed (send, icmp, drop, packet, ...)
	Detail string `json:"detail,omitempty"` // e.g. "icmp 3/3 from 10.0.0.2", "SOCKET_RCVBUFF"
}
