package discv4

import (
	"bytes"
	"testing"

	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"

	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/packet"
)

// FuzzV4Decode feeds payloads to the discv4 decoder twice: as they are (almost always
// rejected by the hash check) and with the hash made valid, which reaches signature
// recovery and RLP decoding. It must never panic, accept exactly the hash-valid
// payloads with a list after the type byte, and give the same answer from its cache.
//
//	go test -run '^$' -fuzz '^FuzzV4Decode$' -fuzztime 60s ./decode/discv4
func FuzzV4Decode(f *testing.F) {
	for _, pkt := range capturedPackets(f) {
		f.Add(pkt)
	}
	keyB := disctest.Key(f, disctest.KeyB)
	f.Add(signedFrame(f, keyB, 66, []byte{0xc1, 0x01}))
	f.Add(signedFrame(f, keyB, v4wire.NeighborsPacket, []byte{0xc3, 0xc1, 0xc0, 0x01}))
	f.Add(signedFrame(f, keyB, v4wire.ENRResponsePacket, []byte{0xc2, 0x80, 0xc0}))
	f.Add(make([]byte, headSize+1))
	f.Add(append(make([]byte, headSize+1), 0xbf))

	d := newDecoder(8)
	f.Fuzz(func(t *testing.T, payload []byte) {
		check := func(pkt []byte, wantOK bool) {
			p, ok := d.Decode(datagram(pkt))
			if ok != wantOK {
				t.Fatalf("ok %v, want %v", ok, wantOK)
			}
			if !ok {
				return
			}
			if p.Proto != packet.ProtoV4 || !bytes.Equal(p.Hash, pkt[:hashSize]) {
				t.Fatalf("proto %q hash %x", p.Proto, p.Hash)
			}
			if p.Err == nil && (p.Kind == "" || !p.HasSrcID) {
				t.Fatalf("decoded without error but kind %q, sender %v", p.Kind, p.HasSrcID)
			}
			if p.Nodes < len(p.Records) {
				t.Fatalf("%d records of %d nodes", len(p.Records), p.Nodes)
			}
			again, _ := d.Decode(datagram(bytes.Clone(pkt)))
			if again.Kind != p.Kind || again.SrcID != p.SrcID || errString(again.Err) != errString(p.Err) {
				t.Fatalf("cached %+v, first %+v", again, p)
			}
		}
		// A body that is no RLP list is turned away before the hash.
		listed := len(payload) > headSize+1 && payload[headSize+1] >= 0xc0
		check(payload, listed && bytes.Equal(payload[:hashSize], keccak(payload[hashSize:])))
		if len(payload) > headSize {
			fixed := bytes.Clone(payload)
			rehash(fixed)
			check(fixed, listed)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func keccak(b []byte) []byte {
	d := newDecoder(0)
	d.keccak.Write(b)
	out := make([]byte, hashSize)
	d.keccak.Read(out)
	return out
}
