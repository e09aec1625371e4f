package discv4

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/ethereum/go-ethereum/p2p/enr"
	"github.com/ethereum/go-ethereum/rlp"

	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
)

// signedFrame frames an arbitrary type byte and body: signed by key, hashed.
func signedFrame(t testing.TB, key *ecdsa.PrivateKey, ptype byte, body []byte) []byte {
	t.Helper()
	pkt := make([]byte, headSize, headSize+1+len(body))
	pkt = append(pkt, ptype)
	pkt = append(pkt, body...)
	sig, err := crypto.Sign(crypto.Keccak256(pkt[headSize:]), key)
	if err != nil {
		t.Fatal(err)
	}
	copy(pkt[hashSize:], sig)
	rehash(pkt)
	return pkt
}

// rehash makes pkt's hash valid again after an edit.
func rehash(pkt []byte) {
	copy(pkt, crypto.Keccak256(pkt[hashSize:]))
}

func datagram(payload []byte) *record.Record {
	return &record.Record{Kind: record.Datagram, Len: len(payload), Payload: payload}
}

func TestDecodesEveryPacketType(t *testing.T) {
	keyB := disctest.Key(t, disctest.KeyB)
	idB := disctest.ID(t, disctest.KeyB)
	keyA := disctest.Key(t, disctest.KeyA)
	exp := uint64(1795463786)
	wantExp := time.Unix(int64(exp), 0)
	from := v4wire.NewEndpoint(netip.MustParseAddrPort("10.99.0.2:30303"), 30303)
	to := v4wire.NewEndpoint(netip.MustParseAddrPort("[2001:db8::1]:30304"), 0)
	pingHash := bytes.Repeat([]byte{0xab}, 32)

	var rec enr.Record
	rec.SetSeq(7)
	rec.Set(enr.IPv4{10, 99, 0, 2})
	rec.Set(enr.UDP(30303))
	if err := enode.SignV4(&rec, keyB); err != nil {
		t.Fatal(err)
	}
	var target v4wire.Pubkey
	copy(target[:], bytes.Repeat([]byte{0x5a}, 64))
	neighbors := []v4wire.Node{
		{IP: net.IP{10, 0, 0, 1}, UDP: 30303, TCP: 30303, ID: v4wire.EncodePubkey(&keyA.PublicKey)},
		{IP: net.ParseIP("2001:db8::2"), UDP: 30305, ID: v4wire.EncodePubkey(&keyB.PublicKey)},
	}

	d := NewDecoder()
	for _, tc := range []struct {
		pkt   v4wire.Packet
		check func(t *testing.T, p packet.Packet)
	}{
		{&v4wire.Ping{Version: 4, From: from, To: to, Expiration: exp, ENRSeq: 9}, func(t *testing.T, p packet.Packet) {
			if p.Kind != KindPing || p.From != netip.MustParseAddrPort("10.99.0.2:30303") ||
				p.To != netip.MustParseAddrPort("[2001:db8::1]:30304") || !p.Expiration.Equal(wantExp) ||
				!p.HasENRSeq || p.ENRSeq != 9 {
				t.Errorf("got %+v", p)
			}
		}},
		{&v4wire.Pong{To: from, ReplyTok: pingHash, Expiration: exp, ENRSeq: 1795463766702}, func(t *testing.T, p packet.Packet) {
			if p.Kind != KindPong || p.To != netip.MustParseAddrPort("10.99.0.2:30303") ||
				!bytes.Equal(p.ReplyTok, pingHash) || !p.Expiration.Equal(wantExp) || !p.HasENRSeq || p.ENRSeq != 1795463766702 {
				t.Errorf("got %+v", p)
			}
		}},
		{&v4wire.Findnode{Target: target, Expiration: exp}, func(t *testing.T, p packet.Packet) {
			if p.Kind != KindFindnode || !bytes.Equal(p.Target, target[:]) || !p.Expiration.Equal(wantExp) {
				t.Errorf("got %+v", p)
			}
		}},
		{&v4wire.Neighbors{Nodes: neighbors, Expiration: exp}, func(t *testing.T, p packet.Packet) {
			if p.Kind != KindNeighbors || !p.HasNodes || p.Nodes != 2 || len(p.Records) != 2 || !p.Expiration.Equal(wantExp) {
				t.Fatalf("got %+v", p)
			}
			n0, n1 := p.Records[0], p.Records[1]
			if n0.ID() != disctest.ID(t, disctest.KeyA) || n0.IPAddr() != netip.MustParseAddr("10.0.0.1") || n0.UDP() != 30303 || n0.TCP() != 30303 ||
				!n0.Pubkey().Equal(&keyA.PublicKey) {
				t.Errorf("record 0: %v %v %d %d", n0.ID(), n0.IPAddr(), n0.UDP(), n0.TCP())
			}
			if n1.ID() != idB || n1.IPAddr() != netip.MustParseAddr("2001:db8::2") || n1.UDP() != 30305 {
				t.Errorf("record 1: %v %v %d", n1.ID(), n1.IPAddr(), n1.UDP())
			}
		}},
		{&v4wire.ENRRequest{Expiration: exp}, func(t *testing.T, p packet.Packet) {
			if p.Kind != KindENRRequest || !p.Expiration.Equal(wantExp) || p.HasENRSeq {
				t.Errorf("got %+v", p)
			}
		}},
		{&v4wire.ENRResponse{ReplyTok: pingHash, Record: rec}, func(t *testing.T, p packet.Packet) {
			if p.Kind != KindENRResponse || !bytes.Equal(p.ReplyTok, pingHash) || !p.HasENRSeq || p.ENRSeq != 7 ||
				!p.HasNodes || p.Nodes != 1 || len(p.Records) != 1 || !p.Expiration.IsZero() {
				t.Fatalf("got %+v", p)
			}
			if n := p.Records[0]; n.ID() != idB || n.Seq() != 7 || n.IPAddr() != netip.MustParseAddr("10.99.0.2") {
				t.Errorf("record: %v seq %d %v", n.ID(), n.Seq(), n.IPAddr())
			}
		}},
	} {
		t.Run(tc.pkt.Name(), func(t *testing.T) {
			raw := disctest.V4Encode(t, keyB, tc.pkt)
			p, ok := d.Decode(datagram(raw))
			if !ok {
				t.Fatal("not recognised as discv4")
			}
			if p.Err != nil {
				t.Fatalf("error: %v", p.Err)
			}
			if p.Proto != packet.ProtoV4 || !p.HasSrcID || p.SrcID != idB || p.HasDstID {
				t.Errorf("proto %q src %v (%v) dst %v", p.Proto, p.SrcID, p.HasSrcID, p.HasDstID)
			}
			if !bytes.Equal(p.Hash, raw[:32]) {
				t.Errorf("hash %x, want %x", p.Hash, raw[:32])
			}
			tc.check(t, p)
		})
	}
}

