// Package packet defines a decoded discovery packet: what the wire decoders
// (decode/discv4, decode/discv5) hand to the tracker (decode).
package packet

import (
	"net/netip"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
)

// Protocol names, the value of disc.proto.
const (
	ProtoV4      = "discv4"
	ProtoV5      = "discv5"
	ProtoUnknown = "unknown"
)

// Packet is one decoded discovery datagram. Fields that do not apply to Proto/Kind are zero.
type Packet struct {
	Proto string // ProtoV4, ProtoV5, ProtoUnknown
	// Kind: discv4 PING, PONG, FINDNODE, NEIGHBORS, ENRREQUEST, ENRRESPONSE
	// (discv4.Kind*); discv5 MESSAGE, WHOAREYOU, HANDSHAKE (discv5.Kind*).
	Kind string
	// Err says why decoding stopped (malformed, bad signature, cannot decrypt: no key,
	// session started before the capture, random first packet). A packet with Err set
	// still has every field decoded before the failure.
	Err error

	// SrcID and DstID are the sender's and recipient's node IDs, when known
	// (HasSrcID/HasDstID): discv4 sender recovered from the signature; discv5 src-id
	// from the header, dst-id from the key that unmasked it.
	HasSrcID, HasDstID bool
	SrcID, DstID       enode.ID
	// ENRSeq is the ENR sequence number the packet carries (discv4 PING/PONG, discv5
	// WHOAREYOU enr-seq, an ENR's seq), when HasENRSeq.
	HasENRSeq bool
	ENRSeq    uint64
	// Nodes is the number of records in NEIGHBORS, NODES or an ENRRESPONSE, when HasNodes.
	HasNodes bool
	Nodes    int
	// Records are the nodes learned from the packet (NEIGHBORS entries, ENRRESPONSE,
	// NODES, a handshake's ENR): the tracker learns IDs and endpoints from them.
	Records []*enode.Node

	// discv4.
	Hash       []byte         // the packet hash (first 32 bytes): PING's hash is PONG's reply token
	ReplyTok   []byte         // PONG and ENRRESPONSE: the hash of the request they answer
	Expiration time.Time      // PING, PONG, FINDNODE, NEIGHBORS, ENRREQUEST
	From, To   netip.AddrPort // PING from/to, PONG to (the address the peer saw us at; discv5 PONG too)
	Target     []byte         // FINDNODE target

	// discv5.
	Nonce         []byte // the 12-byte header nonce
	IDNonce       []byte // WHOAREYOU id-nonce
	ChallengeData []byte // WHOAREYOU: masking-iv || static-header || authdata (the HKDF salt)
	// Msg is the decrypted message (nil when not decrypted): its Name() is disc.msg,
	// and RequestID() pairs requests with responses.
	Msg v5wire.Packet
}
