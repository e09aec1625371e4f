//go:build e2e

package e2e

import (
	"fmt"
	"testing"

	"github.com/discotrace/discotrace/ndjson"
)

// B's firewall rejects the discovery port: node A's PINGs time out (all geth can tell),
// the trace of A's namespace says icmp_unreachable, citing the port unreachable that
// reached A's unconnected socket without telling it (notified:false).
func TestICMPReject(t *testing.T) {
	p := newPair(t)
	a := startNode(t, p.veth.A, p.a)
	b := startNode(t, p.veth.B, p.b)
	nft(t, p.veth.B, fmt.Sprintf(`table inet e2e {
	chain input {
		type filter hook input priority 0;
		udp dport %d reject with icmp type port-unreachable
	}
}`, p.port))
	// A's discv5 packets are masked with B's node ID: without it the trace cannot read
	// them (nor tell that they start a handshake).
	tr := startTrace(t, "--port", p.portArg(), "--netns", itoa(p.veth.A.Inode), "--node-id", b.Self().ID().String())
	if err := pingErr(a.v4.Ping(b.Self())); err == nil {
		t.Fatal("node A's discv4 PING to B was answered through a rejecting firewall")
	} else {
		t.Logf("node A: discv4 PING to B: %v", err)
	}
	if err := pingErr(a.v5.Ping(b.Self())); err == nil {
		t.Fatal("node A's discv5 PING to B was answered through a rejecting firewall")
	} else {
		t.Logf("node A: discv5 PING to B: %v", err)
	}
	evs := tr.stop(t, verdictLinger)

	icmpIn := func(ev ndjson.Event) bool {
		return ev.Type == ndjson.TypeICMP && ev.Dir == "in" && ev.QuotedDst == p.b.String() &&
			ev.Notified != nil && !*ev.Notified
	}
	for _, ev := range wantFailed(t, evs, "PING/v4", p.a.String(), p.b.String(), "icmp_unreachable").list {
		if !citesEvidence(evs, ev, icmpIn) {
			t.Errorf("PING/v4 exchange %d does not cite an incoming, unnotified ICMP error quoting it", ev.Seq)
		}
	}
	hs := evs.handshakes(p.a.String(), p.b.String())
	if len(hs.list) == 0 {
		t.Fatal("no handshake A > B")
	}
	for i, ev := range hs.list {
		if ev.Outcome != "failed" || ev.Cause != "icmp_unreachable" || !citesEvidence(evs, ev, icmpIn) {
			t.Errorf("want the handshake failed with icmp_unreachable citing the ICMP error, got:\n%s", hs.lines[i])
		}
	}
}