// NEIGHBORS entries are built without enode.NewV4's repeated key decompression; they must
// still read exactly as NewV4's nodes do.
func TestNeighborNodeMatchesNewV4(t *testing.T) {
	key := disctest.Key(t, disctest.KeyA)
	for _, tc := range []struct {
		ip       net.IP
		udp, tcp uint16
	}{
		{net.IP{10, 0, 0, 1}, 30303, 30303},
		{net.ParseIP("10.0.0.2"), 30304, 0}, // 16-byte form of an IPv4 address
		{net.ParseIP("2001:db8::7"), 9000, 9001},
		{nil, 0, 0},
	} {
		rn := v4wire.Node{IP: tc.ip, UDP: tc.udp, TCP: tc.tcp, ID: v4wire.EncodePubkey(&key.PublicKey)}
		got, want := neighborNode(rn, &key.PublicKey), enode.NewV4(&key.PublicKey, tc.ip, int(tc.tcp), int(tc.udp))
		if got.ID() != want.ID() || !got.Pubkey().Equal(want.Pubkey()) || got.IPAddr() != want.IPAddr() ||
			got.UDP() != want.UDP() || got.TCP() != want.TCP() || got.Seq() != want.Seq() {
			t.Errorf("%v: got %v %v %d %d, NewV4 gives %v %v %d %d", tc.ip, got.ID(), got.IPAddr(), got.UDP(), got.TCP(),
				want.ID(), want.IPAddr(), want.UDP(), want.TCP())
		}
	}
}

