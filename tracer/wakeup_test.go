package tracer

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// The programs' half of the wakeup protocol: a record to a reader that said it sleeps
// clears the flag, which it does only when it wakes the reader.
func TestRecordsWakeOnlyASleepingReader(t *testing.T) {
	requireRoot(t)
	port := freePort(t, "udp4")
	c := openIdle(t, Config{Ports: []uint16{port}})
	node := listen(t, "udp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	peer := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	c.tr.sleepFlag.set(1)
	// The send event is written inside this call.
	if _, err := peer.WriteToUDPAddrPort([]byte("ping"), localAddrPort(node)); err != nil {
		t.Fatal(err)
	}
	if f := atomic.LoadUint32(c.tr.sleepFlag.flag); f != 0 {
		t.Fatalf("after a record to a sleeping reader the flag is %d, want 0: nothing woke it", f)
	}
}

// Read's half: an idle Read tells the programs it sleeps, and the next event wakes it.
// Its backstop wait is an hour here, so the event arrives only if the wakeup came.
func TestIdleReadSleepsAndAnEventWakesIt(t *testing.T) {
	requireRoot(t)
	port := freePort(t, "udp4")
	c := openIdle(t, Config{Ports: []uint16{port}, LostInterval: time.Hour})
	c.tr.sleepPoll = time.Hour
	node := listen(t, "udp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	peer := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	c.start()
	for round := range 3 {
		waitUntil(t, 5*time.Second, "Read to sleep while idle", func() bool {
			return atomic.LoadUint32(c.tr.sleepFlag.flag) == 1
		})
		if _, err := peer.WriteToUDPAddrPort([]byte("ping"), localAddrPort(node)); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 5*time.Second, "the send event (a missed wakeup leaves it in the ring)", func() bool {
			return len(ofKind(filterEvents(c.snapshot(), onPort(port)), KindSend)) == round+1
		})
	}
}
