// Package discv5 decodes discv5 (v5.1) packets as a passive observer: it unmasks
// headers, follows handshakes and recovers session keys where it holds a recipient's
// key, and decrypts messages.
package discv5

import (
	"bytes"
	"crypto/cipher"
	"crypto/ecdsa"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/internal/addrkey"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
)

// discv5 wire decoding for an observer that is not (only) one of the two ends.
//
// go-ethereum's v5wire.Codec can only unmask packets sent to its own node and only
// decrypt sessions it took part in. A tracer sees both directions, and packets of nodes
// whose keys it may or may not have, so this decoder:
//
//   - unmasks every header it can: the masking key is the first 16 bytes of the
//     DESTINATION node ID, so it tries the ID last seen at the destination address,
//     then the local node IDs, then every ID it knows (bounded);
//   - learns node IDs and their addresses from src-id fields, handshake ENRs and NODES;
//   - recovers session keys when it holds the private key of a handshake's RECIPIENT
//     (the node that sent the WHOAREYOU): ECDH(recipient static key, initiator ephemeral
//     public key) with the captured challenge-data, exactly as the recipient does.
//
// What cannot be decrypted, by design of the protocol:
//
//   - a handshake sent BY a local node (local = initiator) to a node whose key is not
//     given: the initiator derives the keys from an ephemeral secret key that is never
//     stored anywhere, and the other ECDH side needs the recipient's static key. Passing
//     the remote node's key too (--nodekey is repeatable; every key given is treated as
//     "local") makes that remote node a recipient whose key we hold, and it decrypts;
//   - sessions whose handshake happened before the capture started (or whose WHOAREYOU
//     was not captured: the challenge-data is the HKDF salt);
//   - the first MESSAGE of a new contact, which is random bytes on purpose: the sender has
//     no session and wants a WHOAREYOU (of any size; go-ethereum's 20 bytes are only
//     reported as a hint, ErrRandomPacket).
//
// Such packets still come back with every header field decoded and Err saying why.

// discv5 packet kinds (the header flag), the value of disc.kind.
const (
	KindMessage   = "MESSAGE"
	KindWhoareyou = "WHOAREYOU"
	KindHandshake = "HANDSHAKE"
)

// discv5 header layout (spec: discv5-wire, v5.1).
const (
	ivSize            = 16
	staticEnd         = ivSize + 23 // masking-iv || protocol-id(6) version(2) flag(1) nonce(12) authdata-size(2)
	MinPacketSize     = 63          // the smallest packet, a WHOAREYOU: anything shorter is not discv5
	minMessageSize    = 48          // after the static header: message authdata (32) + GCM tag (16)
	wireVersion       = 1
	msgAuthSize       = 32 // src-id
	whoareyouAuthSize = 24 // id-nonce(16) enr-seq(8)
	handshakeAuthHead = 34 // src-id(32) sig-size(1) eph-key-size(1)
	// defaultHandshakeTimeout is how long go-ethereum keeps a WHOAREYOU it sent: a handshake
	// arriving later is dropped (v5wire handshakeTimeout). NewDecoder takes another.
	defaultHandshakeTimeout = time.Second
	// randomMessageSize is how many random bytes go-ethereum sends as the message of a
	// packet that asks for a handshake (v5wire randomPacketMsgSize): a hint, not a
	// classification (other implementations send other sizes, a short message this one).
	randomMessageSize = 20
)

const (
	flagMessage = iota
	flagWhoareyou
	flagHandshake
)

var protocolID = [6]byte{'d', 'i', 's', 'c', 'v', '5'}

// Decoder decodes discv5 packets. It is stateful (learned IDs and addresses,
// challenges, session keys) and not safe for concurrent use.
type Decoder struct {
	locals []localNode
	// pinned are the local node IDs given without a key (a bare ID or an ENR): they
	// unmask what their node receives, so unlike learned IDs they are never forgotten,
	// however many peers the traffic brings. pinnedPubkeys keeps their ENRs' keys.
	pinned        []candidate
	pinnedPubkeys map[enode.ID]*ecdsa.PublicKey
	st            state

	// handshakeTimeout is how long a recipient keeps a WHOAREYOU it sent; a HANDSHAKE
	// answering it later is refused with lateHandshake, which says the duration.
	handshakeTimeout time.Duration
	lateHandshake    error

	// keyObserver, when set, is told each local ID and each derived session.
	keyObserver KeyObserver

	mask  headerMask
	probe [16]byte
	hdr   []byte // the unmasked header of the packet being decoded
}