// ENRSeq is optional on the wire (EIP-868): geth leaves out a zero one, pre-868 nodes
// never send it, and a node may send 0 explicitly. Only the last has an ENRSeq.
func TestENRSeqPresence(t *testing.T) {
	keyB := disctest.Key(t, disctest.KeyB)
	to := v4wire.NewEndpoint(netip.MustParseAddrPort("10.99.0.2:30303"), 0)
	type pongWithSeq struct { // ENRSeq not optional: encoded even when zero
		To         v4wire.Endpoint
		ReplyTok   []byte
		Expiration uint64
		ENRSeq     uint64
	}
	explicit, err := rlp.EncodeToBytes(&pongWithSeq{To: to, ReplyTok: make([]byte, 32), Expiration: 1})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDecoder()
	for _, tc := range []struct {
		name   string
		pkt    []byte
		hasSeq bool
	}{
		{"zero left out by geth", disctest.V4Encode(t, keyB, &v4wire.Pong{To: to, ReplyTok: make([]byte, 32), Expiration: 1}), false},
		{"zero on the wire", signedFrame(t, keyB, v4wire.PongPacket, explicit), true},
	} {
		p, ok := d.Decode(datagram(tc.pkt))
		if !ok || p.Err != nil || p.Kind != KindPong || p.HasENRSeq != tc.hasSeq || p.ENRSeq != 0 {
			t.Errorf("%s: ok %v, %+v", tc.name, ok, p)
		}
	}
}

// A PING from before EIP-868 has no ENRSeq: it must not read as sequence 0.
func TestPingWithoutENRSeq(t *testing.T) {
	type legacyPing struct {
		Version    uint
		From, To   v4wire.Endpoint
		Expiration uint64
	}
	body, err := rlp.EncodeToBytes(&legacyPing{Version: 4, Expiration: 1795463786})
	if err != nil {
		t.Fatal(err)
	}
	p, ok := NewDecoder().Decode(datagram(signedFrame(t, disctest.Key(t, disctest.KeyB), v4wire.PingPacket, body)))
	if !ok || p.Err != nil || p.Kind != KindPing || p.HasENRSeq {
		t.Fatalf("ok %v, %+v", ok, p)
	}
	// Zero-length endpoint IPs (geth sends them when it does not know its address).
	if p.From.IsValid() || p.To.IsValid() {
		t.Errorf("from %v to %v, want zero", p.From, p.To)
	}
}

