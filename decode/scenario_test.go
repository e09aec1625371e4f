package decode

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common/mclock"
	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/discv4"
	"github.com/discotrace/discotrace/decode/discv5"
	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// Synthetic scenarios: real discv4 and discv5 bytes from go-ethereum's own encoders,
// fed through the Decoder as a capture or the tracer would, one story per test.

// scT0 is a whole second, so that discv4 expirations (whole seconds) are exact.
var scT0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// scNet is a simulated capture: a clock, a Decoder and the events it emitted.
type scNet struct {
	t      *testing.T
	seq    uint64 // makes each PING unique: geth's are, by their expiration
	now    time.Time
	dec    *Decoder
	events []*ndjson.Event
}

func newScNet(t *testing.T, cfg Config) *scNet {
	return &scNet{t: t, now: scT0, dec: NewDecoder(cfg)}
}

func (s *scNet) after(d time.Duration) { s.now = s.now.Add(d) }

func (s *scNet) emit(ev result.Event) { s.events = append(s.events, ndjson.FromResult(ev, false)) }

func (s *scNet) feed(r *record.Record) {
	r.Time = s.now
	s.dec.Feed(r, s.emit)
}

func (s *scNet) flush() { s.dec.Flush(s.emit) }

func (s *scNet) ofType(typ string) []*ndjson.Event {
	var out []*ndjson.Event
	for _, ev := range s.events {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// untracked sums the shed events' untracked counts.
func (s *scNet) untracked() int {
	n := 0
	for _, ev := range s.ofType(ndjson.TypeShed) {
		if ev.Untracked != nil {
			n += int(*ev.Untracked)
		}
	}
	return n
}

// only returns the one event of typ, failing the test when there is not exactly one.
func (s *scNet) only(typ string) *ndjson.Event {
	s.t.Helper()
	evs := s.ofType(typ)
	if len(evs) != 1 {
		s.t.Fatalf("%d %s events, want 1:\n%s", len(evs), typ, s.dump())
	}
	return evs[0]
}

func (s *scNet) dump() string {
	var b strings.Builder
	for _, ev := range s.events {
		j, _ := json.Marshal(ev)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// datagram is a record of payload from one node to another, as a pcap shows it.
func scDatagram(from, to netip.AddrPort, payload []byte, dir record.Direction) *record.Record {
	return &record.Record{Kind: record.Datagram, Dir: dir, Src: from, Dst: to, Len: len(payload), Payload: payload}
}

// v4 sends a discv4 packet and returns its bytes.
func (s *scNet) v4(from, to *disctest.Node, p v4wire.Packet, dir record.Direction) []byte {
	s.t.Helper()
	b, _, err := v4wire.Encode(from.Key, p)
	if err != nil {
		s.t.Fatal(err)
	}
	s.feed(scDatagram(from.Addr, to.Addr, bytes.Clone(b), dir))
	return b
}

func (s *scNet) exp() uint64 { return uint64(s.now.Add(20 * time.Second).Unix()) }

func (s *scNet) ping(from, to *disctest.Node, dir record.Direction) []byte {
	s.seq++
	return s.v4(from, to, &v4wire.Ping{Version: 4, From: v4wire.NewEndpoint(from.Addr, 0), To: v4wire.NewEndpoint(to.Addr, 0), Expiration: s.exp(), ENRSeq: s.seq}, dir)
}

// tick moves record time on with a datagram no tracker cares about.
func (s *scNet) tick(d time.Duration) {
	s.after(d)
	s.feed(scDatagram(netip.MustParseAddrPort("10.9.9.9:9"), netip.MustParseAddrPort("10.9.9.8:9"), []byte("tick"), record.DirUnknown))
}

func (s *scNet) pong(from, to *disctest.Node, ping []byte, dir record.Direction) []byte {
	return s.v4(from, to, &v4wire.Pong{To: v4wire.NewEndpoint(to.Addr, 0), ReplyTok: ping[:32], Expiration: s.exp()}, dir)
}

// v5 sends a discv5 packet through the sender's codec, has the receiver's codec decode
// it (so both move through the real protocol states), and returns what the receiver
// decoded.
func (s *scNet) v5(from, to *disctest.Node, p v5wire.Packet, challenge *v5wire.Whoareyou) v5wire.Packet {
	s.t.Helper()
	b, _, err := from.Codec.Encode(to.ID(), to.Addr.String(), p, challenge)
	if err != nil {
		s.t.Fatal(err)
	}
	b = bytes.Clone(b)
	s.feed(scDatagram(from.Addr, to.Addr, bytes.Clone(b), record.DirUnknown))
	_, _, got, err := to.Codec.Decode(b, from.Addr.String())
	if err != nil {
		s.t.Fatalf("go-ethereum could not decode its own %s: %v", p.Name(), err)
	}
	return got
}

// challenge runs a's random first packet and b's WHOAREYOU, returning the challenge a
// answers with a HANDSHAKE.
func (s *scNet) challenge(a, b *disctest.Node, req v5wire.Packet) *v5wire.Whoareyou {
	s.t.Helper()
	nonce := s.randomPacket(a, b, req)
	s.after(time.Millisecond)
	w, ok := s.v5(b, a, &v5wire.Whoareyou{Nonce: nonce, IDNonce: [16]byte{7}}, nil).(*v5wire.Whoareyou)
	if !ok {
		s.t.Fatal("the challenge did not decode as WHOAREYOU")
	}
	w.Node = b.LN.Node()
	return w
}

// randomPacket sends a's first packet to b, random bytes since they have no session, and
// returns its nonce, which b's WHOAREYOU echoes.
func (s *scNet) randomPacket(a, b *disctest.Node, req v5wire.Packet) v5wire.Nonce {
	s.t.Helper()
	u, ok := s.v5(a, b, req, nil).(*v5wire.Unknown)
	if !ok {
		s.t.Fatal("the first packet was not random")
	}
	return u.Nonce
}

// unseenChallenge is b's WHOAREYOU for a's packet with nonce, which the capture misses:
// a's codec takes it, the decoder never sees it.
func (s *scNet) unseenChallenge(b, a *disctest.Node, nonce v5wire.Nonce) *v5wire.Whoareyou {
	s.t.Helper()
	enc, _, err := b.Codec.Encode(a.ID(), a.Addr.String(), &v5wire.Whoareyou{Nonce: nonce, IDNonce: [16]byte{7}, Node: a.LN.Node()}, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	_, _, p, err := a.Codec.Decode(bytes.Clone(enc), b.Addr.String())
	w, ok := p.(*v5wire.Whoareyou)
	if err != nil || !ok {
		s.t.Fatalf("the challenge did not decode as WHOAREYOU: %v", err)
	}
	w.Node = b.LN.Node()
	return w
}

// droppedChallenge is b's WHOAREYOU for a's packet with nonce, 100 µs after it, which the
// capture sees sent and then dropped (a never gets it). It returns the challenge's bytes,
// which b repeats as they are.
func (s *scNet) droppedChallenge(b, a *disctest.Node, nonce v5wire.Nonce) []byte {
	s.t.Helper()
	s.after(100 * time.Microsecond)
	w, _, err := b.Codec.Encode(a.ID(), a.Addr.String(), &v5wire.Whoareyou{Nonce: nonce, IDNonce: [16]byte{7}}, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	w = bytes.Clone(w)
	s.feed(scDatagram(b.Addr, a.Addr, bytes.Clone(w), record.DirUnknown))
	s.after(5 * time.Microsecond)
	s.feed(&record.Record{Kind: record.Drop, Src: b.Addr, Dst: a.Addr, Len: len(w), Reason: "NETFILTER_DROP"})
	return w
}

// pingHandshake runs a's PING to b through a whole handshake, as go-ethereum does it:
// the random packet, b's WHOAREYOU, a's HANDSHAKE with the PING 1 ms later, and b's
// PONG pongAfter after that. It returns the PING.
func (s *scNet) pingHandshake(a, b *disctest.Node, pongAfter time.Duration) *v5wire.Ping {
	s.t.Helper()
	ping := &v5wire.Ping{ReqID: []byte{1, 2, 3, 4, 5, 6, 7, 8}, ENRSeq: 1}
	w := s.challenge(a, b, ping)
	s.after(time.Millisecond)
	s.v5(a, b, ping, w)
	s.after(pongAfter)
	s.v5pong(b, a, ping.ReqID)
	return ping
}

// v5pong answers a request with reqID from to, telling it where from saw it.
func (s *scNet) v5pong(from, to *disctest.Node, reqID []byte) {
	s.v5(from, to, &v5wire.Pong{ReqID: reqID, ENRSeq: 1, ToIP: net.IP(to.Addr.Addr().AsSlice()), ToPort: to.Addr.Port()}, nil)
}

func icmpRec(from, to netip.AddrPort, typ, code uint8, quoted *record.Record) *record.Record {
	return &record.Record{
		Kind: record.ICMP, Src: netip.AddrPortFrom(from.Addr(), 0), Dst: netip.AddrPortFrom(to.Addr(), 0),
		ICMPType: typ, ICMPCode: code, QuotedSrc: quoted.Src, QuotedDst: quoted.Dst,
		Len: quoted.Len, Payload: quoted.Payload,
	}
}

func checkFailed(t *testing.T, ev *ndjson.Event, cause string, evidence ...string) {
	t.Helper()
	if ev.Outcome != string(result.Failed) || ev.Cause != cause {
		t.Fatalf("outcome %q cause %q, want failed %q: %+v", ev.Outcome, ev.Cause, cause, ev)
	}
	for _, want := range evidence {
		found := false
		for _, e := range ev.Evidence {
			if strings.Contains(e.Type+" "+e.Detail, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no evidence %q in %+v", want, ev.Evidence)
		}
	}
}

func TestScenarioPingAnswered(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	ping := s.ping(a, b, record.DirUnknown)
	s.after(3 * time.Millisecond)
	s.pong(b, a, ping, record.DirUnknown)
	s.flush()
	ex := s.only(ndjson.TypeExchange)
	if ex.Outcome != string(result.Answered) || ex.Req != "PING/v4" || ex.Resp != "PONG/v4" || *ex.RTTNs != int64(3*time.Millisecond) {
		t.Fatalf("exchange %+v", ex)
	}
	if ex.InitiatorID != a.ID().String() || ex.RecipientID != b.ID().String() || ex.Initiator != "10.0.0.1:30303" {
		t.Fatalf("ids %+v", ex)
	}
	if len(s.ofType(ndjson.TypePacket)) != 2 {
		t.Fatalf("want 2 packets:\n%s", s.dump())
	}
}

// A peer that never answers: the timeout fires on record time, before the next record.
func TestScenarioNoResponseTimesOutOnRecordTime(t *testing.T) {
	s := newScNet(t, Config{})
	a, b, c := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303"), disctest.NewNode(t, disctest.KeyC, "10.0.0.3:30303")
	s.ping(a, b, record.DirUnknown)
	s.after(499 * time.Millisecond)
	s.ping(a, c, record.DirUnknown) // still within b's 500 ms
	if n := len(s.ofType(ndjson.TypeExchange)); n != 0 {
		t.Fatalf("%d exchanges before the timeout", n)
	}
	s.after(2 * time.Millisecond)
	s.ping(c, a, record.DirUnknown)
	if got := s.events[len(s.events)-2]; got.Type != ndjson.TypeExchange {
		t.Fatalf("the timeout should come before the record that passes it:\n%s", s.dump())
	}
	checkFailed(t, s.only(ndjson.TypeExchange), string(result.NoResponse), "PING/v4 to 10.0.0.2:30303")
	// At the end of input, what has not timed out yet is open.
	s.flush()
	exs := s.ofType(ndjson.TypeExchange)
	if len(exs) != 3 || exs[1].Outcome != string(result.Open) || exs[2].Outcome != string(result.Open) || exs[1].Cause != "" {
		t.Fatalf("after flush:\n%s", s.dump())
	}
}

// A peer behind a REJECT rule: the ICMP error quoting our PING is the cause.
func TestScenarioPeerBehindRejectRule(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	ping := s.ping(a, b, record.DirOut)
	req := scDatagram(a.Addr, b.Addr, ping, record.DirOut)
	s.after(100 * time.Microsecond)
	icmp := icmpRec(b.Addr, a.Addr, 3, 3, req)
	icmp.Dir, icmp.HasNotified = record.DirIn, true // the tracer: received, and the unconnected socket not told
	s.feed(icmp)
	s.after(time.Second)
	s.flush()
	ex := s.only(ndjson.TypeExchange)
	checkFailed(t, ex, string(result.ICMPUnreachable), "send PING/v4 to 10.0.0.2:30303",
		"icmp 3/3 port unreachable from 10.0.0.2 quoting 10.0.0.1:30303 > 10.0.0.2:30303; the socket was not told: the application only sees a timeout")
	if ex.RTTNs != nil || ex.Resp != "" {
		t.Fatalf("a failed request has no rtt or response: %+v", ex)
	}
}

// Our firewall rejects the answer: the PONG is on the wire, but the application never
// gets it.
func TestScenarioAnswerRejectedByLocalFirewall(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	ping := s.ping(a, b, record.DirUnknown)
	s.after(time.Millisecond)
	pong := s.pong(b, a, ping, record.DirUnknown)
	s.after(20 * time.Microsecond)
	s.feed(icmpRec(a.Addr, b.Addr, 3, 3, scDatagram(b.Addr, a.Addr, pong, record.DirUnknown)))
	s.after(time.Second)
	s.feed(scDatagram(b.Addr, a.Addr, []byte("later"), record.DirUnknown))
	ex := s.only(ndjson.TypeExchange)
	checkFailed(t, ex, string(result.ICMPUnreachable), "quoting 10.0.0.2:30303 > 10.0.0.1:30303")
	if ex.Resp != "PONG/v4" || *ex.RTTNs != int64(time.Millisecond) {
		t.Fatalf("the answer seen on the wire should still be reported: %+v", ex)
	}
}

// The answer reached the host and the kernel dropped it: full receive buffer.
func TestScenarioFullReceiveBuffer(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s.ping(a, b, record.DirOut)
	s.after(2 * time.Millisecond)
	s.feed(&record.Record{Kind: record.Drop, Src: b.Addr, Dst: a.Addr, Len: 154, Reason: "SOCKET_RCVBUFF", Location: "__udp_enqueue_schedule_skb"})
	s.flush()
	checkFailed(t, s.only(ndjson.TypeExchange), string(result.KernelDrop), "drop SOCKET_RCVBUFF in __udp_enqueue_schedule_skb")
}

// A fragmented answer loses a fragment: the reassembly drop has no ports.
func TestScenarioLostFragment(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s.ping(a, b, record.DirUnknown)
	s.after(30 * time.Millisecond)
	s.feed(&record.Record{Kind: record.Drop, Src: netip.AddrPortFrom(b.Addr.Addr(), 0), Dst: netip.AddrPortFrom(a.Addr.Addr(), 0), Reason: record.ReasonFragReasmTimeout})
	s.after(time.Second)
	s.flush()
	checkFailed(t, s.only(ndjson.TypeExchange), string(result.FragmentLoss), "FRAG_REASM_TIMEOUT")
}

// The path needs a smaller packet: ICMP fragmentation needed quoting the request.
func TestScenarioFragmentationNeeded(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	ping := s.ping(a, b, record.DirUnknown)
	s.feed(icmpRec(netip.MustParseAddrPort("10.0.0.254:0"), a.Addr, 3, 4, scDatagram(a.Addr, b.Addr, ping, record.DirUnknown)))
	s.flush()
	checkFailed(t, s.only(ndjson.TypeExchange), string(result.FragmentLoss), "icmp 3/4 fragmentation needed from 10.0.0.254")
}

// The local application read the request and never answered (tracer only).
func TestScenarioApplicationReadButNeverAnswered(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	ping := s.ping(b, a, record.DirIn)
	s.after(300 * time.Microsecond)
	s.feed(&record.Record{Kind: record.Read, Src: b.Addr, Dst: a.Addr, Len: len(ping), HasProc: true, PID: 4242, Comm: "geth", HasQueueTime: true, QueueTime: 250 * time.Microsecond})
	s.tick(time.Second)
	read := s.only(ndjson.TypeRead)
	if read.Disc == nil || read.Disc.Kind != discv4.KindPing {
		t.Fatalf("the read should carry the decoded packet it read: %+v", read)
	}
	checkFailed(t, s.only(ndjson.TypeExchange), string(result.AppDrop), "read read by pid 4242 (geth) after 250µs")
}

func TestScenarioFindnodeAnsweredByTwoNeighbors(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	c := disctest.NewNode(t, disctest.KeyC, "10.0.0.3:30303")
	s.v4(a, b, &v4wire.Findnode{Target: v4wire.EncodePubkey(&c.Key.PublicKey), Expiration: s.exp()}, record.DirUnknown)
	s.after(2 * time.Millisecond)
	nb := v4wire.Node{IP: net.IP{10, 0, 0, 3}, UDP: 30303, TCP: 30303, ID: v4wire.EncodePubkey(&c.Key.PublicKey)}
	s.v4(b, a, &v4wire.Neighbors{Nodes: []v4wire.Node{nb, nb}, Expiration: s.exp()}, record.DirUnknown)
	s.after(time.Millisecond)
	s.v4(b, a, &v4wire.Neighbors{Nodes: []v4wire.Node{nb}, Expiration: s.exp()}, record.DirUnknown)
	s.flush()
	ex := s.only(ndjson.TypeExchange)
	if ex.Outcome != string(result.Answered) || ex.Req != "FINDNODE/v4" || ex.Resp != "NEIGHBORS/v4" || *ex.RTTNs != int64(2*time.Millisecond) {
		t.Fatalf("exchange %+v", ex)
	}
	// The NEIGHBORS entries teach the decoder c's ID at its address.
	if id, ok := s.dec.idAt(c.Addr); !ok || id != c.ID() {
		t.Fatalf("c's ID not learned from NEIGHBORS")
	}
}

func TestScenarioENRRequest(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	req := s.v4(a, b, &v4wire.ENRRequest{Expiration: s.exp()}, record.DirUnknown)
	s.after(400 * time.Microsecond)
	s.v4(b, a, &v4wire.ENRResponse{ReplyTok: req[:32], Record: *b.LN.Node().Record()}, record.DirUnknown)
	s.flush()
	ex := s.only(ndjson.TypeExchange)
	if ex.Outcome != string(result.Answered) || ex.Resp != "ENRRESPONSE/v4" || *ex.RTTNs != int64(400*time.Microsecond) {
		t.Fatalf("exchange %+v", ex)
	}
}

// A full discv5 handshake with go-ethereum's codec: random packet, WHOAREYOU (resent
// once, identically), HANDSHAKE with PING, PONG.
func TestScenarioV5HandshakeEstablished(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{b.Key}}})
	ping := &v5wire.Ping{ReqID: []byte{1, 2, 3, 4, 5, 6, 7, 8}, ENRSeq: a.LN.Seq()}
	w := s.challenge(a, b, ping)
	// a sends a second request before answering; b repeats its challenge, byte for byte.
	s.after(time.Millisecond)
	s.v5(a, b, &v5wire.Findnode{ReqID: []byte{9}, Distances: []uint{256}}, nil)
	s.after(time.Millisecond)
	s.v5(b, a, w, nil)
	s.after(time.Millisecond)
	s.v5(a, b, ping, w)
	s.after(500 * time.Microsecond)
	s.v5(b, a, &v5wire.Pong{ReqID: ping.ReqID, ENRSeq: b.LN.Seq(), ToIP: net.IP{10, 0, 0, 1}, ToPort: 30303}, nil)
	s.after(time.Second)
	s.flush()

	hs := s.only(ndjson.TypeHandshake)
	if hs.Outcome != string(result.Established) || hs.Attempts != 2 || hs.Cause != "" {
		t.Fatalf("handshake %+v\n%s", hs, s.dump())
	}
	if hs.Initiator != "10.0.0.1:30303" || hs.Recipient != "10.0.0.2:30303" || hs.InitiatorID != a.ID().String() || hs.RecipientID != b.ID().String() {
		t.Fatalf("who: %+v", hs)
	}
	if *hs.WhoareyouRTTNs != int64(time.Millisecond) || *hs.HandshakeRTTNs != int64(500*time.Microsecond) || *hs.TotalNs != int64(4500*time.Microsecond) {
		t.Fatalf("rtts: whoareyou %d handshake %d total %d", *hs.WhoareyouRTTNs, *hs.HandshakeRTTNs, *hs.TotalNs)
	}
	ex := s.only(ndjson.TypeExchange)
	if ex.Req != "PING/v5" || ex.Resp != "PONG/v5" || ex.Outcome != string(result.Answered) || *ex.RTTNs != int64(500*time.Microsecond) {
		t.Fatalf("exchange %+v", ex)
	}
	if hs.Time != ndjson.Time(scT0) {
		t.Fatalf("the handshake starts with the random packet, at %s; got %s", ndjson.Time(scT0), hs.Time)
	}
}

// The recipient challenges the HANDSHAKE again: rejected; the next attempt succeeds.
func TestScenarioV5HandshakeRejected(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	// Only b's ID is given: its inbound headers unmask, and a's ID comes from src-id.
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{b.ID()}}})
	ping := &v5wire.Ping{ReqID: []byte{1}, ENRSeq: 1}
	w := s.challenge(a, b, ping)
	s.after(time.Millisecond)
	// b's codec forgets the challenge (as a restarted node does) and challenges the
	// HANDSHAKE itself.
	b.Codec = v5wire.NewCodec(b.LN, b.Key, mclock.System{}, nil)
	hsPkt, hsNonce, err := a.Codec.Encode(b.ID(), b.Addr.String(), ping, w)
	if err != nil {
		t.Fatal(err)
	}
	s.feed(scDatagram(a.Addr, b.Addr, bytes.Clone(hsPkt), record.DirUnknown))
	s.after(time.Millisecond)
	w2, ok := s.v5(b, a, &v5wire.Whoareyou{Nonce: hsNonce, IDNonce: [16]byte{8}}, nil).(*v5wire.Whoareyou)
	if !ok {
		t.Fatal("second challenge")
	}
	w2.Node = b.LN.Node()
	s.after(time.Millisecond)
	s.v5(a, b, ping, w2)
	s.after(time.Millisecond)
	s.v5pong(b, a, ping.ReqID)
	s.flush()

	hss := s.ofType(ndjson.TypeHandshake)
	if len(hss) != 2 {
		t.Fatalf("want 2 handshake attempts:\n%s", s.dump())
	}
	checkFailed(t, hss[0], string(result.Rejected), "a new WHOAREYOU answered the HANDSHAKE")
	if hss[1].Outcome != string(result.Established) || *hss[1].WhoareyouRTTNs != int64(time.Millisecond) || hss[1].Time != ndjson.Time(scT0.Add(2*time.Millisecond)) {
		t.Fatalf("second attempt starts with the rejected HANDSHAKE: %+v", hss[1])
	}
	// The PING, which no key here opens, rode in both HANDSHAKEs: one request, tried
	// twice, answered by the PONG.
	if ex := s.only(ndjson.TypeExchange); ex.Req != undecryptedName || ex.Outcome != string(result.Answered) || ex.Attempts != 2 || *ex.RTTNs != int64(time.Millisecond) {
		t.Fatalf("exchange %+v, want the PING in both HANDSHAKEs answered once", ex)
	}
}

// A random first packet to a peer whose port is closed.
func TestScenarioV5FirstPacketUnreachable(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	b2 := disctest.NewNode(t, disctest.KeyC, "10.0.0.3:30303")
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{b.ID()}}})
	s.dec.v5.AddKnownID(b2.ID()) // as if learned from a NEIGHBORS
	enc, _, err := a.Codec.Encode(b.ID(), b.Addr.String(), &v5wire.Ping{ReqID: []byte{1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := scDatagram(a.Addr, b.Addr, bytes.Clone(enc), record.DirUnknown)
	s.feed(req)
	s.after(50 * time.Microsecond)
	s.feed(icmpRec(b.Addr, a.Addr, 3, 3, req))
	// And one to a peer that stays silent.
	enc, _, err = a.Codec.Encode(b2.ID(), b2.Addr.String(), &v5wire.Ping{ReqID: []byte{2}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.feed(scDatagram(a.Addr, b2.Addr, bytes.Clone(enc), record.DirUnknown))
	s.tick(time.Second)
	hss := s.ofType(ndjson.TypeHandshake)
	if len(hss) != 2 {
		t.Fatalf("want 2 failed handshakes:\n%s", s.dump())
	}
	checkFailed(t, hss[0], string(result.ICMPUnreachable), "icmp 3/3 port unreachable from 10.0.0.2")
	checkFailed(t, hss[1], string(result.NoResponse), "never answered the first MESSAGE")
	if hss[0].RecipientID != b.ID().String() || hss[0].Attempts != 0 || hss[0].WhoareyouRTTNs != nil {
		t.Fatalf("unchallenged attempt: %+v", hss[0])
	}
	// With b's ID given, the ICMP error's direction is known: b's host sent it.
	if icmp := s.only(ndjson.TypeICMP); icmp.Dir != "out" {
		t.Fatalf("icmp dir %q, want out", icmp.Dir)
	}
}

// The initiator leaves a challenge unanswered and starts again 700 ms later (its call
// timed out): the first attempt is reported failed, the second on its own (found by the
// e2e random-loss test, where the first attempt had no event at all).
func TestScenarioV5ChallengeUnansweredThenNewAttempt(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{LossReportDelay: 1100 * time.Millisecond, Identity: Identity{Keys: []*ecdsa.PrivateKey{a.Key, b.Key}}})
	s.challenge(a, b, &v5wire.Ping{ReqID: []byte{1}})
	s.after(709 * time.Millisecond)
	s.pingHandshake(a, b, 300*time.Microsecond)
	s.tick(3 * time.Second)
	hs := s.ofType(ndjson.TypeHandshake)
	if len(hs) != 2 {
		t.Fatalf("%d handshakes, want 2:\n%s", len(hs), s.dump())
	}
	if hs[0].Time > hs[1].Time {
		hs[0], hs[1] = hs[1], hs[0]
	}
	if hs[0].Outcome != string(result.Failed) || hs[1].Outcome != string(result.Established) {
		t.Fatalf("handshakes %s, %s; want failed, established:\n%s", hs[0].Outcome, hs[1].Outcome, s.dump())
	}
}

// The challenge to A's first packet is dropped; 700 ms later A's next call sends a new
// random packet, and B, still holding its challenge, repeats it byte for byte: A ignores
// it (its nonce is the old packet's). Two attempts, each failed on its own: the first by
// the drop, the second rejected by the stale challenge, never merged (issue 10, item 2).
func TestScenarioV5StaleChallengeAfterDrop(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{LossReportDelay: 1100 * time.Millisecond, Identity: Identity{Keys: []*ecdsa.PrivateKey{a.Key, b.Key}}})
	nonce := s.randomPacket(a, b, &v5wire.Ping{ReqID: []byte{1}})
	w := s.droppedChallenge(b, a, nonce)
	s.after(709 * time.Millisecond)
	s.randomPacket(a, b, &v5wire.Ping{ReqID: []byte{2}})
	s.after(100 * time.Microsecond)
	s.feed(scDatagram(b.Addr, a.Addr, bytes.Clone(w), record.DirUnknown))
	s.tick(4 * time.Second)
	hs := s.ofType(ndjson.TypeHandshake)
	if len(hs) != 2 {
		t.Fatalf("%d handshakes, want 2:\n%s", len(hs), s.dump())
	}
	if hs[0].Time > hs[1].Time {
		hs[0], hs[1] = hs[1], hs[0]
	}
	checkFailed(t, hs[0], string(result.KernelDrop), "NETFILTER_DROP")
	checkFailed(t, hs[1], string(result.Rejected), "repeated its challenge to an earlier packet")
}

func TestScenarioV5InitiatorNeverAnswersChallenge(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{HandshakeTimeout: 300 * time.Millisecond, Identity: Identity{IDs: []enode.ID{b.ID()}}})
	s.challenge(a, b, &v5wire.Ping{ReqID: []byte{1}})
	// Decided a response timeout (700 ms) after the challenge expired: a HANDSHAKE in
	// between would be a late one.
	s.after(1001 * time.Millisecond)
	s.feed(scDatagram(a.Addr, b.Addr, []byte("not discovery"), record.DirUnknown))
	hs := s.only(ndjson.TypeHandshake)
	checkFailed(t, hs, string(result.NoResponse), "the initiator 10.0.0.1:30303 never answered the challenge")
	if hs.Attempts != 1 || *hs.WhoareyouRTTNs != int64(time.Millisecond) {
		t.Fatalf("%+v", hs)
	}
	unknown := s.ofType(ndjson.TypePacket)[2]
	if unknown.Disc.Proto != packet.ProtoUnknown || !strings.Contains(unknown.Disc.Error, "not a discv4 or discv5 packet") {
		t.Fatalf("unknown datagram: %+v", unknown.Disc)
	}
}

// A peer whose clock is 40 s behind: its PINGs arrive already expired.
func TestScenarioClockSkew(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	for i := 0; i < 4; i++ {
		behind := uint64(s.now.Add(-40 * time.Second).Add(20 * time.Second).Unix())
		s.v4(b, a, &v4wire.Ping{Version: 4, From: v4wire.NewEndpoint(b.Addr, 0), To: v4wire.NewEndpoint(a.Addr, 0), Expiration: behind}, record.DirIn)
		s.after(time.Second)
	}
	an := s.only(ndjson.TypeAnomaly)
	if an.Anomaly != string(result.ClockSkew) || an.PeerID != b.ID().String() || an.Peer != "10.0.0.2:30303" {
		t.Fatalf("anomaly %+v", an)
	}
	if *an.OffsetNs != int64(-39500*time.Millisecond) {
		t.Fatalf("offset %v, want -39.5s (whole-second expirations, centred)", time.Duration(*an.OffsetNs))
	}
	if an.Time != ndjson.Time(scT0.Add(2*time.Second)) {
		t.Fatalf("reported at %s, want at the third packet", an.Time)
	}
	if p := s.ofType(ndjson.TypeRecv)[0]; !strings.HasPrefix(p.Disc.Error, "expired on arrival") {
		t.Fatalf("disc.error %q", p.Disc.Error)
	}
	// One deliberately expired packet from another peer is not a skewed clock, nor is
	// one far-future packet among a correct clock's: the median of three ignores it.
	c := disctest.NewNode(t, disctest.KeyC, "10.0.0.3:30303")
	s.v4(c, a, &v4wire.Ping{Version: 4, Expiration: 1}, record.DirIn)
	s.v4(c, a, &v4wire.Ping{Version: 4, Expiration: s.exp()}, record.DirIn)
	s.v4(c, a, &v4wire.Ping{Version: 4, Expiration: s.exp() + 3600}, record.DirIn)
	s.v4(c, a, &v4wire.Ping{Version: 4, Expiration: s.exp() + 1}, record.DirIn)
	if len(s.ofType(ndjson.TypeAnomaly)) != 1 {
		t.Fatalf("an outlier reported as skew:\n%s", s.dump())
	}
	// Two samples each way is no majority, behind or ahead; a third is.
	for j, off := range []int64{-40, 40} {
		d := disctest.NewNode(t, []string{"5555555555555555555555555555555555555555555555555555555555555555",
			"6666666666666666666666666666666666666666666666666666666666666666"}[j], "10.0.0.4:30303")
		for i, skewed := range []bool{false, false, true, true, true} {
			exp := s.exp()
			if skewed {
				exp = uint64(int64(exp) + off)
			}
			s.v4(d, a, &v4wire.Ping{Version: 4, Expiration: exp}, record.DirIn)
			if n := len(s.ofType(ndjson.TypeAnomaly)); n != 1+j+i/4 {
				t.Fatalf("offset %ds, after %d samples: %d anomalies\n%s", off, i+1, n, s.dump())
			}
		}
	}
}

// Besu sets discv4 expirations 60 s ahead, not geth's 20 s: with the default window its
// correct clock reads 40 s ahead; told the window, it reads right.
func TestScenarioClockSkewExpirationWindow(t *testing.T) {
	for _, c := range []struct {
		window time.Duration
		skew   bool
	}{{0, true}, {60 * time.Second, false}} {
		s := newScNet(t, Config{V4ExpirationWindow: c.window})
		a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
		for i := 0; i < 3; i++ {
			s.v4(b, a, &v4wire.Ping{Version: 4, Expiration: uint64(s.now.Add(60 * time.Second).Unix())}, record.DirIn)
			s.after(time.Second)
		}
		ans := s.ofType(ndjson.TypeAnomaly)
		switch {
		case !c.skew && len(ans) != 0:
			t.Errorf("window %s: %+v", c.window, ans)
		case c.skew && (len(ans) != 1 || *ans[0].OffsetNs != int64(40500*time.Millisecond) || !strings.Contains(ans[0].Detail, "assuming a 20s expiration window")):
			t.Errorf("default window: %+v", ans)
		}
	}
}

func TestScenarioENRSeqRegression(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	for _, seq := range []uint64{5, 7, 0, 7, 3, 2} {
		s.v4(b, a, &v4wire.Ping{Version: 4, Expiration: s.exp(), ENRSeq: seq}, record.DirUnknown)
		s.after(time.Second)
	}
	an := s.only(ndjson.TypeAnomaly)
	if an.Anomaly != string(result.ENRSeqRegression) || an.PeerID != b.ID().String() || !strings.Contains(an.Detail, "from 7 to 3") {
		t.Fatalf("anomaly %+v", an)
	}
	if len(an.Evidence) != 2 || an.Evidence[0].Time != ndjson.Time(scT0.Add(3*time.Second)) {
		t.Fatalf("evidence %+v", an.Evidence)
	}
}

// A NAT: the peer saw us at our public address.
func TestScenarioEndpointMismatch(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "192.168.1.10:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{a.Key}}})
	public := netip.MustParseAddrPort("203.0.113.7:41000")
	for i := 0; i < 2; i++ {
		ping := s.ping(a, b, record.DirUnknown)
		s.after(time.Millisecond)
		s.v4(b, a, &v4wire.Pong{To: v4wire.NewEndpoint(public, 0), ReplyTok: ping[:32], Expiration: s.exp()}, record.DirUnknown)
		s.after(time.Second)
	}
	// b pinging a and a answering is the other direction: no anomaly about b.
	ping := s.ping(b, a, record.DirUnknown)
	s.pong(a, b, ping, record.DirUnknown)
	// A NAT that gives each peer its own port is still one finding.
	for i, addr := range []string{"10.0.0.3:30303", "10.0.0.4:30303"} {
		c := disctest.NewNode(t, disctest.KeyC, addr)
		ping := s.ping(a, c, record.DirUnknown)
		s.v4(c, a, &v4wire.Pong{To: v4wire.NewEndpoint(netip.AddrPortFrom(public.Addr(), uint16(42000+i)), 0), ReplyTok: ping[:32], Expiration: s.exp()}, record.DirUnknown)
	}
	an := s.only(ndjson.TypeAnomaly)
	if an.Anomaly != string(result.EndpointMismatch) || an.Peer != "10.0.0.2:30303" || !strings.Contains(an.Detail, "reached us at 203.0.113.7:41000, but we are at 192.168.1.10:30303") {
		t.Fatalf("anomaly %+v", an)
	}
}

func TestScenarioWhoareyouStorm(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{StormThreshold: 4, StormWindow: 5 * time.Second, Identity: Identity{IDs: []enode.ID{b.ID()}}})
	for i := 0; i < 6; i++ {
		s.challenge(a, b, &v5wire.Ping{ReqID: []byte{byte(i)}})
		a.Codec = v5wire.NewCodec(a.LN, a.Key, mclock.System{}, nil) // a forgets, and starts over
		b.Codec = v5wire.NewCodec(b.LN, b.Key, mclock.System{}, nil)
		s.after(time.Second)
	}
	an := s.only(ndjson.TypeAnomaly)
	if an.Anomaly != string(result.WhoareyouStorm) || an.Peer != "10.0.0.1:30303" || len(an.Evidence) != 4 {
		t.Fatalf("anomaly %+v", an)
	}
	if an.Time != ndjson.Time(scT0.Add(3*1001*time.Millisecond+time.Millisecond)) { // the 4th challenge
		t.Fatalf("storm reported at %s", an.Time)
	}
	s.flush()
	hss := s.ofType(ndjson.TypeHandshake)
	if len(hss) != 6 || hss[4].Cause != string(result.NoResponse) || hss[5].Outcome != string(result.Open) {
		t.Fatalf("%d handshakes, want 5 failed and the last one open:\n%s", len(hss), s.dump())
	}
}

