//go:build e2e

package e2e

import (
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
)

// B's clock is a minute behind: its discv4 PING reaches node A already expired and A
// ignores it (no PONG). The trace says the exchange failed with cause expired.
func TestExpiredPing(t *testing.T) {
	p := newPair(t)
	startNode(t, p.veth.A, p.a) // node A, which must ignore the expired PING
	bKey := newKey(t)
	b := listenIn(t, p.veth.B, p.b)
	tr := startTrace(t, "--port", p.portArg(), "--netns", itoa(p.veth.A.Inode))

	skewedNow := time.Now().Add(-time.Minute)
	ping := &v4wire.Ping{
		Version:    4,
		From:       v4wire.NewEndpoint(p.b, p.b.Port()),
		To:         v4wire.NewEndpoint(p.a, p.a.Port()),
		Expiration: uint64(skewedNow.Add(20 * time.Second).Unix()), // geth's own lifetime
	}
	packet, _, err := v4wire.Encode(bKey, ping)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteToUDPAddrPort(packet, p.a); err != nil {
		t.Fatal(err)
	}
	// What node A did with it: an expired PING is not answered.
	b.SetReadDeadline(time.Now().Add(time.Second))
	if n, _, err := b.ReadFromUDPAddrPort(make([]byte, 1500)); err == nil {
		t.Fatalf("node A answered an expired PING (%d bytes)", n)
	}
	evs := tr.stop(t, verdictLinger)
	wantFailed(t, evs, "PING/v4", p.b.String(), p.a.String(), "expired")
}