func TestRejectsWhatIsNotDiscv4(t *testing.T) {
	valid := disctest.V4Encode(t, disctest.Key(t, disctest.KeyB), &v4wire.ENRRequest{Expiration: 1795463786})
	flipped := bytes.Clone(valid)
	flipped[len(flipped)-1] ^= 1
	d := NewDecoder()
	for name, r := range map[string]*record.Record{
		"empty":                                 datagram(nil),
		"shorter than the header":               datagram(valid[:headSize]),
		"body changed, hash stale":              datagram(flipped),
		"zeros":                                 datagram(make([]byte, 200)),
		"snapped payload":                       {Kind: record.Datagram, Len: len(valid) + 10, Payload: valid},
		"datagram shorter than its buffer, cut": {Kind: record.Datagram, Len: len(valid) - 1, Payload: valid},
	} {
		if p, ok := d.Decode(r); ok {
			t.Errorf("%s: decoded as discv4: %+v", name, p)
		}
	}
	if _, ok := d.Decode(datagram(valid)); !ok {
		t.Fatal("the valid packet is not recognised")
	}
	// A buffer longer than the datagram it holds: only the first Len bytes count.
	if _, ok := d.Decode(&record.Record{Kind: record.Datagram, Len: len(valid), Payload: append(bytes.Clone(valid), 0, 0, 0)}); !ok {
		t.Error("datagram in a longer buffer not recognised")
	}
	// A packet carrying a cached packet's hash but other content must not hit the cache.
	forged := bytes.Clone(flipped)
	copy(forged, valid[:32])
	if p, ok := d.Decode(datagram(forged)); ok {
		t.Errorf("forged packet decoded from the cache: %+v", p)
	}
}

func TestHashValidButUndecodable(t *testing.T) {
	keyB := disctest.Key(t, disctest.KeyB)
	idB := disctest.ID(t, disctest.KeyB)

	badSig := disctest.V4Encode(t, keyB, &v4wire.ENRRequest{Expiration: 1})
	badSig[hashSize+64] = 9 // recovery id must be 0 or 1
	rehash(badSig)

	wrongType := signedFrame(t, keyB, 66, []byte{0xc1, 0x01})
	badRLP := signedFrame(t, keyB, v4wire.PingPacket, []byte{0xc5, 0x01})              // list claims 5 bytes, has 1
	shortPong := signedFrame(t, keyB, v4wire.PongPacket, []byte{0xc2, 0xc0, 0x80}[:2]) // list too short for To/ReplyTok

	// An ENR whose signature does not match its content (the enr package refuses to
	// encode such a record, so it is written out: [sig, seq, k, v, ...] with sorted keys).
	forgedENR, err := rlp.EncodeToBytes([]any{bytes.Repeat([]byte{7}, 64), uint64(1),
		"id", "v4", "secp256k1", crypto.CompressPubkey(&keyB.PublicKey), "udp", uint16(30303)})
	if err != nil {
		t.Fatal(err)
	}
	recBody, err := rlp.EncodeToBytes([]any{make([]byte, 32), rlp.RawValue(forgedENR)})
	if err != nil {
		t.Fatal(err)
	}
	badRecord := signedFrame(t, keyB, v4wire.ENRResponsePacket, recBody)

	// A valid ENR of node A, sent by node B.
	var recA enr.Record
	if err := enode.SignV4(&recA, disctest.Key(t, disctest.KeyA)); err != nil {
		t.Fatal(err)
	}
	otherRecord := disctest.V4Encode(t, keyB, &v4wire.ENRResponse{ReplyTok: make([]byte, 32), Record: recA})

	// NEIGHBORS with one entry that is not a curve point.
	var notOnCurve v4wire.Pubkey
	notOnCurve[0] = 1
	badNeighbor := disctest.V4Encode(t, keyB, &v4wire.Neighbors{Expiration: 1, Nodes: []v4wire.Node{
		{IP: net.IP{10, 0, 0, 1}, UDP: 30303, ID: v4wire.EncodePubkey(&keyB.PublicKey)},
		{IP: net.IP{10, 0, 0, 2}, UDP: 30303, ID: notOnCurve},
	}})

	d := NewDecoder()
	for _, tc := range []struct {
		name    string
		pkt     []byte
		want    error
		kind    string
		hasSrc  bool
		records int
	}{
		{"bad signature", badSig, ErrBadSignature, "", false, 0},
		{"unknown type", wrongType, ErrUnknownType, "", true, 0},
		{"truncated RLP", badRLP, ErrMalformed, KindPing, true, 0},
		{"PONG missing fields", shortPong, ErrMalformed, KindPong, true, 0},
		{"ENR with a bad signature", badRecord, ErrBadRecord, KindENRResponse, true, 0},
		{"ENR of another node", otherRecord, ErrRecordNotSender, KindENRResponse, true, 1},
		{"NEIGHBORS entry off the curve", badNeighbor, ErrBadNeighbor, KindNeighbors, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := d.Decode(datagram(tc.pkt))
			if !ok {
				t.Fatal("hash-valid packet not recognised as discv4")
			}
			if !errors.Is(p.Err, tc.want) {
				t.Fatalf("error %v, want %v", p.Err, tc.want)
			}
			if p.Proto != packet.ProtoV4 || p.Kind != tc.kind || p.HasSrcID != tc.hasSrc || len(p.Records) != tc.records ||
				!bytes.Equal(p.Hash, tc.pkt[:32]) {
				t.Errorf("got kind %q src %v records %d hash %x", p.Kind, p.HasSrcID, len(p.Records), p.Hash)
			}
			if tc.hasSrc && p.SrcID != idB {
				t.Errorf("sender %v, want %v", p.SrcID, idB)
			}
		})
	}
	if p, _ := d.Decode(datagram(wrongType)); !strings.Contains(p.Err.Error(), "66") {
		t.Errorf("unknown type error %q does not name the type", p.Err)
	}
}

