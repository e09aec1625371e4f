// Package discv4 decodes discv4 packets (hash, signature recovery, RLP body) into
// packet.Packet values, caching signature recovery by packet hash.
package discv4

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/ethereum/go-ethereum/p2p/enr"
	"github.com/ethereum/go-ethereum/rlp"

	"github.com/discotrace/discotrace/decode/internal/bounded"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
)

// discv4 packet kinds, the value of disc.kind.
const (
	KindPing        = "PING"
	KindPong        = "PONG"
	KindFindnode    = "FINDNODE"
	KindNeighbors   = "NEIGHBORS"
	KindENRRequest  = "ENRREQUEST"
	KindENRResponse = "ENRRESPONSE"
)

// Why a hash-valid discv4 packet could not be decoded completely. Decode wraps them with
// detail; match them with errors.Is.
var (
	// ErrBadSignature: the signature does not recover a public key, so the sender is unknown.
	ErrBadSignature = errors.New("discv4: signature does not recover a public key")
	// ErrUnknownType: the packet-type byte is none of the six discv4 types.
	ErrUnknownType = errors.New("discv4: unknown packet type")
	// ErrMalformed: the RLP body does not decode as the packet type says.
	ErrMalformed = errors.New("discv4: malformed packet body")
	// ErrBadRecord: an ENRRESPONSE carries a record whose signature or identity scheme is invalid.
	ErrBadRecord = errors.New("discv4: invalid ENR in ENRRESPONSE")
	// ErrRecordNotSender: an ENRRESPONSE carries a valid record of another node than its
	// sender (geth rejects these: a node answers with its own record).
	ErrRecordNotSender = errors.New("discv4: ENRRESPONSE record belongs to another node than its sender")
	// ErrBadNeighbor: a NEIGHBORS entry's public key is not a point on secp256k1.
	ErrBadNeighbor = errors.New("discv4: NEIGHBORS entry with an invalid public key")
)

// discv4 framing: hash || signature || packet-type || RLP body.
const (
	hashSize = 32
	sigSize  = crypto.SignatureLength
	headSize = hashSize + sigSize
)

// cacheSize is how many decoded packets the signature-recovery cache keeps: enough for
// the retransmits and send/receive pairs of a busy node over several seconds, while
// bounding memory to a few MiB. Past it the oldest insertion is forgotten first (package
// bounded, the decoder's one policy for what the network chooses: here packet hashes).
const cacheSize = 8192

// keyCacheSize bounds each cache of work that repeats across packets whose hashes
// differ: a sender's node ID (every packet of a peer), a NEIGHBORS entry's node (a node is
// listed again and again), an ENRRESPONSE's verified record (a peer answers with the same
// record until its seq changes). Each hit saves a keccak, a point decompression and a
// record, or a signature check; same policy as the packet cache.
const keyCacheSize = 1024

// Decoder decodes discv4 packets, caching signature recovery by packet hash (retransmits are common). Not safe for concurrent use.
//
// The cache keeps the whole decoded Packet: the packet hash covers every byte after it,
// so a packet whose hash checks out and is already cached decodes to the same value.
// Slices in returned Packets (Hash, ReplyTok, Target, Records) are shared between calls
// for the same packet, and nodes in Records between packets: treat them as read-only.
type Decoder struct {
	cache *bounded.Map[[hashSize]byte, packet.Packet] // nil: no cache

	senderIDs *bounded.Map[v4wire.Pubkey, enode.ID]
	neighbors *bounded.Map[neighborKey, *enode.Node]
	records   *bounded.Map[string, *enode.Node] // by the record's RLP encoding

	keccak crypto.KeccakState
	digest [hashSize]byte
	stream *rlp.Stream
	reader bytes.Reader
}

// NewDecoder returns a decoder with a signature-recovery cache of up to 8192 packets.
func NewDecoder() *Decoder {
	return newDecoder(cacheSize)
}

// newDecoder returns a decoder whose cache holds up to size packets; size 0 disables
// the cache (benchmarks of the recovery path use it).
func newDecoder(size int) *Decoder {
	d := &Decoder{
		keccak:    crypto.NewKeccakState(),
		senderIDs: bounded.New[v4wire.Pubkey, enode.ID](keyCacheSize),
		neighbors: bounded.New[neighborKey, *enode.Node](keyCacheSize),
		records:   bounded.New[string, *enode.Node](keyCacheSize),
	}
	if size > 0 {
		d.cache = bounded.New[[hashSize]byte, packet.Packet](size)
	}
	d.stream = rlp.NewStream(&d.reader, 0)
	return d
}

