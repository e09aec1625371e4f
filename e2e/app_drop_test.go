//go:build e2e

package e2e

import (
	"testing"

	"github.com/discotrace/discotrace/internal/netlab"
	"github.com/discotrace/discotrace/ndjson"
)

// B's application reads every datagram and never answers: node A's PING times out, and
// the trace says app_drop, citing B's read of the PING.
func TestAppDrop(t *testing.T) {
	p := newPair(t)
	a := startNode(t, p.veth.A, p.a)
	bKey := newKey(t)
	var conn interface{ Close() error }
	read := make(chan int, 1)
	if err := p.veth.B.Do(func() error {
		c, err := netlab.ListenUDP(p.b)
		if err != nil {
			return err
		}
		conn = c
		go func() {
			n, buf := 0, make([]byte, 1500)
			for {
				if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
					read <- n
					return
				}
				n++
			}
		}()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tr := startTrace(t, "--port", p.portArg())
	if err := pingErr(a.v4.Ping(recordOf(bKey, p.b))); err == nil {
		t.Fatal("node A's discv4 PING to a silent B was answered")
	} else {
		t.Logf("node A: discv4 PING to B: %v", err)
	}
	evs := tr.stop(t, verdictLinger)
	conn.Close()
	if n := <-read; n == 0 {
		t.Fatal("B's application read nothing")
	}
	for _, ev := range wantFailed(t, evs, "PING/v4", p.a.String(), p.b.String(), "app_drop").list {
		if !citesEvidence(evs, ev, func(r ndjson.Event) bool {
			return r.Type == ndjson.TypeRead && r.NetNS == p.veth.B.Inode
		}) {
			t.Errorf("PING/v4 exchange %d does not cite B's read", ev.Seq)
		}
	}
}