// One challenge that geth repeats, byte for byte, to each of the initiator's concurrent
// requests is one challenge: no storm, one handshake with every copy in its attempts.
func TestScenarioWhoareyouResendsAreNoStorm(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{StormThreshold: 4, StormWindow: 5 * time.Second, Identity: Identity{IDs: []enode.ID{b.ID()}}})
	w := s.challenge(a, b, &v5wire.Ping{ReqID: []byte{1}})
	for i := 0; i < 5; i++ {
		s.after(time.Millisecond)
		s.v5(a, b, &v5wire.Findnode{ReqID: []byte{byte(10 + i)}, Distances: []uint{256}}, nil)
		s.v5(b, a, w, nil)
	}
	s.flush()
	if an := s.ofType(ndjson.TypeAnomaly); len(an) != 0 {
		t.Fatalf("resends reported as a storm:\n%s", s.dump())
	}
	if hs := s.only(ndjson.TypeHandshake); hs.Attempts != 6 {
		t.Fatalf("handshake attempts %d, want 6 (the challenge and its 5 copies)", hs.Attempts)
	}
}

// The same records give the same events, byte for byte.
func TestScenarioDeterministic(t *testing.T) {
	run := func() string {
		s := newScNet(t, Config{})
		a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
		for i := 0; i < 20; i++ {
			s.ping(a, b, record.DirUnknown)
			s.ping(b, a, record.DirUnknown)
			s.after(10 * time.Millisecond)
		}
		s.flush()
		var b2 strings.Builder
		for _, ev := range s.events {
			if ev.Type == ndjson.TypeExchange {
				j, _ := json.Marshal(ev)
				b2.Write(j)
				b2.WriteByte('\n')
			}
		}
		return b2.String()
	}
	first, second := run(), run()
	if first != second || strings.Count(first, "\n") != 40 {
		t.Fatalf("runs differ or miss exchanges:\n%s\n---\n%s", first, second)
	}
}

