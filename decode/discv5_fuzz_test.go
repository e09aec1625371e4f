package decode

import (
	"bytes"
	"crypto/ecdsa"
	"testing"

	"github.com/ethereum/go-ethereum/p2p/enode"
)

// FuzzV5Header feeds arbitrary datagrams to the discv5 decoder, in both directions,
// with a decoder primed to reach every stage (local key, known IDs, a stored challenge
// and session keys). Each input is also taken as a plain header and masked for node B
// first: random bytes almost never unmask to "discv5", so this is what lets the fuzzer
// reach the header and authdata parsers. It must never panic, never modify the payload, and whatever it
// accepts must carry the header fields.
//
//	go test -fuzz FuzzV5Header -fuzztime 60s ./decode
func FuzzV5Header(f *testing.F) {
	for _, name := range []string{"v5.1-whoareyou", "v5.1-ping-message", "v5.1-ping-handshake", "v5.1-ping-handshake-enr"} {
		v := v5ReadVector(f, name)
		f.Add(v.packet)
		f.Add(v5Remask(v.packet, v5TestIDB, enode.ID{})) // plain: mutations hit the parsers
	}
	challenge := v5ReadVector(f, "v5.1-ping-handshake-enr").bytes(f, "whoareyou.challenge-data")
	readKey := v5ReadVector(f, "v5.1-ping-message").bytes(f, "read-key")

	f.Fuzz(func(t *testing.T, payload []byte) {
		d := NewV5Decoder([]*ecdsa.PrivateKey{v5TestKeyB})
		d.AddKnownID(v5TestIDA)
		d.st.storeChallenge(v5TestIDA, v5Challenge{data: challenge, challengerAddr: v5AddrB, challengerID: v5TestIDB, hasChallengerID: true})
		var key [v5KeySize]byte
		copy(key[:], readKey)
		d.st.addKey(v5SessionID{v5Direction{v5TestIDA, v5TestIDB}, v5AddrA, v5AddrB}, key)

		var masked []byte
		if len(payload) >= v5StaticEnd {
			masked = v5Remask(payload, enode.ID{}, v5TestIDB)
		}
		for _, r := range []*Record{
			v5Datagram(v5AddrA, v5AddrB, payload),
			v5Datagram(v5AddrB, v5AddrA, payload),
			{Kind: Datagram, Src: v5AddrA, Dst: v5AddrB, Len: len(payload) + 100, Payload: payload}, // truncated capture
			v5Datagram(v5AddrA, v5AddrB, masked),
			{Kind: Datagram, Src: v5AddrA, Dst: v5AddrB, Len: len(masked) + 100, Payload: masked},
		} {
			orig := bytes.Clone(r.Payload)
			p, ok := d.Decode(r)
			if !bytes.Equal(r.Payload, orig) {
				t.Fatal("Decode modified the payload")
			}
			if !ok {
				continue
			}
			if p.Proto != ProtoV5 || !p.HasDstID || len(p.Nonce) != 12 {
				t.Fatalf("accepted packet without header fields: %+v", p)
			}
			if p.Msg != nil && p.Kind == KindWhoareyou {
				t.Fatal("a WHOAREYOU with a message")
			}
			if p.Kind == "" && p.Err == nil {
				t.Fatal("no kind and no error")
			}
		}
	})
}
