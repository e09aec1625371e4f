// Command latency measures how long after a datagram is sent its send event reaches the
// tracer's reader (tracer.Read): the delay an operator watching `trace` sees, which the
// ring buffer's wakeup policy decides. At a low rate every event should come within
// milliseconds; at a high one records batch, and the delay only has to stay bounded.
//
// It prints percentiles and asserts nothing. Run it as root, on a quiet machine:
//
//	go run ./bench/latency [-rates 100,10000] [-duration 5s]
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/discotrace/discotrace/bench/internal/irqwork"
	"github.com/discotrace/discotrace/tracer"
)

func main() {
	rates := flag.String("rates", "100,10000", "datagrams per second to measure at, comma-separated")
	duration := flag.Duration("duration", 5*time.Second, "how long to send at each rate")
	flag.Parse()
	for _, r := range strings.Split(*rates, ",") {
		rate, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || rate <= 0 {
			fmt.Fprintf(os.Stderr, "latency: bad rate %q in -rates: give datagrams per second, e.g. 100,10000\n", r)
			os.Exit(2)
		}
		if err := measure(rate, *duration); err != nil {
			fmt.Fprintln(os.Stderr, "latency:", err)
			os.Exit(1)
		}
	}
}

// measure sends rate datagrams/s to a watched loopback port for d, each carrying its
// sequence number, and prints how long each send event took to reach the reader.
func measure(rate int, d time.Duration) error {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer sink.Close()
	go func() { // read everything: a full receive buffer would drop, not delay
		buf := make([]byte, 2048)
		for {
			if _, err := sink.Read(buf); err != nil {
				return
			}
		}
	}()
	port := uint16(sink.LocalAddr().(*net.UDPAddr).Port)
	tr, err := tracer.Open(tracer.Config{Ports: []uint16{port}})
	if err != nil {
		return err
	}
	n := int(d.Seconds() * float64(rate))
	sent := make([]time.Time, n)
	var mu sync.Mutex // guards sent
	var delays []time.Duration
	lost := uint64(0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := tr.Read()
			if err != nil {
				return
			}
			now := time.Now()
			if ev.Kind == tracer.KindLost {
				lost += ev.Lost
			}
			if ev.Kind != tracer.KindSend || ev.Dst.Port() != port || len(ev.Payload) < 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(ev.Payload)
			mu.Lock()
			if seq < uint64(n) && !sent[seq].IsZero() {
				delays = append(delays, now.Sub(sent[seq]))
			}
			mu.Unlock()
		}
	}()

	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)))
	if err != nil {
		tr.Close()
		return err
	}
	defer conn.Close()
	payload := make([]byte, 64)
	interval := time.Second / time.Duration(rate)
	iwi0, err := irqwork.Count()
	if err != nil {
		tr.Close()
		return err
	}
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		binary.BigEndian.PutUint64(payload, uint64(i))
		mu.Lock()
		sent[i] = time.Now()
		mu.Unlock()
		if _, err := conn.Write(payload); err != nil {
			tr.Close()
			return err
		}
	}
	time.Sleep(300 * time.Millisecond) // longer than the reader's poll: the last events come
	iwi1, err := irqwork.Count()
	tr.Close()
	<-done
	if err != nil {
		return err
	}

	slices.Sort(delays)
	pct := func(p float64) time.Duration {
		if len(delays) == 0 {
			return 0
		}
		return delays[min(len(delays)-1, int(p*float64(len(delays))))]
	}
	// Each datagram makes three records (send, recv, read): a wakeup per record would be
	// three irq_work interrupts per datagram.
	fmt.Printf("%6d datagrams/s for %v: %d of %d send events (lost %d); delay p50 %v p90 %v p99 %v max %v; irq_work interrupts %d (%.2f per datagram)\n",
		rate, d, len(delays), n, lost, pct(0.5).Round(time.Microsecond), pct(0.9).Round(time.Microsecond),
		pct(0.99).Round(time.Microsecond), pct(1).Round(time.Microsecond), iwi1-iwi0, float64(iwi1-iwi0)/float64(n))
	return nil
}