// State follows the traffic rate, not the length of the capture.
func TestScenarioBoundedState(t *testing.T) {
	s := newScNet(t, Config{})
	a := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303")
	peers := []*disctest.Node{disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303"), disctest.NewNode(t, disctest.KeyC, "10.0.0.3:30303")}
	maxHeld := 0
	for i := 0; i < 3000; i++ { // 300 s at 10 packets/s
		s.ping(a, peers[i%2], record.DirUnknown)
		s.after(100 * time.Millisecond)
		maxHeld = max(maxHeld, s.dec.seen.all.len())
	}
	// retention (5 s) + one sweep interval (1 s), 10 datagrams a second.
	if maxHeld > 61 {
		t.Fatalf("up to %d datagrams held", maxHeld)
	}
	if n := s.dec.ex.byHash.Len(); n > 6 {
		t.Fatalf("%d requests still indexed", n)
	}
	if n := s.dec.timers.Len(); n > 6 {
		t.Fatalf("%d timers pending", n)
	}

	// Spoofed or scanning traffic from and to many addresses within one second: what
	// is learned or held per address has a count bound as well as a time bound.
	junk := bytes.Repeat([]byte{0x42}, 100)
	for i := 0; i < maxLearnedIDs+10; i++ {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 30303)
		s.dec.learnID(addr, a.ID(), s.now)
		if i < 2*maxHeldAddrs {
			s.feed(scDatagram(a.Addr, addr, junk, record.DirOut))
		}
	}
	if s.dec.ids.Len() > maxLearnedIDs || s.dec.held.Len() > maxHeldAddrs {
		t.Fatalf("%d addresses with learned IDs, %d with held datagrams", s.dec.ids.Len(), s.dec.held.Len())
	}
}

