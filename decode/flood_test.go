package decode

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// A peer floods the node: what the decoder keeps stays within its count bounds, the
// indexes empty once the flood is older than the retention time, and the other peers'
// exchanges are reported as they happened.
func TestScenarioFloodFromOnePeer(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	flooder := netip.MustParseAddrPort("10.6.6.6:4000")
	junk := make([]byte, 256)
	ping := s.ping(a, b, record.DirOut)
	for i := range 2 * maxSeen {
		binary.BigEndian.PutUint64(junk, uint64(i)) // each datagram its own
		s.feed(scDatagram(flooder, a.Addr, junk, record.DirIn))
		s.feed(&record.Record{Kind: record.Read, Src: flooder, Dst: a.Addr, Len: len(junk)})
		if i == maxSeen {
			pong := s.pong(b, a, ping, record.DirIn)
			s.feed(&record.Record{Kind: record.Read, Src: b.Addr, Dst: a.Addr, Len: len(pong)})
		}
		s.after(10 * time.Microsecond)
	}
	if n := s.dec.seen.all.len(); n > maxSeen {
		t.Errorf("%d datagrams kept, bound %d", n, maxSeen)
	}
	for name, n := range map[string]int{"identity": len(s.dec.seen.byHead), "flow": len(s.dec.seen.byFlow),
		"socket queue": len(s.dec.seen.unread)} {
		if n > maxSeen {
			t.Errorf("%d %s index keys, bound %d", n, name, maxSeen)
		}
	}
	reads := 0
	for _, ev := range s.ofType(ndjson.TypeRead) {
		if ev.Disc != nil && ev.Src == ndjson.Addr(flooder) {
			reads++
		}
	}
	if reads != 2*maxSeen {
		t.Errorf("%d of %d reads of the flood carry their datagram's disc", reads, 2*maxSeen)
	}
	s.tick(time.Second)
	if ex := s.only(ndjson.TypeExchange); ex.Outcome != string(result.Answered) {
		t.Errorf("the PING to the other peer during the flood: %+v", ex)
	}
	s.tick(time.Minute)
	s.tick(time.Second) // the sweep after the retention time
	if n := s.dec.seen.all.len() + len(s.dec.seen.byHead) + len(s.dec.seen.byFlow) + len(s.dec.seen.byPair) +
		len(s.dec.seen.unread) + len(s.dec.seen.unreadAny); n > 2*4 {
		t.Errorf("%d datagrams and index keys left a minute after the flood", n)
	}
}

// A loss the tracer reports after the request timed out, but that happened while it
// waited, is evidence beside no_response: the answer may have been lost.
func TestScenarioLossNoticedLateQualifiesNoResponse(t *testing.T) {
	s := newScNet(t, Config{LossReportDelay: 1100 * time.Millisecond})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	start := s.now
	s.ping(a, b, record.DirOut)
	s.after(900 * time.Millisecond) // the tracer checks its loss counters once a second
	s.feed(&record.Record{Kind: record.Lost, Count: 5, Since: start.Add(-100 * time.Millisecond)})
	s.tick(time.Second)
	checkFailed(t, s.only(ndjson.TypeExchange), string(result.NoResponse), "lost 5 observations lost by the tracer meanwhile")
	if l := s.only(ndjson.TypeLost); l.Since != ndjson.Time(start.Add(-100*time.Millisecond)) {
		t.Errorf("lost event since %q", l.Since)
	}
}

// A request the application read and seemingly never answered, while the tracer lost
// events: the answer may be among them, so app_drop cites the loss too.
func TestScenarioLossQualifiesAppDrop(t *testing.T) {
	s := newScNet(t, Config{LossReportDelay: 1100 * time.Millisecond})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	start := s.now
	ping := s.ping(b, a, record.DirIn)
	s.after(300 * time.Microsecond)
	s.feed(&record.Record{Kind: record.Read, Src: b.Addr, Dst: a.Addr, Len: len(ping), HasProc: true, PID: 4242, Comm: "geth"})
	s.after(900 * time.Millisecond)
	s.feed(&record.Record{Kind: record.Lost, Count: 2, Since: start})
	s.tick(time.Second)
	checkFailed(t, s.only(ndjson.TypeExchange), string(result.AppDrop), "read read by pid 4242 (geth)", "lost 2 observations lost by the tracer meanwhile")
}

// A request resent many times lists the first copies as evidence and counts the rest.
func TestScenarioEvidenceIsCapped(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	ping := s.ping(a, b, record.DirOut)
	for range maxSentEvidence + 9 {
		s.after(time.Millisecond)
		s.feed(scDatagram(a.Addr, b.Addr, ping, record.DirOut))
	}
	s.tick(time.Second)
	ex := s.only(ndjson.TypeExchange)
	if len(ex.Evidence) != maxSentEvidence || ex.EvidenceMore != 10 {
		t.Errorf("%d evidence items and %d more, want %d and 10", len(ex.Evidence), ex.EvidenceMore, maxSentEvidence)
	}
}

