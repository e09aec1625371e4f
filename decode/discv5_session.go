package decode

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
	v5MaxKnownIDs   = 4096  // IDs tried when nothing better is known (AES-block each)
	v5MaxAddrs      = 16384 // address -> node ID
	v5MaxSessions   = 8192  // (sender, recipient, their endpoints) -> keys
	v5MaxChallenged = 4096  // challenged node -> recent WHOAREYOUs
	v5MaxNonces     = 16384 // nonce of a message/handshake -> its sender and recipient
	v5MaxPubkeys    = 16384 // node ID -> public key (from ENRs), for ID signatures
	// v5ChallengesPerNode is how many distinct recent challenges to one node are kept:
	// a handshake may answer an older one when two were in flight.
	v5ChallengesPerNode = 4
	// v5KeysPerDirection: the current session key and the one before, so that packets
	// still in flight across a re-handshake decrypt.
	v5KeysPerDirection = 2
)

// v5Bounded is a map that forgets its oldest insertions beyond max entries.
// Deleting a key leaves its slot in the ring: a key deleted and added again may be
// forgotten earlier than strictly necessary, never later, so the bound holds.
type v5Bounded[K comparable, V any] struct {
	m     map[K]V
	order []K // insertion ring
	next  int // slot the next insertion overwrites once the ring is full
	max   int
}

func newV5Bounded[K comparable, V any](max int) *v5Bounded[K, V] {
	return &v5Bounded[K, V]{m: make(map[K]V), max: max}
}

func (b *v5Bounded[K, V]) get(k K) (V, bool) {
	v, ok := b.m[k]
	return v, ok
}