func TestCacheIsBoundedAndServesRepeats(t *testing.T) {
	keyB := disctest.Key(t, disctest.KeyB)
	pkts := make([][]byte, 5)
	for i := range pkts {
		pkts[i] = disctest.V4Encode(t, keyB, &v4wire.ENRRequest{Expiration: uint64(1000 + i)})
	}
	d := newDecoder(2)
	for _, pkt := range pkts {
		if _, ok := d.Decode(datagram(pkt)); !ok {
			t.Fatal("not decoded")
		}
		if d.cache.Len() > 2 {
			t.Fatalf("cache grew to %d entries, want at most 2", d.cache.Len())
		}
	}
	// The two newest insertions, pkts[3..4], are kept; the older ones forgotten.
	has := func(pkt []byte) bool {
		_, ok := d.cache.Get([32]byte(pkt[:32]))
		return ok
	}
	if has(pkts[0]) || has(pkts[1]) || has(pkts[2]) || !has(pkts[3]) || !has(pkts[4]) {
		t.Fatalf("cache content wrong: %v %v %v %v %v", has(pkts[0]), has(pkts[1]), has(pkts[2]), has(pkts[3]), has(pkts[4]))
	}

	// A repeat is served from the cache, equal to a fresh decode, and the caller's
	// buffer being overwritten afterwards does not change what was returned.
	buf := bytes.Clone(pkts[3])
	first, _ := d.Decode(datagram(buf))
	clear(buf)
	again, _ := d.Decode(datagram(pkts[3]))
	fresh, _ := newDecoder(0).Decode(datagram(pkts[3]))
	for _, p := range []packet.Packet{first, again} {
		if !bytes.Equal(p.Hash, fresh.Hash) || p.SrcID != fresh.SrcID || !p.Expiration.Equal(fresh.Expiration) || p.Kind != fresh.Kind {
			t.Errorf("cached %+v, fresh %+v", p, fresh)
		}
	}
	// The disabled cache stays empty.
	nc := newDecoder(0)
	nc.Decode(datagram(pkts[0]))
	if nc.cache != nil {
		t.Error("cache disabled but filled")
	}
}

