package discv5

import (
	"bytes"
	"crypto/cipher"
	"crypto/ecdsa"
	"net/netip"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/internal/addrkey"
	"github.com/discotrace/discotrace/decode/internal/bounded"
)

// State the discv5 decoder keeps between packets: which node ID sits behind which
// address, the challenges (WHOAREYOU) seen, and the session keys recovered from
// handshakes. Everything is bounded so that a long capture with many peers cannot
// grow memory without limit, by the decoder's one eviction policy (package bounded:
// the oldest insertion is forgotten first). The local nodes are not part of this state:
// they are never forgotten (Decoder.locals and pinned).

// Bounds of the decoder's state. A busy mainnet node talks to a few thousand peers;
// the bounds keep the most recent of them.
const (
	maxKnownIDs   = 4096  // IDs tried when nothing better is known (AES-block each)
	maxAddrs      = 16384 // address -> node ID
	maxSessions   = 8192  // (sender, recipient, their endpoints) -> keys
	maxChallenged = 4096  // challenged node -> recent WHOAREYOUs
	maxNonces     = 16384 // nonce of a message/handshake -> its sender and recipient
	maxPubkeys    = 16384 // node ID -> public key (from ENRs), for ID signatures
	// challengesPerNode is how many distinct recent challenges to one node are kept:
	// a handshake may answer an older one when two were in flight.
	challengesPerNode = 4
	// keysPerDirection: the current session key and the one before, so that packets
	// still in flight across a re-handshake decrypt.
	keysPerDirection = 2
)

// knownIDs are the candidate destinations with their masking blocks. The policy is
// bounded.Map's (the oldest insertion is forgotten first), kept in a ring of its own so
// that trying them all walks a slice from the newest, without map lookups.
type knownIDs struct {
	ids   []candidate
	index map[enode.ID]int
	next  int // slot of the next insertion
}

type candidate struct {
	id    enode.ID
	block cipher.Block // nil until first needed (maskBlock)
}

// maskBlock returns c's masking block, made on first use: most candidates are senders
// whose packets never need unmasking as a destination, and an AES schedule costs
// hundreds of bytes.
func (c *candidate) maskBlock() cipher.Block {
	if c.block == nil {
		c.block = newMaskBlock(c.id)
	}
	return c.block
}

// add makes id a candidate, forgetting the oldest beyond maxKnownIDs, and returns it.
func (k *knownIDs) add(id enode.ID) *candidate {
	if i, ok := k.index[id]; ok {
		return &k.ids[i]
	}
	c := candidate{id: id}
	if len(k.ids) < maxKnownIDs {
		k.ids = append(k.ids, c)
		k.index[id] = len(k.ids) - 1
		k.next = len(k.ids) % maxKnownIDs
		return &k.ids[len(k.ids)-1]
	}
	i := k.next
	delete(k.index, k.ids[i].id)
	k.ids[i] = c
	k.index[id] = i
	k.next = (k.next + 1) % maxKnownIDs
	return &k.ids[i]
}

// newest returns the i-th most recently added candidate, 0 <= i < len(k.ids).
func (k *knownIDs) newest(i int) *candidate {
	n := len(k.ids)
	return &k.ids[((k.next-1-i)%n+n)%n]
}

// direction is an ordered pair of nodes: packets from src to dst.
type direction struct{ src, dst enode.ID }

// sessionKey is one session key with its ready-to-use cipher.
type sessionKey struct {
	raw  [sessionKeySize]byte
	aead cipher.AEAD
}

// keyRing is the keys for one direction, newest first.
type keyRing [keysPerDirection]*sessionKey

// sentPacket remembers a MESSAGE or HANDSHAKE by its nonce, so that the WHOAREYOU answering
// it (which echoes the nonce but carries no sender ID) can be attributed.
type sentPacket struct {
	src, dst enode.ID
}

// seenChallenge is a WHOAREYOU as seen on the wire.
type seenChallenge struct {
	data            []byte         // masking-iv || static-header || authdata: the HKDF salt
	challengerAddr  netip.AddrPort // where it came from: the handshake goes back there
	challengerID    enode.ID
	hasChallengerID bool
	// sent is when it was first seen: an identical resend does not restart
	// go-ethereum's handshake timeout, so it does not update this either.
	sent time.Time
}

// state is the decoder's memory.
type state struct {
	known      knownIDs // IDs to try, with their masking block
	addrs      *bounded.Map[addrkey.Key, enode.ID]
	sessions   *bounded.Map[sessionID, *keyRing]
	pairs      *bounded.Map[direction, *keyRing]        // the same keys by node pair, any endpoints
	challenges *bounded.Map[enode.ID, []*seenChallenge] // by challenged node, newest first
	nonces     *bounded.Map[v5wire.Nonce, sentPacket]
	pubkeys    *bounded.Map[enode.ID, *ecdsa.PublicKey]
	// localInitiated marks node pairs whose last handshake a local node sent: their
	// messages cannot be decrypted with the local key, and say so.
	localInitiated *bounded.Map[direction, bool]
}

