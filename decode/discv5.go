package decode

import (
	"bytes"
	"crypto/cipher"
	"crypto/ecdsa"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/ethereum/go-ethereum/p2p/enr"
	"github.com/ethereum/go-ethereum/rlp"
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
//     no session and wants a WHOAREYOU.
//
// Such packets still come back with every header field decoded and Err saying why.

// discv5 header layout (spec: discv5-wire, v5.1).
const (
	v5IVSize          = 16
	v5StaticEnd       = v5IVSize + 23 // masking-iv || protocol-id(6) version(2) flag(1) nonce(12) authdata-size(2)
	v5MinPacketSize   = 63            // the smallest packet, a WHOAREYOU
	v5MinMessageSize  = 48            // after the static header: message authdata (32) + GCM tag (16)
	v5Version         = 1
	v5MsgAuthSize     = 32 // src-id
	v5WhoareyouAuth   = 24 // id-nonce(16) enr-seq(8)
	v5HandshakeAuthHd = 34 // src-id(32) sig-size(1) eph-key-size(1)
	// v5HandshakeTimeout is how long go-ethereum keeps a WHOAREYOU it sent: a handshake
	// arriving later is dropped (v5wire handshakeTimeout).
	v5HandshakeTimeout = time.Second
	// v5RandomMessageSize is how many random bytes go-ethereum sends as the message of a
	// packet that asks for a handshake (v5wire randomPacketMsgSize).
	v5RandomMessageSize = 20
)

const (
	v5FlagMessage = iota
	v5FlagWhoareyou
	v5FlagHandshake
)

var v5ProtocolID = [6]byte{'d', 'i', 's', 'c', 'v', '5'}

// v5Error is a decoding error that also belongs to a broader class (errors.Is matches
// both): e.g. a random first packet is one case of "no session key".
type v5Error struct {
	msg   string
	class error
}

func (e *v5Error) Error() string { return e.msg }
func (e *v5Error) Unwrap() error { return e.class }

// Why a discv5 packet could not be (fully) decoded. These are the texts of disc.error.
var (
	errV5NoKey = errors.New("no session key: the session started before the capture or the node key is unknown")
	// errV5RandomPacket is a case of errV5NoKey.
	errV5RandomPacket = &v5Error{"random packet: the sender has no session and asks for a handshake (undecryptable by design)", errV5NoKey}
	// errV5InitiatorSide is a case of errV5NoKey.
	errV5InitiatorSide = &v5Error{"handshake sent by a local node: its keys come from an ephemeral secret that is never stored; give the remote node's key (--nodekey) to decrypt the session", errV5NoKey}
	// errV5NoChallenge is a case of errV5NoKey.
	// errV5LocalSession is a case of errV5NoKey: a message of a session whose handshake a
	// local node sent, in the capture.
	errV5LocalSession = &v5Error{"session set up by a local node's HANDSHAKE: its keys come from an ephemeral secret that is never stored; give the remote node's key (--nodekey) to decrypt it", errV5NoKey}
	errV5NoChallenge  = &v5Error{"no session key: the WHOAREYOU this handshake answers was not captured, and its challenge-data is needed to derive the keys", errV5NoKey}
	// errV5SessionMismatch: keys are known but do not fit.
	errV5SessionMismatch = errors.New("cannot decrypt with the session keys seen in the capture: the sender lost its session or a newer handshake was not captured")
	// errV5OtherAddress comes with the decrypted message.
	errV5OtherAddress = errors.New("decrypted with the keys of a session these nodes set up at other addresses: go-ethereum binds sessions to the address, so the recipient will answer WHOAREYOU")

	errV5BadHandshake = errors.New("invalid handshake")
	// The following are cases of errV5BadHandshake.
	errV5BadIDSignature   = &v5Error{"invalid handshake: the id-signature does not verify with the initiator's key (the recipient rejects it)", errV5BadHandshake}
	errV5BadRecord        = &v5Error{"invalid handshake: bad ENR", errV5BadHandshake}
	errV5BadEphemeralKey  = &v5Error{"invalid handshake: bad ephemeral public key", errV5BadHandshake}
	errV5HandshakeDecrypt = &v5Error{"invalid handshake: the message does not decrypt with the keys derived from the captured challenge", errV5BadHandshake}

	// errV5LateHandshake comes with the decrypted message.
	errV5LateHandshake = errors.New("handshake answers a WHOAREYOU sent more than 1s before: go-ethereum has dropped that challenge and ignores the handshake")

	errV5BadVersion = errors.New("unsupported discv5 header version")
	errV5BadFlag    = errors.New("invalid discv5 header flag")
	errV5TooShort   = errors.New("discv5 message packet too short")
	errV5AuthSize   = errors.New("discv5 authdata size does not fit the packet")
	errV5Truncated  = errors.New("payload truncated by the capture's snap length: raise it to decode the whole packet")
	errV5BadMessage = errors.New("malformed discv5 message")
)

// V5Decoder decodes discv5 packets. It is stateful (learned IDs and addresses,
// challenges, session keys) and not safe for concurrent use.
type V5Decoder struct {
	locals []v5Local
	st     v5State

	mask  v5Mask
	probe [16]byte
	hdr   []byte // the unmasked header of the packet being decoded
}

// v5Local is a node whose private key we hold.
type v5Local struct {
	id    enode.ID
	key   *ecdsa.PrivateKey
	block cipher.Block
}

// NewV5Decoder returns a decoder holding the given node keys ("local" nodes: the ones
// whose inbound packets unmask first and whose handshakes as recipient decrypt). keys
// may be empty: headers still decode for every node ID known or learned.
func NewV5Decoder(keys []*ecdsa.PrivateKey) *V5Decoder {
	d := &V5Decoder{st: newV5State(), hdr: make([]byte, 0, 512)}
	for _, key := range keys {
		if key == nil {
			continue
		}
		id := enode.PubkeyToIDV4(&key.PublicKey)
		if d.local(id) != nil {
			continue
		}
		d.locals = append(d.locals, v5Local{id: id, key: key, block: v5NewMaskBlock(id)})
	}
	return d
}

// AddKnownID makes id a candidate destination for unmasking (IDs from flags, ENRs,
// discv4 senders...).
func (d *V5Decoder) AddKnownID(id enode.ID) {
	d.blockFor(id)
}

// LearnAddr records that addr is an endpoint of id: packets sent to addr unmask with
// id first, which makes them cheap.
func (d *V5Decoder) LearnAddr(id enode.ID, addr netip.AddrPort) {
	d.learnAddr(addr, id)
}

// AddNode makes a node's ID, endpoint and public key known (from --enr, or records
// learned elsewhere); the public key lets handshake id-signatures be checked when the
// handshake carries no ENR.
func (d *V5Decoder) AddNode(n *enode.Node) {
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
func (d *V5Decoder) Decode(r *Record) (Packet, bool) {
	if r == nil || (r.Kind != Datagram && r.Kind != Read) {
		return Packet{}, false
	}
	data, size := r.Payload, r.Len
	if size == 0 {
		size = len(data)
	}
	if len(data) > size {
		data = data[:size]
	}
	if size < v5MinPacketSize || len(data) < v5StaticEnd {
		return Packet{}, false
	}
	dstAddr := v5Normalize(r.Dst)
	dst, block, ok := d.findDestination(dstAddr, data)
	if !ok {
		return Packet{}, false
	}
	d.learnAddr(dstAddr, dst)

	// Unmask the static header into scratch space: the payload is never modified.
	iv := data[:v5IVSize]
	hdr := append(d.hdr[:0], data[:v5StaticEnd]...)
	d.mask.xor(block, iv, 0, hdr[v5IVSize:v5StaticEnd])
	d.hdr = hdr
	var (
		version  = binary.BigEndian.Uint16(hdr[22:24])
		flag     = hdr[24]
		nonce    v5wire.Nonce
		authSize = int(binary.BigEndian.Uint16(hdr[37:39]))
	)
	copy(nonce[:], hdr[25:37])
	p := Packet{Proto: ProtoV5, HasDstID: true, DstID: dst, Nonce: bytes.Clone(nonce[:])}
	if version != v5Version {
		p.Err = fmt.Errorf("%w: %d", errV5BadVersion, version)
		return p, true
	}
	switch flag {
	case v5FlagMessage:
		p.Kind = KindMessage
	case v5FlagWhoareyou:
		p.Kind = KindWhoareyou
	case v5FlagHandshake:
		p.Kind = KindHandshake
	default:
		p.Err = fmt.Errorf("%w: %d", errV5BadFlag, flag)
		return p, true
	}
	remaining := size - v5StaticEnd
	if flag != v5FlagWhoareyou && remaining < v5MinMessageSize {
		p.Err = fmt.Errorf("%w: %d bytes after the static header, want at least %d", errV5TooShort, remaining, v5MinMessageSize)
		return p, true
	}
	if authSize > remaining {
		p.Err = fmt.Errorf("%w: authdata-size %d, %d bytes left", errV5AuthSize, authSize, remaining)
		return p, true
	}
	if v5StaticEnd+authSize > len(data) {
		p.Err = errV5Truncated
		return p, true
	}
	// The authdata is masked with the same keystream, continuing after the static header.
	hdr = append(hdr, data[v5StaticEnd:v5StaticEnd+authSize]...)
	d.mask.xor(block, iv, v5StaticEnd-v5IVSize, hdr[v5StaticEnd:])
	d.hdr = hdr
	auth := hdr[v5StaticEnd:]
	msg := data[v5StaticEnd+authSize:]
	truncated := len(data) < size

	switch flag {
	case v5FlagWhoareyou:
		d.decodeWhoareyou(&p, r, nonce, auth, hdr)
	case v5FlagMessage:
		if len(auth) != v5MsgAuthSize {
			p.Err = fmt.Errorf("%w: %d for a message packet, want %d", errV5AuthSize, len(auth), v5MsgAuthSize)
			return p, true
		}
		src := enode.ID(auth)
		p.SrcID, p.HasSrcID = src, true
		d.learnSender(r.Src, src, dst, nonce)
		if truncated {
			p.Err = errV5Truncated
			return p, true
		}
		d.decryptMessage(&p, r, src, dst, nonce, hdr, msg)
	case v5FlagHandshake:
		d.decodeHandshake(&p, r, dst, nonce, auth, hdr, msg, truncated)
	}
	return p, true
}

// findDestination finds the node ID whose masking key turns the header into
// "discv5": the ID known at the destination address, then the local IDs, then every
// known ID, newest first.
func (d *V5Decoder) findDestination(dstAddr netip.AddrPort, data []byte) (enode.ID, cipher.Block, bool) {
	var tried enode.ID
	var triedOne bool
	if id, ok := d.st.addrs.get(dstAddr); ok {
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
		if d.unmasks(c.block, data) {
			return c.id, c.block, true
		}
	}
	return enode.ID{}, nil, false
}

// unmasks reports whether block's first keystream block turns the masked protocol-id
// into "discv5": one AES block per candidate.
func (d *V5Decoder) unmasks(block cipher.Block, data []byte) bool {
	block.Encrypt(d.probe[:], data[:v5IVSize])
	for i, c := range v5ProtocolID {
		if data[v5IVSize+i]^d.probe[i] != c {
			return false
		}
	}
	return true
}

func (d *V5Decoder) decodeWhoareyou(p *Packet, r *Record, nonce v5wire.Nonce, auth, hdr []byte) {
	if len(auth) != v5WhoareyouAuth {
		p.Err = fmt.Errorf("%w: %d for a WHOAREYOU, want %d", errV5AuthSize, len(auth), v5WhoareyouAuth)
		return
	}
	p.ChallengeData = bytes.Clone(hdr)
	p.IDNonce = p.ChallengeData[v5StaticEnd : v5StaticEnd+16 : v5StaticEnd+16] // shares the one allocation
	p.HasENRSeq, p.ENRSeq = true, binary.BigEndian.Uint64(auth[16:24])

	// WHOAREYOU has no src-id. It echoes the nonce of the packet it answers, whose
	// recipient is the challenger; failing that, the node last seen at its address.
	if sent, ok := d.st.nonces.get(nonce); ok && sent.src == p.DstID {
		p.SrcID, p.HasSrcID = sent.dst, true
	} else if id, ok := d.st.addrs.get(v5Normalize(r.Src)); ok {
		p.SrcID, p.HasSrcID = id, true
	}
	d.st.storeChallenge(p.DstID, v5Challenge{
		data:            p.ChallengeData,
		challengerAddr:  v5Normalize(r.Src),
		challengerID:    p.SrcID,
		hasChallengerID: p.HasSrcID,
		sent:            r.Time,
	})
}

func (d *V5Decoder) decodeHandshake(p *Packet, r *Record, dst enode.ID, nonce v5wire.Nonce, auth, hdr, msg []byte, truncated bool) {
	if len(auth) < v5HandshakeAuthHd {
		p.Err = fmt.Errorf("%w: %d for a handshake, want at least %d", errV5AuthSize, len(auth), v5HandshakeAuthHd)
		return
	}
	src := enode.ID(auth[:32])
	p.SrcID, p.HasSrcID = src, true
	d.learnSender(r.Src, src, dst, nonce)
	sigSize, keySize := int(auth[32]), int(auth[33])
	if v5HandshakeAuthHd+sigSize+keySize > len(auth) {
		p.Err = fmt.Errorf("%w: signature (%d) and ephemeral key (%d) exceed the handshake authdata (%d)", errV5AuthSize, sigSize, keySize, len(auth))
		return
	}
	sig := auth[v5HandshakeAuthHd : v5HandshakeAuthHd+sigSize]
	ephKey := auth[v5HandshakeAuthHd+sigSize : v5HandshakeAuthHd+sigSize+keySize]
	var node *enode.Node
	if rec := auth[v5HandshakeAuthHd+sigSize+keySize:]; len(rec) > 0 {
		n, err := v5DecodeRecord(rec, src)
		if err != nil {
			p.Err = err
		} else {
			node = n
			p.Records = []*enode.Node{n}
			p.HasENRSeq, p.ENRSeq = true, n.Seq()
			d.learnNode(n)
		}
	}
	if truncated {
		setErr(p, errV5Truncated)
		return
	}

	challenges := d.st.challengesFor(src, dst, v5Normalize(r.Dst))
	recipient := d.local(dst)
	if recipient == nil {
		// No key to decrypt with, but the recipient's checks that need only public data
		// can still be made.
		d.checkHandshakePublic(p, r, d.pubkey(src, node), sig, ephKey, dst, challenges)
		// The keys cannot be derived, and whatever session the two had is replaced.
		d.st.dropSession(src, dst, v5Normalize(r.Src), v5Normalize(r.Dst))
		if d.local(src) != nil {
			setErr(p, errV5InitiatorSide)
			d.st.localInitiated.put(v5Direction{src, dst}, true)
		} else {
			d.forgetLocalInitiated(src, dst)
			setErr(p, errV5NoKey)
		}
		return
	}
	eph, err := v5DecodeEphemeral(ephKey)
	if err != nil {
		d.st.dropSession(src, dst, v5Normalize(r.Src), v5Normalize(r.Dst))
		setErr(p, err)
		return
	}
	if len(challenges) == 0 {
		d.st.dropSession(src, dst, v5Normalize(r.Src), v5Normalize(r.Dst))
		setErr(p, errV5NoChallenge)
		return
	}
	for _, c := range challenges {
		keys, ok := v5DeriveKeys(recipient.key, eph, src, dst, c.data)
		if !ok {
			continue
		}
		pt, err := v5NewAEAD(keys.initiator).Open(nil, nonce[:], msg, hdr)
		if err != nil {
			continue
		}
		d.st.storeSession(src, dst, v5Normalize(r.Src), v5Normalize(r.Dst), keys)
		d.forgetLocalInitiated(src, dst)
		// c decrypted the message: it is the challenge the handshake answers. The
		// id-signature is checked when the initiator's key is known (its ENR in the
		// handshake, a record seen before, or a local key).
		if pub := d.pubkey(src, node); pub != nil && !v5VerifyIDSignature(pub, sig, c.data, ephKey, dst) {
			setErr(p, errV5BadIDSignature)
		}
		if !v5Pending(c, r) {
			setErr(p, errV5LateHandshake)
		}
		d.setMessage(p, pt)
		return
	}
	d.st.dropSession(src, dst, v5Normalize(r.Src), v5Normalize(r.Dst))
	setErr(p, errV5HandshakeDecrypt)
}

// localInitiatedPair reports whether the last handshake between a and b that the
// capture shows was sent by a local node.
func (d *V5Decoder) localInitiatedPair(a, b enode.ID) bool {
	_, ab := d.st.localInitiated.get(v5Direction{a, b})
	_, ba := d.st.localInitiated.get(v5Direction{b, a})
	return ab || ba
}

func (d *V5Decoder) forgetLocalInitiated(a, b enode.ID) {
	d.st.localInitiated.remove(v5Direction{a, b})
	d.st.localInitiated.remove(v5Direction{b, a})
}

// checkHandshakePublic makes, for a handshake this decoder cannot decrypt, the
// recipient's checks that need no private key: the
// id-signature must prove the initiator's key (pub) over the challenge the handshake
// answers, and that challenge must still be pending (geth keeps one for 1s).
// challenges are the candidates, newest first. Without decryption to tell which one the
// handshake answers, only the signature can name it, so without pub nothing is claimed;
// and a signature that fits no candidate is called bad only while the newest one is
// pending: an older one is not what a HANDSHAKE now answers, and the one it does answer
// may be missing from the capture. One ECDSA verification per candidate, usually one.
func (d *V5Decoder) checkHandshakePublic(p *Packet, r *Record, pub *ecdsa.PublicKey, sig, ephKey []byte, dst enode.ID, challenges []*v5Challenge) {
	if len(challenges) == 0 || pub == nil {
		return
	}
	var answers *v5Challenge
	for _, c := range challenges {
		if v5VerifyIDSignature(pub, sig, c.data, ephKey, dst) {
			answers = c
			break
		}
	}
	switch {
	case answers == nil && v5Pending(challenges[0], r):
		setErr(p, errV5BadIDSignature)
	case answers != nil && !v5Pending(answers, r):
		setErr(p, errV5LateHandshake)
	}
}

// v5Pending reports whether challenge c still waits for its HANDSHAKE at r's time (a
// challenge without a time, or a record without one, counts as pending).
func v5Pending(c *v5Challenge, r *Record) bool {
	return c.sent.IsZero() || r.Time.IsZero() || r.Time.Sub(c.sent) <= v5HandshakeTimeout
}

// decryptMessage opens an ordinary message with the keys of its direction: those of
// the session between these two endpoints, else those the two nodes set up at other
// endpoints (the message is then shown, with errV5OtherAddress: its recipient, if it
// is go-ethereum, will not find that session and answers WHOAREYOU).
func (d *V5Decoder) decryptMessage(p *Packet, r *Record, src, dst enode.ID, nonce v5wire.Nonce, hdr, msg []byte) {
	sid := v5SessionID{v5Direction{src, dst}, v5Normalize(r.Src), v5Normalize(r.Dst)}
	ring, haveKeys := d.st.sessions.get(sid)
	if haveKeys && d.openWith(p, ring, nil, nonce, hdr, msg) {
		return
	}
	if pair, ok := d.st.pairs.get(sid.dir); ok {
		haveKeys = true
		if d.openWith(p, pair, ring, nonce, hdr, msg) {
			setErr(p, errV5OtherAddress)
			return
		}
	}
	switch {
	case len(msg) == v5RandomMessageSize:
		p.Err = errV5RandomPacket
	case haveKeys:
		p.Err = errV5SessionMismatch
	default:
		p.Err = d.noKeyError(src, dst)
	}
}

// noKeyError says why a message between src and dst has no key: the session was set up
// by a local node's HANDSHAKE, or, as far as the capture shows, before it began.
func (d *V5Decoder) noKeyError(src, dst enode.ID) error {
	if d.localInitiatedPair(src, dst) {
		return errV5LocalSession
	}
	return errV5NoKey
}

// reexplain gives a MESSAGE decoded earlier without a key the reason the decoder knows
// now: datagrams decoded late (a HANDSHAKE held until its recipient's ID was learned)
// can show whose session it is.
func (d *V5Decoder) reexplain(p *Packet) {
	if p.Proto == ProtoV5 && p.Kind == KindMessage && p.Err == errV5NoKey {
		p.Err = d.noKeyError(p.SrcID, p.DstID)
	}
}

// openWith tries the keys of ring (skipping those of tried) and decodes the message
// with the first that opens it.
func (d *V5Decoder) openWith(p *Packet, ring, tried *v5KeyRing, nonce v5wire.Nonce, hdr, msg []byte) bool {
	for _, k := range ring {
		if k == nil || tried.has(k) {
			continue
		}
		if pt, err := k.aead.Open(nil, nonce[:], msg, hdr); err == nil {
			d.setMessage(p, pt)
			return true
		}
	}
	return false
}

// setMessage decodes a decrypted message (type byte || RLP) with go-ethereum's
// v5wire and copies what the tracker needs into p.
func (d *V5Decoder) setMessage(p *Packet, pt []byte) {
	if len(pt) == 0 {
		setErr(p, fmt.Errorf("%w: empty plaintext", errV5BadMessage))
		return
	}
	msg, err := v5wire.DecodeMessage(pt[0], pt[1:])
	if err != nil {
		setErr(p, fmt.Errorf("%w: %v", errV5BadMessage, err))
		return
	}
	p.Msg = msg
	switch m := msg.(type) {
	case *v5wire.Ping:
		p.HasENRSeq, p.ENRSeq = true, m.ENRSeq
	case *v5wire.Pong:
		p.HasENRSeq, p.ENRSeq = true, m.ENRSeq
		if ip, ok := netip.AddrFromSlice(m.ToIP); ok {
			p.To = netip.AddrPortFrom(ip.Unmap(), m.ToPort)
		}
	case *v5wire.Nodes:
		p.HasNodes, p.Nodes = true, len(m.Nodes)
		for _, rec := range m.Nodes {
			n, err := enode.New(enode.ValidSchemes, rec)
			if err != nil {
				continue // an invalid record is the sender's problem; its count stays in Nodes
			}
			p.Records = append(p.Records, n)
			d.learnNode(n)
		}
	}
}

// v5DecodeRecord decodes and verifies a handshake's ENR, which must be the sender's.
func v5DecodeRecord(b []byte, want enode.ID) (*enode.Node, error) {
	var rec enr.Record
	if err := rlp.DecodeBytes(b, &rec); err != nil {
		return nil, fmt.Errorf("%w: %v", errV5BadRecord, err)
	}
	n, err := enode.New(enode.ValidSchemes, &rec)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errV5BadRecord, err)
	}
	if n.ID() != want {
		return nil, fmt.Errorf("%w: record of node %s in a handshake from %s", errV5BadRecord, n.ID().TerminalString(), want.TerminalString())
	}
	return n, nil
}

