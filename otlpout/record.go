package otlpout

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"golang.org/x/sys/unix"

	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// Attribute keys: the OpenTelemetry semantic conventions' where one fits, else under
// "discotrace.", named after the NDJSON fields.
const (
	keyPeerAddr    = string(semconv.NetworkPeerAddressKey)
	keyPeerPort    = string(semconv.NetworkPeerPortKey)
	keyLocalAddr   = string(semconv.NetworkLocalAddressKey)
	keyLocalPort   = string(semconv.NetworkLocalPortKey)
	keySourceAddr  = string(semconv.SourceAddressKey)
	keySourcePort  = string(semconv.SourcePortKey)
	keyDestAddr    = string(semconv.DestinationAddressKey)
	keyDestPort    = string(semconv.DestinationPortKey)
	keyTransport   = string(semconv.NetworkTransportKey)
	keyProtocol    = string(semconv.NetworkProtocolNameKey)
	keyErrorType   = string(semconv.ErrorTypeKey)
	keyPID         = string(semconv.ProcessPIDKey)
	keyTID         = string(semconv.ThreadIDKey)
	keyThreadName  = string(semconv.ThreadNameKey)
	keySeq         = "discotrace.seq"
	keyOutcome     = "discotrace.outcome"
	keyInitiator   = "discotrace.initiator" // "local" or "peer": who started it, when known
	keyPeerID      = "discotrace.peer.node_id"
	keyLocalID     = "discotrace.local.node_id"
	keyKind        = "discotrace.kind"
	keyMsg         = "discotrace.msg"
	keyReq         = "discotrace.req"
	keyResp        = "discotrace.resp"
	keyRTT         = "discotrace.rtt_ns"
	keyWhoareyouRT = "discotrace.whoareyou_rtt_ns"
	keyHandshakeRT = "discotrace.handshake_rtt_ns"
	keyTotal       = "discotrace.total_ns"
	keyAttempts    = "discotrace.attempts"
	keyEvidence    = "discotrace.evidence"
	keyLen         = "discotrace.len"
	keyRet         = "discotrace.ret"
	keyQueue       = "discotrace.queue_ns"
	keyDecodeError = "discotrace.decode_error"
	keyICMPType    = "discotrace.icmp.type"
	keyICMPCode    = "discotrace.icmp.code"
	keyICMPFrom    = "discotrace.icmp.from"
	keyReason      = "discotrace.reason"
	keyLocation    = "discotrace.location"
	keyCount       = "discotrace.count"
	keySince       = "discotrace.since"
	keyUndecoded   = "discotrace.undecoded"
	keyUntracked   = "discotrace.untracked"
	keyAnomaly     = "discotrace.anomaly"
	keyOffset      = "discotrace.offset_ns"
	keyDetail      = "discotrace.detail"
	keyRevises     = "discotrace.revises"
	keyRevisesType = "discotrace.revises_type"
)

// builder turns results into log records; isLocal says whether an endpoint is one of
// this host's nodes (nil: none known), to tell the peer from the local side of a
// handshake or an exchange.
type builder struct {
	isLocal func(netip.AddrPort) bool
	kv      []attribute.KeyValue // reused: Emit copies the attributes
}

// build fills r from ev: body the event type, severity WARN for what the text view marks
// as a failure or an anomaly, INFO otherwise.
func (b *builder) build(r *log.Record, ev result.Event) {
	b.kv = b.kv[:0]
	h := ev.EventHead()
	b.kv = append(b.kv, attribute.Int64(keySeq, int64(h.Seq)))
	var typ string
	warn := false
	switch x := ev.(type) {
	case *result.Observation:
		typ = result.TypeOf(&x.Record)
		warn = b.observation(x)
	case *result.Handshake:
		typ = result.TypeHandshake
		b.sides(x.Initiator, x.Recipient, x.InitiatorID, x.RecipientID)
		b.kv = append(b.kv, attribute.String(keyProtocol, packet.ProtoV5), attribute.String(keyOutcome, string(x.Outcome)))
		warn = b.failure(x.Outcome, x.Cause)
		if x.Attempts > 0 {
			b.kv = append(b.kv, attribute.Int(keyAttempts, x.Attempts))
		}
		b.duration(keyWhoareyouRT, x.WhoareyouRTT)
		b.duration(keyHandshakeRT, x.HandshakeRTT)
		b.duration(keyTotal, x.Total)
		b.evidence(x.Evidence)
	case *result.Exchange:
		typ = result.TypeExchange
		b.sides(x.Initiator, x.Recipient, x.InitiatorID, x.RecipientID)
		if proto := requestProto(x.Req); proto != "" {
			b.kv = append(b.kv, attribute.String(keyProtocol, proto))
		}
		b.kv = append(b.kv, attribute.String(keyReq, x.Req), attribute.String(keyOutcome, string(x.Outcome)))
		if x.Resp != "" {
			b.kv = append(b.kv, attribute.String(keyResp, x.Resp))
		}
		warn = b.failure(x.Outcome, x.Cause)
		if x.Attempts > 0 {
			b.kv = append(b.kv, attribute.Int(keyAttempts, x.Attempts))
		}
		b.duration(keyRTT, x.RTT)
		b.evidence(x.Evidence)
	case *result.Anomaly:
		typ, warn = result.TypeAnomaly, true
		if x.Peer.IsValid() {
			b.endpoint(keyPeerAddr, keyPeerPort, x.Peer)
			b.kv = append(b.kv, attribute.String(keyTransport, "udp"))
		}
		b.id(keyPeerID, x.PeerID)
		b.kv = append(b.kv, attribute.String(keyAnomaly, string(x.Kind)))
		b.duration(keyOffset, x.Offset)
		if x.Detail != "" {
			b.kv = append(b.kv, attribute.String(keyDetail, x.Detail))
		}
		b.evidence(x.Evidence)
	case *result.Revision:
		typ, warn = result.TypeRevision, true
		b.sides(x.Initiator, x.Recipient, nil, nil)
		b.kv = append(b.kv, attribute.Int64(keyRevises, int64(x.Revises)), attribute.String(keyRevisesType, x.Of),
			attribute.String(keyErrorType, string(x.Cause)))
		b.evidence(x.Evidence)
	}
	r.SetTimestamp(h.Time)
	r.SetBody(attribute.StringValue(typ))
	r.SetEventName("discotrace." + typ)
	if warn {
		r.SetSeverity(log.SeverityWarn)
		r.SetSeverityText("WARN")
	} else {
		r.SetSeverity(log.SeverityInfo)
		r.SetSeverityText("INFO")
	}
	r.AddAttributes(b.kv...)
}

