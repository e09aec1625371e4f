//go:build e2e

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/rlp"

	"github.com/discotrace/discotrace/ndjson"
)

// A 1100-byte discv4 PING crosses an MTU-576 link, so A's kernel fragments it; B's
// firewall drops the non-first fragments before reassembly (prerouting, priority -500:
// an input-hook rule never sees fragments) and B gives the datagram up after
// ipfrag_time. Node B never answers; the trace first says no_response (the wait ends
// long before the kernel gives up) and then revises that exchange to fragment_loss.
func TestFragmentLoss(t *testing.T) {
	p := newPair(t)
	startNode(t, p.veth.B, p.b) // node B, which would answer the PING if it arrived whole
	ipIn(t, p.veth.A, "link", "set", "dev", p.veth.AName, "mtu", "576")
	ipIn(t, p.veth.B, "link", "set", "dev", p.veth.BName, "mtu", "576")
	const fragTime = 2 // seconds B's kernel keeps an incomplete datagram
	sysctl(t, p.veth.B, "net.ipv4.ipfrag_time", fmt.Sprint(fragTime))
	nft(t, p.veth.B, `table ip e2e {
	chain prerouting {
		type filter hook prerouting priority -500;
		ip frag-off & 0x1fff != 0 drop
	}
}`)
	a := listenIn(t, p.veth.A, p.a)
	aKey := newKey(t)
	tr := startTrace(t, "--port", p.portArg())

	padding, err := rlp.EncodeToBytes(make([]byte, 900))
	if err != nil {
		t.Fatal(err)
	}
	ping := &v4wire.Ping{
		Version:    4,
		From:       v4wire.NewEndpoint(p.a, p.a.Port()),
		To:         v4wire.NewEndpoint(p.b, p.b.Port()),
		Expiration: uint64(time.Now().Add(20 * time.Second).Unix()),
		Rest:       []rlp.RawValue{padding}, // extra list elements: allowed, ignored
	}
	packet, _, err := v4wire.Encode(aKey, ping)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteToUDPAddrPort(packet, p.b); err != nil {
		t.Fatal(err)
	}
	a.SetReadDeadline(time.Now().Add(time.Second))
	if n, _, err := a.ReadFromUDPAddrPort(make([]byte, 1500)); err == nil {
		t.Fatalf("node B answered a PING whose fragments were dropped (%d bytes)", n)
	}
	evs := tr.stop(t, fragTime*time.Second+verdictLinger)

	ex := wantFailed(t, evs, "PING/v4", p.a.String(), p.b.String(), "no_response")
	if len(ex.list) != 1 {
		t.Fatalf("want one PING/v4 exchange, got:\n%v", ex)
	}
	if l := len(packet); l <= 576 {
		t.Fatalf("the PING is %d bytes: not fragmented on an MTU-576 link", l)
	}
	rev := evs.where(func(ev ndjson.Event) bool { return ev.Type == ndjson.TypeRevision && ev.Revises == ex.list[0].Seq })
	if len(rev.list) != 1 || rev.list[0].Cause != "fragment_loss" || rev.list[0].RevisesType != ndjson.TypeExchange {
		t.Fatalf("want one revision of exchange %d to fragment_loss, got:\n%v", ex.list[0].Seq, rev)
	}
	if !citesEvidence(evs, rev.list[0], func(ev ndjson.Event) bool {
		return (ev.Type == ndjson.TypeDrop && ev.Reason == "FRAG_REASM_TIMEOUT") || ev.Type == ndjson.TypeICMP
	}) {
		t.Errorf("the revision cites neither the reassembly timeout nor the ICMP time exceeded:\n%v", rev)
	}
}