// A record checked once is served again only for the same encoding: the same record in
// another ENRRESPONSE is the same node, the same signature over a changed record is
// refused.
func TestVerifiedRecordsServeOnlyTheirEncoding(t *testing.T) {
	keyB := disctest.Key(t, disctest.KeyB)
	var recB enr.Record
	recB.Set(enr.UDP(30303))
	if err := enode.SignV4(&recB, keyB); err != nil {
		t.Fatal(err)
	}
	raw, err := rlp.EncodeToBytes(&recB)
	if err != nil {
		t.Fatal(err)
	}
	response := func(tok byte, rec []byte) []byte {
		body, err := rlp.EncodeToBytes([]any{bytes.Repeat([]byte{tok}, 32), rlp.RawValue(rec)})
		if err != nil {
			t.Fatal(err)
		}
		return signedFrame(t, keyB, v4wire.ENRResponsePacket, body)
	}
	forged := bytes.Clone(raw)
	forged[len(forged)-1] ^= 1 // the UDP port's last byte (the last key sorts last): signature kept

	d := NewDecoder()
	first, _ := d.Decode(datagram(response(1, raw)))
	again, _ := d.Decode(datagram(response(2, raw)))
	bad, _ := d.Decode(datagram(response(3, forged)))
	if first.Err != nil || again.Err != nil || len(again.Records) != 1 || again.Records[0] != first.Records[0] {
		t.Errorf("a record checked once is not served again: %v, %v", first.Err, again.Err)
	}
	if !errors.Is(bad.Err, ErrBadRecord) {
		t.Errorf("the record changed under its signature: error %v, want %v", bad.Err, ErrBadRecord)
	}
}

// A NEIGHBORS entry listed again is the node built the first time, unless its endpoint
// changed.
func TestNeighborsRememberOnlyTheSameEntry(t *testing.T) {
	keyB := disctest.Key(t, disctest.KeyB)
	idA := disctest.ID(t, disctest.KeyA)
	listed := v4wire.EncodePubkey(&disctest.Key(t, disctest.KeyA).PublicKey)
	d := NewDecoder()
	neighbors := func(exp uint64, ip net.IP, port uint16) *enode.Node {
		pkt := disctest.V4Encode(t, keyB, &v4wire.Neighbors{Expiration: exp, Nodes: []v4wire.Node{{IP: ip, UDP: port, TCP: port, ID: listed}}})
		p, ok := d.Decode(datagram(pkt))
		if !ok || p.Err != nil || len(p.Records) != 1 {
			t.Fatalf("NEIGHBORS not decoded: %v", p.Err)
		}
		return p.Records[0]
	}
	first := neighbors(1, net.IP{10, 0, 0, 1}, 30303)
	if again := neighbors(2, net.IP{10, 0, 0, 1}, 30303); again != first {
		t.Error("the same entry in another packet was built again")
	}
	for i, tc := range []struct {
		ip   net.IP
		port uint16
	}{{net.IP{10, 0, 0, 1}, 30304}, {net.IP{10, 0, 0, 2}, 30303}, {net.ParseIP("fd00::1"), 30303}} {
		n := neighbors(uint64(3+i), tc.ip, tc.port)
		if n == first || n.ID() != idA || !n.IP().Equal(tc.ip) || n.UDP() != int(tc.port) || n.TCP() != int(tc.port) {
			t.Errorf("entry %v:%d gave %v", tc.ip, tc.port, n.URLv4())
		}
	}
}

