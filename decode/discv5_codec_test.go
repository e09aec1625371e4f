package decode

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/ethereum/go-ethereum/common/mclock"
	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/ethereum/go-ethereum/p2p/enr"
)

// v5Node is one end of a real go-ethereum discv5 codec.
type v5Node struct {
	key   *ecdsa.PrivateKey
	ln    *enode.LocalNode
	codec *v5wire.Codec
	addr  netip.AddrPort
}

func newV5Node(t *testing.T, key *ecdsa.PrivateKey, addr netip.AddrPort) *v5Node {
	t.Helper()
	db, err := enode.OpenDB("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	ln := enode.NewLocalNode(db, key)
	ln.SetStaticIP(net.IP(addr.Addr().AsSlice()))
	ln.Set(enr.UDP(addr.Port()))
	return &v5Node{key: key, ln: ln, codec: v5wire.NewCodec(ln, key, mclock.System{}, nil), addr: addr}
}

func (n *v5Node) id() enode.ID { return n.ln.ID() }

// v5Exchange is a captured conversation: the datagrams in order, with what each was.
type v5Exchange struct {
	recs  []*Record
	what  []string
	nonce [][]byte
	// challengeData is the WHOAREYOU as node A decoded it.
	challengeData []byte
}

// send encodes p from n to peer (with challenge for a handshake), has peer decode it
// with its own codec (so both codecs move through the real protocol states), and
// records the datagram.
func (x *v5Exchange) send(t *testing.T, what string, n, peer *v5Node, p v5wire.Packet, challenge *v5wire.Whoareyou) v5wire.Packet {
	t.Helper()
	enc, nonce, err := n.codec.Encode(peer.id(), peer.addr.String(), p, challenge)
	if err != nil {
		t.Fatalf("%s: encode: %v", what, err)
	}
	enc = bytes.Clone(enc) // the codec reuses its buffer
	x.recs = append(x.recs, v5Datagram(n.addr, peer.addr, enc))
	x.what = append(x.what, what)
	x.nonce = append(x.nonce, bytes.Clone(nonce[:]))
	_, _, got, err := peer.codec.Decode(bytes.Clone(enc), n.addr.String())
	if err != nil {
		t.Fatalf("%s: go-ethereum could not decode its own packet: %v", what, err)
	}
	return got
}

// newV5Exchange runs a full go-ethereum discv5 conversation between A and B:
// A's random packet, B's WHOAREYOU, A's handshake with PING, B's PONG, then
// FINDNODE/NODES and TALKREQ/TALKRESP over the session, and B resending an identical
// WHOAREYOU is not part of it (see the resend test).
func newV5Exchange(t *testing.T, a, b *v5Node) *v5Exchange {
	t.Helper()
	x := new(v5Exchange)
	first := x.send(t, "random", a, b, &v5wire.Ping{ReqID: []byte{1}, ENRSeq: a.ln.Seq()}, nil)
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
	w.Node = b.ln.Node()
	x.send(t, "handshake", a, b, &v5wire.Ping{ReqID: []byte{1}, ENRSeq: a.ln.Seq()}, w)
	x.send(t, "pong", b, a, &v5wire.Pong{ReqID: []byte{1}, ENRSeq: b.ln.Seq(), ToIP: net.IP(a.addr.Addr().AsSlice()), ToPort: a.addr.Port()}, nil)
	x.send(t, "findnode", a, b, &v5wire.Findnode{ReqID: []byte{2}, Distances: []uint{256, 255}}, nil)
	x.send(t, "nodes", b, a, &v5wire.Nodes{ReqID: []byte{2}, RespCount: 1, Nodes: []*enr.Record{b.ln.Node().Record()}}, nil)
	x.send(t, "talkreq", a, b, &v5wire.TalkRequest{ReqID: []byte{3}, Protocol: "eth", Message: []byte("hi")}, nil)
	x.send(t, "talkresp", b, a, &v5wire.TalkResponse{ReqID: []byte{3}, Message: []byte("ho")}, nil)
	return x
}

// v5Want is what one datagram of the exchange should decode to.
type v5Want struct {
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

func v5CheckExchange(t *testing.T, d *V5Decoder, x *v5Exchange, want []v5Want) {
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
			v5CheckIDs(t, p, w.src, w.dst)
			v5CheckErr(t, p, w.err)
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

func TestV5GethExchange(t *testing.T) {
	a := newV5Node(t, v5TestKeyA, v5AddrA)
	b := newV5Node(t, v5TestKeyB, v5AddrB)
	x := newV5Exchange(t, a, b)
	idA, idB := a.id(), b.id()

	// Everything decrypts from the key of B, the handshake's recipient.
	recipientView := []v5Want{
		{kind: KindMessage, src: &idA, dst: idB, err: errV5RandomPacket},
		{kind: KindWhoareyou, src: &idB, dst: idA},
		{kind: KindHandshake, src: &idA, dst: idB, msg: "PING/v5", reqID: []byte{1}, records: []enode.ID{idA}},
		{kind: KindMessage, src: &idB, dst: idA, msg: "PONG/v5", reqID: []byte{1}},
		{kind: KindMessage, src: &idA, dst: idB, msg: "FINDNODE/v5", reqID: []byte{2}},
		{kind: KindMessage, src: &idB, dst: idA, msg: "NODES/v5", reqID: []byte{2}, records: []enode.ID{idB}, nodes: 1, hasNodes: true},
		{kind: KindMessage, src: &idA, dst: idB, msg: "TALKREQ/v5", reqID: []byte{3}},
		{kind: KindMessage, src: &idB, dst: idA, msg: "TALKRESP/v5", reqID: []byte{3}},
	}
	t.Run("key of B", func(t *testing.T) {
		d := NewV5Decoder([]*ecdsa.PrivateKey{b.key})
		v5CheckExchange(t, d, x, recipientView)
		// The WHOAREYOU's challenge-data is what A used as HKDF salt.
		d2 := NewV5Decoder([]*ecdsa.PrivateKey{b.key})
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
		d := NewV5Decoder([]*ecdsa.PrivateKey{a.key, b.key})
		v5CheckExchange(t, d, x, recipientView)
	})
	t.Run("each datagram followed by its read", func(t *testing.T) {
		// The tracer reports the application's read of a datagram after its arrival;
		// decoding both must give the same result as decoding the datagram once.
		d := NewV5Decoder([]*ecdsa.PrivateKey{b.key})
		y := new(v5Exchange)
		var doubled []v5Want
		for i, r := range x.recs {
			read := *r
			read.Kind = Read
			y.recs = append(y.recs, r, &read)
			y.what = append(y.what, x.what[i], x.what[i]+" read")
			y.nonce = append(y.nonce, x.nonce[i], x.nonce[i])
			doubled = append(doubled, recipientView[i], recipientView[i])
		}
		v5CheckExchange(t, d, y, doubled)
	})
	t.Run("key of A, B's ID known", func(t *testing.T) {
		// A is the initiator: its handshake keys come from an ephemeral secret, so the
		// session stays closed; every header still decodes.
		d := NewV5Decoder([]*ecdsa.PrivateKey{a.key})
		d.AddKnownID(idB)
		v5CheckExchange(t, d, x, []v5Want{
			{kind: KindMessage, src: &idA, dst: idB, err: errV5RandomPacket},
			{kind: KindWhoareyou, src: &idB, dst: idA},
			{kind: KindHandshake, src: &idA, dst: idB, err: errV5InitiatorSide, records: []enode.ID{idA}},
			{kind: KindMessage, src: &idB, dst: idA, err: errV5NoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: errV5NoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: errV5NoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: errV5NoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: errV5NoKey},
		})
	})
	t.Run("key of A, B unknown", func(t *testing.T) {
		// Packets to B cannot be unmasked until B's ID shows up as a src-id (the PONG).
		d := NewV5Decoder([]*ecdsa.PrivateKey{a.key})
		v5CheckExchange(t, d, x, []v5Want{
			{skip: true},
			{kind: KindWhoareyou, dst: idA},
			{skip: true},
			{kind: KindMessage, src: &idB, dst: idA, err: errV5NoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: errV5NoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: errV5NoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: errV5NoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: errV5NoKey},
		})
	})
	t.Run("no keys, both IDs known", func(t *testing.T) {
		d := NewV5Decoder(nil)
		d.AddKnownID(idA)
		d.AddKnownID(idB)
		v5CheckExchange(t, d, x, []v5Want{
			{kind: KindMessage, src: &idA, dst: idB, err: errV5RandomPacket},
			{kind: KindWhoareyou, src: &idB, dst: idA},
			{kind: KindHandshake, src: &idA, dst: idB, err: errV5NoKey, records: []enode.ID{idA}},
			{kind: KindMessage, src: &idB, dst: idA, err: errV5NoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: errV5NoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: errV5NoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: errV5NoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: errV5NoKey},
		})
	})
	t.Run("capture starts after the handshake", func(t *testing.T) {
		d := NewV5Decoder([]*ecdsa.PrivateKey{b.key})
		x2 := &v5Exchange{recs: x.recs[3:], what: x.what[3:], nonce: x.nonce[3:]}
		v5CheckExchange(t, d, x2, []v5Want{
			{skip: true}, // PONG to A, whose ID is not known yet
			{kind: KindMessage, src: &idA, dst: idB, err: errV5NoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: errV5NoKey},
			{kind: KindMessage, src: &idA, dst: idB, err: errV5NoKey},
			{kind: KindMessage, src: &idB, dst: idA, err: errV5NoKey},
		})
	})
}

// geth resends an identical WHOAREYOU while a challenge is pending; the resend must not
// disturb the handshake that follows, and a second, different challenge (a new
// attempt) must still let the handshake answering the first one decrypt.
func TestV5GethWhoareyouResend(t *testing.T) {
	a := newV5Node(t, v5TestKeyA, v5AddrA)
	b := newV5Node(t, v5TestKeyB, v5AddrB)
	x := new(v5Exchange)
	first := x.send(t, "random", a, b, &v5wire.Ping{ReqID: []byte{1}}, nil)
	challenge := &v5wire.Whoareyou{Nonce: first.(*v5wire.Unknown).Nonce, IDNonce: [16]byte{1}}
	got := x.send(t, "whoareyou", b, a, challenge, nil)
	x.send(t, "whoareyou resend", b, a, challenge, nil)
	if !bytes.Equal(x.recs[1].Payload, x.recs[2].Payload) {
		t.Fatal("go-ethereum's resend is not identical")
	}
	w := got.(*v5wire.Whoareyou)
	w.Node = b.ln.Node()
	x.send(t, "handshake", a, b, &v5wire.Ping{ReqID: []byte{7}}, w)

	d := NewV5Decoder([]*ecdsa.PrivateKey{b.key})
	// An unrelated challenge from B to A, stored after the real one, comes first in the
	// list: the decoder must fall back to the older one.
	for i, r := range x.recs {
		if i == 3 {
			d.st.storeChallenge(a.id(), v5Challenge{data: bytes.Repeat([]byte{7}, 63), challengerAddr: b.addr, challengerID: b.id(), hasChallengerID: true})
		}
		p, ok := d.Decode(r)
		if !ok {
			t.Fatalf("%s not recognised", x.what[i])
		}
		if i == 3 {
			v5CheckErr(t, p, nil)
			if p.Msg == nil || !bytes.Equal(p.Msg.RequestID(), []byte{7}) {
				t.Fatalf("handshake message %v, err %v", p.Msg, p.Err)
			}
		}
	}
	list, _ := d.st.challenges.get(a.id())
	if len(list) != 2 {
		t.Errorf("%d challenges stored for A, want 2 (the resend is the same challenge)", len(list))
	}
}

// A re-handshake replaces the session: packets under the new keys decrypt, and a packet
// still in flight under the previous keys does too.
func TestV5GethRehandshake(t *testing.T) {
	a := newV5Node(t, v5TestKeyA, v5AddrA)
	b := newV5Node(t, v5TestKeyB, v5AddrB)
	x := newV5Exchange(t, a, b)
	d := NewV5Decoder([]*ecdsa.PrivateKey{b.key})
	for _, r := range x.recs {
		d.Decode(r)
	}
	// An old-session packet from A, encoded now but delivered after the re-handshake.
	late := new(v5Exchange)
	late.send(t, "late findnode", a, b, &v5wire.Findnode{ReqID: []byte{0x55}, Distances: []uint{1}}, nil)

	// B loses its session (restart) and A's next packet fails at B: B challenges again.
	b2 := newV5Node(t, v5TestKeyB, v5AddrB)
	y := new(v5Exchange)
	unknown := y.send(t, "findnode, old keys", a, b2, &v5wire.Findnode{ReqID: []byte{4}, Distances: []uint{0}}, nil)
	challenge := &v5wire.Whoareyou{Nonce: unknown.(*v5wire.Unknown).Nonce, IDNonce: [16]byte{2}, RecordSeq: a.ln.Seq(), Node: a.ln.Node()}
	w := y.send(t, "whoareyou", b2, a, challenge, nil).(*v5wire.Whoareyou)
	w.Node = b2.ln.Node()
	y.send(t, "handshake", a, b2, &v5wire.Findnode{ReqID: []byte{4}, Distances: []uint{0}}, w)
	y.send(t, "nodes", b2, a, &v5wire.Nodes{ReqID: []byte{4}, RespCount: 1}, nil)

	idA, idB := a.id(), b.id()
	v5CheckExchange(t, d, y, []v5Want{
		// The decoder still has the old keys, so this one decrypts even though B lost them.
		{kind: KindMessage, src: &idA, dst: idB, msg: "FINDNODE/v5", reqID: []byte{4}},
		{kind: KindWhoareyou, src: &idB, dst: idA},
		// RecordSeq is current: no ENR; A's key is known from the first handshake's ENR.
		{kind: KindHandshake, src: &idA, dst: idB, msg: "FINDNODE/v5", reqID: []byte{4}},
		{kind: KindMessage, src: &idB, dst: idA, msg: "NODES/v5", reqID: []byte{4}, hasNodes: true},
	})
	v5CheckExchange(t, d, late, []v5Want{
		{kind: KindMessage, src: &idA, dst: idB, msg: "FINDNODE/v5", reqID: []byte{0x55}},
	})
}

func TestV5ErrorClasses(t *testing.T) {
	for _, e := range []error{errV5RandomPacket, errV5InitiatorSide, errV5NoChallenge} {
		if !errors.Is(e, errV5NoKey) {
			t.Errorf("%q is not a case of %q", e, errV5NoKey)
		}
	}
	for _, e := range []error{errV5BadIDSignature, errV5BadRecord, errV5BadEphemeralKey, errV5HandshakeDecrypt} {
		if !errors.Is(e, errV5BadHandshake) {
			t.Errorf("%q is not a case of %q", e, errV5BadHandshake)
		}
	}
}
