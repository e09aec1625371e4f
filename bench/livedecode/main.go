// Command livedecode measures `discotrace trace` as an operator runs it (decoded, NDJSON to
// a file, the default ring) under load on loopback. It starts the discotrace binary built
// from this tree watching one port, sends 256-byte discv5 MESSAGE packets to a receiver
// on that port that reads every datagram, stops the tracer once its output is quiet, and
// prints per event type the events written against those expected (a send and a recv per
// datagram sent, a read per datagram read), the lost and shed counts, events/s, and the
// tracer's CPU time and peak RSS (getrusage of the child).
//
// Modes (-modes, comma-separated):
//
//	pair    paced (-rate, 67,000/s) for -duration from one peer socket
//	peers   paced, from -sources (100,000) distinct 127.0.0.0/8 addresses, each its own node ID
//	flood   unpaced: as fast as one thread sends, from one peer
//	rss     unpaced, a random node ID in every packet, for -rss-duration, printing the
//	        tracer's RSS (anon and file pages) every -rss-every, and its Go heap still in
//	        use after each collection over that interval (the tracer runs with
//	        GODEBUG=gctrace=1; not in the default set: give -modes rss)
//
// It asserts no timing. It exits non-zero if the tracer fails, or if the events written,
// lost and shed do not account for every datagram. Run as root from the repository root:
//
//	go run ./bench/livedecode
//	go run ./bench/livedecode -modes rss -rss-duration 10m
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"
	"golang.org/x/sys/unix"

	"github.com/discotrace/discotrace/bench/internal/childproc"
	"github.com/discotrace/discotrace/bench/internal/udpload"
	"github.com/discotrace/discotrace/internal/v5message"
	"github.com/discotrace/discotrace/ndjson"
)

type options struct {
	bin         string
	rate        float64
	duration    time.Duration
	size        int
	sources     int
	rssDuration time.Duration
	rssEvery    time.Duration
	outDir      string
}

func main() {
	var o options
	modes := flag.String("modes", "pair,peers,flood", "what to run, in order: pair, peers, flood, rss")
	runs := flag.Int("runs", 1, "times to run each mode")
	flag.StringVar(&o.bin, "discotrace", "", "discotrace binary to measure (default: build ./cmd/discotrace)")
	flag.Float64Var(&o.rate, "rate", 67000, "datagrams/s of the paced modes")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long each pair, peers and flood run sends")
	flag.IntVar(&o.size, "size", 256, "UDP payload bytes per datagram")
	flag.IntVar(&o.sources, "sources", 100000, "distinct source addresses and node IDs in the peers mode")
	flag.DurationVar(&o.rssDuration, "rss-duration", 2*time.Minute, "how long the rss mode floods (the issue's figure: 10m)")
	flag.DurationVar(&o.rssEvery, "rss-every", 30*time.Second, "how often the rss mode prints the tracer's RSS")
	flag.StringVar(&o.outDir, "out", "", "keep each run's NDJSON here (default: a temporary directory, removed)")
	flag.Parse()
	if err := run(o, strings.Split(*modes, ","), *runs); err != nil {
		fmt.Fprintln(os.Stderr, "livedecode:", err)
		os.Exit(1)
	}
}

func run(o options, modes []string, runs int) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: tracing needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN")
	}
	for _, m := range modes {
		if m != "pair" && m != "peers" && m != "flood" && m != "rss" {
			return fmt.Errorf("unknown mode %q: want pair, peers, flood or rss", m)
		}
	}
	tmp, err := os.MkdirTemp("", "livedecode")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.bin == "" {
		if o.bin, err = childproc.Build(tmp); err != nil {
			return err
		}
	}
	keep := o.outDir != ""
	if !keep {
		o.outDir = tmp
	}
	fmt.Printf("%s trace; %d-byte discv5 MESSAGE datagrams over loopback; %d CPUs\n", o.bin, o.size, runtime.NumCPU())
	failed := false
	for r := range runs {
		for _, m := range modes {
			out := filepath.Join(o.outDir, fmt.Sprintf("%s-%d.ndjson", m, r+1))
			ok, err := runMode(o, m, out)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", m, r+1, err)
			}
			failed = failed || !ok
			if !keep {
				os.Remove(out)
			}
		}
	}
	if failed {
		return errors.New("the tracer's events do not account for every datagram: see the counts above")
	}
	return nil
}

