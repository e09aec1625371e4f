package discv5

import (
	"crypto/ecdsa"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/ethereum/go-ethereum/common/mclock"
	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/ethereum/go-ethereum/p2p/enr"
)

// A node ID the caller says is local is never forgotten, however many peers send to
// it: each new peer adds its address and ID to the decoder's bounded state, which
// forgets the oldest entries first, and the local ID was once among the oldest. With
// the local ID given with a key, as a bare ID, or as a record, every MESSAGE from
// 40,000 distinct addresses and node IDs (more than any bound of the state) must unmask
// with the local ID as destination.
func TestLocalIDOutlivesManyPeers(t *testing.T) {
	const peers = 40_000
	if peers <= maxAddrs || peers <= maxKnownIDs {
		t.Fatalf("%d peers do not exceed the state's bounds (%d addresses, %d known IDs)", peers, maxAddrs, maxKnownIDs)
	}
	local := netip.MustParseAddrPort("10.255.0.1:30303")
	localNode := enode.NewV4(&testKeyB.PublicKey, local.Addr().AsSlice(), 0, int(local.Port()))
	for _, c := range []struct {
		name string
		dec  func() *Decoder
	}{
		{"key", func() *Decoder { return NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0) }},
		{"node ID", func() *Decoder {
			d := NewDecoder(nil, 0)
			d.AddLocalID(testIDB)
			return d
		}},
		{"record", func() *Decoder {
			d := NewDecoder(nil, 0)
			d.AddLocalNode(localNode)
			return d
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := c.dec()
			codec := v5wire.NewCodec(nil, nil, mclock.System{}, nil) // only its masking is used
			lost := 0
			for i := range peers {
				var src enode.ID
				binary.BigEndian.PutUint64(src[:], uint64(i)+1)
				src[31] = 0x5a
				head := v5wire.Header{
					StaticHeader: v5wire.StaticHeader{ProtocolID: v5wire.DefaultProtocolID, Version: 1, Flag: flagMessage, AuthSize: msgAuthSize},
					AuthData:     src[:],
				}
				binary.BigEndian.PutUint64(head.IV[:], uint64(i))
				binary.BigEndian.PutUint64(head.Nonce[:], uint64(i))
				pkt, err := codec.EncodeRaw(testIDB, head, make([]byte, 40)) // random-looking body: no session
				if err != nil {
					t.Fatal(err)
				}
				from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 30303)
				p, ok := d.Decode(datagram(from, local, pkt))
				if !ok || p.DstID != testIDB || p.SrcID != src || p.Kind != KindMessage {
					if lost == 0 {
						t.Errorf("packet %d from peer %v: ok %v, kind %q, to %v from %v; want a MESSAGE to the local node", i, from, ok, p.Kind, p.DstID, p.SrcID)
					}
					lost++
				}
			}
			if lost > 0 {
				t.Errorf("%d of %d packets to the local node not unmasked with its ID", lost, peers)
			}
			if c.name != "record" {
				return
			}
			// Records of more nodes than the state keeps public keys for: the local
			// node's key still checks the handshakes it sends.
			for i := range maxPubkeys + 1 {
				var id enode.ID
				binary.BigEndian.PutUint64(id[:], uint64(i)+1)
				var r enr.Record
				r.Set((*enode.Secp256k1)(&testKeyA.PublicKey))
				d.AddNode(enode.SignNull(&r, id))
			}
			if d.pubkey(testIDB, nil) == nil {
				t.Error("the local record's public key was forgotten")
			}
		})
	}
}
