//go:build e2e

package e2e

import (
	"net/netip"
	"testing"

	"github.com/discotrace/discotrace/ndjson"
)

// Node A has no route to its peer: the send fails with ENETUNREACH, which geth reports
// as an error of the PING. The trace shows the send with ret -101 and the PING it would
// have carried, and the PING's exchange failed, citing that send.
func TestFailedSend(t *testing.T) {
	p := newPair(t)
	a := startNode(t, p.veth.A, p.a)
	unroutable := netip.AddrPortFrom(netip.MustParseAddr("10.199.254.1"), p.port)
	tr := startTrace(t, "--port", p.portArg(), "--netns", itoa(p.veth.A.Inode))
	err := pingErr(a.v4.Ping(recordOf(newKey(t), unroutable)))
	if err == nil {
		t.Fatal("node A's PING to an unroutable address was answered")
	}
	t.Logf("node A: discv4 PING to %v: %v", unroutable, err)
	evs := tr.stop(t, verdictLinger)

	failed := evs.where(func(ev ndjson.Event) bool { return ev.Type == ndjson.TypeSend && ev.Ret != nil && *ev.Ret < 0 })
	if len(failed.list) == 0 {
		t.Fatal("no failed send event")
	}
	for i, ev := range failed.list {
		line := failed.lines[i]
		if *ev.Ret != -101 {
			t.Errorf("send ret %d, want -101 (ENETUNREACH):\n%s", *ev.Ret, line)
		}
		if ev.Dst == "0.0.0.0:0" || ev.Src == "0.0.0.0:0" || (ev.Len != nil && *ev.Len == 0) {
			t.Errorf("a failed send with zero-filled fields:\n%s", line)
		}
		if ev.Dst != "" && ev.Dst != unroutable.String() {
			t.Errorf("failed send to %s, want %v:\n%s", ev.Dst, unroutable, line)
		}
		if ev.Disc != nil && ev.Disc.Error != "" {
			t.Errorf("a decode error on a failed send:\n%s", line)
		}
	}
	for _, ev := range wantFailed(t, evs, "PING/v4", p.a.String(), unroutable.String(), "kernel_drop").list {
		if !citesEvidence(evs, ev, func(cited ndjson.Event) bool {
			return cited.Type == ndjson.TypeSend && cited.Ret != nil && *cited.Ret == -101
		}) {
			t.Errorf("PING/v4 exchange %d does not cite the failed send", ev.Seq)
		}
	}
	wantEvidenceOnce(t, evs)
}
