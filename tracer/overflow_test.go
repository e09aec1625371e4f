package tracer

import (
	"net/netip"
	"os"
	"testing"
	"time"
)

// A burst into a one-page ring buffer that nobody reads meanwhile: most events cannot be
// delivered. Each one the kernel side could not deliver must be counted and reported as
// lost, so that delivered events plus lost ones add up to exactly what the traffic made.
func TestRingOverflowIsCounted(t *testing.T) {
	requireRoot(t)
	const n = 300
	port := freePort(t, "udp4")
	c := openIdle(t, Config{Ports: []uint16{port}, RingSize: os.Getpagesize(), LostInterval: 20 * time.Millisecond})
	node := listen(t, "udp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	peer := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	// The node reads as fast as it can; whatever its queue cannot hold is dropped. Either
	// way each datagram makes exactly three events: send, recv, and read or drop (reads
	// only where the plan captures them).
	readDone := make(chan int)
	go func() {
		buf := make([]byte, 64)
		reads := 0
		for {
			node.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := node.ReadFromUDPAddrPort(buf); err != nil {
				readDone <- reads
				return
			}
			reads++
		}
	}()
	payload := make([]byte, 32)
	for range n {
		if _, err := peer.WriteToUDPAddrPort(payload, localAddrPort(node)); err != nil {
			t.Fatal(err)
		}
	}
	reads := <-readDone
	c.start()
	evs := c.settle(200*time.Millisecond, 200*time.Millisecond, 10*time.Second, onPort(port))
	var delivered, lost uint64
	for _, ev := range evs {
		if ev.Kind == KindLost {
			lost += ev.Lost
			// The loss happened between the previous check of the counters and this one.
			if ev.LostSince.IsZero() || !ev.LostSince.Before(ev.Time) {
				t.Errorf("lost report at %v says the loss began at %v: want a span before it", ev.Time, ev.LostSince)
			}
		} else {
			delivered++
		}
	}
	t.Logf("%d datagrams, %d read by the node: %d events delivered, %d lost", n, reads, delivered, lost)
	if lost == 0 {
		t.Fatalf("no event lost with a %d-byte ring and a burst of %d datagrams: the test did not overflow it", os.Getpagesize(), n)
	}
	want := uint64(3 * n)
	if !captures(c.tr, "read") { // a kernel without read events (the plan says)
		want -= uint64(reads)
	}
	if delivered+lost != want {
		t.Fatalf("delivered %d + lost %d = %d events, want %d (send, recv, and read or drop per datagram)", delivered, lost, delivered+lost, want)
	}
}

func TestRingSizeMustBePowerOfTwoPages(t *testing.T) {
	for _, size := range []int{1000, 3 * os.Getpagesize(), os.Getpagesize() / 2} {
		if _, err := Open(Config{Ports: []uint16{30303}, RingSize: size}); err == nil {
			t.Errorf("Open with ring size %d: no error", size)
		}
	}
}