func setErr(p *Packet, err error) {
	if p.Err == nil {
		p.Err = err
	}
}

// local returns the local node with that ID, or nil.
func (d *V5Decoder) local(id enode.ID) *v5Local {
	for i := range d.locals {
		if d.locals[i].id == id {
			return &d.locals[i]
		}
	}
	return nil
}

// pubkey returns the static public key of id, from the handshake's ENR, a record seen
// earlier, or a local key; nil when unknown (the id-signature then goes unchecked).
func (d *V5Decoder) pubkey(id enode.ID, fromHandshake *enode.Node) *ecdsa.PublicKey {
	if fromHandshake != nil {
		return fromHandshake.Pubkey()
	}
	if pub, ok := d.st.pubkeys.get(id); ok {
		return pub
	}
	if l := d.local(id); l != nil {
		return &l.key.PublicKey
	}
	return nil
}

// blockFor returns the masking block of id, making id a known candidate.
func (d *V5Decoder) blockFor(id enode.ID) cipher.Block {
	if l := d.local(id); l != nil {
		return l.block
	}
	return d.st.known.add(id)
}

func (d *V5Decoder) learnAddr(addr netip.AddrPort, id enode.ID) {
	if !addr.IsValid() {
		return
	}
	addr = v5Normalize(addr)
	if cur, ok := d.st.addrs.get(addr); ok && cur == id {
		return // the common case: nothing new, and one map lookup instead of three
	}
	d.blockFor(id)
	d.st.addrs.put(addr, id)
}

// learnSender remembers what a MESSAGE or HANDSHAKE tells: its sender's ID and address,
// and its nonce, which a WHOAREYOU answering it will echo.
func (d *V5Decoder) learnSender(addr netip.AddrPort, src, dst enode.ID, nonce v5wire.Nonce) {
	d.learnAddr(addr, src)
	d.st.nonces.put(nonce, v5Sent{src: src, dst: dst})
}

func (d *V5Decoder) learnNode(n *enode.Node) {
	if pub := n.Pubkey(); pub != nil {
		d.st.pubkeys.put(n.ID(), pub)
	}
	d.blockFor(n.ID())
	if ep, ok := n.UDPEndpoint(); ok {
		d.learnAddr(ep, n.ID())
	}
}

// v5Normalize turns IPv4-mapped IPv6 addresses into IPv4 so that one endpoint has
// one key, whichever way a record or capture spelled it.
func v5Normalize(a netip.AddrPort) netip.AddrPort {
	if a.Addr().Is4In6() {
		return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	return a
}
