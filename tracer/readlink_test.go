package tracer

import (
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// A node with a tiny receive buffer gets bursts it cannot hold and reads a little between
// them, so queued and dropped datagrams alternate. Every datagram has its own length, so a
// read names the datagram it got; the queue time of each read must be the time since that
// very datagram's recv, though the kernel dropped others between them (buffer full).
func TestReadLinkedToItsDatagramDespiteDrops(t *testing.T) {
	requireRoot(t)
	const n = 60
	port := freePort(t, "udp4")
	c := openCollector(t, Config{Ports: []uint16{port}})
	requireClass(t, c.tr, "read")
	node := listen(t, "udp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	raw, err := node.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	if err != nil {
		t.Fatal(err)
	}
	peer := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	read := 0
	buf := make([]byte, 2048)
	for i := range n {
		if _, err := peer.WriteToUDPAddrPort(make([]byte, 100+i), localAddrPort(node)); err != nil {
			t.Fatal(err)
		}
		if i%15 == 14 { // the queue is full by now: make room for two
			time.Sleep(5 * time.Millisecond)
			for range 2 {
				if _, _, err := node.ReadFromUDPAddrPort(buf); err != nil {
					t.Fatal(err)
				}
				read++
			}
		}
	}
	time.Sleep(10 * time.Millisecond)
	for {
		node.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := node.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
		read++
	}
	evs := c.settle(300*time.Millisecond, 300*time.Millisecond, 5*time.Second, onPort(port))
	recvs, reads, drops := ofKind(evs, KindRecv), ofKind(evs, KindRead), ofKind(evs, KindDrop)
	t.Logf("%d datagrams: %d read, %d dropped", n, read, len(drops))
	if len(recvs) != n || len(reads) != read || len(drops) != n-read || read == 0 || read == n {
		t.Fatalf("got %d recvs, %d reads, %d drops; want %d, %d, %d, with some of each:\n%s", len(recvs), len(reads), len(drops), n, read, n-read, dumpEvents(evs))
	}
	recvOfLen := map[int]Event{}
	for _, r := range recvs {
		recvOfLen[r.Len] = r
	}
	for _, d := range drops {
		if d.Reason != "SOCKET_RCVBUFF" {
			t.Errorf("drop of the %d-byte datagram: %s, want SOCKET_RCVBUFF", d.Len, d.Reason)
		}
		delete(recvOfLen, d.Len)
	}
	for _, r := range reads {
		recv, ok := recvOfLen[r.Len]
		if !ok {
			t.Errorf("read of %d bytes: no such datagram was queued", r.Len)
			continue
		}
		arrived := r.Time.Add(-r.QueueTime)
		if !r.HasQueueTime || arrived.Sub(recv.Time).Abs() > time.Millisecond {
			t.Errorf("read of %d bytes: queue time %v puts its arrival at %v, but that datagram's recv was at %v",
				r.Len, r.QueueTime, arrived.Format(time.StampNano), recv.Time.Format(time.StampNano))
		}
	}
}
