package disctest

import (
	"crypto/ecdsa"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/enode"
)

// The shared captures' test-only node keys (shared/testdata/README.md); never use them
// for anything else.
const (
	KeyA = "1111111111111111111111111111111111111111111111111111111111111111" // devp2p listener, 10.99.0.1:30303
	KeyG = "2222222222222222222222222222222222222222222222222222222222222222" // geth, 10.99.0.1:30303 (reject.pcap)
	KeyB = "3333333333333333333333333333333333333333333333333333333333333333" // devp2p clients, 10.99.0.2:30303
	KeyC = "4444444444444444444444444444444444444444444444444444444444444444" // devp2p crawler, 10.99.0.3:30303
)

// Key parses a hex private key.
func Key(tb testing.TB, hexKey string) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := crypto.HexToECDSA(hexKey)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// ID is the node ID of a hex private key.
func ID(tb testing.TB, hexKey string) enode.ID {
	tb.Helper()
	return enode.PubkeyToIDV4(&Key(tb, hexKey).PublicKey)
}