// Decode decodes r's payload as a discv4 packet.
// It returns false when the payload is not discv4: shorter than hash, signature, type
// byte and a list header, no RLP list after the type byte, or the first 32 bytes are not
// keccak256 of the rest (discv5 and random data fail these checks). A truncated payload
// (len(Payload) < Len) cannot be checked and also gives false. A hash-valid packet with
// a list body always gives true; when it cannot be decoded further (bad signature,
// unknown type, RLP error, invalid record) Packet.Err says why and wraps one of the Err
// values.
func (d *Decoder) Decode(r *record.Record) (packet.Packet, bool) {
	buf := r.Payload
	if r.Len > 0 && r.Len < len(buf) { // a producer's buffer longer than the datagram
		buf = buf[:r.Len]
	}
	if len(buf) < headSize+2 || len(buf) < r.Len {
		return packet.Packet{}, false
	}
	// Every discv4 body, of any type, is an RLP list: three in four discv5 packets (random
	// bytes there) fail this before the hash, which every datagram would pay.
	if buf[headSize+1] < 0xc0 {
		return packet.Packet{}, false
	}
	d.keccak.Reset()
	d.keccak.Write(buf[hashSize:])
	d.keccak.Read(d.digest[:])
	if !bytes.Equal(d.digest[:], buf[:hashSize]) {
		return packet.Packet{}, false
	}
	if d.cache == nil {
		return d.decodeVerified(buf), true
	}
	if p, ok := d.cache.Get(d.digest); ok {
		return p, true
	}
	p := d.decodeVerified(buf)
	d.cache.Put(d.digest, p)
	return p, true
}

// decodeVerified decodes a packet whose hash has been checked. Every slice it returns is
// a copy: buf belongs to the caller and may be reused after Decode returns.
func (d *Decoder) decodeVerified(buf []byte) packet.Packet {
	p := packet.Packet{Proto: packet.ProtoV4, Hash: bytes.Clone(buf[:hashSize])}
	sig, sigdata := buf[hashSize:headSize], buf[headSize:]

	d.keccak.Reset()
	d.keccak.Write(sigdata)
	var sighash [hashSize]byte
	d.keccak.Read(sighash[:])
	pub, err := crypto.Ecrecover(sighash[:], sig)
	if err != nil {
		p.Err = fmt.Errorf("%w: %w", ErrBadSignature, err)
		return p
	}
	var sender v4wire.Pubkey
	copy(sender[:], pub[1:]) // drop the 0x04 uncompressed-point prefix
	id, ok := d.senderIDs.Get(sender)
	if !ok {
		id = sender.ID()
		d.senderIDs.Put(sender, id)
	}
	p.HasSrcID, p.SrcID = true, id

	ptype, body := sigdata[0], sigdata[1:]
	switch ptype {
	case v4wire.PingPacket:
		p.Kind = KindPing
		var req v4wire.Ping
		if p.Err = d.decodeBody(body, &req); p.Err != nil {
			return p
		}
		p.From, p.To = endpoint(req.From), endpoint(req.To)
		p.Expiration = ExpirationTime(req.Expiration)
		// ENRSeq is optional (EIP-868): a zero value cannot tell "absent" from "0", the
		// number of list elements can.
		if listLen(body) >= 5 {
			p.HasENRSeq, p.ENRSeq = true, req.ENRSeq
		}
	case v4wire.PongPacket:
		p.Kind = KindPong
		var resp v4wire.Pong
		if p.Err = d.decodeBody(body, &resp); p.Err != nil {
			return p
		}
		p.To = endpoint(resp.To)
		p.ReplyTok = bytes.Clone(resp.ReplyTok)
		p.Expiration = ExpirationTime(resp.Expiration)
		if listLen(body) >= 4 {
			p.HasENRSeq, p.ENRSeq = true, resp.ENRSeq
		}
	case v4wire.FindnodePacket:
		p.Kind = KindFindnode
		var req v4wire.Findnode
		if p.Err = d.decodeBody(body, &req); p.Err != nil {
			return p
		}
		p.Target = bytes.Clone(req.Target[:])
		p.Expiration = ExpirationTime(req.Expiration)
	case v4wire.NeighborsPacket:
		p.Kind = KindNeighbors
		var resp v4wire.Neighbors
		if p.Err = d.decodeBody(body, &resp); p.Err != nil {
			return p
		}
		p.Expiration = ExpirationTime(resp.Expiration)
		p.HasNodes, p.Nodes = true, len(resp.Nodes)
		p.Records = make([]*enode.Node, 0, len(resp.Nodes))
		bad := 0
		for _, rn := range resp.Nodes {
			k, keyed := keyOf(rn)
			var n *enode.Node
			if keyed {
				n, _ = d.neighbors.Get(k)
			}
			if n == nil {
				pk, err := v4wire.DecodePubkey(crypto.S256(), rn.ID)
				if err != nil {
					bad++
					continue
				}
				n = neighborNode(rn, pk)
				if keyed {
					d.neighbors.Put(k, n)
				}
			}
			p.Records = append(p.Records, n)
		}
		if bad > 0 {
			p.Err = fmt.Errorf("%w: %d of %d entries", ErrBadNeighbor, bad, len(resp.Nodes))
		}
	case v4wire.ENRRequestPacket:
		p.Kind = KindENRRequest
		var req v4wire.ENRRequest
		if p.Err = d.decodeBody(body, &req); p.Err != nil {
			return p
		}
		p.Expiration = ExpirationTime(req.Expiration)
	case v4wire.ENRResponsePacket:
		p.Kind = KindENRResponse
		var resp v4wire.ENRResponse
		if p.Err = d.decodeBody(body, &resp); p.Err != nil {
			return p
		}
		p.ReplyTok = bytes.Clone(resp.ReplyTok)
		p.HasNodes, p.Nodes = true, 1
		n, err := d.verifiedRecord(body, &resp.Record)
		if err != nil {
			p.Err = fmt.Errorf("%w: %w", ErrBadRecord, err)
			return p
		}
		p.HasENRSeq, p.ENRSeq = true, n.Seq()
		p.Records = []*enode.Node{n}
		if n.ID() != p.SrcID {
			p.Err = fmt.Errorf("%w: record of %v", ErrRecordNotSender, n.ID())
		}
	default:
		p.Err = fmt.Errorf("%w %d", ErrUnknownType, ptype)
	}
	return p
}