func (b *v5Bounded[K, V]) put(k K, v V) {
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

func (b *v5Bounded[K, V]) remove(k K) { delete(b.m, k) }

// v5KnownIDs are the candidate destinations with their masking blocks, in a ring so
// that trying them all walks a slice from the newest, without map lookups.
type v5KnownIDs struct {
	ids   []v5Candidate
	index map[enode.ID]int
	next  int // slot of the next insertion
}

type v5Candidate struct {
	id    enode.ID
	block cipher.Block
}

func (k *v5KnownIDs) get(id enode.ID) (cipher.Block, bool) {
	if i, ok := k.index[id]; ok {
		return k.ids[i].block, true
	}
	return nil, false
}

// add makes id a candidate, forgetting the oldest beyond v5MaxKnownIDs.
func (k *v5KnownIDs) add(id enode.ID) cipher.Block {
	if block, ok := k.get(id); ok {
		return block
	}
	c := v5Candidate{id: id, block: v5NewMaskBlock(id)}
	if len(k.ids) < v5MaxKnownIDs {
		k.ids = append(k.ids, c)
		k.index[id] = len(k.ids) - 1
		k.next = len(k.ids) % v5MaxKnownIDs
		return c.block
	}
	delete(k.index, k.ids[k.next].id)
	k.ids[k.next] = c
	k.index[id] = k.next
	k.next = (k.next + 1) % v5MaxKnownIDs
	return c.block
}

// newest returns the i-th most recently added candidate, 0 <= i < len(k.ids).
func (k *v5KnownIDs) newest(i int) *v5Candidate {
	n := len(k.ids)
	return &k.ids[((k.next-1-i)%n+n)%n]
}

// v5Direction is an ordered pair of nodes: packets from src to dst.
type v5Direction struct{ src, dst enode.ID }

// v5Key is one session key with its ready-to-use cipher.
type v5Key struct {
	raw  [v5KeySize]byte
	aead cipher.AEAD
}

// v5KeyRing is the keys for one direction, newest first.
type v5KeyRing [v5KeysPerDirection]*v5Key

// v5Sent remembers a MESSAGE or HANDSHAKE by its nonce, so that the WHOAREYOU answering
// it (which echoes the nonce but carries no sender ID) can be attributed.
type v5Sent struct {
	src, dst enode.ID
}

// v5Challenge is a WHOAREYOU as seen on the wire.
type v5Challenge struct {
	data            []byte         // masking-iv || static-header || authdata: the HKDF salt
	challengerAddr  netip.AddrPort // where it came from: the handshake goes back there
	challengerID    enode.ID
	hasChallengerID bool
	// sent is when it was first seen: an identical resend does not restart
	// go-ethereum's handshake timeout, so it does not update this either.
	sent time.Time
}

// v5State is the decoder's memory.
type v5State struct {
	known      v5KnownIDs // IDs to try, with their masking block
	addrs      *v5Bounded[netip.AddrPort, enode.ID]
	sessions   *v5Bounded[v5SessionID, *v5KeyRing]
	pairs      *v5Bounded[v5Direction, *v5KeyRing]  // the same keys by node pair, any endpoints
	challenges *v5Bounded[enode.ID, []*v5Challenge] // by challenged node, newest first
	nonces     *v5Bounded[v5wire.Nonce, v5Sent]
	pubkeys    *v5Bounded[enode.ID, *ecdsa.PublicKey]
	// localInitiated marks node pairs whose last handshake a local node sent: their
	// messages cannot be decrypted with the local key, and say so.
	localInitiated *v5Bounded[v5Direction, bool]
}

func newV5State() v5State {
	return v5State{
		known:      v5KnownIDs{index: make(map[enode.ID]int)},
		addrs:      newV5Bounded[netip.AddrPort, enode.ID](v5MaxAddrs),
		sessions:   newV5Bounded[v5SessionID, *v5KeyRing](v5MaxSessions),
		pairs:      newV5Bounded[v5Direction, *v5KeyRing](v5MaxSessions),
		challenges: newV5Bounded[enode.ID, []*v5Challenge](v5MaxChallenged),
		nonces:     newV5Bounded[v5wire.Nonce, v5Sent](v5MaxNonces),
		pubkeys:    newV5Bounded[enode.ID, *ecdsa.PublicKey](v5MaxPubkeys),

		localInitiated: newV5Bounded[v5Direction, bool](v5MaxSessions),
	}
}

// v5SessionID is one direction of a session as go-ethereum binds it: both node IDs
// and both endpoints. geth looks sessions up by (remote ID, remote address) on each
// side, so keys set up between two endpoints do not serve a packet from or to another
// address: that node answers WHOAREYOU instead.
type v5SessionID struct {
	dir              v5Direction
	srcAddr, dstAddr netip.AddrPort
}

// storeSession records the keys of a handshake from initiator to recipient: the
// initiator-key for packets the initiator sends, the recipient-key for the replies.
func (s *v5State) storeSession(initiator, recipient enode.ID, initiatorAddr, recipientAddr netip.AddrPort, keys v5SessionKeys) {
	s.addKey(v5SessionID{v5Direction{initiator, recipient}, initiatorAddr, recipientAddr}, keys.initiator)
	s.addKey(v5SessionID{v5Direction{recipient, initiator}, recipientAddr, initiatorAddr}, keys.recipient)
}

// addKey makes raw the newest key of a direction, both for these endpoints and for
// the node pair at any endpoints.
func (s *v5State) addKey(id v5SessionID, raw [v5KeySize]byte) {
	k := &v5Key{raw: raw, aead: v5NewAEAD(raw)}
	ring, ok := s.sessions.get(id)
	if !ok {
		ring = new(v5KeyRing)
		s.sessions.put(id, ring)
	}
	ring.push(k)
	pair, ok := s.pairs.get(id.dir)
	if !ok {
		pair = new(v5KeyRing)
		s.pairs.put(id.dir, pair)
	}
	pair.push(k)
}

func (r *v5KeyRing) has(k *v5Key) bool {
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

func (r *v5KeyRing) push(k *v5Key) {
	if r[0] != nil && r[0].raw == k.raw {
		return
	}
	copy(r[1:], r[:len(r)-1])
	r[0] = k
}

// dropSession forgets the keys between two nodes: a handshake whose keys cannot be
// derived replaced them, and decrypting with the old ones would mislead.
func (s *v5State) dropSession(a, b enode.ID, addrA, addrB netip.AddrPort) {
	s.sessions.remove(v5SessionID{v5Direction{a, b}, addrA, addrB})
	s.sessions.remove(v5SessionID{v5Direction{b, a}, addrB, addrA})
	s.pairs.remove(v5Direction{a, b})
	s.pairs.remove(v5Direction{b, a})
}

// storeChallenge keeps a WHOAREYOU for the handshake that should answer it. An
// identical resend (geth repeats a pending challenge byte for byte) is stored once.
func (s *v5State) storeChallenge(challenged enode.ID, c v5Challenge) {
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
		list = make([]*v5Challenge, 0, v5ChallengesPerNode)
	}
	if len(list) < v5ChallengesPerNode {
		list = append(list, nil)
	}
	copy(list[1:], list[:len(list)-1])
	stored := new(v5Challenge) // allocated only for a new challenge, not per resend
	*stored = c
	list[0] = stored
	s.challenges.put(challenged, list)
}

// challengesFor returns the challenges a handshake from initiator to (recipientID at
// recipientAddr) may answer, newest first: those sent by that node ID, or from that
// address when the challenger's ID was not known.
func (s *v5State) challengesFor(initiator, recipientID enode.ID, recipientAddr netip.AddrPort) []*v5Challenge {
	list, _ := s.challenges.get(initiator)
	var out []*v5Challenge
	for _, c := range list {
		if (c.hasChallengerID && c.challengerID == recipientID) || c.challengerAddr == recipientAddr {
			out = append(out, c)
		}
	}
	return out
}
