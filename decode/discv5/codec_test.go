package discv5

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"net"
	"testing"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/ethereum/go-ethereum/p2p/enr"

	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/record"
)

// exchange is a captured conversation: the datagrams in order, with what each was.
type exchange struct {
	recs  []*record.Record
	what  []string
	nonce [][]byte
	// challengeData is the WHOAREYOU as node A decoded it.
	challengeData []byte
}

// send encodes p from n to peer (with challenge for a handshake), has peer decode it
// with its own codec (so both codecs move through the real protocol states), and
// records the datagram.
func (x *exchange) send(t *testing.T, what string, n, peer *disctest.Node, p v5wire.Packet, challenge *v5wire.Whoareyou) v5wire.Packet {
	t.Helper()
	enc, nonce, err := n.Codec.Encode(peer.ID(), peer.Addr.String(), p, challenge)
	if err != nil {
		t.Fatalf("%s: encode: %v", what, err)
	}
	enc = bytes.Clone(enc) // the codec reuses its buffer
	x.recs = append(x.recs, datagram(n.Addr, peer.Addr, enc))
	x.what = append(x.what, what)
	x.nonce = append(x.nonce, bytes.Clone(nonce[:]))
	_, _, got, err := peer.Codec.Decode(bytes.Clone(enc), n.Addr.String())
	if err != nil {
		t.Fatalf("%s: go-ethereum could not decode its own packet: %v", what, err)
	}
	return got
}

// newExchange runs a full go-ethereum discv5 conversation between A and B:
// A's random packet, B's WHOAREYOU, A's handshake with PING, B's PONG, then
// FINDNODE/NODES and TALKREQ/TALKRESP over the session, and B resending an identical
// WHOAREYOU is not part of it (see the resend test).
func newExchange(t *testing.T, a, b *disctest.Node) *exchange {
	t.Helper()
	x := new(exchange)
	first := x.send(t, "random", a, b, &v5wire.Ping{ReqID: []byte{1}, ENRSeq: a.LN.Seq()}, nil)
	unknown, ok := first.(*v5wire.Unknown)
	if !ok {
		t.Fatalf("B decoded the first packet as %T, want *v5wire.Unknown", first)
	}
	challenge := &v5wire.Whoareyou{Nonce: unknown.Nonce, IDNonce: [16]byte{9, 8, 7}, RecordSeq: 0}
	got := x.send(t, "whoareyou", b, a, challenge, nil)
	w, ok := got.(*v5wire.Whoareyou)
	if !ok {
		t.Fatalf("A decoded %T, want WHOAREYOU", got)
	}
	x.challengeData = bytes.Clone(w.ChallengeData)
	w.Node = b.LN.Node()
	x.send(t, "handshake", a, b, &v5wire.Ping{ReqID: []byte{1}, ENRSeq: a.LN.Seq()}, w)
	x.send(t, "pong", b, a, &v5wire.Pong{ReqID: []byte{1}, ENRSeq: b.LN.Seq(), ToIP: net.IP(a.Addr.Addr().AsSlice()), ToPort: a.Addr.Port()}, nil)
	x.send(t, "findnode", a, b, &v5wire.Findnode{ReqID: []byte{2}, Distances: []uint{256, 255}}, nil)
	x.send(t, "nodes", b, a, &v5wire.Nodes{ReqID: []byte{2}, RespCount: 1, Nodes: []*enr.Record{b.LN.Node().Record()}}, nil)
	x.send(t, "talkreq", a, b, &v5wire.TalkRequest{ReqID: []byte{3}, Protocol: "eth", Message: []byte("hi")}, nil)
	x.send(t, "talkresp", b, a, &v5wire.TalkResponse{ReqID: []byte{3}, Message: []byte("ho")}, nil)
	return x
}

// wantPacket is what one datagram of the exchange should decode to.
type wantPacket struct {
	skip     bool // not recognised as discv5 (false from Decode)
	kind     string
	src      *enode.ID
	dst      enode.ID
	msg      string // Msg.Name(), "" for none
	reqID    []byte
	err      error
	records  []enode.ID
	nodes    int
	hasNodes bool
}