// The tracer sees sends fail: a local firewall (EPERM), a path MTU (EMSGSIZE), an
// earlier ICMP error surfacing on a connected socket (ECONNREFUSED).
// A send the kernel refuses after its egress was seen (a device's ENOBUFS, reported with
// IP_RECVERR) is the same datagram: one request, sent once, that failed.
func TestScenarioSendFailedAfterEgress(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	ping, _, _ := v4wire.Encode(a.Key, &v4wire.Ping{Version: 4, Expiration: s.exp()})
	s.feed(scDatagram(a.Addr, b.Addr, bytes.Clone(ping), record.DirOut))
	s.after(20 * time.Microsecond)
	r := scDatagram(a.Addr, b.Addr, bytes.Clone(ping), record.DirOut)
	r.HasSendRet, r.SendRet = true, -int64(syscall.ENOBUFS)
	s.feed(r)
	s.flush()
	ex := s.only(ndjson.TypeExchange)
	checkFailed(t, ex, string(result.KernelDrop), "send send failed: no buffer space available (-105)")
	if ex.Attempts > 1 {
		t.Errorf("one datagram counted as %d attempts", ex.Attempts)
	}
}

func TestScenarioFailedSends(t *testing.T) {
	for _, c := range []struct {
		errno  syscall.Errno
		cause  string
		detail string
	}{
		{syscall.EPERM, string(result.KernelDrop), "send failed: operation not permitted (-1)"},
		{syscall.EMSGSIZE, string(result.FragmentLoss), "send failed: message too long (-90)"},
		{syscall.ECONNREFUSED, string(result.ICMPUnreachable), "send failed: connection refused (-111)"},
	} {
		s := newScNet(t, Config{})
		a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
		b2, _, _ := v4wire.Encode(a.Key, &v4wire.Ping{Version: 4, Expiration: s.exp()})
		r := scDatagram(a.Addr, b.Addr, b2, record.DirOut)
		r.HasSendRet, r.SendRet = true, -int64(c.errno)
		s.feed(r)
		s.flush()
		ex := s.only(ndjson.TypeExchange)
		checkFailed(t, ex, c.cause, c.detail)
		if len(ex.Evidence) != 1 {
			t.Errorf("the failed send is cited %d times, want once: %+v", len(ex.Evidence), ex.Evidence)
		}
		if ret := s.only(ndjson.TypeSend).Ret; ret == nil || *ret != -int64(c.errno) {
			t.Errorf("send event ret %v", ret)
		}
	}
}

