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

	"golang.org/x/sys/unix"

	"github.com/discotrace/discotrace/tracer"
)

func main() {
	rounds := flag.Int("rounds", 6, "measurement rounds; each measures all four cases, in alternating order")
	datagrams := flag.Int("datagrams", 100000, "datagrams per measurement")
	size := flag.Int("size", 256, "UDP payload bytes per datagram")
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

// receiver is a UDP socket on 127.0.0.1 that the benchmark sends to.
type receiver struct {
	fd     int
	port   uint16
	cookie uint64 // socket cookie: ties the tracer's read events to this socket
}

func openReceiver() (*receiver, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// A buffer large enough that the reader never falls behind into drops: the benchmark
	// measures tracing cost, not buffer overflow.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set a 64 MiB receive buffer (needs root): %w", err)
	}
	// The reader's way out: a read that waits this long means the sender is done.
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &receiver{fd: fd, port: uint16(sa.(*unix.SockaddrInet4).Port), cookie: cookie}, nil
}

// pinCPUs, when set, keeps the sender on CPU 0 and the reader on CPU 1 (of a machine
// with at least two): the scheduler moving them around is most of the noise otherwise.
var pinCPUs = flag.Bool("pin", true, "pin the sender to CPU 0 and the reader to CPU 1")

// pin binds the calling (locked) thread to cpu.
func pin(cpu int) {
	if !*pinCPUs || runtime.NumCPU() < 2 {
		return
	}
	var set unix.CPUSet
	set.Set(cpu)
	unix.SchedSetaffinity(0, &set)
}

// unpin lets the calling thread run on every CPU again, before it goes back to the pool.
func unpin() {
	var set unix.CPUSet
	for i := range runtime.NumCPU() {
		set.Set(i)
	}
	unix.SchedSetaffinity(0, &set)
}

// measurement is one burst: how many datagrams arrived and how long from the first send
// to the last read.
type measurement struct {
	sent, received int
	elapsed        time.Duration
}

func (m measurement) rate() float64 { return float64(m.received) / m.elapsed.Seconds() }

// blast sends n datagrams of size bytes to rx from a fresh connected socket while another
// thread reads them, and times it.
func blast(rx *receiver, n, size int) (measurement, error) {
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return measurement{}, err
	}
	defer unix.Close(tx)
	if err := unix.Connect(tx, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(rx.port)}); err != nil {
		return measurement{}, err
	}

	type readResult struct {
		count int
		last  time.Time
		err   error
	}
	done := make(chan readResult, 1)
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		pin(1)
		defer unpin()
		buf := make([]byte, 65536)
		var r readResult
		close(ready)
		for r.count < n {
			if _, err := unix.Read(rx.fd, buf); err != nil {
				if errors.Is(err, unix.EINTR) {
					continue // the Go runtime's preemption signal; SO_RCVTIMEO reads do not restart
				}
				if !errors.Is(err, unix.EAGAIN) {
					r.err = err
				}
				break
			}
			r.count++
			r.last = time.Now()
		}
		done <- r
	}()
	<-ready

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pin(0)
	defer unpin()
	payload := make([]byte, size)
	start := time.Now()
	for i := 0; i < n; {
		if _, err := unix.Write(tx, payload); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return measurement{}, fmt.Errorf("datagram %d: %w", i, err)
		}
		i++
	}
	r := <-done
	if r.err != nil {
		return measurement{}, r.err
	}
	if r.count == 0 {
		return measurement{}, errors.New("nothing arrived")
	}
	return measurement{sent: n, received: r.count, elapsed: r.last.Sub(start)}, nil
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

