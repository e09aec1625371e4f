package tracer

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// exchange sends n datagrams from a fresh peer socket to a node on port and reads them.
func exchange(t *testing.T, network string, nodeAddr netip.AddrPort, peerAddr netip.Addr, n int) (peer netip.AddrPort) {
	t.Helper()
	node := listen(t, network, nodeAddr)
	p := listen(t, network, netip.AddrPortFrom(peerAddr, 0))
	buf := make([]byte, 64)
	for range n {
		dst := netip.AddrPortFrom(peerAddr, localAddrPort(node).Port())
		if _, err := p.WriteToUDPAddrPort([]byte("ping"), dst); err != nil {
			t.Fatal(err)
		}
		if _, _, err := node.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	return localAddrPort(p)
}

// A dual-stack IPv6 socket receiving IPv4 datagrams (IPv4-mapped addresses): the datagram
// is IPv4 on the wire and in the events, and the read is still linked to it.
func TestDualStackSocketReadsIPv4(t *testing.T) {
	requireRoot(t)
	const n = 3
	port := freePort(t, "udp")
	c := openCollector(t, Config{Ports: []uint16{port}})
	requireClass(t, c.tr, "read")
	peer := exchange(t, "udp", netip.AddrPortFrom(netip.IPv6Unspecified(), port), netip.MustParseAddr("127.0.0.1"), n)
	evs := c.settle(300*time.Millisecond, 300*time.Millisecond, 5*time.Second, onPort(port))
	if len(evs) != 3*n {
		t.Fatalf("got %d events, want %d:\n%s", len(evs), 3*n, dumpEvents(evs))
	}
	node := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	for _, ev := range evs {
		if ev.Src.Addr().Unmap() != peer.Addr().Unmap() || ev.Src.Port() != peer.Port() || ev.Dst.Addr().Unmap() != node.Addr() || ev.Dst.Port() != port {
			t.Errorf("%s: %v -> %v, want %v -> %v", ev.Kind, ev.Src, ev.Dst, peer, node)
		}
		if ev.Kind == KindRead && !ev.HasQueueTime {
			t.Errorf("read without queue time: not linked to its datagram")
		}
	}
}

// A pid filter keeps the sends and reads of that process only; recv has no process.
func TestPIDFilter(t *testing.T) {
	requireRoot(t)
	const n = 2
	port := freePort(t, "udp4")
	other := uint32(1) // init: never the test
	c := openCollector(t, Config{Ports: []uint16{port}, PID: other})
	requireClass(t, c.tr, "read")
	exchange(t, "udp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), netip.MustParseAddr("127.0.0.1"), n)
	evs := c.settle(300*time.Millisecond, 300*time.Millisecond, 5*time.Second, onPort(port))
	// recv has no process to filter on; nor have sends where cgroup_skb cannot tell.
	wantSends := 0
	if !c.tr.helpers.task {
		wantSends = n
	}
	if len(evs) != n+wantSends || len(ofKind(evs, KindRecv)) != n || len(ofKind(evs, KindSend)) != wantSends {
		t.Fatalf("filtering on pid %d: got %d events, want the %d recvs and %d sends:\n%s", other, len(evs), n, wantSends, dumpEvents(evs))
	}

	port = freePort(t, "udp4")
	c = openCollector(t, Config{Ports: []uint16{port}, PID: uint32(os.Getpid())})
	exchange(t, "udp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), netip.MustParseAddr("127.0.0.1"), n)
	evs = c.settle(300*time.Millisecond, 300*time.Millisecond, 5*time.Second, onPort(port))
	if len(evs) != 3*n {
		t.Fatalf("filtering on this process: got %d events, want %d:\n%s", len(evs), 3*n, dumpEvents(evs))
	}
}

// A network namespace filter keeps that namespace's events only.
func TestNetNSFilter(t *testing.T) {
	requireRoot(t)
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	own := uint32(st.Ino)
	for _, tc := range []struct {
		netns uint32
		want  int
	}{{own, 3}, {own + 1, 0}} {
		port := freePort(t, "udp4")
		c := openCollector(t, Config{Ports: []uint16{port}, NetNS: tc.netns})
		requireClass(t, c.tr, "read")
		exchange(t, "udp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), netip.MustParseAddr("127.0.0.1"), 1)
		evs := c.settle(300*time.Millisecond, 300*time.Millisecond, 5*time.Second, onPort(port))
		if len(evs) != tc.want {
			t.Errorf("netns filter %d (ours %d): got %d events, want %d:\n%s", tc.netns, own, len(evs), tc.want, dumpEvents(evs))
		}
		for _, ev := range evs {
			if ev.NetNS != own {
				t.Errorf("%s in netns %d, want %d", ev.Kind, ev.NetNS, own)
			}
		}
	}
}