// Events the tracer lost while a request waited are shown beside no_response.
func TestScenarioLostEventsQualifyNoResponse(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s.ping(a, b, record.DirOut)
	s.after(10 * time.Millisecond)
	s.feed(&record.Record{Kind: record.Lost, Count: 7})
	s.after(5 * time.Millisecond)
	s.feed(&record.Record{Kind: record.Lost, Count: 3})
	s.tick(time.Second)
	checkFailed(t, s.only(ndjson.TypeExchange), string(result.NoResponse), "lost 10 observations lost by the tracer meanwhile")
	if l := s.ofType(ndjson.TypeLost); len(l) != 2 || *l[0].Count != 7 {
		t.Fatalf("lost events %+v", l)
	}
}

// A quiet network: Advance fires the settle delay and the timeouts without a record.
func TestScenarioAdvanceWithoutRecords(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	ping := s.ping(a, b, record.DirOut)
	s.after(time.Millisecond)
	s.pong(b, a, ping, record.DirIn)
	s.ping(a, b, record.DirOut)
	s.dec.Advance(s.now.Add(99*time.Millisecond), s.emit)
	if n := len(s.ofType(ndjson.TypeExchange)); n != 0 {
		t.Fatalf("%d exchanges before the answer settled", n)
	}
	s.dec.Advance(s.now.Add(101*time.Millisecond), s.emit)
	if ex := s.only(ndjson.TypeExchange); ex.Outcome != string(result.Answered) {
		t.Fatalf("%+v", ex)
	}
	s.dec.Advance(s.now.Add(501*time.Millisecond), s.emit)
	if exs := s.ofType(ndjson.TypeExchange); len(exs) != 2 || exs[1].Cause != string(result.NoResponse) {
		t.Fatalf("second ping should have timed out:\n%s", s.dump())
	}
}

// Both nodes on this host (loopback, or two namespaces): the tracer sees every datagram
// sent and then received. One datagram, one decoding, one count.
func TestScenarioBothEndsLocal(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "127.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "127.0.0.1:30304")
	s := newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{a.Key, b.Key}}})
	// Feed each datagram as the send, then as the receive 30 µs later.
	twice := func(from, to *disctest.Node, p v5wire.Packet, challenge *v5wire.Whoareyou) v5wire.Packet {
		enc, _, err := from.Codec.Encode(to.ID(), to.Addr.String(), p, challenge)
		if err != nil {
			t.Fatal(err)
		}
		enc = bytes.Clone(enc)
		first, second := record.DirOut, record.DirIn
		if p.Kind() == v5wire.WhoareyouPacket {
			first, second = record.DirIn, record.DirOut // delivered out of order, as per-CPU buffers may
		}
		s.feed(scDatagram(from.Addr, to.Addr, bytes.Clone(enc), first))
		s.after(30 * time.Microsecond)
		s.feed(scDatagram(from.Addr, to.Addr, bytes.Clone(enc), second))
		s.after(time.Millisecond)
		_, _, got, err := to.Codec.Decode(enc, from.Addr.String())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	ping := &v5wire.Ping{ReqID: []byte{1}, ENRSeq: 1}
	unknown := twice(a, b, ping, nil).(*v5wire.Unknown)
	w := twice(b, a, &v5wire.Whoareyou{Nonce: unknown.Nonce, IDNonce: [16]byte{3}}, nil).(*v5wire.Whoareyou)
	w.Node = b.LN.Node()
	twice(a, b, ping, w)
	twice(b, a, &v5wire.Pong{ReqID: ping.ReqID, ENRSeq: 1, ToIP: net.IP{127, 0, 0, 1}, ToPort: 30303}, nil)
	s.tick(time.Second)

	hs := s.only(ndjson.TypeHandshake)
	if hs.Outcome != string(result.Established) || hs.Attempts != 1 {
		t.Fatalf("handshake %+v", hs)
	}
	if ex := s.only(ndjson.TypeExchange); ex.Outcome != string(result.Answered) || ex.Attempts != 0 || ex.Req != "PING/v5" {
		t.Fatalf("exchange %+v", ex)
	}
	sends, recvs := s.ofType(ndjson.TypeSend), s.ofType(ndjson.TypeRecv)
	if len(sends) != 4 || len(recvs) != 4 {
		t.Fatalf("%d sends, %d receives", len(sends), len(recvs))
	}
	for i := range sends {
		if !reflect.DeepEqual(recvs[i].Disc, sends[i].Disc) || sends[i].Disc.Kind == "" || sends[i].Disc.Proto != packet.ProtoV5 {
			t.Errorf("receive %d does not carry its send's decoding: %+v / %+v", i, recvs[i].Disc, sends[i].Disc)
		}
	}
	if recvs[2].Disc.Msg != "PING/v5" || recvs[3].Disc.Msg != "PONG/v5" {
		t.Errorf("decrypted: %q %q", recvs[2].Disc.Msg, recvs[3].Disc.Msg)
	}
}

// B, behind a masquerading router, runs a discv5 handshake and PING with A; both are
// traced on this host, in two namespaces, and each reads what it receives. A sees B at
// the router's address, B sees itself at its own: one handshake, one answered exchange
// (issue 9, item 1), whichever view of a datagram comes first.
func TestScenarioV5NATBetweenTracedNamespaces(t *testing.T) {
	for _, receiveFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("receive first %v", receiveFirst), func(t *testing.T) {
			a, b := disctest.NewNode(t, disctest.KeyA, "10.98.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.98.1.2:30303")
			router := netip.MustParseAddrPort("10.98.0.254:4290")
			s := newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{a.Key, b.Key}}})
			const nsA, nsB = 1, 2
			view := func(src, dst netip.AddrPort, enc []byte, dir record.Direction, netns uint32) *record.Record {
				r := scDatagram(src, dst, bytes.Clone(enc), dir)
				r.NetNS = netns
				return r
			}
			// Each datagram as its sender's namespace sees it, then as its receiver's, or the
			// other way round; the receiver reads it.
			twice := func(from, to *disctest.Node, p v5wire.Packet, challenge *v5wire.Whoareyou) v5wire.Packet {
				enc, _, err := from.Codec.Encode(to.ID(), to.Addr.String(), p, challenge)
				if err != nil {
					t.Fatal(err)
				}
				enc = bytes.Clone(enc)
				var sent, received *record.Record
				if from == b {
					sent, received = view(b.Addr, a.Addr, enc, record.DirOut, nsB), view(router, a.Addr, enc, record.DirIn, nsA)
				} else {
					sent, received = view(a.Addr, router, enc, record.DirOut, nsA), view(a.Addr, b.Addr, enc, record.DirIn, nsB)
				}
				first, second := sent, received
				if receiveFirst {
					first, second = received, sent
				}
				s.feed(first)
				s.after(30 * time.Microsecond)
				s.feed(second)
				s.after(20 * time.Microsecond)
				s.feed(&record.Record{Kind: record.Read, Src: received.Src, Dst: received.Dst, Len: len(enc), NetNS: received.NetNS})
				s.after(time.Millisecond)
				_, _, got, err := to.Codec.Decode(enc, from.Addr.String())
				if err != nil {
					t.Fatal(err)
				}
				return got
			}
			ping := &v5wire.Ping{ReqID: []byte{1}, ENRSeq: 1}
			unknown := twice(b, a, ping, nil).(*v5wire.Unknown)
			w := twice(a, b, &v5wire.Whoareyou{Nonce: unknown.Nonce, IDNonce: [16]byte{3}}, nil).(*v5wire.Whoareyou)
			w.Node = a.LN.Node()
			twice(b, a, ping, w)
			twice(a, b, &v5wire.Pong{ReqID: ping.ReqID, ENRSeq: 1, ToIP: net.IP(router.Addr().AsSlice()), ToPort: router.Port()}, nil)
			s.tick(2 * time.Second)

			hs := s.only(ndjson.TypeHandshake)
			if hs.Outcome != string(result.Established) || hs.Attempts != 1 {
				t.Fatalf("handshake %+v\n%s", hs, s.dump())
			}
			if ex := s.only(ndjson.TypeExchange); ex.Outcome != string(result.Answered) || ex.Req != "PING/v5" {
				t.Fatalf("exchange %+v\n%s", ex, s.dump())
			}
		})
	}
}

