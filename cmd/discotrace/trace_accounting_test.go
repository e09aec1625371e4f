package main

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/discotrace/discotrace/ndjson"
)

// `discotrace trace` (decoded) under a steady load on one watched port: every datagram's
// send, recv and read is written once, or counted in a lost or shed event. Each datagram
// carries its number, so send and recv are checked per datagram (none twice); reads carry
// no payload and are checked by count. The sum must be exact: events written plus events
// counted lost or shed (dropped unseen) is three per datagram sent and read. No rate is
// asserted: a tracer that falls behind passes if it counts what it dropped.
func TestTraceAccountsForEveryDatagram(t *testing.T) {
	const (
		rate     = 2000 // datagrams/s: moderate, the accounting and not the speed is tested
		sendFor  = 2 * time.Second
		datagram = 256
	)
	port := portWithNoListener(t) // a free port, once no socket has it
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	rx.SetReadBuffer(8 << 20)
	f := traceWith(sendFor+2*time.Second, port)
	f.payload = true
	stdout, stderr, done := startTrace(t, f)

	reads := readAll(rx)
	sent, err := sendPaced(port, rate, sendFor, datagram)
	if err != nil {
		t.Fatal(err)
	}
	read := <-reads
	if err := <-done; err != nil {
		t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
	}
	acc := accountEvents(t, stdout.String(), port, sent)
	t.Logf("%d datagrams sent, %d read; written: %d send, %d recv, %d read; lost %d, shed %d (undecoded %d)",
		sent, read, acc.sends, acc.recvs, acc.reads, acc.lost, acc.shed, acc.undecoded)
	if acc.reads > read {
		t.Errorf("%d read events for %d datagrams read", acc.reads, read)
	}
	written := acc.sends + acc.recvs + acc.reads
	if want := uint64(2*sent + read); uint64(written)+acc.lost+acc.shed != want {
		t.Errorf("%d events written + %d lost + %d shed = %d, want exactly %d (send and recv per datagram sent, read per datagram read)",
			written, acc.lost, acc.shed, uint64(written)+acc.lost+acc.shed, want)
	}
}

// sendPaced sends datagrams of size bytes to 127.0.0.1:port at rate per second for d,
// each starting with its number (big-endian uint64), and returns how many it sent.
func sendPaced(port, rate int, d time.Duration, size int) (int, error) {
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	p := make([]byte, size)
	n := 0
	start := time.Now()
	for elapsed := time.Duration(0); elapsed < d; elapsed = time.Since(start) {
		for due := int(float64(rate) * elapsed.Seconds()); n < due; n++ {
			binary.BigEndian.PutUint64(p, uint64(n))
			if _, err := c.Write(p); err != nil {
				return n, err
			}
		}
		time.Sleep(time.Millisecond)
	}
	return n, nil
}

// readAll reads rx until it has been quiet for a second, then yields the datagram count.
func readAll(rx *net.UDPConn) <-chan int {
	count := make(chan int, 1)
	go func() {
		buf := make([]byte, 65536)
		n := 0
		for {
			rx.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := rx.Read(buf); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					count <- n
					return
				}
				continue
			}
			n++
		}
	}()
	return count
}

// accounting is a trace's events for the datagrams sent to one port.
type accounting struct {
	sends, recvs, reads   int
	lost, shed, undecoded uint64
	exchanges             []*ndjson.Event
}

// accountEvents parses trace's output and counts the send, recv and read events of the
// datagrams sent to port (send and recv identified by the number each payload starts
// with, below sent; twice is an error) and the lost and shed counts.
func accountEvents(t *testing.T, out string, port, sent int) accounting {
	t.Helper()
	var acc accounting
	seen := map[string]map[uint64]bool{ndjson.TypeSend: {}, ndjson.TypeRecv: {}}
	dst := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var ev ndjson.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		switch {
		case ev.Type == ndjson.TypeLost:
			acc.lost += *ev.Count
		case ev.Type == ndjson.TypeShed:
			if ev.Count != nil {
				acc.shed += *ev.Count
			}
			if ev.Undecoded != nil {
				acc.undecoded += *ev.Undecoded
			}
		case ev.Type == ndjson.TypeExchange:
			acc.exchanges = append(acc.exchanges, &ev)
		case ev.Dst != dst:
		case ev.Type == ndjson.TypeRead:
			acc.reads++
		case ev.Type == ndjson.TypeSend || ev.Type == ndjson.TypeRecv:
			p, err := hex.DecodeString(ev.Payload)
			if err != nil || len(p) < 8 {
				t.Errorf("%s event without the datagram's number: %s", ev.Type, line)
				continue
			}
			n := binary.BigEndian.Uint64(p)
			if n >= uint64(sent) || seen[ev.Type][n] {
				t.Errorf("%s event of datagram %d, twice or never sent: %s", ev.Type, n, line)
				continue
			}
			seen[ev.Type][n] = true
			if ev.Type == ndjson.TypeSend {
				acc.sends++
			} else {
				acc.recvs++
			}
		}
	}
	return acc
}
