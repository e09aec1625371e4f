// Command loopback measures what tracing costs a busy host: UDP datagrams per second over
// loopback to an unwatched port and to a watched port, and optionally TCP bulk throughput
// (iperf3), untraced and under each setup (discotrace in this process with its cgroup
// programs on the root cgroup or on the node's, `discotrace trace --raw` as a child
// process, whole-host or scoped with --pid, tcpdump), every setup once per round, printed
// as ratios to the untraced measurement of the same round. The watched flow's sockets are
// in a cgroup of their own, the node's; the unwatched flow and iperf3 are in the host's.
// For the watched port it also checks that every datagram was reported by discotrace (a
// send, a recv and a read event) or counted as lost.
//
// It prints figures and asserts no timing: the goals are for a reader to compare. Run it
// as root, as quiet a machine as can be had:
//
//	go run ./bench/loopback -tcp 2     (or bench/run.sh -tcp 2)
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
	"strings"
	"sync"
	"time"

	"github.com/discotrace/discotrace/bench/internal/childproc"
	"github.com/discotrace/discotrace/bench/internal/irqwork"
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
	setupNames := flag.String("setups", "untraced,discotrace,discotrace-node,trace-raw,trace-raw-node,tcpdump", "comma-separated setups to compare, untraced first: "+setupList())
	tcpSecs := flag.Float64("tcp", 0, "also measure TCP bulk throughput with iperf3 for this many seconds per measurement (0: not)")
	discotrace := flag.String("discotrace", "", "the discotrace binary for the trace setups (default: built from this tree)")
	flag.Parse()
	// The sender and reader threads keep their Ps through their system calls: two more
	// Ps give the in-process tracer's goroutines the CPUs' worth a daemon has of its own
	// (at GOMAXPROCS = CPUs it waited for a P behind them).
	runtime.GOMAXPROCS(runtime.NumCPU() + 2)
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
	if *discotrace == "" && strings.Contains(*setupNames, "trace") {
		dir, err := os.MkdirTemp("", "discotrace-bench")
		if err != nil {
			fmt.Fprintln(os.Stderr, "loopback:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
		if *discotrace, err = childproc.Build(dir); err != nil {
			fmt.Fprintln(os.Stderr, "loopback:", err)
			os.Exit(1)
		}
	}
	if err := run(*rounds, *datagrams, *size, strings.Split(*setupNames, ","), *tcpSecs, *discotrace); err != nil {
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

// startTracing opens the tracer in this process, its cgroup programs on cgroupDirs (nil:
// the root cgroup, the whole host).
func startTracing(watched, unwatched *udpload.Receiver, cgroupDirs []string) (*tracing, error) {
	tr, err := tracer.Open(tracer.Config{Ports: []uint16{watched.Port}, RingSize: ringSize, Cgroups: cgroupDirs})
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

func (t *tracing) stop() error {
	t.tr.Close()
	<-t.done
	return nil
}

// bench is what every measurement shares.
type bench struct {
	watched, unwatched *udpload.Receiver
	cg                 *cgroups
	discotrace         string // the binary, for the trace setups
	iperf              *iperf3
	n, size            int
}

// result is one setup's measurements in one round, and the watched-port accounting.
type result struct {
	unwatched, watched udpload.Measurement
	tcp                float64 // bits/s, 0 when not measured
	events             counts
	unwatchedEvents    int
	traced             bool   // a tracer of discotrace's: its events must account
	irqWork            uint64 // the host's irq_work interrupts while the watched port was loaded
}

// measure runs the load once under s.
func (b *bench) measure(s setup) (result, error) {
	res := result{traced: s.start != nil && s.name != "tcpdump"}
	var r running
	if s.start != nil {
		var err error
		if r, err = s.start(b); err != nil {
			return res, fmt.Errorf("start %s: %w", s.name, err)
		}
	}
	err := func() error {
		err := b.cg.inHost(func() error {
			var err error
			res.unwatched, err = udpload.Blast(b.unwatched, b.n, b.size)
			return err
		})
		if err != nil {
			return err
		}
		if r != nil {
			r.settle()
			res.unwatchedEvents = r.take().unwatched
		}
		iwi0, err := irqwork.Count()
		if err != nil {
			return err
		}
		if res.watched, err = udpload.Blast(b.watched, b.n, b.size); err != nil {
			return err
		}
		iwi1, err := irqwork.Count()
		if err != nil {
			return err
		}
		res.irqWork = iwi1 - iwi0
		if r != nil {
			r.settle() // its backlog must not load the TCP measurement
		}
		if b.iperf != nil {
			res.tcp, err = b.iperf.run()
		}
		return err
	}()
	if r != nil {
		// Stopped first: what it still held (a last lost report, buffered output) is
		// counted too.
		if serr := r.stop(); err == nil && serr != nil && s.name == "tcpdump" {
			err = serr
		}
		res.events = r.take()
	}
	return res, err
}

func run(rounds, n, size int, names []string, tcpSecs float64, discotrace string) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: tracing needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN")
	}
	var setups []setup
	for _, name := range names {
		i := slices.IndexFunc(allSetups, func(s setup) bool { return s.name == name })
		if i < 0 {
			return fmt.Errorf("unknown setup %q", name)
		}
		setups = append(setups, allSetups[i])
	}
	if len(setups) == 0 || setups[0].name != "untraced" {
		return errors.New("-setups must start with untraced: the ratios are to it")
	}
	cg, err := makeCgroups()
	if err != nil {
		return err
	}
	defer cg.remove()
	b := &bench{cg: cg, n: n, size: size, discotrace: discotrace}
	if b.watched, err = udpload.OpenReceiver(); err != nil {
		return err
	}
	if err := cg.inHost(func() error { b.unwatched, err = udpload.OpenReceiver(); return err }); err != nil {
		return err
	}
	if tcpSecs > 0 {
		if b.iperf, err = startIperf3(cg, 5201+os.Getpid()%1000, tcpSecs); err != nil {
			return err
		}
		defer b.iperf.stop()
	}
	fmt.Printf("loopback UDP: %d datagrams of %d bytes per measurement, %d rounds, watched port %d (sockets in %s), unwatched port %d (in %s), %d CPUs; TCP: %v s of iperf3 per measurement\n",
		n, size, rounds, b.watched.Port, cg.node, b.unwatched.Port, cg.host, runtime.NumCPU(), tcpSecs)
	// Open once up front: a tracer that cannot open fails here, and its hook plan is part
	// of what the figures mean.
	probe, err := tracer.Open(tracer.Config{Ports: []uint16{b.watched.Port}})
	if err != nil {
		return fmt.Errorf("open tracer: %w", err)
	}
	for _, h := range probe.Plan() {
		fmt.Println("hooks:", h)
	}
	probe.Close()
	fmt.Printf("%-5s %-16s | %-22s | %-22s | %-14s | %s\n", "round", "setup", "unwatched/s  ratio", "watched/s  ratio", "TCP Gbit/s  ratio", "watched: send/recv/read, lost")

	results := map[string][]result{}
	for r := range rounds {
		// Each setup once per round, starting one further each round, so slow drift
		// (thermal, other load) falls on all of them alike.
		order := slices.Clone(setups)
		k := r % len(order)
		order = append(order[k:], order[:k]...)
		got := map[string]result{}
		for _, s := range order {
			res, err := b.measure(s)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, s.name, err)
			}
			got[s.name] = res
			results[s.name] = append(results[s.name], res)
		}
		base := got["untraced"]
		for _, s := range setups {
			res := got[s.name]
			acct := ""
			if res.traced {
				acct = fmt.Sprintf("%d/%d/%d, %d lost", res.events.send, res.events.recv, res.events.read, res.events.lost)
			}
			fmt.Printf("%-5d %-16s | %9.0f %6.3f | %9.0f %6.3f | %6.2f %6.3f | %s%s\n", r+1, s.name,
				res.unwatched.Rate(), res.unwatched.Rate()/base.unwatched.Rate(),
				res.watched.Rate(), res.watched.Rate()/base.watched.Rate(),
				res.tcp/1e9, ratio(res.tcp, base.tcp), acct, dropNote(res))
		}
	}
	return summarize(setups, results)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func dropNote(res result) string {
	var s string
	for _, m := range []udpload.Measurement{res.unwatched, res.watched} {
		if m.Received != m.Sent {
			s = fmt.Sprintf(" (some datagrams did not arrive: %d of %d)", m.Received, m.Sent)
		}
	}
	return s
}

func summarize(setups []setup, results map[string][]result) error {
	base := results["untraced"]
	accounted := true
	fmt.Println("per setup, traced/untraced of the same round: median [min-max]")
	// The host's own irq_work, for the setups' figures to be read against.
	var baseIWI []float64
	for _, r := range base {
		baseIWI = append(baseIWI, float64(r.irqWork)/float64(r.watched.Sent))
	}
	fmt.Printf("%-16s irq_work interrupts per watched datagram %s\n", "untraced", spread(baseIWI))
	for _, s := range setups[1:] {
		var uw, w, tcp, iwi []float64
		var sent, send, recv, read, unwatchedEvents int
		var lost uint64
		for i, r := range results[s.name] {
			uw = append(uw, r.unwatched.Rate()/base[i].unwatched.Rate())
			w = append(w, r.watched.Rate()/base[i].watched.Rate())
			iwi = append(iwi, float64(r.irqWork)/float64(r.watched.Sent))
			if base[i].tcp > 0 {
				tcp = append(tcp, r.tcp/base[i].tcp)
			}
			if !r.traced {
				continue
			}
			sent += r.watched.Sent
			send += r.events.send
			recv += r.events.recv
			read += r.events.read
			lost += r.events.lost
			unwatchedEvents += r.unwatchedEvents
			// Every datagram must show up once per event class (send and recv for each
			// one sent, read for each one the receiver read), or the shortfall must be
			// covered by the lost count, which does not say which class it lost.
			m := r.watched
			missing := 0
			for _, e := range []struct{ seen, want int }{{r.events.send, m.Sent}, {r.events.recv, m.Sent}, {r.events.read, m.Received}} {
				if e.seen > e.want {
					accounted = false // more events than datagrams: something reported twice
				}
				missing += max(0, e.want-e.seen)
			}
			if uint64(missing) > r.events.lost || r.unwatchedEvents != 0 {
				accounted = false
			}
		}
		line := fmt.Sprintf("%-16s unwatched %s, watched %s", s.name, spread(uw), spread(w))
		if len(tcp) > 0 {
			line += ", TCP " + spread(tcp)
		}
		line += ", irq_work interrupts per watched datagram " + spread(iwi)
		if base0 := results[s.name]; len(base0) > 0 && base0[0].traced {
			line += fmt.Sprintf("; watched: %d sent, events %d send, %d recv, %d read, %d lost; unwatched: %d events", sent, send, recv, read, lost, unwatchedEvents)
		}
		fmt.Println(line)
	}
	if !accounted {
		return errors.New("the tracer's events do not account for every datagram: see the counts above")
	}
	fmt.Println("every watched datagram was reported or counted as lost, and no unwatched one reported")
	return nil
}

func spread(v []float64) string {
	return fmt.Sprintf("%.3f [%.3f-%.3f]", median(v), slices.Min(v), slices.Max(v))
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func setupList() string {
	var names []string
	for _, s := range allSetups {
		names = append(names, s.name)
	}
	return strings.Join(names, ", ")
}