// captureRecords reads one shared capture with the capture reader.
func captureRecords(t testing.TB, name string) []*record.Record {
	t.Helper()
	f, err := os.Open(disctest.CapturePath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []*record.Record
	if err := capture.Read(f, func(r *record.Record) error {
		recs = append(recs, r.Clone())
		return nil
	}); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return recs
}

// Every discv4 packet in the shared captures, counted per kind by hand from
// `tcpdump -nn -r FILE` (packet sizes and time ranges: see the report), decoded with the
// right sender.
func TestSharedCaptures(t *testing.T) {
	idA, idG, idB := disctest.ID(t, disctest.KeyA), disctest.ID(t, disctest.KeyG), disctest.ID(t, disctest.KeyB)
	for _, tc := range []struct {
		file  string
		kinds map[string]int
		notV4 int
		errs  int // hash-valid packets with Err (the suite's WrongPacketType)
		// PONGs whose reply token matches no captured PING (the suite's
		// FindnodeAmplificationInvalidPongHash sends one on purpose).
		strayPongs int
		known      map[string]enode.ID // sender IP -> its node ID, where the key is known
	}{
		{
			file:  "devp2p-discovery.pcap",
			kinds: map[string]int{KindPing: 4, KindPong: 4, KindENRRequest: 2, KindENRResponse: 2},
			notV4: 8, // discv5: 91, 63, 344, 113, 91, 63, 339, 242 bytes
			known: map[string]enode.ID{"10.99.0.1": idA, "10.99.0.2": idB},
		},
		{
			file:  "reject.pcap",
			kinds: map[string]int{KindPing: 5, KindPong: 2, KindFindnode: 2, KindENRRequest: 2},
			notV4: 10,
			known: map[string]enode.ID{"10.99.0.1": idG, "10.99.0.2": idB},
		},
		{
			// The discv4 suite (from 19:56:16.714): A sends 13 PING (132 B), 13 PONG (154),
			// 1 ENRRESPONSE (273), 2 NEIGHBORS (338, 417); the testers 14 PING, 7 PONG (147),
			// 6 FINDNODE, 1 NEIGHBORS (186), 1 ENRREQUEST (104) and 1 packet of type 66.
			file: "suites-devp2p.pcap",
			kinds: map[string]int{KindPing: 27, KindPong: 20, KindFindnode: 6, KindNeighbors: 3,
				KindENRRequest: 1, KindENRResponse: 1, "": 1},
			notV4:      93,
			errs:       1,
			strayPongs: 1,
			known:      map[string]enode.ID{"10.99.0.1": idA}, // testers use fresh keys
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			recs := captureRecords(t, tc.file)
			d := NewDecoder()
			kinds := map[string]int{}
			notV4, errs, strayPongs := 0, 0, 0
			pings := map[string]enode.ID{}           // PING hash -> sender
			senders := map[netip.AddrPort]enode.ID{} // each socket signs with one key
			for _, r := range recs {
				if r.Kind != record.Datagram {
					continue
				}
				p, ok := d.Decode(r)
				if !ok {
					notV4++
					continue
				}
				kinds[p.Kind]++
				if p.Err != nil {
					errs++
					if !errors.Is(p.Err, ErrUnknownType) {
						t.Errorf("%v %s: %v", r.Time, p.Kind, p.Err)
					}
				}
				if !p.HasSrcID {
					t.Errorf("%v %s: no sender", r.Time, p.Kind)
				}
				if id, ok := senders[r.Src]; ok && p.SrcID != id {
					t.Errorf("%v %s from %v: sender %v, earlier packets from there %v", r.Time, p.Kind, r.Src, p.SrcID, id)
				}
				senders[r.Src] = p.SrcID
				if want, ok := tc.known[r.Src.Addr().String()]; ok && p.SrcID != want {
					t.Errorf("%v %s from %v: sender %v, want %v", r.Time, p.Kind, r.Src, p.SrcID, want)
				}
				switch p.Kind {
				case KindPing:
					pings[string(p.Hash)] = p.SrcID
					if p.To.Addr() != r.Dst.Addr() && p.To.Addr() != netip.MustParseAddr("192.0.2.0") {
						t.Errorf("%v PING to %v sent to %v", r.Time, p.To, r.Dst)
					}
				case KindPong:
					// Every PONG answers a PING captured before it, sent by the PONG's recipient,
					// and tells the recipient the address its PING came from.
					if _, ok := pings[string(p.ReplyTok)]; !ok {
						strayPongs++
					}
					if p.To != r.Dst {
						t.Errorf("%v PONG to %v sent to %v", r.Time, p.To, r.Dst)
					}
				}
				if p.Kind != "" && p.Kind != KindENRResponse {
					// Expirations are set 20 s ahead by the sender (the suite also sends
					// already-expired ones, which are in the past).
					ahead := p.Expiration.Sub(r.Time)
					if ahead > 21*time.Second {
						t.Errorf("%v %s expires %v ahead", r.Time, p.Kind, ahead)
					}
				}
			}
			if !equalCounts(kinds, tc.kinds) || notV4 != tc.notV4 || errs != tc.errs || strayPongs != tc.strayPongs {
				t.Errorf("kinds %v not-v4 %d errors %d stray PONGs %d, want %v %d %d %d",
					kinds, notV4, errs, strayPongs, tc.kinds, tc.notV4, tc.errs, tc.strayPongs)
			}
		})
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// The captured discv4 payloads, for benchmarks and fuzz seeds.
func capturedPackets(t testing.TB) [][]byte {
	var out [][]byte
	d := newDecoder(0)
	for _, name := range []string{"devp2p-discovery.pcap", "reject.pcap", "suites-devp2p.pcap"} {
		recs := captureRecords(t, name)
		for _, r := range recs {
			if _, ok := d.Decode(r); ok && r.Kind == record.Datagram {
				out = append(out, r.Payload)
			}
		}
	}
	return out
}

// benchDecode decodes recs round and round with d and reports packets/s.
func benchDecode(b *testing.B, d *Decoder, recs []*record.Record) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := d.Decode(recs[i%len(recs)]); !ok {
			b.Fatal("not decoded")
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkV4 measures decoding with signature recovery (cache miss) and from the cache.
// Run: go test -bench BenchmarkV4 -run '^$' ./decode/discv4
func BenchmarkV4(b *testing.B) {
	pkts := capturedPackets(b)
	recs := make([]*record.Record, len(pkts))
	for i, p := range pkts {
		recs[i] = datagram(p)
	}
	b.Run("recover", func(b *testing.B) { benchDecode(b, newDecoder(0), recs) })
	b.Run("secp256k1-floor", func(b *testing.B) {
		// Signature recovery alone (go-ethereum's crypto.Ecrecover, libsecp256k1 with cgo)
		// on the same packets: the bound on the "recover" figure for this CPU.
		hashes := make([][]byte, len(pkts))
		for i, p := range pkts {
			hashes[i] = crypto.Keccak256(p[headSize:])
		}
		i := 0
		for b.Loop() {
			j := i % len(pkts)
			if _, err := crypto.Ecrecover(hashes[j], pkts[j][hashSize:headSize]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
	})
	b.Run("neighbors-12", func(b *testing.B) {
		// A full NEIGHBORS packet: signature recovery and twelve nodes built.
		var nodes []v4wire.Node
		for range v4wire.MaxNeighbors {
			k, err := crypto.GenerateKey()
			if err != nil {
				b.Fatal(err)
			}
			nodes = append(nodes, v4wire.Node{IP: net.IP{10, 0, 0, 1}, UDP: 30303, TCP: 30303, ID: v4wire.EncodePubkey(&k.PublicKey)})
		}
		r := datagram(disctest.V4Encode(b, disctest.Key(b, disctest.KeyB), &v4wire.Neighbors{Nodes: nodes, Expiration: 1}))
		d := newDecoder(0)
		for b.Loop() {
			if p, _ := d.Decode(r); p.Err != nil || len(p.Records) != v4wire.MaxNeighbors {
				b.Fatalf("%+v", p)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
	})
	b.Run("cached", func(b *testing.B) {
		d := NewDecoder()
		for _, r := range recs {
			d.Decode(r)
		}
		benchDecode(b, d, recs)
	})
	b.Run("not-discv4", func(b *testing.B) {
		// The cost every discv5 datagram pays before the v5 decoder sees it.
		r := datagram(bytes.Repeat([]byte{0x42}, 150))
		d := NewDecoder()
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := d.Decode(r); ok {
				b.Fatal("decoded")
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
	})
}
