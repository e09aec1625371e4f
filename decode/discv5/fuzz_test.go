package discv5

import (
	"bytes"
	"crypto/ecdsa"
	"testing"

	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
)

// FuzzV5Header feeds arbitrary datagrams to the discv5 decoder, in both directions,
// with a decoder primed to reach every stage (local key, known IDs, a stored challenge
// and session keys). Each input is also taken as a plain header and masked for node B
// first: random bytes almost never unmask to "discv5", so this is what lets the fuzzer
// reach the header and authdata parsers. It must never panic, never modify the payload,
// and whatever it accepts must carry the header fields.
//
//	go test -run '^$' -fuzz '^FuzzV5Header$' -fuzztime 60s ./decode/discv5
func FuzzV5Header(f *testing.F) {
	for _, name := range []string{"v5.1-whoareyou", "v5.1-ping-message", "v5.1-ping-handshake", "v5.1-ping-handshake-enr"} {
		v := readVector(f, name)
		f.Add(v.packet)
		f.Add(remask(v.packet, testIDB, enode.ID{})) // plain: mutations hit the parsers
	}
	challenge := readVector(f, "v5.1-ping-handshake-enr").bytes(f, "whoareyou.challenge-data")
	readKey := readVector(f, "v5.1-ping-message").bytes(f, "read-key")

	f.Fuzz(func(t *testing.T, payload []byte) {
		d := NewDecoder([]*ecdsa.PrivateKey{testKeyB}, 0)
		d.AddKnownID(testIDA)
		d.st.storeChallenge(testIDA, seenChallenge{data: challenge, challengerAddr: addrB, challengerID: testIDB, hasChallengerID: true})
		var key [sessionKeySize]byte
		copy(key[:], readKey)
		d.st.addKey(sessionID{direction{testIDA, testIDB}, addrA, addrB}, key)

		var masked []byte
		if len(payload) >= staticEnd {
			masked = remask(payload, enode.ID{}, testIDB)
		}
		for _, r := range []*record.Record{
			datagram(addrA, addrB, payload),
			datagram(addrB, addrA, payload),
			{Kind: record.Datagram, Src: addrA, Dst: addrB, Len: len(payload) + 100, Payload: payload}, // truncated capture
			datagram(addrA, addrB, masked),
			{Kind: record.Datagram, Src: addrA, Dst: addrB, Len: len(masked) + 100, Payload: masked},
		} {
			orig := bytes.Clone(r.Payload)
			p, ok := d.Decode(r)
			if !bytes.Equal(r.Payload, orig) {
				t.Fatal("Decode modified the payload")
			}
			if !ok {
				continue
			}
			if p.Proto != packet.ProtoV5 || !p.HasDstID || len(p.Nonce) != 12 {
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
