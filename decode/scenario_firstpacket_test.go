package decode

import (
	"bytes"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// A handshake's first packet is known by the WHOAREYOU that echoes its nonce (and the
// HANDSHAKE after it), not by its size (issue 9): go-ethereum's has a 20-byte message,
// which a short TALKRESP has too, and other implementations send other sizes.

// offCapture runs a discv5 packet between two codecs without the decoder seeing it: what
// happened before the capture began.
func offCapture(t *testing.T, from, to *disctest.Node, p v5wire.Packet, challenge *v5wire.Whoareyou) v5wire.Packet {
	t.Helper()
	b, _, err := from.Codec.Encode(to.ID(), to.Addr.String(), p, challenge)
	if err != nil {
		t.Fatal(err)
	}
	_, _, got, err := to.Codec.Decode(bytes.Clone(b), from.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// sessionBeforeCapture sets up a session from a to b that the capture does not show.
func sessionBeforeCapture(t *testing.T, a, b *disctest.Node) {
	t.Helper()
	ping := &v5wire.Ping{ReqID: []byte{0xee}, ENRSeq: 1}
	u := offCapture(t, a, b, ping, nil).(*v5wire.Unknown)
	w := offCapture(t, b, a, &v5wire.Whoareyou{Nonce: u.Nonce, IDNonce: [16]byte{3}}, nil).(*v5wire.Whoareyou)
	w.Node = b.LN.Node()
	offCapture(t, a, b, ping, w)
}

// shortTalkResponse is a TALKRESP whose message is 20 bytes, like go-ethereum's random
// packet: a 91-byte datagram.
var shortTalkResponse = &v5wire.TalkResponse{ReqID: []byte{7}}

// A peer asks for a TALK in a session set up before the capture, and the answer is a
// 91-byte TALKRESP: no handshake's first packet, whatever its size; neither node's key
// is known. Nothing failed.
func TestScenarioV5ShortTalkResponseInSession(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{a.ID(), b.ID()}}})
	sessionBeforeCapture(t, b, a)
	s.v5(b, a, &v5wire.TalkRequest{ReqID: []byte{7}, Protocol: "x", Message: []byte("hello")}, nil)
	s.after(time.Millisecond)
	s.v5(a, b, shortTalkResponse, nil)
	if l := *s.events[len(s.events)-1].Len; l != 91 {
		t.Fatalf("the TALKRESP is %d bytes, want 91", l)
	}
	s.tick(3 * time.Second)
	s.flush()
	for _, ev := range s.events {
		if ev.Type == ndjson.TypeHandshake || ev.Type == ndjson.TypeExchange && ev.Outcome != string(result.Answered) {
			t.Fatalf("a TALK answered in a session gave %s %s %s:\n%s", ev.Type, ev.Outcome, ev.Cause, s.dump())
		}
	}
}

// The TALKREQ rides in the HANDSHAKE, and the recipient's first response is a 91-byte
// TALKRESP: a MESSAGE from the recipient instead of a new WHOAREYOU, which proves it
// took the HANDSHAKE, whatever its size.
func TestScenarioV5ShortFirstResponseEstablishes(t *testing.T) {
	a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
	s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{a.ID(), b.ID()}}})
	talk := &v5wire.TalkRequest{ReqID: []byte{7}, Protocol: "x", Message: []byte("hello")}
	w := s.challenge(a, b, talk)
	s.after(time.Millisecond)
	s.v5(a, b, talk, w)
	s.after(2 * time.Millisecond)
	s.v5(b, a, shortTalkResponse, nil)
	s.tick(3 * time.Second)
	s.flush()
	hs := s.only(ndjson.TypeHandshake)
	if hs.Outcome != string(result.Established) || hs.HandshakeRTTNs == nil || *hs.HandshakeRTTNs != int64(2*time.Millisecond) {
		t.Fatalf("handshake %+v, want established in 2 ms:\n%s", hs, s.dump())
	}
}

// otherFirstPacket sends a's first packet to b as an implementation other than
// go-ethereum may: 44 random bytes. It returns the nonce.
func (s *scNet) otherFirstPacket(a, b *disctest.Node) v5wire.Nonce {
	s.t.Helper()
	nonce := v5wire.Nonce{4, 4, 4, 4}
	head := v5wire.Header{
		IV:           [16]byte{4},
		StaticHeader: v5wire.StaticHeader{ProtocolID: [6]byte{'d', 'i', 's', 'c', 'v', '5'}, Version: 1, Flag: 0, Nonce: nonce, AuthSize: 32},
		AuthData:     a.ID().Bytes(),
	}
	random, err := a.Codec.EncodeRaw(b.ID(), head, bytes.Repeat([]byte{0x5a}, 44))
	if err != nil {
		s.t.Fatal(err)
	}
	s.feed(scDatagram(a.Addr, b.Addr, bytes.Clone(random), record.DirUnknown))
	return nonce
}

// Another implementation's 44-byte first packet starts the handshake its WHOAREYOU
// answers, and, when the capture misses that WHOAREYOU, the one its HANDSHAKE answers:
// the handshake starts with it either way, and it is no request of its own.
func TestScenarioV5OtherImplementationsFirstPacket(t *testing.T) {
	for _, seen := range []bool{true, false} {
		a, b := disctest.NewNode(t, disctest.KeyA, "10.0.0.1:30303"), disctest.NewNode(t, disctest.KeyB, "10.0.0.2:30303")
		s := newScNet(t, Config{Identity: Identity{IDs: []enode.ID{a.ID(), b.ID()}}})
		nonce := s.otherFirstPacket(a, b)
		s.after(time.Millisecond)
		var w *v5wire.Whoareyou
		if seen {
			w = s.v5(b, a, &v5wire.Whoareyou{Nonce: nonce, IDNonce: [16]byte{7}}, nil).(*v5wire.Whoareyou)
			w.Node = b.LN.Node()
		} else {
			w = s.unseenChallenge(b, a, nonce)
		}
		s.after(time.Millisecond)
		ping := &v5wire.Ping{ReqID: []byte{1}, ENRSeq: 1}
		s.v5(a, b, ping, w)
		s.after(time.Millisecond)
		s.v5pong(b, a, ping.ReqID)
		s.tick(3 * time.Second)
		s.flush()
		hs := s.only(ndjson.TypeHandshake)
		if hs.Outcome != string(result.Established) || hs.Time != ndjson.Time(scT0) || *hs.TotalNs != int64(3*time.Millisecond) {
			t.Errorf("challenge seen %v: handshake %+v, want established, from the first packet, in 3 ms:\n%s", seen, hs, s.dump())
		}
		// One exchange: the PING the HANDSHAKE carried, answered by the PONG.
		if ex := s.only(ndjson.TypeExchange); ex.Time != ndjson.Time(scT0.Add(2*time.Millisecond)) || ex.Outcome != string(result.Answered) {
			t.Errorf("challenge seen %v: exchange %+v, want the HANDSHAKE's request answered", seen, ex)
		}
	}
}