// The cost of a record while one flow floods: flat in the number of datagrams the flow
// has within the retention time (it was linear: each read and drop scanned the flow).
func BenchmarkDecoderFlood(b *testing.B) {
	for _, perSecond := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("%d/s", perSecond), func(b *testing.B) {
			d := NewDecoder(Config{})
			src, dst := netip.MustParseAddrPort("10.6.6.6:4000"), netip.MustParseAddrPort("10.0.0.1:30303")
			payload := make([]byte, 256)
			recv := record.Record{Kind: record.Datagram, Dir: record.DirIn, Src: src, Dst: dst, Len: len(payload), Payload: payload}
			read := record.Record{Kind: record.Read, Src: src, Dst: dst, Len: len(payload)}
			drop := record.Record{Kind: record.Drop, Src: src, Dst: dst, Len: len(payload), Reason: "SOCKET_RCVBUFF"}
			t := scT0
			step := time.Second / time.Duration(perSecond)
			emit := func(result.Event) {}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				binary.BigEndian.PutUint64(payload, uint64(i))
				t = t.Add(step)
				recv.Time, read.Time, drop.Time = t, t, t
				d.Feed(&recv, emit)
				if i%10 == 0 {
					d.Feed(&drop, emit)
				} else {
					d.Feed(&read, emit)
				}
			}
		})
	}
}

// An ICMP error quoting a request is matched by the quoted bytes, however many
// datagrams the same flow carried since.
func TestScenarioICMPQuotesARequestBehindAFlood(t *testing.T) {
	s := newScNet(t, Config{})
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	ping := scDatagram(a.Addr, b.Addr, s.ping(a, b, record.DirOut), record.DirOut)
	junk := make([]byte, 64)
	for i := range 10 * lookBack {
		binary.BigEndian.PutUint64(junk, uint64(i))
		s.feed(scDatagram(a.Addr, b.Addr, junk, record.DirOut))
	}
	s.after(time.Millisecond)
	s.feed(icmpRec(b.Addr, a.Addr, 3, 3, ping))
	s.tick(time.Second)
	checkFailed(t, s.only(ndjson.TypeExchange), string(result.ICMPUnreachable), "icmp 3/3")
}

// A peer flooding discv5 messages: the messages followed per pair stay bounded (each
// message costs O(1), not the length of the flood), and every one is still reported.
func TestScenarioMessageFloodFromOnePeer(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{a.ID()}}})
	const n = 2000
	most := 0
	for i := range n {
		s.randomPacket(b, a, &v5wire.Ping{ReqID: binary.BigEndian.AppendUint32(nil, uint32(i)), ENRSeq: 1})
		st, ok := s.dec.hs.pairs.Get(flowOf(b.Addr, a.Addr))
		if !ok {
			t.Fatalf("message %d is not followed", i)
		}
		most = max(most, len(st.msgs))
		s.after(100 * time.Microsecond)
	}
	s.tick(2 * time.Second)
	if most > maxPendingMsgs {
		t.Errorf("up to %d messages followed for one pair, bound %d", most, maxPendingMsgs)
	}
	if hs := s.ofType(ndjson.TypeHandshake); len(hs) != n {
		t.Errorf("%d handshakes reported for %d first packets nothing answered", len(hs), n)
	}
}

// Past maxPending requests and messages waiting at once, new ones are decoded but not
// followed: memory stays bounded, and a shed event counts them (untracked). Here they
// come from many peers, each within its share.
func TestScenarioPendingIsBounded(t *testing.T) {
	a := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303")
	peers := make([]*disctest.Node, 2*maxPending/maxFlowShare) // enough shares for the second half
	for i := range peers {
		peers[i] = disctest.NewNode(t, disctest.KeyB, fmt.Sprintf("10.0.1.%d:%d", i%250+1, 30303+i/250))
	}
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{a.ID()}}})
	const n = maxPending + 1000
	for i := range n {
		s.randomPacket(peers[i%len(peers)], a, &v5wire.Ping{ReqID: binary.BigEndian.AppendUint32(nil, uint32(i)), ENRSeq: 1})
		if s.dec.pending > maxPending {
			t.Fatalf("%d pending after %d messages, bound %d", s.dec.pending, i+1, maxPending)
		}
		s.after(10 * time.Microsecond)
	}
	s.tick(2 * time.Second)
	s.flush()
	if hs, untracked := len(s.ofType(ndjson.TypeHandshake)), s.untracked(); hs != maxPending || untracked != n-maxPending {
		t.Errorf("%d handshakes reported and %d counted untracked, want %d and %d", hs, untracked, maxPending, n-maxPending)
	}
	if s.dec.pending != 0 {
		t.Errorf("%d still pending at the end", s.dec.pending)
	}
}

// A peer flooding messages takes at most half of maxPending and its share: the other
// peers' requests meanwhile are followed, every one.
func TestScenarioFloodLeavesRoomForTheOthers(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	c := disctest.NewNode(t, disctest.KeyC, "10.0.0.3:30303")
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{a.ID()}}})
	const n = 50_000 // a second at 50,000 messages/s
	pings := 0
	for i := range n {
		s.randomPacket(b, a, &v5wire.Ping{ReqID: binary.BigEndian.AppendUint32(nil, uint32(i)), ENRSeq: 1})
		if i%2500 == 1000 {
			s.ping(c, a, record.DirIn)
			pings++
		}
		if most := maxPending/2 + maxFlowShare + pings; s.dec.pending > most {
			t.Fatalf("%d pending after %d messages of the flood, want at most half of %d, a share of %d and the other peer's %d", s.dec.pending, i+1, maxPending, maxFlowShare, pings)
		}
		s.after(20 * time.Microsecond)
	}
	s.tick(2 * time.Second)
	s.flush()
	fromC := 0
	for _, ev := range s.ofType(ndjson.TypeExchange) {
		if ev.Initiator == c.Addr.String() {
			fromC++
		}
	}
	if fromC != pings {
		t.Errorf("%d of the other peer's %d PINGs during the flood reported: the flood blinded the decoder", fromC, pings)
	}
}