// localNode is a node whose private key we hold.
type localNode struct {
	id    enode.ID
	key   *ecdsa.PrivateKey
	block cipher.Block
}

// NewDecoder returns a decoder holding the given node keys ("local" nodes: the ones
// whose inbound packets unmask first and whose handshakes as recipient decrypt). keys
// may be empty: headers still decode for every node ID known or learned.
// handshakeTimeout is how long a node keeps a challenge (WHOAREYOU) waiting for its
// HANDSHAKE; 0 takes go-ethereum's, 1s.
func NewDecoder(keys []*ecdsa.PrivateKey, handshakeTimeout time.Duration) *Decoder {
	if handshakeTimeout <= 0 {
		handshakeTimeout = defaultHandshakeTimeout
	}
	d := &Decoder{st: newState(), hdr: make([]byte, 0, 512), handshakeTimeout: handshakeTimeout, pinnedPubkeys: make(map[enode.ID]*ecdsa.PublicKey)}
	d.lateHandshake = &caseError{fmt.Sprintf("handshake answers a WHOAREYOU sent more than %v before: go-ethereum has dropped that challenge and ignores the handshake", handshakeTimeout), errLateHandshake}
	for _, key := range keys {
		if key == nil {
			continue
		}
		id := enode.PubkeyToIDV4(&key.PublicKey)
		if d.local(id) != nil {
			continue
		}
		d.locals = append(d.locals, localNode{id: id, key: key, block: newMaskBlock(id)})
	}
	return d
}

// AddKnownID makes id a candidate destination for unmasking (IDs from flags, ENRs,
// discv4 senders...).
func (d *Decoder) AddKnownID(id enode.ID) {
	d.addCandidate(id)
}

// AddLocalID makes id a local node whose key is not held (--node-id): its inbound
// packets unmask with it after the keyed local nodes, and no amount of traffic from
// other nodes makes the decoder forget it.
func (d *Decoder) AddLocalID(id enode.ID) {
	if d.local(id) != nil || d.pinnedBlock(id) != nil {
		return
	}
	d.pinned = append(d.pinned, candidate{id: id, block: newMaskBlock(id)})
	if d.keyObserver != nil {
		d.keyObserver.LocalID(id)
	}
}

// AddLocalNode is AddLocalID for a local node's record (--enr), whose public key is
// kept as long as its ID (for the id-signatures of the handshakes it sends) and whose
// endpoint is learned like any other.
func (d *Decoder) AddLocalNode(n *enode.Node) {
	if n == nil {
		return
	}
	d.AddLocalID(n.ID())
	if pub := n.Pubkey(); pub != nil {
		d.pinnedPubkeys[n.ID()] = pub
	}
	d.learnNode(n)
}

// LearnAddr records that addr is an endpoint of id: packets sent to addr unmask with
// id first, which makes them cheap.
func (d *Decoder) LearnAddr(id enode.ID, addr netip.AddrPort) {
	d.learnAddr(addr, id)
}

// AddNode makes a node's ID, endpoint and public key known (from --enr, or records
// learned elsewhere); the public key lets handshake id-signatures be checked when the
// handshake carries no ENR.
func (d *Decoder) AddNode(n *enode.Node) {
	if n != nil {
		d.learnNode(n)
	}
}