// load is what a mode sends: packets from sources (one per source, cycled), or fresh
// packets with random node IDs from next.
type load struct {
	packets [][]byte
	sources []netip.Addr // where packets[i] comes from; nil: the sending socket's own address
	next    func() []byte
	paced   bool
	length  time.Duration
}

func runMode(o options, mode, outPath string) (accounted bool, err error) {
	b := v5message.NewBuilder(uint64(time.Now().UnixNano()))
	local := b.NodeID()
	ld := load{paced: mode == "pair" || mode == "peers", length: o.duration}
	switch mode {
	case "pair", "flood":
		// One peer, one node ID; enough distinct packets that nonces do not repeat soon.
		peer := b.NodeID()
		for range 4096 {
			p, err := b.Message(local, peer, o.size)
			if err != nil {
				return false, err
			}
			ld.packets = append(ld.packets, p)
		}
	case "peers":
		for i := range o.sources {
			p, err := b.Message(local, b.NodeID(), o.size)
			if err != nil {
				return false, err
			}
			ld.packets = append(ld.packets, p)
			n := i + 1 // 127.1.0.1 onwards: never 127.0.0.1, the receiver
			ld.sources = append(ld.sources, netip.AddrFrom4([4]byte{127, byte(1 + n>>16), byte(n >> 8), byte(n)}))
		}
	case "rss":
		ld.length = o.rssDuration
		if _, err := b.Message(local, local, o.size); err != nil {
			return false, err // the size is the only thing that can be wrong: checked once here
		}
		ld.next = func() []byte {
			p, _ := b.Message(local, b.NodeID(), o.size)
			return p
		}
	}

	rx, err := udpload.OpenReceiver()
	if err != nil {
		return false, err
	}
	defer unix.Close(rx.FD)
	tr, err := startTracer(o.bin, rx.Port, local, outPath, mode == "rss")
	if err != nil {
		return false, err
	}
	defer tr.kill()

	var stopRSS func()
	if mode == "rss" {
		stopRSS = printRSS(tr.cmd.Process.Pid, o.rssEvery, &tr.gc)
	}
	res, err := send(rx, ld, o.rate)
	if stopRSS != nil {
		stopRSS()
	}
	if err != nil {
		return false, err
	}
	usage, err := tr.stop(outPath)
	if err != nil {
		return false, err
	}
	c, err := countEvents(outPath, rx.Port)
	if err != nil {
		return false, err
	}
	return report(mode, o, ld, res, c, usage), nil
}

// tracer is the discotrace trace child.
type tracer struct {
	cmd    *exec.Cmd
	out    *os.File
	stderr *lockedBuffer
	start  time.Time
	gc     gcStats // with gctrace: the collections since the last look
}

// gcStats sums up the gctrace lines of an interval: how many collections, and the
// smallest and largest heap still in use after one (MB, as the runtime prints them).
type gcStats struct {
	mu       sync.Mutex
	n        int
	min, max int
}

// gcLine matches the heap sizes of a gctrace line: "..., 11->12->8 MB, 12 MB goal, ...".
var gcLine = regexp.MustCompile(`^gc \d+ .* (\d+)->(\d+)->(\d+) MB, `)

// note takes a gctrace line, reporting whether it was one.
func (g *gcStats) note(line string) bool {
	m := gcLine.FindStringSubmatch(line)
	if m == nil {
		return false
	}
	live, _ := strconv.Atoi(m[3])
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == 0 || live < g.min {
		g.min = live
	}
	if g.n == 0 || live > g.max {
		g.max = live
	}
	g.n++
	return true
}

// take returns the interval's figures and starts the next one.
func (g *gcStats) take() (n, min, max int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, min, max = g.n, g.min, g.max
	g.n = 0
	return
}

