package discv5

import (
	"bytes"
	"crypto/cipher"
	"crypto/ecdsa"
	"net/netip"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
)

// State the discv5 decoder keeps between packets: which node ID sits behind which
// address, the challenges (WHOAREYOU) seen, and the session keys recovered from
// handshakes. Everything is bounded so that a long capture with many peers cannot
// grow memory without limit; the oldest entries are forgotten first.

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

// bounded is a map that forgets its oldest insertions beyond max entries.
// Deleting a key leaves its slot in the ring: a key deleted and added again may be
// forgotten earlier than strictly necessary, never later, so the bound holds.
type bounded[K comparable, V any] struct {
	m     map[K]V
	order []K // insertion ring
	next  int // slot the next insertion overwrites once the ring is full
	max   int
}

func newBounded[K comparable, V any](max int) *bounded[K, V] {
	return &bounded[K, V]{m: make(map[K]V), max: max}
}

func (b *bounded[K, V]) get(k K) (V, bool) {
	v, ok := b.m[k]
	return v, ok
}

func (b *bounded[K, V]) put(k K, v V) {
	if _, ok := b.m[k]; ok {
		b.m[k] = v
		return
	}
	if len(b.order) < b.max {
		b.order = append(b.order, k)
	} else {
		delete(b.m, b.order[b.next])
		b.order[b.next] = k
		b.next = (b.next + 1) % b.max
	}
	b.m[k] = v
}

func (b *bounded[K, V]) remove(k K) { delete(b.m, k) }

// knownIDs are the candidate destinations with their masking blocks, in a ring so
// that trying them all walks a slice from the newest, without map lookups.
type knownIDs struct {
	ids   []candidate
	index map[enode.ID]int
	next  int // slot of the next insertion
}

type candidate struct {
	id    enode.ID
	block cipher.Block
}

func (k *knownIDs) get(id enode.ID) (cipher.Block, bool) {
	if i, ok := k.index[id]; ok {
		return k.ids[i].block, true
	}
	return nil, false
}

// add makes id a candidate, forgetting the oldest beyond maxKnownIDs.
func (k *knownIDs) add(id enode.ID) cipher.Block {
	if block, ok := k.get(id); ok {
		return block
	}
	c := candidate{id: id, block: newMaskBlock(id)}
	if len(k.ids) < maxKnownIDs {
		k.ids = append(k.ids, c)
		k.index[id] = len(k.ids) - 1
		k.next = len(k.ids) % maxKnownIDs
		return c.block
	}
	delete(k.index, k.ids[k.next].id)
	k.ids[k.next] = c
	k.index[id] = k.next
	k.next = (k.next + 1) % maxKnownIDs
	return c.block
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
	addrs      *bounded[netip.AddrPort, enode.ID]
	sessions   *bounded[sessionID, *keyRing]
	pairs      *bounded[direction, *keyRing]        // the same keys by node pair, any endpoints
	challenges *bounded[enode.ID, []*seenChallenge] // by challenged node, newest first
	nonces     *bounded[v5wire.Nonce, sentPacket]
	pubkeys    *bounded[enode.ID, *ecdsa.PublicKey]
	// localInitiated marks node pairs whose last handshake a local node sent: their
	// messages cannot be decrypted with the local key, and say so.
	localInitiated *bounded[direction, bool]
}

func newState() state {
	return state{
		known:      knownIDs{index: make(map[enode.ID]int)},
		addrs:      newBounded[netip.AddrPort, enode.ID](maxAddrs),
		sessions:   newBounded[sessionID, *keyRing](maxSessions),
		pairs:      newBounded[direction, *keyRing](maxSessions),
		challenges: newBounded[enode.ID, []*seenChallenge](maxChallenged),
		nonces:     newBounded[v5wire.Nonce, sentPacket](maxNonces),
		pubkeys:    newBounded[enode.ID, *ecdsa.PublicKey](maxPubkeys),

		localInitiated: newBounded[direction, bool](maxSessions),
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
	ring, ok := s.sessions.get(id)
	if !ok {
		ring = new(keyRing)
		s.sessions.put(id, ring)
	}
	ring.push(k)
	pair, ok := s.pairs.get(id.dir)
	if !ok {
		pair = new(keyRing)
		s.pairs.put(id.dir, pair)
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
	s.sessions.remove(sessionID{direction{a, b}, addrA, addrB})
	s.sessions.remove(sessionID{direction{b, a}, addrB, addrA})
	s.pairs.remove(direction{a, b})
	s.pairs.remove(direction{b, a})
}

// storeChallenge keeps a WHOAREYOU for the handshake that should answer it. An
// identical resend (geth repeats a pending challenge byte for byte) is stored once.
func (s *state) storeChallenge(challenged enode.ID, c seenChallenge) {
	list, _ := s.challenges.get(challenged)
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
	s.challenges.put(challenged, list)
}

// challengesFor returns the challenges a handshake from initiator to (recipientID at
// recipientAddr) may answer, newest first: those sent by that node ID, or from that
// address when the challenger's ID was not known.
func (s *state) challengesFor(initiator, recipientID enode.ID, recipientAddr netip.AddrPort) []*seenChallenge {
	list, _ := s.challenges.get(initiator)
	var out []*seenChallenge
	for _, c := range list {
		if (c.hasChallengerID && c.challengerID == recipientID) || c.challengerAddr == recipientAddr {
			out = append(out, c)
		}
	}
	return out
}
