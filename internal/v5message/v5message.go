// Package v5message builds the discv5 traffic the load benchmarks send: ordinary MESSAGE
// packets (flag 0) from many peers to one local node. Headers are real, masked with the
// destination's node ID by go-ethereum's v5wire; the message body is random, which is what
// a message looks like to anyone without the session keys, as to a tracer given only the
// local node's ID.
package v5message

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"github.com/ethereum/go-ethereum/common/mclock"
	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
)

// headerSize is the masking IV, the static header and a MESSAGE's authdata (the src-id).
const headerSize = 16 + 23 + 32

// MinSize is the smallest MESSAGE packet: a header and an AES-GCM tag's worth of message.
const MinSize = headerSize + 16

// Builder makes MESSAGE packets. Its IDs, nonces and bodies come from a seeded generator,
// so a run can be repeated exactly. Not safe for concurrent use.
type Builder struct {
	codec *v5wire.Codec // only its masking encoder is used: it needs no key
	rng   *rand.Rand
}

// NewBuilder returns a Builder whose random choices follow seed.
func NewBuilder(seed uint64) *Builder {
	return &Builder{
		codec: v5wire.NewCodec(nil, nil, mclock.System{}, nil),
		rng:   rand.New(rand.NewPCG(seed, seed^0x646973636f)),
	}
}

// NodeID returns a random node ID. Real IDs are hashes of public keys; a tracer without
// the peers' records cannot tell these apart from them.
func (b *Builder) NodeID() enode.ID {
	var id enode.ID
	for i := 0; i < len(id); i += 8 {
		binary.LittleEndian.PutUint64(id[i:], b.rng.Uint64())
	}
	return id
}

// Message returns a MESSAGE packet of size bytes from src to dst: a fresh masking IV and
// nonce, the header masked with dst, and a random body in place of the encrypted message.
func (b *Builder) Message(dst, src enode.ID, size int) ([]byte, error) {
	if size < MinSize || size > 1280 {
		return nil, fmt.Errorf("a discv5 MESSAGE packet has %d to 1280 bytes, not %d", MinSize, size)
	}
	head := v5wire.Header{
		StaticHeader: v5wire.StaticHeader{
			ProtocolID: v5wire.DefaultProtocolID,
			Version:    1,
			Flag:       0, // ordinary message
			AuthSize:   32,
		},
		AuthData: src[:],
	}
	b.fill(head.IV[:])
	b.fill(head.Nonce[:])
	body := make([]byte, size-headerSize)
	b.fill(body)
	p, err := b.codec.EncodeRaw(dst, head, body)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), p...), nil // EncodeRaw's result is the codec's buffer
}

func (b *Builder) fill(p []byte) {
	var w [8]byte
	for i := 0; i < len(p); i += 8 {
		binary.LittleEndian.PutUint64(w[:], b.rng.Uint64())
		copy(p[i:], w[:])
	}
}