func startTracer(bin string, port uint16, local enode.ID, outPath string, gctrace bool) (*tracer, error) {
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	t := &tracer{out: out, stderr: &lockedBuffer{}}
	t.cmd = exec.Command(bin, "trace", "--port", strconv.Itoa(int(port)), "--node-id", local.String())
	t.cmd.Stdout = out
	if gctrace {
		godebug := "gctrace=1"
		if v := os.Getenv("GODEBUG"); v != "" {
			godebug = v + "," + godebug
		}
		t.cmd.Env = append(os.Environ(), "GODEBUG="+godebug)
	}
	pipe, err := t.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	t.start = time.Now()
	if err := t.cmd.Start(); err != nil {
		return nil, err
	}
	attached := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		signaled := false
		for sc.Scan() {
			if gctrace && t.gc.note(sc.Text()) {
				continue
			}
			t.stderr.WriteString(sc.Text() + "\n")
			if !signaled && strings.Contains(sc.Text(), "hooks attached in") {
				attached <- true
				signaled = true
			}
		}
		if !signaled {
			attached <- false
		}
	}()
	if !<-attached {
		t.cmd.Wait()
		return nil, fmt.Errorf("discotrace trace did not attach: %s", t.stderr.String())
	}
	return t, nil
}

// stop waits until the tracer's output has stopped growing (it has caught up with the
// ring buffer), interrupts it, and returns what it cost.
func (t *tracer) stop(outPath string) (childproc.Usage, error) {
	var last int64 = -1
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		st, err := os.Stat(outPath)
		if err != nil {
			return childproc.Usage{}, err
		}
		if st.Size() == last {
			break
		}
		last = st.Size()
	}
	t.cmd.Process.Signal(os.Interrupt)
	err := t.cmd.Wait()
	t.out.Close()
	if err != nil {
		return childproc.Usage{}, fmt.Errorf("discotrace trace: %v: %s", err, t.stderr.String())
	}
	return childproc.UsageOf(t.cmd.ProcessState, time.Since(t.start)), nil
}

func (t *tracer) kill() {
	if t.cmd.ProcessState == nil {
		t.cmd.Process.Kill()
		t.cmd.Wait()
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(s)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// printRSS prints the process's RSS every interval until stopped, with what gc saw of
// its heap in the interval.
func printRSS(pid int, every time.Duration, gc *gcStats) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				m, err := childproc.MemoryOf(pid)
				if err != nil {
					continue
				}
				heap := "no collection"
				if n, lo, hi := gc.take(); n > 0 {
					heap = fmt.Sprintf("heap in use after GC %d-%d MB over %d collections", lo, hi, n)
				}
				fmt.Printf("rss: %4.0f s  tracer RSS %s; %s\n", time.Since(start).Seconds(), m, heap)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// sent is what the load did.
type sent struct {
	sent, read int
	elapsed    time.Duration // first send to last send
}

// send sends the load to rx from one thread while another reads every datagram.
func send(rx *udpload.Receiver, ld load, rate float64) (sent, error) {
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return sent{}, err
	}
	defer unix.Close(tx)
	if err := unix.Bind(tx, &unix.SockaddrInet4{}); err != nil {
		return sent{}, err
	}
	to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(rx.Port)}
	// A source address per datagram: IP_PKTINFO's ipi_spec_dst sets it for one sendmsg,
	// and the kernel accepts any address its local table holds, all of 127.0.0.0/8.
	var oobs [][]byte
	for _, a := range ld.sources {
		oobs = append(oobs, pktinfo(a))
	}

	var senderDone atomic.Bool
	readDone := make(chan int, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		buf := make([]byte, 65536)
		n := 0
		for {
			_, err := unix.Read(rx.FD, buf)
			switch {
			case err == nil:
				n++
			case errors.Is(err, unix.EINTR):
			case errors.Is(err, unix.EAGAIN) && !senderDone.Load():
				// 200 ms without a datagram while the sender still runs: keep reading.
			default:
				readDone <- n
				return
			}
		}
	}()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var s sent
	start := time.Now()
	for {
		elapsed := time.Since(start)
		if elapsed >= ld.length {
			break
		}
		due := s.sent + 1024 // unpaced: check the clock every 1024 datagrams
		if ld.paced {
			due = int(rate * elapsed.Seconds())
			if due <= s.sent {
				time.Sleep(200 * time.Microsecond)
				continue
			}
		}
		for ; s.sent < due; s.sent++ {
			var p, oob []byte
			if ld.next != nil {
				p = ld.next()
			} else {
				i := s.sent % len(ld.packets)
				p = ld.packets[i]
				if oobs != nil {
					oob = oobs[i]
				}
			}
			for {
				err := unix.Sendmsg(tx, p, oob, to, 0)
				if err == nil {
					break
				}
				if !errors.Is(err, unix.EINTR) {
					return s, fmt.Errorf("datagram %d: %w", s.sent, err)
				}
			}
		}
	}
	s.elapsed = time.Since(start)
	senderDone.Store(true)
	s.read = <-readDone
	return s, nil
}

