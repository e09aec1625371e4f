package ndjson

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// FromResult renders one of the decoder's results as a line of the stream: the one place
// typed results become the schema. withPayload adds a datagram's captured bytes, hex.
// The event is the caller's to keep; an output that writes each event before it takes the
// next renders with a Renderer instead.
func FromResult(res result.Event, withPayload bool) *Event {
	return new(Renderer).Render(res, withPayload)
}

// Renderer renders results as FromResult does, into one Event it reuses: rendering then
// allocates only the event's strings and optional values, not the event. At hundreds of
// thousands of events a second the event itself was a quarter of the bytes allocated.
type Renderer struct {
	ev       Event
	disc     Disc
	evidence []Evidence

	// What the last events shared with the next: a datagram's send, recv and read carry one
	// packet, a stream names the same few addresses, and its times one second at a time.
	// A packet is never changed once an observation carries it, so its pointer (with the
	// time it is judged at, when that expires it) identifies its disc.
	discOf   *packet.Packet
	discAt   time.Time
	discJSON encodedDisc // disc's, once written
	addrs    recent[netip.AddrPort]
	ids      recent[enode.ID]
	second   int64  // the Unix second clock holds the date and time of
	clock    []byte // "2006-01-02T15:04:05." of second

	// The optional numbers of an observation point here rather than to values of their
	// own, and times and short hex strings are cut from one block of text: an event then
	// costs no allocation for them (they were most of what rendering allocated).
	obs   obsNumbers
	texts []byte // the unused rest of the current block of text
}

// obsNumbers are the values an observation's optional number fields point to.
type obsNumbers struct {
	len      int
	pid, tid uint32
	ret      int64
	queueNs  int64
}

// recent remembers the text of the last few values rendered.
type recent[K comparable] struct {
	keys  [4]K
	texts [4]string
	next  int
}

// text is format(k), from memory when k is one of the last few.
func (m *recent[K]) text(k K, format func(K) string) string {
	if s, ok := m.find(k); ok {
		return s
	}
	s := format(k)
	m.add(k, s)
	return s
}

// find returns the text of k when it is one of the last few.
func (m *recent[K]) find(k K) (string, bool) {
	for i := range m.keys {
		if m.keys[i] == k && m.texts[i] != "" {
			return m.texts[i], true
		}
	}
	return "", false
}

// add remembers s as the text of k, in place of the oldest.
func (m *recent[K]) add(k K, s string) {
	m.keys[m.next], m.texts[m.next] = k, s
	m.next = (m.next + 1) % len(m.keys)
}

// Render renders res into rd's event and returns it; it is valid until the next Render.
// Its strings stay valid, but some share a block of memory with other events' (times,
// nonces): a reader that keeps one for long keeps a copy (strings.Clone).
func (rd *Renderer) Render(res result.Event, withPayload bool) *Event {
	ev := &rd.ev
	switch x := res.(type) {
	case *result.Observation:
		rd.observation(x, withPayload)
	case *result.Handshake:
		*ev = Event{
			Type: TypeHandshake, Initiator: rd.addr(x.Initiator), Recipient: rd.addr(x.Recipient),
			InitiatorID: rd.id(x.InitiatorID), RecipientID: rd.id(x.RecipientID),
			Outcome: string(x.Outcome), Cause: string(x.Cause), Attempts: x.Attempts,
			WhoareyouRTTNs: nanos(x.WhoareyouRTT), HandshakeRTTNs: nanos(x.HandshakeRTT), TotalNs: nanos(x.Total),
			Evidence: rd.evidenceOf(x.Evidence), EvidenceMore: x.EvidenceMore,
		}
	case *result.Exchange:
		*ev = Event{
			Type: TypeExchange, Initiator: rd.addr(x.Initiator), Recipient: rd.addr(x.Recipient),
			InitiatorID: rd.id(x.InitiatorID), RecipientID: rd.id(x.RecipientID),
			Req: x.Req, Resp: x.Resp, Outcome: string(x.Outcome), Cause: string(x.Cause),
			RTTNs: nanos(x.RTT), Attempts: x.Attempts,
			Evidence: rd.evidenceOf(x.Evidence), EvidenceMore: x.EvidenceMore,
		}
	case *result.Anomaly:
		*ev = Event{
			Type: TypeAnomaly, Anomaly: string(x.Kind), Peer: rd.addr(x.Peer), PeerID: rd.id(x.PeerID),
			OffsetNs: nanos(x.Offset), Detail: x.Detail, Evidence: rd.evidenceOf(x.Evidence),
		}
	case *result.Revision:
		*ev = Event{
			Type: TypeRevision, Revises: x.Revises, RevisesType: x.Of,
			Initiator: rd.addr(x.Initiator), Recipient: rd.addr(x.Recipient),
			Cause: string(x.Cause), Evidence: rd.evidenceOf(x.Evidence),
		}
	default:
		panic(fmt.Sprintf("ndjson: no rendering for %T", res))
	}
	h := res.EventHead()
	ev.Seq, ev.Time = h.Seq, rd.time(h.Time)
	return ev
}

