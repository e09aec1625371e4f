//go:build e2e

package e2e

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/discotrace/discotrace/internal/netlab"
	"github.com/discotrace/discotrace/ndjson"
)

// B's socket has the smallest receive buffer and nobody reads it; it is full when node A
// pings B over both protocols. The RPCs time out; the trace says kernel_drop, citing B's
// SOCKET_RCVBUFF drop, each drop once (the datagram is seen sent in A's namespace and
// dropped in B's: one datagram, one piece of evidence).
func TestFullReceiveBuffer(t *testing.T) {
	p := newPair(t)
	a := startNode(t, p.veth.A, p.a)
	bKey := newKey(t)
	b := listenIn(t, p.veth.B, p.b)
	// SO_RCVBUF of 1 is raised by the kernel to its minimum: room for a few datagrams.
	if err := b.SetReadBuffer(1); err != nil {
		t.Fatal(err)
	}
	fillReceiveBuffer(t, p.veth.B, p.b)

	bRecord := recordOf(bKey, p.b)
	tr := startTrace(t, "--port", p.portArg(), "--node-id", bRecord.ID().String())
	if err := pingErr(a.v4.Ping(bRecord)); err == nil {
		t.Fatal("node A's discv4 PING to B was answered")
	} else {
		t.Logf("node A: discv4 PING to B: %v", err)
	}
	if err := pingErr(a.v5.Ping(bRecord)); err == nil {
		t.Fatal("node A's discv5 PING to B was answered")
	} else {
		t.Logf("node A: discv5 PING to B: %v", err)
	}
	evs := tr.stop(t, verdictLinger)

	rcvbufDrop := func(d ndjson.Event) bool {
		return d.Type == ndjson.TypeDrop && d.Reason == "SOCKET_RCVBUFF" && d.NetNS == p.veth.B.Inode
	}
	for _, ev := range wantFailed(t, evs, "PING/v4", p.a.String(), p.b.String(), "kernel_drop").list {
		if !citesEvidence(evs, ev, rcvbufDrop) {
			t.Errorf("PING/v4 exchange %d does not cite B's SOCKET_RCVBUFF drop", ev.Seq)
		}
	}
	hs := evs.handshakes(p.a.String(), p.b.String())
	if len(hs.list) == 0 {
		t.Fatal("no handshake A > B")
	}
	for i, ev := range hs.list {
		if ev.Outcome != "failed" || ev.Cause != "kernel_drop" || !citesEvidence(evs, ev, rcvbufDrop) {
			t.Errorf("want the handshake failed with kernel_drop citing the SOCKET_RCVBUFF drop, got:\n%s", hs.lines[i])
		}
	}
	wantEvidenceOnce(t, evs)
}

// fillReceiveBuffer sends datagrams to addr from another socket of ns until the kernel
// counts one dropped for want of receive buffer space.
func fillReceiveBuffer(t *testing.T, ns *netlab.Netns, addr netip.AddrPort) {
	t.Helper()
	var sender *net.UDPConn
	if err := ns.Do(func() (err error) {
		sender, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	before, err := ns.Counters()
	if err != nil {
		t.Fatal(err)
	}
	filler := make([]byte, 1000)
	for range 1000 {
		if _, err := sender.Write(filler); err != nil {
			t.Fatal(err)
		}
		delta, err := ns.WaitCounters(before, 20*time.Millisecond, func(d netlab.Counters) bool { return d[netlab.UdpRcvbufErrors] > 0 })
		if err != nil {
			t.Fatal(err)
		}
		if delta[netlab.UdpRcvbufErrors] > 0 {
			return
		}
	}
	t.Fatalf("1000 datagrams did not fill %v's receive buffer", addr)
}