func newState() state {
	return state{
		known:      knownIDs{index: make(map[enode.ID]int)},
		addrs:      bounded.New[addrkey.Key, enode.ID](maxAddrs),
		sessions:   bounded.New[sessionID, *keyRing](maxSessions),
		pairs:      bounded.New[direction, *keyRing](maxSessions),
		challenges: bounded.New[enode.ID, []*seenChallenge](maxChallenged),
		nonces:     bounded.New[v5wire.Nonce, sentPacket](maxNonces),
		pubkeys:    bounded.New[enode.ID, *ecdsa.PublicKey](maxPubkeys),

		localInitiated: bounded.New[direction, bool](maxSessions),
	}
}

// sessionID is one direction of a session as go-ethereum binds it: both node IDs
// and both endpoints. geth looks sessions up by (remote ID, remote address) on each
// side, so keys set up between two endpoints do not serve a packet from or to another
// address: that node answers WHOAREYOU instead.
type sessionID struct {
	dir              direction
	srcAddr, dstAddr netip.AddrPort
}

// storeSession records the keys of a handshake from initiator to recipient: the
// initiator-key for packets the initiator sends, the recipient-key for the replies.
func (s *state) storeSession(initiator, recipient enode.ID, initiatorAddr, recipientAddr netip.AddrPort, keys sessionKeys) {
	s.addKey(sessionID{direction{initiator, recipient}, initiatorAddr, recipientAddr}, keys.initiator)
	s.addKey(sessionID{direction{recipient, initiator}, recipientAddr, initiatorAddr}, keys.recipient)
}

// addKey makes raw the newest key of a direction, both for these endpoints and for
// the node pair at any endpoints.
func (s *state) addKey(id sessionID, raw [sessionKeySize]byte) {
	k := &sessionKey{raw: raw, aead: newAEAD(raw)}
	ring, ok := s.sessions.Get(id)
	if !ok {
		ring = new(keyRing)
		s.sessions.Put(id, ring)
	}
	ring.push(k)
	pair, ok := s.pairs.Get(id.dir)
	if !ok {
		pair = new(keyRing)
		s.pairs.Put(id.dir, pair)
	}
	pair.push(k)
}

func (r *keyRing) has(k *sessionKey) bool {
	if r == nil {
		return false
	}
	for _, x := range r {
		if x == k {
			return true
		}
	}
	return false
}

func (r *keyRing) push(k *sessionKey) {
	if r[0] != nil && r[0].raw == k.raw {
		return
	}
	copy(r[1:], r[:len(r)-1])
	r[0] = k
}

// dropSession forgets the keys between two nodes: a handshake whose keys cannot be
// derived replaced them, and decrypting with the old ones would mislead.
func (s *state) dropSession(a, b enode.ID, addrA, addrB netip.AddrPort) {
	s.sessions.Delete(sessionID{direction{a, b}, addrA, addrB})
	s.sessions.Delete(sessionID{direction{b, a}, addrB, addrA})
	s.pairs.Delete(direction{a, b})
	s.pairs.Delete(direction{b, a})
}

// storeChallenge keeps a WHOAREYOU for the handshake that should answer it. An
// identical resend (geth repeats a pending challenge byte for byte) is stored once.
func (s *state) storeChallenge(challenged enode.ID, c seenChallenge) {
	list, _ := s.challenges.Get(challenged)
	for _, old := range list {
		if bytes.Equal(old.data, c.data) && old.challengerAddr == c.challengerAddr {
			if !old.hasChallengerID && c.hasChallengerID {
				old.challengerID, old.hasChallengerID = c.challengerID, true
			}
			return // keeps the first sighting's time, as geth keeps its timer
		}
	}
	if list == nil {
		list = make([]*seenChallenge, 0, challengesPerNode)
	}
	if len(list) < challengesPerNode {
		list = append(list, nil)
	}
	copy(list[1:], list[:len(list)-1])
	stored := new(seenChallenge) // allocated only for a new challenge, not per resend
	*stored = c
	list[0] = stored
	s.challenges.Put(challenged, list)
}

// challengesFor returns the challenges a handshake from initiator to (recipientID at
// recipientAddr) may answer, newest first: those sent by that node ID, or from that
// address when the challenger's ID was not known.
func (s *state) challengesFor(initiator, recipientID enode.ID, recipientAddr netip.AddrPort) []*seenChallenge {
	list, _ := s.challenges.Get(initiator)
	var out []*seenChallenge
	for _, c := range list {
		if (c.hasChallengerID && c.challengerID == recipientID) || c.challengerAddr == recipientAddr {
			out = append(out, c)
		}
	}
	return out
}