// observation is a record's own event (what `trace --raw` prints), with "disc" when the
// decoder decoded its packet.
func (rd *Renderer) observation(o *result.Observation, withPayload bool) {
	r := &o.Record
	ev := &rd.ev
	*ev = Event{Type: result.TypeOf(r)}
	switch r.Kind {
	case record.Read:
		if r.HasQueueTime {
			rd.obs.queueNs = int64(r.QueueTime)
			ev.QueueNs = &rd.obs.queueNs
		}
	case record.ICMP:
		ev.ICMPType, ev.ICMPCode = Ptr(r.ICMPType), Ptr(r.ICMPCode)
		ev.QuotedSrc, ev.QuotedDst = rd.addr(r.QuotedSrc), rd.addr(r.QuotedDst)
		switch r.Dir {
		case record.DirIn:
			ev.Dir = "in"
		case record.DirOut:
			ev.Dir = "out"
		}
		if r.HasNotified {
			ev.Notified = Ptr(r.Notified)
		}
	case record.Drop:
		ev.Reason, ev.Location = r.Reason, r.Location
		if r.ReasonInferred {
			ev.ReasonInferred = Ptr(true)
		}
	case record.Lost, record.Shed:
		ev.Count = Ptr(r.Count)
		if !r.Since.IsZero() {
			ev.Since = Time(r.Since)
		}
		if r.Kind == record.Shed {
			ev.Undecoded = Ptr(r.Undecoded)
			if r.Untracked > 0 {
				ev.Untracked = Ptr(r.Untracked)
			}
		}
		return
	}
	ev.Src, ev.Dst = rd.addr(r.Src), rd.addr(r.Dst)
	if (r.Kind == record.Datagram || r.Kind == record.Read || r.Len > 0) && !r.FailedUnseen() {
		rd.obs.len = r.Len
		ev.Len = &rd.obs.len
	}
	if r.HasProc {
		rd.obs.pid, rd.obs.tid = r.PID, r.TID
		ev.PID, ev.TID, ev.Comm = &rd.obs.pid, &rd.obs.tid, r.Comm
	}
	ev.Cgroup, ev.NetNS, ev.Ifindex, ev.Cookie = r.Cgroup, r.NetNS, r.Ifindex, r.Cookie
	if r.HasSendRet {
		rd.obs.ret = r.SendRet
		ev.Ret = &rd.obs.ret
	}
	if withPayload && len(r.Payload) > 0 {
		ev.Payload = hex.EncodeToString(r.Payload)
	}
	if o.Packet != nil {
		// The time counts only for a packet expired at one of them: a read's packet time is
		// its datagram's receive, the receive's the send.
		p, t := o.Packet, o.PacketTime
		if p != rd.discOf || !t.Equal(rd.discAt) && (p.ExpiredAt(t) || p.ExpiredAt(rd.discAt)) {
			rd.disc, rd.discOf, rd.discAt = rd.discFor(o.Packet, o.PacketTime), o.Packet, o.PacketTime
			rd.disc.encoded, rd.discJSON.valid = &rd.discJSON, false
		}
		ev.Disc = &rd.disc
	}
}

// discFor is the "disc" object of a decoded packet received at t.
func (rd *Renderer) discFor(p *packet.Packet, t time.Time) Disc {
	d := Disc{Proto: p.Proto, Kind: p.Kind}
	if p.Msg != nil {
		d.Msg = p.Msg.Name()
		if id := p.Msg.RequestID(); len(id) > 0 {
			d.ReqID = rd.hex(id)
		}
	}
	if len(p.Nonce) > 0 {
		d.Nonce = rd.hex(p.Nonce)
	}
	if p.HasSrcID {
		d.SrcID = rd.id(&p.SrcID)
	}
	if p.HasDstID {
		d.DstID = rd.id(&p.DstID)
	}
	if p.HasENRSeq {
		d.ENRSeq = Ptr(p.ENRSeq)
	}
	if p.HasNodes {
		d.Nodes = Ptr(p.Nodes)
	}
	d.From, d.To = Addr(p.From), Addr(p.To)
	if p.Proto == packet.ProtoV4 && !p.Expiration.IsZero() && p.Expiration.Unix() <= maxRFC3339Unix {
		d.Expiration = p.Expiration.UTC().Format(time.RFC3339)
	}
	if len(p.Target) == len(v4wire.Pubkey{}) {
		target := v4wire.Pubkey(p.Target).ID()
		d.Target = rd.hex(target[:])
	}
	switch m := p.Msg.(type) {
	case *v5wire.Findnode:
		d.Distances = m.Distances
	case *v5wire.TalkRequest:
		d.TalkProtocol = printableOrHex(m.Protocol)
	}
	switch {
	case p.Err != nil:
		d.Error = p.Err.Error()
	case p.ExpirationNegative():
		d.Error = "expired on arrival: the expiration is 2^63 or more, negative as a signed Unix time; go-ethereum ignores the packet"
	case p.ExpiredAt(t):
		d.Error = fmt.Sprintf("expired on arrival: expiration %s is %s before the capture time; the receiver ignores it",
			p.Expiration.UTC().Format(time.RFC3339), t.Sub(p.Expiration).Round(time.Millisecond))
	}
	return d
}

