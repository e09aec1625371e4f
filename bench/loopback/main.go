// Command loopback measures what tracing costs a busy host: UDP datagrams per second over
// loopback to an unwatched port and to a watched port, each without and with the tracer
// attached, printed as traced/untraced ratios. For the watched port it also checks that
// every datagram was reported (a send, a recv and a read event) or counted as lost.
//
// It prints figures and asserts no timing: the goals (>= 0.99 unwatched, >= 0.95 watched)
// are for a reader to compare. Run it as root on an otherwise quiet machine:
//
//	go run ./bench/loopback            (or bench/run.sh)
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/discotrace/discotrace/bench/internal/udpload"
	"github.com/discotrace/discotrace/tracer"
)

func main() {
	rounds := flag.Int("rounds", 6, "measurement rounds; each measures all four cases, in alternating order")
	datagrams := flag.Int("datagrams", 100000, "datagrams per measurement")
	size := flag.Int("size", 256, "UDP payload bytes per datagram")
	flag.BoolVar(&udpload.PinCPUs, "pin", true, "pin the sender to CPU 0 and the reader to CPU 1")
	flag.IntVar(&ringSize, "ringsize", 0, "the tracer's ring buffer size in bytes (0: the tracer's default)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process (sender, reader and the tracer's event consumer) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loopback:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "loopback:", err)
			os.Exit(1)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if err := run(*rounds, *datagrams, *size); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "loopback:", err)
		os.Exit(1)
	}
}

// counts are the tracer's events for the benchmark's two receivers.
type counts struct {
	send, recv, read int    // events of the watched flow
	lost             uint64 // events the tracer could not deliver
	unwatched        int    // events naming the unwatched port: there must be none
	other            int    // anything else (other traffic on the watched port)
}

func (c counts) total() int { return c.send + c.recv + c.read + c.unwatched + c.other + int(c.lost) }

// tally is counts updated by the event reader while the benchmark reads them.
type tally struct {
	mu sync.Mutex
	c  counts
}

// take returns the counts so far and starts again from zero.
func (t *tally) take() counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.c
	t.c = counts{}
	return c
}

func (t *tally) total() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.c.total()
}

// tracing is the tracer attached for a traced measurement, its events being counted.
type tracing struct {
	tr   *tracer.Tracer
	done chan error
	tally
}

// ringSize is the tracer's ring buffer size, 0 for its default.
var ringSize int

func startTracing(watched, unwatched *udpload.Receiver) (*tracing, error) {
	tr, err := tracer.Open(tracer.Config{Ports: []uint16{watched.Port}, RingSize: ringSize})
	if err != nil {
		return nil, err
	}
	t := &tracing{tr: tr, done: make(chan error, 1)}
	isPort := func(a netip.AddrPort, p uint16) bool { return a.Port() == p }
	go func() {
		for {
			ev, err := tr.Read()
			if err != nil {
				t.done <- err
				return
			}
			t.mu.Lock()
			c := &t.c
			switch {
			case ev.Kind == tracer.KindLost:
				c.lost += ev.Lost
			case isPort(ev.Src, unwatched.Port) || isPort(ev.Dst, unwatched.Port) || ev.Cookie == unwatched.Cookie:
				c.unwatched++
			case ev.Kind == tracer.KindSend && isPort(ev.Dst, watched.Port):
				c.send++
			case ev.Kind == tracer.KindRecv && isPort(ev.Dst, watched.Port):
				c.recv++
			case ev.Kind == tracer.KindRead && (ev.Cookie == watched.Cookie || isPort(ev.Dst, watched.Port)):
				c.read++
			default:
				c.other++
			}
			t.mu.Unlock()
		}
	}()
	return t, nil
}

// settle waits until the event stream has been quiet for a moment, so the reader's
// backlog from one measurement does not load the next.
func (t *tracing) settle() {
	last := -1
	for {
		time.Sleep(150 * time.Millisecond)
		n := t.total()
		if n == last {
			return
		}
		last = n
	}
}

func (t *tracing) close() error {
	t.tr.Close()
	<-t.done
	return nil
}

// result is one round's four measurements and the watched-port accounting.
type result struct {
	unwatchedPlain, unwatchedTraced udpload.Measurement
	watchedPlain, watchedTraced     udpload.Measurement
	events                          counts
	unwatchedEvents                 int
}