// verifiedRecord returns the node of an ENRRESPONSE's record r, checking its signature
// unless the same encoding (body's second element) was checked before. Only valid records
// are kept: each invalid one costs its check again.
func (d *Decoder) verifiedRecord(body []byte, r *enr.Record) (*enode.Node, error) {
	raw := secondElement(body)
	if raw != nil {
		if n, ok := d.records.Get(string(raw)); ok {
			return n, nil
		}
	}
	n, err := enode.New(enode.ValidSchemes, r)
	if err == nil && raw != nil {
		d.records.Put(string(raw), n)
	}
	return n, err
}

// secondElement is the encoding of the second element of the RLP list body starts with,
// or nil.
func secondElement(body []byte) []byte {
	content, _, err := rlp.SplitList(body)
	if err != nil {
		return nil
	}
	_, _, rest, err := rlp.Split(content)
	if err != nil {
		return nil
	}
	_, _, after, err := rlp.Split(rest)
	if err != nil {
		return nil
	}
	return rest[:len(rest)-len(after)]
}

// neighborKey is a NEIGHBORS entry as a map key: a node listed again with the same
// endpoint is the same node.
type neighborKey struct {
	id       v4wire.Pubkey
	ip       [16]byte
	ipLen    uint8
	udp, tcp uint16
}

// keyOf returns rn's key, and false for an IP of another length than 4 or 16 bytes
// (which the key cannot tell apart).
func keyOf(rn v4wire.Node) (neighborKey, bool) {
	k := neighborKey{id: rn.ID, ipLen: uint8(len(rn.IP)), udp: rn.UDP, tcp: rn.TCP}
	copy(k.ip[:], rn.IP)
	return k, len(rn.IP) == 4 || len(rn.IP) == 16
}

// neighborNode is a NEIGHBORS entry as a node: its ID, public key and endpoint.
//
// enode.NewV4 would build the same node with the "v4" compatibility scheme, but it
// decompresses the public key three times (about 25 µs per entry on a 2 GHz core, 12
// entries per packet: more than the packet's signature recovery). The record here says
// the same with the "null" scheme, which carries the ID as computed from the key
// (keccak256 of it, as for every v4 node) instead of deriving it again: ID, Pubkey,
// IPAddr, UDP and TCP are those NewV4 would give.
func neighborNode(rn v4wire.Node, pk *ecdsa.PublicKey) *enode.Node {
	var r enr.Record
	if addr, ok := netip.AddrFromSlice(rn.IP); ok {
		addr = addr.Unmap()
		if addr.Is4() {
			r.Set(enr.IPv4Addr(addr))
		} else {
			r.Set(enr.IPv6Addr(addr))
		}
	}
	if rn.UDP != 0 {
		r.Set(enr.UDP(rn.UDP))
	}
	if rn.TCP != 0 {
		r.Set(enr.TCP(rn.TCP))
	}
	r.Set((*enode.Secp256k1)(pk))
	return enode.SignNull(&r, rn.ID.ID())
}

// decodeBody decodes the RLP body into v the way geth does: trailing data after the list
// is allowed (forward compatibility), and so are extra list elements (the types' "tail").
func (d *Decoder) decodeBody(body []byte, v any) error {
	d.reader.Reset(body)
	d.stream.Reset(&d.reader, uint64(len(body)))
	if err := d.stream.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// listLen is the number of elements in the RLP list at the start of body, or -1.
func listLen(body []byte) int {
	content, _, err := rlp.SplitList(body)
	if err != nil {
		return -1
	}
	n, err := rlp.CountValues(content)
	if err != nil {
		return -1
	}
	return n
}

// endpoint turns a wire endpoint into its UDP address; the zero AddrPort when the IP
// is neither 4 nor 16 bytes long (geth sends an empty IP when it does not know its own).
func endpoint(e v4wire.Endpoint) netip.AddrPort {
	addr, ok := netip.AddrFromSlice(e.IP)
	if !ok {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(addr.Unmap(), e.UDP)
}

// ExpirationTime converts a discv4 expiration (Unix seconds) to a time, saturating values
// that do not fit an int64 (to the int64 limit, which the tracker reads as "negative for
// go-ethereum") instead of letting them wrap into the past.
func ExpirationTime(ts uint64) time.Time {
	if ts > math.MaxInt64 {
		ts = math.MaxInt64
	}
	return time.Unix(int64(ts), 0).UTC()
}