func pktinfo(src netip.Addr) []byte {
	return unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: src.As4()})
}

// counts are the tracer's events for the receiver's port.
type counts struct {
	send, recv, read  int
	discv5Messages    int // recv events decoded as discv5 MESSAGE
	lost, shed, undec uint64
	other             map[string]int
}

func countEvents(path string, port uint16) (counts, error) {
	c := counts{other: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		return c, err
	}
	defer f.Close()
	suffix := ":" + strconv.Itoa(int(port))
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev ndjson.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return c, fmt.Errorf("%s: %v in %q", path, err, sc.Text())
		}
		toPort := strings.HasSuffix(ev.Dst, suffix)
		switch {
		case ev.Type == ndjson.TypeSend && toPort:
			c.send++
		case ev.Type == ndjson.TypeRecv && toPort:
			c.recv++
			if ev.Disc != nil && ev.Disc.Proto == "discv5" && ev.Disc.Kind == "MESSAGE" {
				c.discv5Messages++
			}
		case ev.Type == ndjson.TypeRead && toPort:
			c.read++
		case ev.Type == ndjson.TypeLost && ev.Count != nil:
			c.lost += *ev.Count
		case ev.Type == ndjson.TypeShed:
			if ev.Count != nil {
				c.shed += *ev.Count
			}
			if ev.Undecoded != nil {
				c.undec += *ev.Undecoded
			}
		default:
			c.other[ev.Type]++
		}
	}
	return c, sc.Err()
}

// report prints one run and says whether every datagram's events are written or counted
// lost or shed (the counts do not say which event class they missed).
func report(mode string, o options, ld load, s sent, c counts, u childproc.Usage) bool {
	shape := map[string]string{
		"pair":  fmt.Sprintf("paced %.0f/s, one peer", o.rate),
		"peers": fmt.Sprintf("paced %.0f/s, %d source addresses and node IDs", o.rate, len(ld.sources)),
		"flood": "unpaced, one peer",
		"rss":   "unpaced, a random node ID per packet",
	}[mode]
	fmt.Printf("%s (%s): %d datagrams sent in %.1f s (%.0f/s), %d read\n", mode, shape, s.sent, s.elapsed.Seconds(), float64(s.sent)/s.elapsed.Seconds(), s.read)
	missing := 0
	line := func(name string, seen, want int) {
		fmt.Printf("  %-5s %9d written of %9d (%.1f %%)\n", name, seen, want, 100*float64(seen)/float64(max(want, 1)))
		missing += max(0, want-seen)
	}
	line("send", c.send, s.sent)
	line("recv", c.recv, s.sent)
	line("read", c.read, s.read)
	written := c.send + c.recv + c.read
	fmt.Printf("  lost %d, shed %d (undecoded %d); recv decoded as discv5 MESSAGE: %d; other events: %v\n",
		c.lost, c.shed, c.undec, c.discv5Messages, c.other)
	fmt.Printf("  %.0f events written/s of load; tracer %s; %.2f us CPU per written event\n",
		float64(written)/s.elapsed.Seconds(), u, u.CPU().Seconds()*1e6/float64(max(written, 1)))
	over := c.send > s.sent || c.recv > s.sent || c.read > s.read
	ok := !over && uint64(missing) <= c.lost+c.shed
	switch {
	case over:
		fmt.Println("  NOT ACCOUNTED: more events than datagrams (some reported twice)")
	case !ok:
		fmt.Printf("  NOT ACCOUNTED: %d events missing, %d counted lost or shed\n", missing, c.lost+c.shed)
	default:
		fmt.Printf("  accounted: %d events missing, %d counted lost or shed\n", missing, c.lost+c.shed)
	}
	return ok
}