// observation adds a record's attributes and reports whether it is a failure: a send the
// kernel refused, an ICMP error, a drop, events lost or shed.
func (b *builder) observation(o *result.Observation) (warn bool) {
	r := &o.Record
	dir := r.Dir
	if r.Kind == record.Read {
		dir = record.DirIn // the application reading a datagram this host received
	}
	switch r.Kind {
	case record.Lost, record.Shed:
		b.kv = append(b.kv, attribute.Int64(keyCount, int64(r.Count)))
		if !r.Since.IsZero() {
			b.kv = append(b.kv, attribute.String(keySince, r.Since.UTC().Format(time.RFC3339Nano)))
		}
		if r.Kind == record.Shed {
			b.kv = append(b.kv, attribute.Int64(keyUndecoded, int64(r.Undecoded)))
			if r.Untracked > 0 {
				b.kv = append(b.kv, attribute.Int64(keyUntracked, int64(r.Untracked)))
			}
		}
		return true
	case record.ICMP:
		// The datagram it quotes is the exchange it broke: its sides are the peer and
		// the local node; the error's own sender is a router or the peer's host.
		quoted := record.DirUnknown
		switch r.Dir {
		case record.DirIn: // an error this host received, about a datagram it sent
			quoted = record.DirOut
		case record.DirOut:
			quoted = record.DirIn
		}
		b.datagramSides(r.QuotedSrc, r.QuotedDst, quoted)
		b.kv = append(b.kv, attribute.Int(keyICMPType, int(r.ICMPType)), attribute.Int(keyICMPCode, int(r.ICMPCode)))
		if a := r.Src.Addr(); a.IsValid() {
			b.kv = append(b.kv, attribute.String(keyICMPFrom, a.Unmap().String()))
		}
		warn = true
	case record.Drop:
		b.datagramSides(r.Src, r.Dst, dir)
		b.kv = append(b.kv, attribute.String(keyReason, r.Reason), attribute.String(keyErrorType, r.Reason))
		if r.Location != "" {
			b.kv = append(b.kv, attribute.String(keyLocation, r.Location))
		}
		warn = true
	default:
		b.datagramSides(r.Src, r.Dst, dir)
	}
	b.kv = append(b.kv, attribute.String(keyTransport, "udp"))
	if (r.Kind == record.Datagram || r.Kind == record.Read) && !r.FailedUnseen() {
		b.kv = append(b.kv, attribute.Int(keyLen, r.Len))
	}
	if r.HasSendRet {
		b.kv = append(b.kv, attribute.Int64(keyRet, r.SendRet))
		if r.SendRet < 0 {
			b.kv = append(b.kv, attribute.String(keyErrorType, errnoName(r.SendRet)))
			warn = true
		}
	}
	if r.Kind == record.Read && r.HasQueueTime {
		b.kv = append(b.kv, attribute.Int64(keyQueue, int64(r.QueueTime)))
	}
	if r.HasProc {
		b.kv = append(b.kv, attribute.Int(keyPID, int(r.PID)), attribute.Int(keyTID, int(r.TID)), attribute.String(keyThreadName, r.Comm))
	}
	if p := o.Packet; p != nil {
		b.packet(p, dir)
	}
	return warn
}