func startTracing(watched, unwatched *receiver) (*tracing, error) {
	tr, err := tracer.Open(tracer.Config{Ports: []uint16{watched.port}, RingSize: ringSize})
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
			case isPort(ev.Src, unwatched.port) || isPort(ev.Dst, unwatched.port) || ev.Cookie == unwatched.cookie:
				c.unwatched++
			case ev.Kind == tracer.KindSend && isPort(ev.Dst, watched.port):
				c.send++
			case ev.Kind == tracer.KindRecv && isPort(ev.Dst, watched.port):
				c.recv++
			case ev.Kind == tracer.KindRead && (ev.Cookie == watched.cookie || isPort(ev.Dst, watched.port)):
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
	unwatchedPlain, unwatchedTraced measurement
	watchedPlain, watchedTraced     measurement
	events                          counts
	unwatchedEvents                 int
}

func run(rounds, n, size int) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: tracing needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN")
	}
	watched, err := openReceiver()
	if err != nil {
		return err
	}
	unwatched, err := openReceiver()
	if err != nil {
		return err
	}
	fmt.Printf("loopback UDP: %d datagrams of %d bytes per measurement, %d rounds, watched port %d, unwatched port %d, %d CPUs\n",
		n, size, rounds, watched.port, unwatched.port, runtime.NumCPU())
	// Open once up front: a tracer that cannot open fails here, and its hook plan is part
	// of what the figures mean.
	probe, err := tracer.Open(tracer.Config{Ports: []uint16{watched.port}})
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
			if res.unwatchedPlain, err = blast(unwatched, n, size); err != nil {
				return err
			}
			res.watchedPlain, err = blast(watched, n, size)
			return err
		}
		traced := func() error {
			t, err := startTracing(watched, unwatched)
			if err != nil {
				return fmt.Errorf("open tracer: %w", err)
			}
			defer t.close()
			if res.unwatchedTraced, err = blast(unwatched, n, size); err != nil {
				return err
			}
			t.settle()
			res.unwatchedEvents = t.take().unwatched
			if res.watchedTraced, err = blast(watched, n, size); err != nil {
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
			res.unwatchedPlain.rate(), res.unwatchedTraced.rate(), res.unwatchedTraced.rate()/res.unwatchedPlain.rate(),
			res.watchedPlain.rate(), res.watchedTraced.rate(), res.watchedTraced.rate()/res.watchedPlain.rate(),
			res.events.send, res.events.recv, res.events.read, res.events.lost, dropNote(res))
	}
	return summarize(results)
}

func dropNote(res result) string {
	var s string
	for _, m := range []measurement{res.unwatchedPlain, res.unwatchedTraced, res.watchedPlain, res.watchedTraced} {
		if m.received != m.sent {
			s = fmt.Sprintf(" (some datagrams did not arrive: %d of %d)", m.received, m.sent)
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
		unwatchedRatios = append(unwatchedRatios, r.unwatchedTraced.rate()/r.unwatchedPlain.rate())
		watchedRatios = append(watchedRatios, r.watchedTraced.rate()/r.watchedPlain.rate())
		sent += r.watchedTraced.sent
		send += r.events.send
		recv += r.events.recv
		read += r.events.read
		lost += r.events.lost
		unwatchedEvents += r.unwatchedEvents
		// Every datagram must show up once per event class (send and recv for each one
		// sent, read for each one the receiver read), or the shortfall must be covered by
		// the lost count, which does not say which class it lost.
		m := r.watchedTraced
		expected := []struct{ seen, want int }{{r.events.send, m.sent}, {r.events.recv, m.sent}, {r.events.read, m.received}}
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
	pooled := func(pick func(result) measurement) float64 {
		var received int
		var elapsed time.Duration
		for _, r := range results {
			received += pick(r).received
			elapsed += pick(r).elapsed
		}
		return float64(received) / elapsed.Seconds()
	}
	up, ut := pooled(func(r result) measurement { return r.unwatchedPlain }), pooled(func(r result) measurement { return r.unwatchedTraced })
	wp, wt := pooled(func(r result) measurement { return r.watchedPlain }), pooled(func(r result) measurement { return r.watchedTraced })
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