// Decode decodes r's payload as a discv5 packet. It returns false when r is not discv5:
// too short, or the header does not unmask to "discv5" with any candidate node ID.
// When true, the Packet has every field decoded before a failure, and Err says why
// decoding (most often decryption) stopped. Datagram and Read records are decoded
// (decoding the Read of a datagram already decoded changes no state); others are not
// discv5.
func (d *Decoder) Decode(r *record.Record) (packet.Packet, bool) {
	if r == nil || (r.Kind != record.Datagram && r.Kind != record.Read) {
		return packet.Packet{}, false
	}
	data, size := r.Payload, r.Len
	if size == 0 {
		size = len(data)
	}
	if len(data) > size {
		data = data[:size]
	}
	if size < MinPacketSize || len(data) < staticEnd {
		return packet.Packet{}, false
	}
	dstAddr := normalize(r.Dst)
	dst, block, ok := d.findDestination(dstAddr, data)
	if !ok {
		return packet.Packet{}, false
	}
	d.learnAddr(dstAddr, dst)

	// Unmask the static header into scratch space: the payload is never modified.
	iv := data[:ivSize]
	hdr := append(d.hdr[:0], data[:staticEnd]...)
	d.mask.xor(block, iv, 0, hdr[ivSize:staticEnd])
	d.hdr = hdr
	var (
		version  = binary.BigEndian.Uint16(hdr[22:24])
		flag     = hdr[24]
		nonce    v5wire.Nonce
		authSize = int(binary.BigEndian.Uint16(hdr[37:39]))
	)
	copy(nonce[:], hdr[25:37])
	p := packet.Packet{Proto: packet.ProtoV5, HasDstID: true, DstID: dst, Nonce: bytes.Clone(nonce[:])}
	if version != wireVersion {
		p.Err = fmt.Errorf("%w: %d", errBadVersion, version)
		return p, true
	}
	switch flag {
	case flagMessage:
		p.Kind = KindMessage
	case flagWhoareyou:
		p.Kind = KindWhoareyou
	case flagHandshake:
		p.Kind = KindHandshake
	default:
		p.Err = fmt.Errorf("%w: %d", errBadFlag, flag)
		return p, true
	}
	remaining := size - staticEnd
	if flag != flagWhoareyou && remaining < minMessageSize {
		p.Err = fmt.Errorf("%w: %d bytes after the static header, want at least %d", errTooShort, remaining, minMessageSize)
		return p, true
	}
	if authSize > remaining {
		p.Err = fmt.Errorf("%w: authdata-size %d, %d bytes left", errAuthSize, authSize, remaining)
		return p, true
	}
	if staticEnd+authSize > len(data) {
		p.Err = ErrTruncated
		return p, true
	}
	// The authdata is masked with the same keystream, continuing after the static header.
	hdr = append(hdr, data[staticEnd:staticEnd+authSize]...)
	d.mask.xor(block, iv, staticEnd-ivSize, hdr[staticEnd:])
	d.hdr = hdr
	auth := hdr[staticEnd:]
	msg := data[staticEnd+authSize:]
	truncated := len(data) < size

	switch flag {
	case flagWhoareyou:
		d.decodeWhoareyou(&p, r, nonce, auth, hdr)
	case flagMessage:
		if len(auth) != msgAuthSize {
			p.Err = fmt.Errorf("%w: %d for a message packet, want %d", errAuthSize, len(auth), msgAuthSize)
			return p, true
		}
		src := enode.ID(auth)
		p.SrcID, p.HasSrcID = src, true
		d.learnSender(r.Src, src, dst, nonce)
		if truncated {
			p.Err = ErrTruncated
			return p, true
		}
		d.decryptMessage(&p, r, src, dst, nonce, hdr, msg)
	case flagHandshake:
		d.decodeHandshake(&p, r, dst, nonce, auth, hdr, msg, truncated)
	}
	return p, true
}

// findDestination finds the node ID whose masking key turns the header into
// "discv5": the ID known at the destination address, then the local IDs (keyed, then
// pinned), then every known ID, newest first.
func (d *Decoder) findDestination(dstAddr netip.AddrPort, data []byte) (enode.ID, cipher.Block, bool) {
	var tried enode.ID
	var triedOne bool
	if id, ok := d.st.addrs.Get(addrkey.Of(dstAddr)); ok {
		block := d.blockFor(id)
		if d.unmasks(block, data) {
			return id, block, true
		}
		tried, triedOne = id, true
	}
	for i := range d.locals {
		l := &d.locals[i]
		if triedOne && l.id == tried {
			continue
		}
		if d.unmasks(l.block, data) {
			return l.id, l.block, true
		}
	}
	for i := range d.pinned {
		c := &d.pinned[i]
		if triedOne && c.id == tried {
			continue
		}
		if d.unmasks(c.block, data) {
			return c.id, c.block, true
		}
	}
	if triedOne && d.local(tried) != nil {
		// Sent to a local node's address and masked with no local ID: the node cannot
		// unmask it either, so it is not discv5 for it. Trying every known ID (thousands
		// on a busy node) would make each such datagram cost tens of microseconds.
		return enode.ID{}, nil, false
	}
	for i := range d.st.known.ids {
		c := d.st.known.newest(i)
		if triedOne && c.id == tried {
			continue
		}
		if d.unmasks(c.maskBlock(), data) {
			return c.id, c.block, true
		}
	}
	return enode.ID{}, nil, false
}

