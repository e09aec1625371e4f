package ndjson

import (
	"math"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/discv4"
	"github.com/discotrace/discotrace/decode/packet"
)

// disc names what a packet says beyond its kind: a FINDNODE target as the node ID an
// operator can look up, a TALKREQ protocol that survives JSON whatever its bytes, and an
// expiration only when RFC 3339 can write it.
func TestDiscFields(t *testing.T) {
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1795463766, 0)
	target := v4wire.EncodePubkey(&key.PublicKey)
	fn := disc(&packet.Packet{Proto: packet.ProtoV4, Kind: discv4.KindFindnode, Target: target[:], Expiration: discv4.ExpirationTime(1795463786)}, at)
	if want := enode.PubkeyToIDV4(&key.PublicKey).String(); fn.Target != want || fn.Expiration != "2026-11-23T19:56:26Z" {
		t.Errorf("FINDNODE target %s expiration %s, want %s and 2026-11-23T19:56:26Z", fn.Target, fn.Expiration, want)
	}
	if far := disc(&packet.Packet{Proto: packet.ProtoV4, Kind: discv4.KindPing, Expiration: discv4.ExpirationTime(math.MaxUint64)}, at); far.Expiration != "" || far.Error == "" {
		t.Errorf("expiration 2^64-1: %q, error %q; want none, and the expired-on-arrival error", far.Expiration, far.Error)
	}
	for proto, want := range map[string]string{"portal": "portal", "a b~": "a b~", "\x00\x01": "0x0001", "é": "0xc3a9"} {
		if got := disc(&packet.Packet{Proto: packet.ProtoV5, Msg: &v5wire.TalkRequest{Protocol: proto}}, at).TalkProtocol; got != want {
			t.Errorf("TALKREQ protocol %q shows as %q, want %q", proto, got, want)
		}
	}
}