// packet adds what a decoded datagram carried.
func (b *builder) packet(p *packet.Packet, dir record.Direction) {
	if p.Proto == packet.ProtoV4 || p.Proto == packet.ProtoV5 {
		b.kv = append(b.kv, attribute.String(keyProtocol, p.Proto))
	}
	if p.Kind != "" {
		b.kv = append(b.kv, attribute.String(keyKind, p.Kind))
	}
	if p.Msg != nil {
		b.kv = append(b.kv, attribute.String(keyMsg, p.Msg.Name()))
	}
	var src, dst *enode.ID
	if p.HasSrcID {
		src = &p.SrcID
	}
	if p.HasDstID {
		dst = &p.DstID
	}
	switch dir {
	case record.DirOut:
		b.id(keyLocalID, src)
		b.id(keyPeerID, dst)
	case record.DirIn:
		b.id(keyPeerID, src)
		b.id(keyLocalID, dst)
	}
	if p.Err != nil {
		b.kv = append(b.kv, attribute.String(keyDecodeError, p.Err.Error()))
	}
}

// datagramSides adds a datagram's endpoints as peer and local by its direction, or as
// source and destination when the direction is not known.
func (b *builder) datagramSides(src, dst netip.AddrPort, dir record.Direction) {
	switch {
	case dir == record.DirOut || dir == record.DirUnknown && b.local(src):
		b.endpoint(keyLocalAddr, keyLocalPort, src)
		b.endpoint(keyPeerAddr, keyPeerPort, dst)
	case dir == record.DirIn || b.local(dst):
		b.endpoint(keyPeerAddr, keyPeerPort, src)
		b.endpoint(keyLocalAddr, keyLocalPort, dst)
	default:
		b.endpoint(keySourceAddr, keySourcePort, src)
		b.endpoint(keyDestAddr, keyDestPort, dst)
	}
}

// sides adds a handshake's or an exchange's endpoints: the peer is the recipient, unless
// only the recipient is local (a peer's request to this host); the local side is named
// when it is known to be one.
func (b *builder) sides(initiator, recipient netip.AddrPort, initID, recipID *enode.ID) {
	b.kv = append(b.kv, attribute.String(keyTransport, "udp"))
	switch {
	case b.local(recipient) && !b.local(initiator):
		b.endpoint(keyPeerAddr, keyPeerPort, initiator)
		b.endpoint(keyLocalAddr, keyLocalPort, recipient)
		b.id(keyPeerID, initID)
		b.id(keyLocalID, recipID)
		b.kv = append(b.kv, attribute.String(keyInitiator, "peer"))
	case b.local(initiator):
		b.endpoint(keyPeerAddr, keyPeerPort, recipient)
		b.endpoint(keyLocalAddr, keyLocalPort, initiator)
		b.id(keyPeerID, recipID)
		b.id(keyLocalID, initID)
		b.kv = append(b.kv, attribute.String(keyInitiator, "local"))
	default:
		b.endpoint(keyPeerAddr, keyPeerPort, recipient)
		b.endpoint(keySourceAddr, keySourcePort, initiator)
		b.id(keyPeerID, recipID)
	}
}

func (b *builder) local(a netip.AddrPort) bool {
	return b.isLocal != nil && a.IsValid() && b.isLocal(a)
}

// endpoint adds an address and its port (left out when zero: an ICMP error has none).
func (b *builder) endpoint(addrKey, portKey string, a netip.AddrPort) {
	if !a.IsValid() {
		return
	}
	b.kv = append(b.kv, attribute.String(addrKey, a.Addr().Unmap().String()))
	if a.Port() != 0 {
		b.kv = append(b.kv, attribute.Int(portKey, int(a.Port())))
	}
}

func (b *builder) id(key string, id *enode.ID) {
	if id != nil {
		b.kv = append(b.kv, attribute.String(key, id.String()))
	}
}

func (b *builder) duration(key string, d *time.Duration) {
	if d != nil {
		b.kv = append(b.kv, attribute.Int64(key, int64(*d)))
	}
}

// failure adds error.type, the cause, to a failed handshake or exchange.
func (b *builder) failure(o result.Outcome, c result.Cause) bool {
	if o != result.Failed {
		return false
	}
	if c != "" {
		b.kv = append(b.kv, attribute.String(keyErrorType, string(c)))
	}
	return true
}

// evidence adds the sequence numbers of the events cited (0: not an event of the stream).
func (b *builder) evidence(list []result.Evidence) {
	if len(list) == 0 {
		return
	}
	seqs := make([]int64, 0, len(list))
	for _, e := range list {
		if e.Seq != 0 {
			seqs = append(seqs, int64(e.Seq))
		}
	}
	if len(seqs) > 0 {
		b.kv = append(b.kv, attribute.Int64Slice(keyEvidence, seqs))
	}
}

// requestProto is the protocol of an exchange's request ("PING/v4": discv4).
func requestProto(req string) string {
	switch _, v, _ := strings.Cut(req, "/"); v {
	case "v4":
		return packet.ProtoV4
	case "v5":
		return packet.ProtoV5
	}
	return ""
}

// errnoName names a failed send's -errno: EPERM, ENETUNREACH.
func errnoName(ret int64) string {
	if name := unix.ErrnoName(unix.Errno(-ret)); name != "" {
		return name
	}
	return "errno_" + strconv.FormatInt(-ret, 10)
}