// maxRFC3339Unix is the last second RFC 3339 can write (9999-12-31T23:59:59Z): discv4
// expirations past it (the devp2p suite sends 2^64-1) are left out of disc.expiration
// and reported through disc.error instead.
const maxRFC3339Unix = 253402300799

// printableOrHex returns s when it is printable ASCII, else its bytes as 0x-prefixed hex,
// so that a binary TALKREQ protocol name survives JSON unchanged.
func printableOrHex(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return "0x" + hex.EncodeToString([]byte(s))
		}
	}
	return s
}

// evidenceOf renders list into rd's evidence slice, reused from one event to the next.
func (rd *Renderer) evidenceOf(list []result.Evidence) []Evidence {
	if len(list) == 0 {
		return nil
	}
	rd.evidence = rd.evidence[:0]
	for _, e := range list {
		rd.evidence = append(rd.evidence, Evidence{Seq: e.Seq, Time: rd.time(e.Time), Type: e.Observed, Detail: e.Detail})
	}
	return rd.evidence
}

// addr is Addr(a), remembered.
func (rd *Renderer) addr(a netip.AddrPort) string { return rd.addrs.text(a, Addr) }

// id is the node ID as hex, remembered; "" for none.
func (rd *Renderer) id(id *enode.ID) string {
	if id == nil {
		return ""
	}
	// Not from the text blocks: node IDs are what readers keep (the report's peer table),
	// and a kept string keeps its whole block.
	if s, ok := rd.ids.find(*id); ok {
		return s
	}
	s := idHex(*id)
	rd.ids.add(*id, s)
	return s
}

// hex is b as lower-case hex, cut from the renderer's block of text when short (nonces,
// request IDs, FINDNODE targets: one or two a packet).
func (rd *Renderer) hex(b []byte) string {
	var buf [2 * len(enode.ID{})]byte
	if 2*len(b) > len(buf) {
		return hex.EncodeToString(b)
	}
	return rd.text(hex.AppendEncode(buf[:0], b))
}

// time is Time(t), formatting the date and clock only when the second changes.
func (rd *Renderer) time(t time.Time) string {
	t = t.UTC()
	if sec := t.Unix(); sec != rd.second || rd.clock == nil {
		rd.second, rd.clock = sec, t.AppendFormat(rd.clock[:0], "2006-01-02T15:04:05.")
	}
	var b [len("2006-01-02T15:04:05.000000000Z") + 8]byte // room for years past 9999
	out := append(b[:0], rd.clock...)
	ns := t.Nanosecond()
	var frac [9]byte
	for i := len(frac) - 1; i >= 0; i-- {
		frac[i] = byte('0' + ns%10)
		ns /= 10
	}
	return rd.text(append(append(out, frac[:]...), 'Z'))
}

// textBlockSize is the size of the blocks Renderer.text cuts strings from.
const textBlockSize = 8 << 10

// text returns b as a string cut from the current block of text. A block is never
// written twice, so the string stays valid; a kept string keeps at most one block alive.
func (rd *Renderer) text(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > len(rd.texts) {
		rd.texts = make([]byte, textBlockSize)
	}
	n := copy(rd.texts, b)
	s := unsafe.String(&rd.texts[0], n)
	rd.texts = rd.texts[n:]
	return s
}

func nanos(d *time.Duration) *int64 {
	if d == nil {
		return nil
	}
	return Ptr(int64(*d))
}

// idHex is id as enode.ID.String writes it (lower-case hex), without fmt, in one
// allocation.
func idHex(id enode.ID) string {
	var b [2 * len(enode.ID{})]byte
	hex.Encode(b[:], id[:])
	return string(b[:])
}
