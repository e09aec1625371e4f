//go:build e2e

package e2e

import (
	"fmt"
	"testing"

	"github.com/discotrace/discotrace/ndjson"
)

// B's firewall drops the discovery port silently. Traced where the drop happens (every
// namespace, B's included), the PING's exchange is kernel_drop citing the NETFILTER_DROP;
// traced in A's namespace alone, nothing explains the silence: no_response.
func TestSilentDrop(t *testing.T) {
	p := newPair(t)
	a := startNode(t, p.veth.A, p.a)
	b := startNode(t, p.veth.B, p.b)
	nft(t, p.veth.B, fmt.Sprintf(`table inet e2e {
	chain input {
		type filter hook input priority 0;
		udp dport %d drop
	}
}`, p.port))

	t.Run("receiver traced", func(t *testing.T) {
		tr := startTrace(t, "--port", p.portArg())
		if err := pingErr(a.v4.Ping(b.Self())); err == nil {
			t.Fatal("node A's discv4 PING to B was answered through a dropping firewall")
		} else {
			t.Logf("node A: discv4 PING to B: %v", err)
		}
		evs := tr.stop(t, verdictLinger)
		for _, ev := range wantFailed(t, evs, "PING/v4", p.a.String(), p.b.String(), "kernel_drop").list {
			if !citesEvidence(evs, ev, func(d ndjson.Event) bool {
				return d.Type == ndjson.TypeDrop && d.Reason == "NETFILTER_DROP" && d.NetNS == p.veth.B.Inode
			}) {
				t.Errorf("PING/v4 exchange %d does not cite B's NETFILTER_DROP", ev.Seq)
			}
		}
	})
	t.Run("sender traced", func(t *testing.T) {
		tr := startTrace(t, "--port", p.portArg(), "--netns", itoa(p.veth.A.Inode))
		if err := pingErr(a.v4.Ping(b.Self())); err == nil {
			t.Fatal("node A's discv4 PING to B was answered through a dropping firewall")
		}
		evs := tr.stop(t, verdictLinger)
		wantFailed(t, evs, "PING/v4", p.a.String(), p.b.String(), "no_response")
	})
}