func checkExchange(t *testing.T, d *Decoder, x *exchange, want []wantPacket) {
	t.Helper()
	if len(want) != len(x.recs) {
		t.Fatalf("%d expectations for %d packets", len(want), len(x.recs))
	}
	for i, r := range x.recs {
		w := want[i]
		p, ok := d.Decode(r)
		if w.skip {
			if ok {
				t.Errorf("%s: decoded (%s, err %v), want it unrecognised", x.what[i], p.Kind, p.Err)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: not recognised as discv5", x.what[i])
			continue
		}
		t.Run(x.what[i], func(t *testing.T) {
			if p.Kind != w.kind {
				t.Errorf("kind %q, want %q", p.Kind, w.kind)
			}
			if !bytes.Equal(p.Nonce, x.nonce[i]) {
				t.Errorf("nonce %x, want %x", p.Nonce, x.nonce[i])
			}
			checkIDs(t, p, w.src, w.dst)
			checkErr(t, p, w.err)
			name := ""
			if p.Msg != nil {
				name = p.Msg.Name()
			}
			if name != w.msg {
				t.Errorf("message %q, want %q (err %v)", name, w.msg, p.Err)
			}
			if p.Msg != nil && !bytes.Equal(p.Msg.RequestID(), w.reqID) {
				t.Errorf("req-id %x, want %x", p.Msg.RequestID(), w.reqID)
			}
			var recs []enode.ID
			for _, n := range p.Records {
				recs = append(recs, n.ID())
			}
			if len(recs) != len(w.records) || (len(recs) > 0 && !equalIDs(recs, w.records)) {
				t.Errorf("records %v, want %v", recs, w.records)
			}
			if p.HasNodes != w.hasNodes || p.Nodes != w.nodes {
				t.Errorf("nodes %d (has %v), want %d (has %v)", p.Nodes, p.HasNodes, w.nodes, w.hasNodes)
			}
		})
	}
}

func equalIDs(a, b []enode.ID) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestGethExchange(t *testing.T) {
	a := disctest.NewNodeFromKey(t, testKeyA, addrA)
	b := disctest.NewNodeFromKey(t, testKeyB, addrB)
	x := newExchange(t, a, b)
	idA, idB := a.ID(), b.ID()

	// Everything decrypts from the key of B, the handshake's recipient.
	recipientView := []wantPacket{
		{kind: KindMessage, src: &idA, dst: idB, err: ErrRandomPacket},
		{kind: KindWhoareyou, src: &idB, dst: idA},
		{kind: KindHandshake, src: &idA, dst: idB, msg: "PING/v5", reqID: []byte{1}, records: []enode.ID{idA}},
		{kind: KindMessage, src: &idB, dst: idA, msg: "PONG/v5", reqID: []byte{1}},
		{kind: KindMessage, src: &idA, dst: idB, msg: "FINDNODE/v5", reqID: []byte{2}},
		{kind: KindMessage, src: &idB, dst: idA, msg: "NODES/v5", reqID: []byte{2}, records: []enode.ID{idB}, nodes: 1, hasNodes: true},
		{kind: KindMessage, src: &idA, dst: idB, msg: "TALKREQ/v5", reqID: []byte{3}},
		{kind: KindMessage, src: &idB, dst: idA, msg: "TALKRESP/v5", reqID: []byte{3}},
	}
	t.Run("key of B", func(t *testing.T) {
		d := NewDecoder([]*ecdsa.PrivateKey{b.Key}, 0)
		checkExchange(t, d, x, recipientView)
		// The WHOAREYOU's challenge-data is what A used as HKDF salt.
		d2 := NewDecoder([]*ecdsa.PrivateKey{b.Key}, 0)
		d2.Decode(x.recs[0])
		p, _ := d2.Decode(x.recs[1])
		if !bytes.Equal(p.ChallengeData, x.challengeData) {
			t.Errorf("challenge-data %x, want %x", p.ChallengeData, x.challengeData)
		}
		if !bytes.Equal(p.Nonce, x.nonce[0]) {
			t.Errorf("WHOAREYOU nonce %x does not echo the random packet's %x", p.Nonce, x.nonce[0])
		}
		if !bytes.Equal(p.IDNonce, []byte{9, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) {
			t.Errorf("id-nonce %x", p.IDNonce)
		}
	})
	t.Run("keys of A and B", func(t *testing.T) {
		d := NewDecoder([]*ecdsa.PrivateKey{a.Key, b.Key}, 0)
		checkExchange(t, d, x, recipientView)
	})
	t.Run("each datagram followed by its read", func(t *testing.T) {
		// The tracer reports the application's read of a datagram after its arrival;
		// decoding both must give the same result as decoding the datagram once.
		d := NewDecoder([]*ecdsa.PrivateKey{b.Key}, 0)
		y := new(exchange)
		var doubled []wantPacket
		for i, r := range x.recs {
			read := *r
			read.Kind = record.Read
			y.recs = append(y.recs, r, &read)
			y.what = append(y.what, x.what[i], x.what[i]+" read")
			y.nonce = append(y.nonce, x.nonce[i], x.nonce[i])
			doubled = append(doubled, recipientView[i], recipientView[i])
		}
		checkExchange(t, d, y, doubled)
	})
	t.Run("key of A, B's ID known", func(t *testing.T) {
		// A is the initiator: its handshake keys come from an ephemeral secret, so the
		// session stays closed; every header still decodes.
		d := NewDecoder([]*ecdsa.PrivateKey{a.Key}, 0)
		d.AddKnownID(idB)
		checkExchange(t, d, x, []wantPacket{
			{kind: KindMessage, src: &idA, dst: idB, err: ErrRandomPacket},
			{kind: KindWhoareyou, src: &idB, dst: idA},
			{kind: KindHandshake, src: &idA, dst: idB, err: errInitiatorSide, records: []enode.ID{idA}},
			{kind: KindMessage, src: &idB, dst: idA, err: ErrNoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: ErrNoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: ErrNoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: ErrNoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: ErrNoKey},
		})
	})
	t.Run("key of A, B unknown", func(t *testing.T) {
		// Packets to B cannot be unmasked until B's ID shows up as a src-id (the PONG).
		d := NewDecoder([]*ecdsa.PrivateKey{a.Key}, 0)
		checkExchange(t, d, x, []wantPacket{
			{skip: true},
			{kind: KindWhoareyou, dst: idA},
			{skip: true},
			{kind: KindMessage, src: &idB, dst: idA, err: ErrNoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: ErrNoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: ErrNoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: ErrNoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: ErrNoKey},
		})
	})
	t.Run("no keys, both IDs known", func(t *testing.T) {
		d := NewDecoder(nil, 0)
		d.AddKnownID(idA)
		d.AddKnownID(idB)
		checkExchange(t, d, x, []wantPacket{
			{kind: KindMessage, src: &idA, dst: idB, err: ErrRandomPacket},
			{kind: KindWhoareyou, src: &idB, dst: idA},
			{kind: KindHandshake, src: &idA, dst: idB, err: ErrNoKey, records: []enode.ID{idA}},
			{kind: KindMessage, src: &idB, dst: idA, err: ErrNoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: ErrNoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: ErrNoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: ErrNoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: ErrNoKey},
		})
	})
	t.Run("capture starts after the handshake", func(t *testing.T) {
		d := NewDecoder([]*ecdsa.PrivateKey{b.Key}, 0)
		x2 := &exchange{recs: x.recs[3:], what: x.what[3:], nonce: x.nonce[3:]}
		checkExchange(t, d, x2, []wantPacket{
			{skip: true}, // PONG to A, whose ID is not known yet
			{kind: KindMessage, src: &idA, dst: idB, err: ErrNoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: ErrNoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: ErrNoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: ErrNoKey},
		})
	})
}

// geth resends an identical WHOAREYOU while a challenge is pending; the resend must not
// disturb the handshake that follows, and a second, different challenge (a new
// attempt) must still let the handshake answering the first one decrypt.
func TestGethWhoareyouResend(t *testing.T) {
	a := disctest.NewNodeFromKey(t, testKeyA, addrA)
	b := disctest.NewNodeFromKey(t, testKeyB, addrB)
	x := new(exchange)
	first := x.send(t, "random", a, b, &v5wire.Ping{ReqID: []byte{1}}, nil)
	challenge := &v5wire.Whoareyou{Nonce: first.(*v5wire.Unknown).Nonce, IDNonce: [16]byte{1}}
	got := x.send(t, "whoareyou", b, a, challenge, nil)
	x.send(t, "whoareyou resend", b, a, challenge, nil)
	if !bytes.Equal(x.recs[1].Payload, x.recs[2].Payload) {
		t.Fatal("go-ethereum's resend is not identical")
	}
	w := got.(*v5wire.Whoareyou)
	w.Node = b.LN.Node()
	x.send(t, "handshake", a, b, &v5wire.Ping{ReqID: []byte{7}}, w)

	d := NewDecoder([]*ecdsa.PrivateKey{b.Key}, 0)
	// An unrelated challenge from B to A, stored after the real one, comes first in the
	// list: the decoder must fall back to the older one.
	for i, r := range x.recs {
		if i == 3 {
			d.st.storeChallenge(a.ID(), seenChallenge{data: bytes.Repeat([]byte{7}, 63), challengerAddr: b.Addr, challengerID: b.ID(), hasChallengerID: true})
		}
		p, ok := d.Decode(r)
		if !ok {
			t.Fatalf("%s not recognised", x.what[i])
		}
		if i == 3 {
			checkErr(t, p, nil)
			if p.Msg == nil || !bytes.Equal(p.Msg.RequestID(), []byte{7}) {
				t.Fatalf("handshake message %v, err %v", p.Msg, p.Err)
			}
		}
	}
	list, _ := d.st.challenges.Get(a.ID())
	if len(list) != 2 {
		t.Errorf("%d challenges stored for A, want 2 (the resend is the same challenge)", len(list))
	}
}

// A re-handshake replaces the session: packets under the new keys decrypt, and a packet
// still in flight under the previous keys does too.
func TestGethRehandshake(t *testing.T) {
	a := disctest.NewNodeFromKey(t, testKeyA, addrA)
	b := disctest.NewNodeFromKey(t, testKeyB, addrB)
	x := newExchange(t, a, b)
	d := NewDecoder([]*ecdsa.PrivateKey{b.Key}, 0)
	for _, r := range x.recs {
		d.Decode(r)
	}
	// An old-session packet from A, encoded now but delivered after the re-handshake.
	late := new(exchange)
	late.send(t, "late findnode", a, b, &v5wire.Findnode{ReqID: []byte{0x55}, Distances: []uint{1}}, nil)

	// B loses its session (restart) and A's next packet fails at B: B challenges again.
	b2 := disctest.NewNodeFromKey(t, testKeyB, addrB)
	y := new(exchange)
	unknown := y.send(t, "findnode, old keys", a, b2, &v5wire.Findnode{ReqID: []byte{4}, Distances: []uint{0}}, nil)
	challenge := &v5wire.Whoareyou{Nonce: unknown.(*v5wire.Unknown).Nonce, IDNonce: [16]byte{2}, RecordSeq: a.LN.Seq(), Node: a.LN.Node()}
	w := y.send(t, "whoareyou", b2, a, challenge, nil).(*v5wire.Whoareyou)
	w.Node = b2.LN.Node()
	y.send(t, "handshake", a, b2, &v5wire.Findnode{ReqID: []byte{4}, Distances: []uint{0}}, w)
	y.send(t, "nodes", b2, a, &v5wire.Nodes{ReqID: []byte{4}, RespCount: 1}, nil)

	idA, idB := a.ID(), b.ID()
	checkExchange(t, d, y, []wantPacket{
		// The decoder still has the old keys, so this one decrypts even though B lost them.
		{kind: KindMessage, src: &idA, dst: idB, msg: "FINDNODE/v5", reqID: []byte{4}},
		{kind: KindWhoareyou, src: &idB, dst: idA},
		// RecordSeq is current: no ENR; A's key is known from the first handshake's ENR.
		{kind: KindHandshake, src: &idA, dst: idB, msg: "FINDNODE/v5", reqID: []byte{4}},
		{kind: KindMessage, src: &idB, dst: idA, msg: "NODES/v5", reqID: []byte{4}, hasNodes: true},
	})
	checkExchange(t, d, late, []wantPacket{
		{kind: KindMessage, src: &idA, dst: idB, msg: "FINDNODE/v5", reqID: []byte{0x55}},
	})
}

func TestErrorClasses(t *testing.T) {
	for _, e := range []error{ErrRandomPacket, errInitiatorSide, errNoChallenge} {
		if !errors.Is(e, ErrNoKey) {
			t.Errorf("%q is not a case of %q", e, ErrNoKey)
		}
	}
	for _, e := range []error{errBadIDSignature, errBadRecord, errBadEphemeralKey, errHandshakeDecrypt} {
		if !errors.Is(e, errBadHandshake) {
			t.Errorf("%q is not a case of %q", e, errBadHandshake)
		}
	}
}
