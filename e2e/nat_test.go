//go:build e2e

package e2e

import (
	"net/netip"
	"strconv"
	"testing"

	"github.com/discotrace/discotrace/internal/netlab"
	"github.com/discotrace/discotrace/ndjson"
)

// Node B sits behind a masquerading router R and pings node A, all on this host and all
// traced: each datagram is seen twice, at B's namespace with B's address and at A's with
// R's, and the two views must make one exchange and one handshake, not two.
func TestNAT(t *testing.T) {
	nsA, nsR, nsB := netlab.NewNetns(t), netlab.NewNetns(t), netlab.NewNetns(t)
	outer := netlab.NewVeth(t, nsA, nsR) // A - R
	inner := netlab.NewVeth(t, nsR, nsB) // R - B
	sysctl(t, nsR, "net.ipv4.ip_forward", "1")
	for _, ns := range []*netlab.Netns{nsA, nsR, nsB} {
		sysctl(t, ns, "net.ipv4.icmp_ratelimit", "0")
	}
	if err := nsB.AddDefaultRoute(inner.A4); err != nil {
		t.Fatal(err)
	}
	nft(t, nsR, `table ip nat {
	chain post {
		type nat hook postrouting priority srcnat;
		oifname "`+outer.BName+`" masquerade
	}
}`)
	port := netlab.RandomHighPort()
	addrA, addrB := netip.AddrPortFrom(outer.A4, port), netip.AddrPortFrom(inner.B4, port)
	a := startNode(t, nsA, addrA)
	b := startNode(t, nsB, addrB)
	tr := startTrace(t, "--port", strconv.Itoa(int(port)), "--nodekey", a.keyHex(), "--nodekey", b.keyHex())

	if err := pingErr(b.v4.Ping(a.Self())); err != nil {
		t.Fatalf("node B's discv4 PING to A: %v", err)
	}
	if err := pingErr(b.v5.Ping(a.Self())); err != nil {
		t.Fatalf("node B's discv5 PING to A: %v", err)
	}
	evs := tr.stop(t, verdictLinger)

	// B's first PING/v4 is its call (A pings back to bond, and B may ping again later):
	// one exchange initiated by B, by either of its addresses, sent once.
	fromB := func(ev ndjson.Event) bool {
		return ev.Initiator == addrB.String() || netip.MustParseAddrPort(ev.Initiator).Addr() == outer.B4
	}
	v4 := evs.where(func(ev ndjson.Event) bool {
		return ev.Type == ndjson.TypeExchange && ev.Req == "PING/v4" && fromB(ev)
	})
	if len(v4.list) == 0 {
		t.Fatalf("no PING/v4 exchange from B; events:\n%v", evs)
	}
	for i, ev := range v4.list {
		if ev.Outcome != "answered" || ev.Attempts > 1 {
			t.Errorf("want B's PING/v4 answered and sent once, got:\n%s", v4.lines[i])
		}
	}
	v5 := evs.where(func(ev ndjson.Event) bool {
		return ev.Type == ndjson.TypeExchange && ev.Req == "PING/v5" && fromB(ev)
	})
	if len(v5.list) != 1 || v5.list[0].Outcome != "answered" {
		t.Errorf("want one answered PING/v5 exchange from B, got:\n%v", v5)
	}
	hs := evs.where(func(ev ndjson.Event) bool { return ev.Type == ndjson.TypeHandshake && fromB(ev) })
	if len(hs.list) != 1 || hs.list[0].Outcome != "established" {
		t.Errorf("want one established handshake from B, got:\n%v", hs)
	}
	wantEvidenceOnce(t, evs)
	// B's records advertise its private address, which A has no route to: what A sends
	// there fails to leave (ENETUNREACH), and rightly so. Nothing else may fail.
	failed := evs.where(func(ev ndjson.Event) bool {
		unroutable := ev.Recipient == addrB.String() && ev.Cause == "kernel_drop" &&
			citesEvidence(evs, ev, func(cited ndjson.Event) bool {
				return cited.Type == ndjson.TypeSend && cited.Ret != nil && *cited.Ret == -101
			})
		return ev.Outcome == "failed" && !unroutable
	})
	if len(failed.list) > 0 {
		t.Errorf("failures between healthy nodes behind NAT:\n%v", failed)
	}
}