// IPv6: ICMPv6 packet too big is fragment trouble, destination unreachable is not; a
// drop spelled with IPv4-mapped addresses still matches an IPv4 flow.
func TestScenarioIPv6AndMappedAddresses(t *testing.T) {
	for _, c := range []struct {
		typ, code uint8
		cause     string
		detail    string
	}{
		{2, 0, string(result.FragmentLoss), "icmp 2/0 packet too big from 2001:db8::fe"},
		{1, 4, string(result.ICMPUnreachable), "icmp 1/4 port unreachable from 2001:db8::fe"},
		{3, 1, string(result.FragmentLoss), "icmp 3/1 time exceeded from 2001:db8::fe"},
	} {
		s := newScNet(t, Config{})
		a, b := disctest.NewNode(t, disctest.KeyA, "[2001:db8::1]:30303"), disctest.NewNode(t, disctest.KeyB, "[2001:db8::2]:30303")
		ping := s.ping(a, b, record.DirUnknown)
		s.feed(icmpRec(netip.MustParseAddrPort("[2001:db8::fe]:0"), a.Addr, c.typ, c.code, scDatagram(a.Addr, b.Addr, ping, record.DirUnknown)))
		s.flush()
		ex := s.only(ndjson.TypeExchange)
		checkFailed(t, ex, c.cause, c.detail)
		if ex.Initiator != "[2001:db8::1]:30303" {
			t.Errorf("initiator %q", ex.Initiator)
		}
	}
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s.ping(a, b, record.DirOut)
	s.feed(&record.Record{Kind: record.Drop, Src: netip.MustParseAddrPort("[::ffff:10.0.0.2]:30303"), Dst: netip.MustParseAddrPort("[::ffff:10.0.0.1]:30303"), Reason: "UDP_CSUM"})
	s.flush()
	checkFailed(t, s.only(ndjson.TypeExchange), string(result.KernelDrop), "UDP_CSUM: 10.0.0.2:30303 > 10.0.0.1:30303")
}

// A HANDSHAKE's own record outranks the enr-seq of the PING inside it.
func TestScenarioHandshakeRecordOutranksMessageSeq(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{b.Key}}})
	stale := &v5wire.Ping{ReqID: []byte{1}, ENRSeq: a.LN.Seq() - 1}
	w := s.challenge(a, b, stale)
	w.RecordSeq = 0 // b has no record of a: a sends it
	s.after(time.Millisecond)
	s.v5(a, b, stale, w)
	s.flush()
	if n := len(s.ofType(ndjson.TypeAnomaly)); n != 0 {
		t.Fatalf("%d anomalies:\n%s", n, s.dump())
	}
	if hs := s.ofType(ndjson.TypePacket)[2]; hs.Disc.Kind != discv5.KindHandshake || *hs.Disc.ENRSeq == 0 {
		t.Fatalf("the HANDSHAKE should carry a's record: %+v", hs.Disc)
	}
}

// The local node (b) reads a handshake's first packet and never challenges it: a
// stuck discovery loop, seen only because the tracer saw the read.
func TestScenarioV5ReadButNeverChallenged(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{b.Key}}})
	enc, _, err := a.Codec.Encode(b.ID(), b.Addr.String(), &v5wire.Ping{ReqID: []byte{1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.feed(scDatagram(a.Addr, b.Addr, bytes.Clone(enc), record.DirIn))
	s.after(40 * time.Microsecond)
	s.feed(&record.Record{Kind: record.Read, Src: a.Addr, Dst: b.Addr, Len: len(enc), HasProc: true, PID: 77, Comm: "geth", HasQueueTime: true, QueueTime: 35 * time.Microsecond})
	s.tick(time.Second)
	hs := s.only(ndjson.TypeHandshake)
	checkFailed(t, hs, string(result.AppDrop), "read read by pid 77 (geth) after 35µs in the socket queue, never answered")
	if read := s.only(ndjson.TypeRead); read.Disc == nil || read.Disc.Kind != discv5.KindMessage {
		t.Fatalf("read %+v", read)
	}
}

// A HANDSHAKE that answers its challenge after the recipient dropped it (1 s): one
// attempt, rejected as late, whether or not the recipient's key is known (the lateness
// and the id-signature need none).
func TestScenarioV5LateHandshake(t *testing.T) {
	for _, withKey := range []bool{true, false} {
		a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
		cfg := Config{Identity: Identity{IDs: []enode.ID{b.ID()}}}
		if withKey {
			cfg.Identity = Identity{Keys: []*ecdsa.PrivateKey{b.Key}}
		}
		s := newScNet(t, cfg)
		ping := &v5wire.Ping{ReqID: []byte{1, 2, 3, 4, 5, 6, 7, 8}, ENRSeq: 1}
		w := s.challenge(a, b, ping)
		s.after(1200 * time.Millisecond)
		s.v5(a, b, ping, w)
		s.tick(3 * time.Second)
		s.flush()
		hs := s.only(ndjson.TypeHandshake)
		checkFailed(t, hs, string(result.Rejected), "the HANDSHAKE came 1.2s after the challenge")
		if hs.Attempts != 1 || hs.WhoareyouRTTNs == nil || *hs.WhoareyouRTTNs != int64(time.Millisecond) {
			t.Errorf("with key %v: %+v", withKey, hs)
		}
		if d := s.ofType(ndjson.TypePacket)[2].Disc; !strings.Contains(d.Error, "more than 1s before") {
			t.Errorf("with key %v: the HANDSHAKE's error %q does not say it is late", withKey, d.Error)
		}
	}
}

// Without any key, a HANDSHAKE whose id-signature does not prove the initiator's key
// (known from its ENR) over the captured challenge is one the recipient rejects.
func TestScenarioV5BadSignatureWithoutKeys(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{b.ID()}}})
	ping := &v5wire.Ping{ReqID: []byte{1}, ENRSeq: 1}
	w := s.challenge(a, b, ping)
	// a signs over another challenge than the one captured.
	forged := *w
	forged.ChallengeData = bytes.Clone(w.ChallengeData)
	forged.ChallengeData[len(forged.ChallengeData)-9] ^= 1 // inside the id-nonce
	s.after(time.Millisecond)
	enc, _, err := a.Codec.Encode(b.ID(), b.Addr.String(), ping, &forged)
	if err != nil {
		t.Fatal(err)
	}
	s.feed(scDatagram(a.Addr, b.Addr, bytes.Clone(enc), record.DirUnknown))
	s.tick(2 * time.Second)
	s.flush()
	if d := s.ofType(ndjson.TypePacket)[2].Disc; !strings.Contains(d.Error, "id-signature does not verify") {
		t.Fatalf("HANDSHAKE error %q", d.Error)
	}
	checkFailed(t, s.only(ndjson.TypeHandshake), string(result.Rejected), "id-signature")
}

// The local node starts a handshake with a peer the decoder has no ID for (a bootnode
// given to geth by enode URL): its random packet and HANDSHAKE cannot be unmasked when
// they go out. The peer's PONG names its ID; they are decoded then, and the attempt is
// established with its round trips, not a false failure.
func TestScenarioV5LocalInitiatorToUnknownPeer(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{a.Key}}})
	s.pingHandshake(a, b, time.Millisecond)
	s.tick(3 * time.Second)
	s.flush()
	if pkts := s.ofType(ndjson.TypePacket); pkts[0].Disc.Proto != packet.ProtoUnknown || pkts[2].Disc.Proto != packet.ProtoUnknown {
		t.Fatalf("the outgoing packets unmasked before the peer's ID was known?\n%s", s.dump())
	} else if !strings.Contains(pkts[2].Disc.Error, "to a node whose ID is not known yet") {
		// (The first packet went out before anything showed which address is local.)
		t.Errorf("the HANDSHAKE's error %q does not say why it stays closed", pkts[2].Disc.Error)
	}
	hs := s.only(ndjson.TypeHandshake)
	if hs.Outcome != string(result.Established) || hs.Attempts != 1 || hs.RecipientID != b.ID().String() || hs.WhoareyouRTTNs == nil || hs.HandshakeRTTNs == nil ||
		*hs.WhoareyouRTTNs != int64(time.Millisecond) || *hs.HandshakeRTTNs != int64(time.Millisecond) || hs.Time != ndjson.Time(scT0) {
		t.Fatalf("handshake %+v\n%s", hs, s.dump())
	}
	// The PONG answering the handshake is no request of its own: it answers the PING the
	// HANDSHAKE carried, which no key here opens.
	if ex := s.only(ndjson.TypeExchange); ex.Req != undecryptedName || ex.Resp != undecryptedName || ex.Outcome != string(result.Answered) ||
		ex.Initiator != a.Addr.String() || *ex.RTTNs != int64(time.Millisecond) {
		t.Errorf("exchange %+v, want the HANDSHAKE's request answered in 1 ms", ex)
	}
	if d := s.ofType(ndjson.TypePacket)[3].Disc; !strings.Contains(d.Error, "session set up by a local node's HANDSHAKE") {
		t.Errorf("the PONG's error %q does not say whose session it is", d.Error)
	}
}

// When the local node sent the HANDSHAKE, the session's messages cannot be decrypted
// with its key; they say that, not that the session started before the capture.
func TestScenarioV5LocalInitiatorSessionSaysWhy(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{a.Key}, IDs: []enode.ID{b.ID()}}})
	s.pingHandshake(a, b, time.Millisecond)
	s.after(time.Millisecond)
	s.v5(a, b, &v5wire.Findnode{ReqID: []byte{9, 9, 9, 9, 9, 9, 9, 9}, Distances: []uint{256}}, nil)
	s.flush()
	pkts := s.ofType(ndjson.TypePacket)
	for _, i := range []int{3, 4} {
		if d := pkts[i].Disc; d.Kind != discv5.KindMessage || !strings.Contains(d.Error, "session set up by a local node's HANDSHAKE") {
			t.Errorf("packet %d: %+v", i, d)
		}
	}
	if hs := s.only(ndjson.TypeHandshake); hs.Outcome != string(result.Established) {
		t.Errorf("handshake %+v", hs)
	}
}