// unmasks reports whether block's first keystream block turns the masked protocol-id
// into "discv5": one AES block per candidate.
func (d *Decoder) unmasks(block cipher.Block, data []byte) bool {
	block.Encrypt(d.probe[:], data[:ivSize])
	for i, c := range protocolID {
		if data[ivSize+i]^d.probe[i] != c {
			return false
		}
	}
	return true
}

// local returns the local node with that ID, or nil.
func (d *Decoder) local(id enode.ID) *localNode {
	for i := range d.locals {
		if d.locals[i].id == id {
			return &d.locals[i]
		}
	}
	return nil
}

// pubkey returns the static public key of id, from the handshake's ENR, a record seen
// earlier, or a local key; nil when unknown (the id-signature then goes unchecked).
func (d *Decoder) pubkey(id enode.ID, fromHandshake *enode.Node) *ecdsa.PublicKey {
	if fromHandshake != nil {
		return fromHandshake.Pubkey()
	}
	if pub, ok := d.st.pubkeys.Get(id); ok {
		return pub
	}
	if pub, ok := d.pinnedPubkeys[id]; ok {
		return pub
	}
	if l := d.local(id); l != nil {
		return &l.key.PublicKey
	}
	return nil
}

// pinnedBlock returns the masking block of a pinned local ID, or nil.
func (d *Decoder) pinnedBlock(id enode.ID) cipher.Block {
	for i := range d.pinned {
		if d.pinned[i].id == id {
			return d.pinned[i].block
		}
	}
	return nil
}

// blockFor returns the masking block of id, making id a known candidate.
func (d *Decoder) blockFor(id enode.ID) cipher.Block {
	if l := d.local(id); l != nil {
		return l.block
	}
	if block := d.pinnedBlock(id); block != nil {
		return block
	}
	return d.st.known.add(id).maskBlock()
}

// addCandidate makes id a known candidate, as blockFor does, without making its block.
func (d *Decoder) addCandidate(id enode.ID) {
	if d.local(id) == nil && d.pinnedBlock(id) == nil {
		d.st.known.add(id)
	}
}

func (d *Decoder) learnAddr(addr netip.AddrPort, id enode.ID) {
	if !addr.IsValid() {
		return
	}
	if cur, had := d.st.addrs.Swap(addrkey.Of(normalize(addr)), id); !had || cur != id {
		d.addCandidate(id)
	}
}

// learnSender remembers what a MESSAGE or HANDSHAKE tells: its sender's ID and address,
// and its nonce, which a WHOAREYOU answering it will echo.
func (d *Decoder) learnSender(addr netip.AddrPort, src, dst enode.ID, nonce v5wire.Nonce) {
	d.learnAddr(addr, src)
	d.st.nonces.Put(nonce, sentPacket{src: src, dst: dst})
}

func (d *Decoder) learnNode(n *enode.Node) {
	if pub := n.Pubkey(); pub != nil {
		d.st.pubkeys.Put(n.ID(), pub)
	}
	d.addCandidate(n.ID())
	if ep, ok := n.UDPEndpoint(); ok {
		d.learnAddr(ep, n.ID())
	}
}

// normalize turns IPv4-mapped IPv6 addresses into IPv4 so that one endpoint has
// one key, whichever way a record or capture spelled it.
func normalize(a netip.AddrPort) netip.AddrPort {
	if a.Addr().Is4In6() {
		return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	return a
}