func run(rounds, n, size int) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: tracing needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN")
	}
	watched, err := udpload.OpenReceiver()
	if err != nil {
		return err
	}
	unwatched, err := udpload.OpenReceiver()
	if err != nil {
		return err
	}
	fmt.Printf("loopback UDP: %d datagrams of %d bytes per measurement, %d rounds, watched port %d, unwatched port %d, %d CPUs\n",
		n, size, rounds, watched.Port, unwatched.Port, runtime.NumCPU())
	// Open once up front: a tracer that cannot open fails here, and its hook plan is part
	// of what the figures mean.
	probe, err := tracer.Open(tracer.Config{Ports: []uint16{watched.Port}})
	if err != nil {
		return fmt.Errorf("open tracer: %w", err)
	}
	for _, h := range probe.Plan() {
		fmt.Println("hooks:", h)
	}
	probe.Close()
	fmt.Printf("%-5s | %-34s | %-34s | %s\n", "round", "unwatched: untraced  traced  ratio", "watched: untraced  traced  ratio", "watched: send/recv/read events, lost")

	var results []result
	for r := range rounds {
		var res result
		plain := func() error {
			var err error
			if res.unwatchedPlain, err = udpload.Blast(unwatched, n, size); err != nil {
				return err
			}
			res.watchedPlain, err = udpload.Blast(watched, n, size)
			return err
		}
		traced := func() error {
			t, err := startTracing(watched, unwatched)
			if err != nil {
				return fmt.Errorf("open tracer: %w", err)
			}
			defer t.close()
			if res.unwatchedTraced, err = udpload.Blast(unwatched, n, size); err != nil {
				return err
			}
			t.settle()
			res.unwatchedEvents = t.take().unwatched
			if res.watchedTraced, err = udpload.Blast(watched, n, size); err != nil {
				return err
			}
			t.settle()
			res.events = t.take()
			return nil
		}
		// Alternate which comes first, so slow drift (thermal, other load) cancels out.
		steps := []func() error{plain, traced}
		if r%2 == 1 {
			steps = []func() error{traced, plain}
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return fmt.Errorf("round %d: %w", r+1, err)
			}
		}
		results = append(results, res)
		fmt.Printf("%-5d | %9.0f/s %9.0f/s %6.3f | %9.0f/s %9.0f/s %6.3f | %d/%d/%d, %d lost%s\n", r+1,
			res.unwatchedPlain.Rate(), res.unwatchedTraced.Rate(), res.unwatchedTraced.Rate()/res.unwatchedPlain.Rate(),
			res.watchedPlain.Rate(), res.watchedTraced.Rate(), res.watchedTraced.Rate()/res.watchedPlain.Rate(),
			res.events.send, res.events.recv, res.events.read, res.events.lost, dropNote(res))
	}
	return summarize(results)
}

func dropNote(res result) string {
	var s string
	for _, m := range []udpload.Measurement{res.unwatchedPlain, res.unwatchedTraced, res.watchedPlain, res.watchedTraced} {
		if m.Received != m.Sent {
			s = fmt.Sprintf(" (some datagrams did not arrive: %d of %d)", m.Received, m.Sent)
		}
	}
	return s
}

func summarize(results []result) error {
	var unwatchedRatios, watchedRatios []float64
	var sent, send, recv, read, unwatchedEvents int
	var lost uint64
	accounted := true
	for _, r := range results {
		unwatchedRatios = append(unwatchedRatios, r.unwatchedTraced.Rate()/r.unwatchedPlain.Rate())
		watchedRatios = append(watchedRatios, r.watchedTraced.Rate()/r.watchedPlain.Rate())
		sent += r.watchedTraced.Sent
		send += r.events.send
		recv += r.events.recv
		read += r.events.read
		lost += r.events.lost
		unwatchedEvents += r.unwatchedEvents
		// Every datagram must show up once per event class (send and recv for each one
		// sent, read for each one the receiver read), or the shortfall must be covered by
		// the lost count, which does not say which class it lost.
		m := r.watchedTraced
		expected := []struct{ seen, want int }{{r.events.send, m.Sent}, {r.events.recv, m.Sent}, {r.events.read, m.Received}}
		missing := 0
		for _, e := range expected {
			if e.seen > e.want {
				accounted = false // more events than datagrams: something reported twice
			}
			missing += max(0, e.want-e.seen)
		}
		if uint64(missing) > r.events.lost {
			accounted = false
		}
	}
	fmt.Printf("median traced/untraced ratio: unwatched %.3f (goal >= 0.99), watched %.3f (goal >= 0.95)\n",
		median(unwatchedRatios), median(watchedRatios))
	pooled := func(pick func(result) udpload.Measurement) float64 {
		var received int
		var elapsed time.Duration
		for _, r := range results {
			received += pick(r).Received
			elapsed += pick(r).Elapsed
		}
		return float64(received) / elapsed.Seconds()
	}
	up, ut := pooled(func(r result) udpload.Measurement { return r.unwatchedPlain }), pooled(func(r result) udpload.Measurement { return r.unwatchedTraced })
	wp, wt := pooled(func(r result) udpload.Measurement { return r.watchedPlain }), pooled(func(r result) udpload.Measurement { return r.watchedTraced })
	fmt.Printf("pooled over all rounds: unwatched %.0f/s -> %.0f/s (%.3f), watched %.0f/s -> %.0f/s (%.3f)\n",
		up, ut, ut/up, wp, wt, wt/wp)
	fmt.Printf("watched port over all rounds: %d datagrams sent; events: %d send, %d recv, %d read; %d counted as lost\n",
		sent, send, recv, read, lost)
	fmt.Printf("unwatched port: %d events (want 0)\n", unwatchedEvents)
	if !accounted || unwatchedEvents != 0 {
		return errors.New("the tracer's events do not account for every datagram: see the counts above")
	}
	fmt.Println("every watched datagram was reported or counted as lost")
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