// The verdicts do not depend on when the decoder learned the peer's ID: with the ID
// known up front, or learned only from the peer's PONG, the same events come, in the
// same order.
func TestScenarioV5LateLearnedIDGivesTheSameVerdicts(t *testing.T) {
	verdicts := func(known bool, pongAfter time.Duration) string {
		a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
		id := Identity{Keys: []*ecdsa.PrivateKey{a.Key}}
		if known {
			id.IDs = []enode.ID{b.ID()}
		}
		s := newScNet(t, Config{Identity: id})
		s.pingHandshake(a, b, pongAfter)
		s.tick(3 * time.Second)
		s.flush()
		var out []string
		for _, ev := range s.events {
			if ev.Type == ndjson.TypeHandshake || ev.Type == ndjson.TypeExchange {
				out = append(out, strings.Join([]string{ev.Type, ev.Time, ev.Req, ev.Outcome, ev.Cause}, " "))
			}
		}
		return strings.Join(out, "\n")
	}
	// 1 ms: answered; 800 ms: slow, still established; 1.5 s: past the deadline and its
	// grace, so the handshake has failed when the PONG comes (held datagrams are kept
	// 1.7 s, so the PONG still teaches the ID).
	for _, after := range []time.Duration{time.Millisecond, 800 * time.Millisecond, 1500 * time.Millisecond} {
		if k, l := verdicts(true, after), verdicts(false, after); k != l || k == "" {
			t.Errorf("PONG after %s: with the ID known\n%s\nlearned late\n%s", after, k, l)
		}
	}
	// An ICMP error quoting the first packet, before anything names the peer's ID.
	bounced := func(known bool) string {
		a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
		id := Identity{Keys: []*ecdsa.PrivateKey{a.Key}}
		if known {
			id.IDs = []enode.ID{b.ID()}
		}
		s := newScNet(t, Config{Identity: id})
		enc, _, err := a.Codec.Encode(b.ID(), b.Addr.String(), &v5wire.Ping{ReqID: []byte{1}, ENRSeq: 1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		first := scDatagram(a.Addr, b.Addr, bytes.Clone(enc), record.DirOut)
		s.feed(first)
		s.after(time.Millisecond)
		s.feed(icmpRec(b.Addr, a.Addr, 3, 3, first))
		s.after(300 * time.Millisecond)
		s.v5(b, a, &v5wire.Ping{ReqID: []byte{9}, ENRSeq: 1}, nil) // b's own packet names it
		s.tick(3 * time.Second)
		s.flush()
		var out []string
		for _, ev := range s.ofType(ndjson.TypeHandshake) {
			out = append(out, ev.Time+" "+ev.Outcome+" "+ev.Cause)
		}
		return strings.Join(out, "\n")
	}
	if k, l := bounced(true), bounced(false); k != l || !strings.Contains(k, string(result.ICMPUnreachable)) {
		t.Errorf("ICMP error: with the ID known\n%s\nlearned late\n%s", k, l)
	}
}

// The PING inside a HANDSHAKE the recipient ignores (late) is a request refused with
// it; and a response slower than the response timeout still shows the handshake
// established, without counting as a request of its own.
func TestScenarioV5SlowAndLateAnswers(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{b.Key}}})
	ping := &v5wire.Ping{ReqID: []byte{1, 2, 3, 4, 5, 6, 7, 8}, ENRSeq: 1}
	w := s.challenge(a, b, ping)
	s.after(1200 * time.Millisecond)
	s.v5(a, b, ping, w)
	s.tick(3 * time.Second)
	checkFailed(t, s.only(ndjson.TypeExchange), string(result.Rejected), "carried by a HANDSHAKE the recipient cannot accept")

	a, b = disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s = newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{a.Key}, IDs: []enode.ID{b.ID()}}})
	w = s.challenge(a, b, ping)
	s.after(time.Millisecond)
	s.v5(a, b, ping, w)
	s.after(800 * time.Millisecond)
	s.v5pong(b, a, ping.ReqID)
	s.tick(3 * time.Second)
	s.flush()
	hs := s.only(ndjson.TypeHandshake)
	if hs.Outcome != string(result.Established) || *hs.HandshakeRTTNs != int64(800*time.Millisecond) {
		t.Fatalf("handshake %+v", hs)
	}
	// The PING in the HANDSHAKE timed out at a, as it would with its key: the slow PONG
	// answers it too late, and is no request of its own.
	if ex := s.only(ndjson.TypeExchange); ex.Req != undecryptedName || ex.Initiator != a.Addr.String() {
		t.Fatalf("the slow PONG became a request:\n%s", s.dump())
	} else {
		checkFailed(t, ex, string(result.NoResponse))
	}
}

// Without the recipient's key and without the initiator's public key (no ENR in the
// HANDSHAKE, none seen before), nothing can be checked, so nothing is claimed: a
// HANDSHAKE 1.5 s after the challenge it may not even answer is not called late.
func TestScenarioV5NoClaimWithoutKeys(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{b.ID()}}})
	ping := &v5wire.Ping{ReqID: []byte{1}, ENRSeq: 1}
	w := s.challenge(a, b, ping)
	w.RecordSeq = a.LN.Node().Seq() // b has a's record: the HANDSHAKE carries none
	w.Node = b.LN.Node()
	s.after(1500 * time.Millisecond)
	enc, _, err := a.Codec.Encode(b.ID(), b.Addr.String(), ping, w)
	if err != nil {
		t.Fatal(err)
	}
	s.feed(scDatagram(a.Addr, b.Addr, bytes.Clone(enc), record.DirUnknown))
	s.tick(3 * time.Second)
	hsPkt := s.ofType(ndjson.TypePacket)[2].Disc
	if hsPkt.Kind != discv5.KindHandshake || hsPkt.ENRSeq != nil || !strings.HasPrefix(hsPkt.Error, "no session key") {
		t.Fatalf("HANDSHAKE %+v", hsPkt)
	}
}

// Two requests with one request ID in one session: the first one's timeout must not
// take the second out of the index.
func TestScenarioV5SameRequestIDAgain(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{b.Key}}})
	ping := s.pingHandshake(a, b, time.Millisecond)
	s.after(500 * time.Millisecond)
	s.v5(a, b, ping, nil) // the same request ID, in the session, before the first's timer
	s.after(400 * time.Millisecond)
	s.v5pong(b, a, ping.ReqID)
	s.tick(3 * time.Second)
	exs := s.ofType(ndjson.TypeExchange)
	if len(exs) != 2 || exs[0].Outcome != string(result.Answered) || exs[1].Outcome != string(result.Answered) {
		t.Fatalf("want both PINGs answered:\n%s", s.dump())
	}
}

// A HANDSHAKE whose challenge the capture lacks, after two random packets: the
// challenge answered the first, so the first starts the one attempt.
func TestScenarioV5HandshakeWithoutCapturedChallenge(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{b.ID()}}})
	ping := &v5wire.Ping{ReqID: []byte{1}, ENRSeq: 1}
	nonce := s.randomPacket(a, b, ping)
	s.after(10 * time.Millisecond)
	s.randomPacket(a, b, &v5wire.Ping{ReqID: []byte{2, 2, 2, 2, 2, 2, 2, 2}, ENRSeq: 1})
	w := s.unseenChallenge(b, a, nonce)
	s.after(time.Millisecond)
	s.v5(a, b, ping, w)
	s.after(time.Millisecond)
	s.v5pong(b, a, ping.ReqID)
	s.tick(3 * time.Second)
	s.flush()
	hs := s.only(ndjson.TypeHandshake)
	if hs.Outcome != string(result.Established) || hs.Time != ndjson.Time(scT0) || *hs.TotalNs != int64(12*time.Millisecond) {
		t.Fatalf("handshake %+v", hs)
	}
}

// Two handshakes of one pair, ten minutes apart; the second WHOAREYOU is missing from
// the capture (lost events, another path). Without keys, the second HANDSHAKE's
// signature fits no captured challenge, but the one captured is long expired: nothing
// says the recipient refused it, and it did not.
func TestScenarioV5MissingChallengeIsNoRejection(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{b.ID()}}})
	ping := &v5wire.Ping{ReqID: []byte{1}, ENRSeq: 1}
	w := s.challenge(a, b, ping)
	s.after(time.Millisecond)
	s.v5(a, b, ping, w)
	s.after(time.Millisecond)
	s.v5pong(b, a, ping.ReqID)
	s.after(10 * time.Minute)
	// b forgets the session (restart); a's next message is answered by a WHOAREYOU the
	// capture does not have.
	b2 := disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	ping2 := &v5wire.Ping{ReqID: []byte{2, 2, 2, 2, 2, 2, 2, 2}, ENRSeq: 1}
	w2 := s.unseenChallenge(b2, a, s.randomPacket(a, b2, ping2))
	s.after(2 * time.Millisecond)
	s.v5(a, b2, ping2, w2)
	s.after(time.Millisecond)
	s.v5pong(b2, a, ping2.ReqID)
	s.tick(3 * time.Second)
	s.flush()
	for _, ev := range s.events {
		if ev.Disc != nil && ev.Disc.Kind == discv5.KindHandshake && strings.Contains(ev.Disc.Error, "id-signature") {
			t.Errorf("HANDSHAKE called forged: %s", ev.Disc.Error)
		}
		if ev.Type == ndjson.TypeHandshake && ev.Outcome != string(result.Established) {
			t.Errorf("handshake %s %s", ev.Outcome, ev.Cause)
		}
	}
}

