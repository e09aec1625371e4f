package main

import (
	"encoding/binary"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/ndjson"
)

// A flood from one peer must not blind `discotrace trace` (decoded) to the others: a real
// go-ethereum discv4 node pings another, on a watched port, again and again while a third
// socket sends to a second watched port as fast as one thread can, to a socket reading
// every datagram. (Flooding the pinged node's own socket would make its kernel drop the
// pings: a test of geth's read loop, not of the tracer.)
//
// Shedding goes to the heaviest sender first, so only what the kernel lost (its ring
// buffer full: which events is not known) excuses a ping geth saw answered that is not
// reported answered. With L the events counted lost plus those shed over the run:
//   - of the pings geth saw answered, at least all but those lost are reported `answered`;
//   - at most as many of pinger -> pinged PING/v4 exchanges are reported otherwise as
//     geth saw fail, plus L;
//   - the flood's send, recv and read events missing from the output are at most L.
//
// It asserts no rate; the figures are logged. With a tracer that keeps up, L is about 0
// and every answered ping must be reported answered. A ping geth saw answered and that
// is reported otherwise must cite lost or shed evidence.
func TestTraceReportsGethPingsDuringAFlood(t *testing.T) {
	const floodFor = 3 * time.Second
	floodPort := portWithNoListener(t) // a free port, once no socket has it
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: floodPort})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	sink.SetReadBuffer(8 << 20)
	pinger, pinged := newDiscv4Socket(t), newDiscv4Socket(t)
	pingedAddr := pinged.LocalAddr().(*net.UDPAddr)

	f := traceWith(floodFor+3*time.Second, pingedAddr.Port, floodPort)
	f.payload = true
	stdout, stderr, done := startTrace(t, f)

	udpPinged := listenV4(t, pinged)
	defer udpPinged.Close()
	udpPinger := listenV4(t, pinger)
	defer udpPinger.Close()

	reads := readAll(sink)
	var flooding atomic.Bool
	flooding.Store(true)
	floodSent := make(chan int, 1)
	go func() {
		defer flooding.Store(false)
		n, err := sendUnpaced(floodPort, floodFor, 256)
		if err != nil {
			t.Error(err)
		}
		floodSent <- n
	}()
	var ok, failed int
	for flooding.Load() {
		if _, err := udpPinger.Ping(udpPinged.Self()); err != nil {
			failed++
		} else {
			ok++
		}
		time.Sleep(20 * time.Millisecond)
	}
	sent, read := <-floodSent, <-reads
	if err := <-done; err != nil {
		t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
	}
	if ok == 0 {
		t.Fatalf("geth saw none of its %d pings answered: nothing to check the tracer against", failed)
	}

	acc := accountEvents(t, stdout.String(), floodPort, sent)
	l := int(acc.lost + acc.shed + acc.undecoded)
	from, to := pinger.LocalAddr().String(), pingedAddr.String()
	var answered, otherwise, withoutLoss int
	for _, ev := range acc.exchanges {
		if ev.Req != "PING/v4" || ev.Initiator != from || ev.Recipient != to {
			continue
		}
		if ev.Outcome == "answered" {
			answered++
			continue
		}
		otherwise++
		if !slices.ContainsFunc(ev.Evidence, func(e ndjson.Evidence) bool { return e.Type == ndjson.TypeLost || e.Type == ndjson.TypeShed }) {
			withoutLoss++
			t.Logf("reported %s (%s) without lost or shed evidence: %+v", ev.Outcome, ev.Cause, ev.Evidence)
		}
	}
	floodMissing := 2*sent + read - (acc.sends + acc.recvs + acc.reads)
	t.Logf("flood: %d datagrams sent, %d read; %d send, %d recv, %d read written; lost %d, shed %d (undecoded %d)",
		sent, read, acc.sends, acc.recvs, acc.reads, acc.lost, acc.shed, acc.undecoded)
	t.Logf("geth pings: %d answered, %d failed; reported: %d answered, %d otherwise (%d of them without lost or shed evidence)",
		ok, failed, answered, otherwise, withoutLoss)
	if answered < ok-int(acc.lost) {
		t.Errorf("%d pings reported answered, want at least %d (%d geth saw answered, less %d events the kernel lost): the flood blinded the tracer", answered, ok-int(acc.lost), ok, acc.lost)
	}
	if otherwise > failed+l {
		t.Errorf("%d pings reported not answered, want at most %d (%d geth saw fail, plus %d events lost or shed)", otherwise, failed+l, failed, l)
	}
	if floodMissing > l {
		t.Errorf("%d of the flood's events neither written nor counted (%d lost or shed)", floodMissing, l)
	}
	if failed == 0 && withoutLoss > 0 {
		t.Errorf("%d of the %d pings geth saw answered are reported otherwise without lost or shed evidence", withoutLoss, otherwise)
	}
}

// newDiscv4Socket opens a loopback UDP socket for a discovery node.
func newDiscv4Socket(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// listenV4 runs a go-ethereum discv4 node (p2p/discover, what geth runs) on socket c.
func listenV4(t *testing.T, c *net.UDPConn) *discover.UDPv4 {
	t.Helper()
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	db, err := enode.OpenDB("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	ln := enode.NewLocalNode(db, key)
	addr := c.LocalAddr().(*net.UDPAddr)
	ln.SetStaticIP(addr.IP)
	ln.SetFallbackUDP(addr.Port)
	udp, err := discover.ListenV4(c, ln, discover.Config{PrivateKey: key, NoFindnodeLivenessCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	return udp
}

// sendUnpaced sends numbered datagrams of size bytes to 127.0.0.1:port as fast as it can
// for d, and returns how many it sent.
func sendUnpaced(port int, d time.Duration, size int) (int, error) {
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	p := make([]byte, size)
	n := 0
	for start := time.Now(); time.Since(start) < d; {
		for range 256 { // the clock is read every 256 datagrams
			binary.BigEndian.PutUint64(p, uint64(n))
			if _, err := c.Write(p); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
