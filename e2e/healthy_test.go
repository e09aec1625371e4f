//go:build e2e

package e2e

import (
	"testing"
	"time"

	"github.com/discotrace/discotrace/ndjson"
)

// Two healthy nodes: A pings B over discv4 and discv5. Every exchange is answered and
// the handshake established, and no round trip the tracer reports exceeds what node A
// measured around its own call.
func TestHealthy(t *testing.T) {
	p := newPair(t)
	a := startNode(t, p.veth.A, p.a)
	b := startNode(t, p.veth.B, p.b)
	tr := startTrace(t, "--port", p.portArg(), "--netns", itoa(p.veth.A.Inode), "--nodekey", a.keyHex(), "--nodekey", b.keyHex())

	v4Took, err := timed(func() error { return pingErr(a.v4.Ping(b.Self())) })
	if err != nil {
		t.Fatalf("node A's discv4 PING to B: %v", err)
	}
	v5Took, err := timed(func() error { return pingErr(a.v5.Ping(b.Self())) })
	if err != nil {
		t.Fatalf("node A's discv5 PING to B: %v", err)
	}
	evs := tr.stop(t, 1500*time.Millisecond)

	// The first PING/v4 is A's call; B pings back to bond, and A may ping again later.
	v4 := evs.exchanges("PING/v4", p.a.String(), p.b.String())
	if len(v4.list) == 0 || v4.list[0].Outcome != "answered" || v4.list[0].RTTNs == nil {
		t.Fatalf("want A's PING/v4 to B answered with an rtt, got:\n%v", v4)
	}
	if rtt := time.Duration(*v4.list[0].RTTNs); rtt > v4Took {
		t.Errorf("PING/v4 rtt %v, more than node A's own call took (%v)", rtt, v4Took)
	}
	v5 := evs.exchanges("PING/v5", p.a.String(), p.b.String())
	if len(v5.list) != 1 || v5.list[0].Outcome != "answered" || v5.list[0].RTTNs == nil {
		t.Fatalf("want one answered PING/v5 exchange A>B with an rtt, got:\n%v", v5)
	}
	if rtt := time.Duration(*v5.list[0].RTTNs); rtt > v5Took {
		t.Errorf("PING/v5 rtt %v, more than node A's own call took (%v)", rtt, v5Took)
	}
	hs := evs.handshakes(p.a.String(), p.b.String())
	if len(hs.list) != 1 || hs.list[0].Outcome != "established" || hs.list[0].TotalNs == nil {
		t.Fatalf("want one established handshake A>B, got:\n%v", hs)
	}
	if total := time.Duration(*hs.list[0].TotalNs); total > v5Took {
		t.Errorf("handshake took %v by the trace, more than node A's discv5 PING call (%v)", total, v5Took)
	}
	failed := evs.where(func(ev ndjson.Event) bool { return ev.Outcome == "failed" })
	if len(failed.list) > 0 {
		t.Errorf("failures between healthy nodes:\n%v", failed)
	}
}