// The HANDSHAKE of a new attempt is dropped on its way in; the recipient then sends a
// message of its own under the older session it still has. That message proves nothing
// of the new session: the attempt fails, and the drop is why (issue 10, item 1).
func TestScenarioV5DroppedHandshakeIsNotEstablished(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{b.ID()}}})
	s.pingHandshake(a, b, time.Millisecond)
	s.after(time.Second)

	// a restarts (no sessions), b keeps its session with a.
	a2 := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303")
	ping := &v5wire.Ping{ReqID: []byte{7}, ENRSeq: 1}
	w := s.challenge(a2, b, ping)
	s.after(time.Millisecond)
	hs, _, err := a2.Codec.Encode(b.ID(), b.Addr.String(), ping, w)
	if err != nil {
		t.Fatal(err)
	}
	s.feed(scDatagram(a2.Addr, b.Addr, bytes.Clone(hs), record.DirUnknown))
	s.feed(&record.Record{Kind: record.Drop, Src: a2.Addr, Dst: b.Addr, Len: len(hs), Reason: "NETFILTER_DROP"})
	s.after(5 * time.Millisecond)
	old, _, err := b.Codec.Encode(a.ID(), a.Addr.String(), &v5wire.Findnode{ReqID: []byte{9}, Distances: []uint{256}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.feed(scDatagram(b.Addr, a.Addr, bytes.Clone(old), record.DirUnknown))
	s.tick(3 * time.Second)
	s.flush()

	hss := s.ofType(ndjson.TypeHandshake)
	if len(hss) != 2 {
		t.Fatalf("%d handshakes, want 2:\n%s", len(hss), s.dump())
	}
	if hss[0].Outcome != string(result.Established) {
		t.Errorf("first handshake %q, want established", hss[0].Outcome)
	}
	checkFailed(t, hss[1], string(result.KernelDrop), "NETFILTER_DROP")
}

// The recipient never takes the HANDSHAKE (here unseen why); the initiator, in session
// from its side, sends a new request, and the recipient repeats its pending challenge,
// byte for byte, with the nonce of the first packet. The initiator ignores that
// challenge: the request fails on its own, rejected, and so does the attempt (issue 10,
// item 2).
func TestScenarioV5RepeatedChallengeAfterHandshake(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{b.ID()}}})
	ping := &v5wire.Ping{ReqID: []byte{1}, ENRSeq: 1}
	nonce := s.randomPacket(a, b, ping)
	s.after(time.Millisecond)
	challenge, _, err := b.Codec.Encode(a.ID(), a.Addr.String(), &v5wire.Whoareyou{Nonce: nonce, IDNonce: [16]byte{7}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	challenge = bytes.Clone(challenge)
	s.feed(scDatagram(b.Addr, a.Addr, bytes.Clone(challenge), record.DirUnknown))
	_, _, p, err := a.Codec.Decode(bytes.Clone(challenge), b.Addr.String())
	w, ok := p.(*v5wire.Whoareyou)
	if err != nil || !ok {
		t.Fatalf("the challenge did not decode: %v", err)
	}
	w.Node = b.LN.Node()
	s.after(time.Millisecond)
	hs, _, err := a.Codec.Encode(b.ID(), b.Addr.String(), ping, w)
	if err != nil {
		t.Fatal(err)
	}
	s.feed(scDatagram(a.Addr, b.Addr, bytes.Clone(hs), record.DirUnknown)) // b never takes it
	s.after(time.Second)
	next, _, err := a.Codec.Encode(b.ID(), b.Addr.String(), &v5wire.Ping{ReqID: []byte{2, 2, 2, 2, 2, 2, 2, 2}, ENRSeq: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.feed(scDatagram(a.Addr, b.Addr, bytes.Clone(next), record.DirUnknown))
	s.after(300 * time.Microsecond)
	s.feed(scDatagram(b.Addr, a.Addr, bytes.Clone(challenge), record.DirUnknown))
	s.tick(3 * time.Second)
	s.flush()

	checkFailed(t, s.only(ndjson.TypeHandshake), string(result.Rejected), "repeated its challenge after the HANDSHAKE")
	// The PING in the HANDSHAKE timed out before the repeat showed why; the next one met it.
	exs := s.ofType(ndjson.TypeExchange)
	if len(exs) != 2 {
		t.Fatalf("%d exchanges, want the HANDSHAKE's request and the next:\n%s", len(exs), s.dump())
	}
	checkFailed(t, exs[0], string(result.NoResponse))
	checkFailed(t, exs[1], string(result.Rejected), "repeated its challenge to an earlier packet")
}

// Another implementation's random first packet need not be 20 bytes. The recipient of a
// handshake sends its own first contact (44 random bytes) right after the HANDSHAKE; it
// is no response: the initiator answers it with WHOAREYOU, so it could not decrypt it,
// and the attempt still waits for its response (issue 9, item 6).
func TestScenarioV5ChallengedPacketIsNoResponse(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{a.ID(), b.ID()}}})
	ping := &v5wire.Ping{ReqID: []byte{1, 2, 3, 4, 5, 6, 7, 8}, ENRSeq: 1}
	w := s.challenge(a, b, ping)
	s.after(time.Millisecond)
	s.v5(a, b, ping, w)
	s.after(time.Millisecond)

	nonce := s.otherFirstPacket(b, a)
	s.after(300 * time.Microsecond)
	challenge, _, err := a.Codec.Encode(b.ID(), b.Addr.String(), &v5wire.Whoareyou{Nonce: nonce, IDNonce: [16]byte{8}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.feed(scDatagram(a.Addr, b.Addr, bytes.Clone(challenge), record.DirUnknown))
	s.tick(3 * time.Second)
	s.flush()

	for _, hs := range s.ofType(ndjson.TypeHandshake) {
		if hs.Outcome == string(result.Established) {
			t.Fatalf("a challenged packet made a handshake established:\n%s", s.dump())
		}
	}
	if n := len(s.ofType(ndjson.TypeHandshake)); n != 2 {
		t.Fatalf("%d handshakes, want 2 (a's, failed; b's, challenged and never answered):\n%s", n, s.dump())
	}
}

// A send the kernel refused, seen by a hook that sees only the socket and the error
// (ENETUNREACH on the tracepoint backend): no payload, no length, no destination. It is
// reported as what is known, without a decode error and without zero-filled fields.
func TestScenarioFailedSendUnseen(t *testing.T) {
	s := newScNet(t, Config{})
	a := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303")
	s.feed(&record.Record{Kind: record.Datagram, Dir: record.DirOut, Src: a.Addr, HasSendRet: true, SendRet: -int64(syscall.ENETUNREACH)})
	s.flush()
	ev := s.only(ndjson.TypeSend)
	if ev.Disc != nil || ev.Len != nil || ev.Dst != "" || ev.Ret == nil || *ev.Ret != -int64(syscall.ENETUNREACH) {
		t.Fatalf("send %+v (disc %+v)", ev, ev.Disc)
	}
	if len(s.events) != 1 {
		t.Fatalf("%d events, want the send alone:\n%s", len(s.events), s.dump())
	}
}

// With the local node's record known (--enr), what counts is whether peers reach it where
// the record says: behind a NAT that its record accounts for, nothing is wrong; a record
// advertising another endpoint than peers reach is the finding (issue 9, item 6).
func TestScenarioEndpointMismatchAgainstRecord(t *testing.T) {
	public := netip.MustParseAddrPort("203.0.113.7:41000")
	for _, c := range []struct {
		advertised string
		anomaly    bool
	}{
		{"203.0.113.7:41000", false}, // the record names the NAT's mapping
		{"192.168.1.10:30303", true}, // the record names the private address
	} {
		a, b := disctest.NewNode(t, disctest.KeyA, "192.168.1.10:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
		rec := disctest.NewNodeFromKey(t, a.Key, netip.MustParseAddrPort(c.advertised)).LN.Node()
		s := newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{a.Key}, Nodes: []*enode.Node{rec}}})
		ping := s.ping(a, b, record.DirUnknown)
		s.after(time.Millisecond)
		s.v4(b, a, &v4wire.Pong{To: v4wire.NewEndpoint(public, 0), ReplyTok: ping[:32], Expiration: s.exp()}, record.DirUnknown)
		s.tick(time.Second)
		ans := s.ofType(ndjson.TypeAnomaly)
		switch {
		case !c.anomaly && len(ans) != 0:
			t.Errorf("record at %s: %+v", c.advertised, ans[0])
		case c.anomaly && (len(ans) != 1 || !strings.Contains(ans[0].Detail, "our record advertises 192.168.1.10:30303")):
			t.Errorf("record at %s: anomalies %+v", c.advertised, ans)
		}
	}
}

// The recipient restarted and answers a request of the old session with WHOAREYOU, which
// a firewall drops on its way back: the initiator never saw the challenge, so the drop,
// not the recipient's missing session, is why the request failed (as geth's timeout says).
func TestScenarioV5ChallengeToARequestDropped(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{a.Key, b.Key}}})
	s.pingHandshake(a, b, time.Millisecond)
	s.after(time.Second)

	b2 := disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303") // no sessions
	u, ok := s.v5(a, b2, &v5wire.Ping{ReqID: []byte{7}, ENRSeq: 1}, nil).(*v5wire.Unknown)
	if !ok {
		t.Fatal("the restarted recipient decrypted a request of the old session")
	}
	s.after(200 * time.Microsecond)
	w, _, err := b2.Codec.Encode(a.ID(), a.Addr.String(), &v5wire.Whoareyou{Nonce: u.Nonce, IDNonce: [16]byte{3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.feed(scDatagram(b2.Addr, a.Addr, bytes.Clone(w), record.DirUnknown))
	s.feed(&record.Record{Kind: record.Drop, Src: b2.Addr, Dst: a.Addr, Len: len(w), Reason: "NETFILTER_DROP"})
	s.tick(3 * time.Second)
	s.flush()

	var pings []*ndjson.Event
	for _, ex := range s.ofType(ndjson.TypeExchange) {
		if ex.Req == "PING/v5" && ex.Outcome == string(result.Failed) {
			pings = append(pings, ex)
		}
	}
	if len(pings) != 1 {
		t.Fatalf("%d failed PING/v5 exchanges, want 1:\n%s", len(pings), s.dump())
	}
	checkFailed(t, pings[0], string(result.KernelDrop), "NETFILTER_DROP")
}

// A is in session, B lost it: A's PING (which the decoder, having seen the handshake,
// decrypts) meets a challenge that is dropped; A's call gives up, and its next PING,
// 700 ms later, meets B's repeat of that challenge, which A ignores. The second
// request's exchange is rejected by the stale challenge, not "read, never answered"
// (seen live under 50 % loss).
func TestScenarioV5StaleChallengeToADecryptedRequest(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{LossReportDelay: 1100 * time.Millisecond, Identity: Identity{Keys: []*ecdsa.PrivateKey{a.Key, b.Key}}})
	s.pingHandshake(a, b, time.Millisecond)
	s.after(2 * time.Second)
	b = disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303") // restarted: no session
	first := s.v5(a, b, &v5wire.Ping{ReqID: []byte{2, 2, 2, 2, 2, 2, 2, 2}, ENRSeq: 1}, nil)
	u, ok := first.(*v5wire.Unknown)
	if !ok {
		t.Fatalf("B decoded %T, want a packet it cannot decrypt", first)
	}
	w := s.droppedChallenge(b, a, u.Nonce)
	s.after(700*time.Millisecond + 100*time.Microsecond)
	s.v5(a, b, &v5wire.Ping{ReqID: []byte{3, 3, 3, 3, 3, 3, 3, 3}, ENRSeq: 1}, nil)
	s.after(100 * time.Microsecond)
	s.feed(scDatagram(b.Addr, a.Addr, bytes.Clone(w), record.DirUnknown))
	s.tick(4 * time.Second)
	s.flush()

	exs := s.ofType(ndjson.TypeExchange)
	if len(exs) != 3 {
		t.Fatalf("%d exchanges, want the handshake's PING and two more:\n%s", len(exs), s.dump())
	}
	slices.SortFunc(exs, func(x, y *ndjson.Event) int { return strings.Compare(x.Time, y.Time) })
	checkFailed(t, exs[1], string(result.KernelDrop), "NETFILTER_DROP")
	checkFailed(t, exs[2], string(result.Rejected), "repeated its challenge to an earlier packet")
}
