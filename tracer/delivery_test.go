package tracer

import (
	"net/netip"
	"testing"
	"time"
)

// A consumer judges timeouts by DeliveredUntil once it has processed what Read gave it: by
// then every event stamped before that time must have been returned. A burst sent while
// nobody reads sits in the ring; once the mark passes the burst, all of it was read.
func TestDeliveredUntilFollowsTheRing(t *testing.T) {
	requireRoot(t)
	const n = 200
	port := freePort(t, "udp4")
	c := openIdle(t, Config{Ports: []uint16{port}})
	node := listen(t, "udp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	node.SetReadBuffer(1 << 20)
	peer := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	if !c.tr.DeliveredUntil().IsZero() {
		t.Fatalf("DeliveredUntil is %v before anything was read, want zero", c.tr.DeliveredUntil())
	}
	for range n {
		if _, err := peer.WriteToUDPAddrPort(make([]byte, 32), localAddrPort(node)); err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Now() // every send and recv event is stamped before this
	c.start()
	deadline := time.Now().Add(10 * time.Second)
	for !c.tr.DeliveredUntil().After(sent) {
		if time.Now().After(deadline) {
			t.Fatalf("DeliveredUntil %v never passed the burst sent at %v", c.tr.DeliveredUntil(), sent)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The collector appends each event before it calls Read again.
	evs := filterEvents(c.snapshot(), onPort(port))
	if sends, recvs := len(ofKind(evs, KindSend)), len(ofKind(evs, KindRecv)); sends != n || recvs != n {
		t.Fatalf("DeliveredUntil passed the burst with %d sends and %d recvs returned, want %d each:\n%s", sends, recvs, n, dumpEvents(evs))
	}
}
