// Command hookcost measures what each kind of hook costs loopback UDP traffic on this
// kernel, apart from what discotrace's programs do in it: datagrams/s to a port nobody
// watches with no program attached, with empty programs (return at once) attached to the
// hooks discotrace uses or could use, and with the real tracer watching another port.
// With -stats it instead reports, per program, runs per datagram and the average run time
// the kernel measures (kernel.bpf_stats_enabled), empty programs being the floor.
//
// It prints figures and asserts nothing. Run it as root on an otherwise quiet machine:
//
//	go run ./bench/hookcost [-stats]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/discotrace/discotrace/bench/internal/udpload"
	"github.com/discotrace/discotrace/tracer"
)

func main() {
	rounds := flag.Int("rounds", 5, "measurement rounds; each measures every setup, in rotating order")
	datagrams := flag.Int("datagrams", 200000, "datagrams per measurement")
	size := flag.Int("size", 256, "UDP payload bytes per datagram")
	stats := flag.Bool("stats", false, "report per-program run counts and run times instead of throughput")
	only := flag.String("only", "", "comma-separated setup names to measure (default: all)")
	flag.BoolVar(&paired, "paired", false, "measure CPU time per datagram of one thread that sends and reads, "+
		"alternating between no program and each setup (-rounds pairs of -datagrams each): the cost added per datagram")
	flag.Parse()
	if err := run(*rounds, *datagrams, *size, *stats, *only); err != nil {
		fmt.Fprintln(os.Stderr, "hookcost:", err)
		os.Exit(1)
	}
}

// attached is a setup in place: its programs (for statistics) and what detaches it.
type attached struct {
	progs   map[string]*ebpf.Program
	closers []io.Closer
}

func (a *attached) Close() {
	for _, c := range slices.Backward(a.closers) {
		c.Close()
	}
}

type setup struct {
	name string
	desc string
	open func() (*attached, error)
}

// emptyTracing is a tp_btf program that returns at once.
func emptyTracing(tp string) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "empty_tp",
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceRawTp,
		AttachTo:     tp,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
}

// emptyCgroupSKB is a cgroup_skb program that lets every packet pass.
func emptyCgroupSKB(at ebpf.AttachType) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "empty_cgskb",
		Type:         ebpf.CGroupSKB,
		AttachType:   at,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
		License:      "GPL",
	})
}

// ringTracing is a tp_btf program that reserves a record of size bytes in a ring buffer of
// its own and submits it without waking the reader: the cost of the ring buffer alone. A
// goroutine reads the records, as the tracer's reader would.
func ringTracing(tp string, size int32, read bool) func() (*attached, error) {
	return func() (*attached, error) {
		rb, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 8 << 20})
		if err != nil {
			return nil, err
		}
		a := &attached{progs: map[string]*ebpf.Program{}, closers: []io.Closer{rb}}
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name:       "ring_tp",
			Type:       ebpf.Tracing,
			AttachType: ebpf.AttachTraceRawTp,
			AttachTo:   tp,
			Instructions: asm.Instructions{
				asm.LoadMapPtr(asm.R1, rb.FD()),
				asm.Mov.Imm(asm.R2, size),
				asm.Mov.Imm(asm.R3, 0),
				asm.FnRingbufReserve.Call(),
				asm.JEq.Imm(asm.R0, 0, "out"),
				asm.Mov.Reg(asm.R1, asm.R0),
				asm.Mov.Imm(asm.R2, 1), // BPF_RB_NO_WAKEUP
				asm.FnRingbufSubmit.Call(),
				asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
				asm.Return(),
			},
			License: "GPL",
		})
		if err != nil {
			a.Close()
			return nil, err
		}
		a.closers = append(a.closers, prog)
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			a.Close()
			return nil, err
		}
		a.closers = append(a.closers, l)
		a.progs[fmt.Sprintf("ring reserve+submit %d B on %s", size, tp)] = prog
		if !read {
			return a, nil // the ring holds what one measurement writes
		}
		rd, err := ringbuf.NewReader(rb)
		if err != nil {
			a.Close()
			return nil, err
		}
		go func() {
			var rec ringbuf.Record
			for {
				rd.SetDeadline(time.Now().Add(10 * time.Millisecond))
				if err := rd.ReadInto(&rec); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					return
				}
			}
		}()
		// Detach first, then stop the reader.
		a.closers = append([]io.Closer{rd}, a.closers...)
		return a, nil
	}
}

func cgroupRoot() (string, error) {
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "cgroup2" {
			return f[1], nil
		}
	}
	return "", errors.New("no cgroup2 mount")
}

// empties attaches an empty program to each of the given hooks: "cgroup_skb/ingress",
// "cgroup_skb/egress" or a tracepoint name for tp_btf.
func empties(hooks ...string) func() (*attached, error) {
	return func() (*attached, error) {
		a := &attached{progs: map[string]*ebpf.Program{}}
		for _, h := range hooks {
			var prog *ebpf.Program
			var l link.Link
			var err error
			switch h {
			case "cgroup_skb/ingress", "cgroup_skb/egress":
				at := ebpf.AttachCGroupInetIngress
				if h == "cgroup_skb/egress" {
					at = ebpf.AttachCGroupInetEgress
				}
				if prog, err = emptyCgroupSKB(at); err == nil {
					var root string
					if root, err = cgroupRoot(); err == nil {
						l, err = link.AttachCgroup(link.CgroupOptions{Path: root, Attach: at, Program: prog})
					}
				}
			default:
				if prog, err = emptyTracing(h); err == nil {
					l, err = link.AttachTracing(link.TracingOptions{Program: prog})
				}
			}
			if prog != nil {
				a.closers = append(a.closers, prog)
			}
			if err != nil {
				a.Close()
				return nil, fmt.Errorf("%s: %w", h, err)
			}
			a.closers = append(a.closers, l)
			a.progs["empty "+h] = prog
		}
		return a, nil
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// realTracer opens discotrace watching port, and finds its programs (the ones that
// appeared while it opened) for statistics. With elsewhere, its cgroup programs attach to
// a cgroup of their own that holds no process (the node's, scoped: this traffic is the
// rest of the host's).
func realTracer(port uint16, elsewhere bool) func() (*attached, error) {
	return func() (*attached, error) {
		var cgroups []string
		if elsewhere {
			root, err := tracer.Cgroup2Root()
			if err != nil {
				return nil, err
			}
			dir := filepath.Join(root, fmt.Sprintf("discotrace-hookcost-%d", os.Getpid()))
			if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
				return nil, err
			}
			cgroups = []string{dir}
		}
		before := progIDs()
		tr, err := tracer.Open(tracer.Config{Ports: []uint16{port}, RingSize: *ringSize, SnapLen: *snapLen, Cgroups: cgroups})
		if err != nil {
			return nil, err
		}
		a := &attached{progs: map[string]*ebpf.Program{}}
		a.closers = append(a.closers, closerFunc(tr.Close))
		if elsewhere {
			// Closed last (closers run backwards): after the programs let go of it.
			a.closers = append([]io.Closer{closerFunc(func() error { return os.Remove(cgroups[0]) })}, a.closers...)
		}
		for _, id := range progIDs() {
			if slices.Contains(before, id) {
				continue
			}
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				continue
			}
			info, err := p.Info()
			if err != nil || !strings.HasPrefix(info.Name, "dt_") {
				p.Close()
				continue
			}
			a.progs[info.Name] = p
			a.closers = append(a.closers, p)
		}
		// Read the events, as the daemon would.
		go func() {
			var lost uint64
			for {
				ev, err := tr.Read()
				if err != nil {
					if lost > 0 {
						fmt.Printf("(%d events lost)\n", lost)
					}
					return
				}
				lost += ev.Lost
			}
		}()
		return a, nil
	}
}

func progIDs() []ebpf.ProgramID {
	var ids []ebpf.ProgramID
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return ids
		}
		ids = append(ids, next)
		id = next
	}
}

func setups(rxPort uint16) []setup {
	none := func() (*attached, error) { return &attached{}, nil }
	return []setup{
		{"none", "no program attached", none},
		{"control", "empty tp_btf inet_sk_error_report (never fires here: what attaching alone costs)", empties("inet_sk_error_report")},
		{"cgskb", "empty cgroup_skb ingress+egress on the cgroup v2 root", empties("cgroup_skb/ingress", "cgroup_skb/egress")},
		{"cgegress", "empty cgroup_skb egress on the cgroup v2 root", empties("cgroup_skb/egress")},
		{"cgingress", "empty cgroup_skb ingress on the cgroup v2 root", empties("cgroup_skb/ingress")},
		{"sendlen", "empty tp_btf sock_send_length", empties("sock_send_length")},
		{"recvlen", "empty tp_btf sock_recv_length", empties("sock_recv_length")},
		{"consume", "empty tp_btf consume_skb", empties("consume_skb")},
		{"devqueue", "empty tp_btf net_dev_queue", empties("net_dev_queue")},
		{"netifrx", "empty tp_btf netif_receive_skb", empties("netif_receive_skb")},
		{"sock", "empty tp_btf sock_send_length+sock_recv_length", empties("sock_send_length", "sock_recv_length")},
		{"skbfree", "empty tp_btf consume_skb+kfree_skb", empties("consume_skb", "kfree_skb")},
		{"dev", "empty tp_btf net_dev_queue+netif_receive_skb", empties("net_dev_queue", "netif_receive_skb")},
		{"udprcv", "empty tp_btf sk_data_ready", empties("sk_data_ready")},
		{"allempty", "empty programs on every hook discotrace uses here", empties("cgroup_skb/ingress", "cgroup_skb/egress",
			"sock_send_length", "sock_recv_length", "consume_skb", "kfree_skb", "inet_sk_error_report")},
		{"tpempty", "empty programs on a tracepoint-only set (dev, sock, skb free)", empties("net_dev_queue", "netif_receive_skb",
			"sock_send_length", "sock_recv_length", "consume_skb", "kfree_skb", "inet_sk_error_report")},
		{"ring16", "tp_btf sock_send_length reserving and submitting 16 bytes of a ring buffer, read concurrently", ringTracing("sock_send_length", 16, true)},
		{"ring456", "tp_btf sock_send_length reserving and submitting 456 bytes of a ring buffer, read concurrently", ringTracing("sock_send_length", 456, true)},
		{"ring16u", "as ring16, the ring not read during the measurement", ringTracing("sock_send_length", 16, false)},
		{"tracer", "discotrace, watching a port this traffic does not use", realTracer(9, false)},
		{"tracernode", "discotrace, watching a port this traffic does not use, scoped to another cgroup (the node's)", realTracer(9, true)},
		{"watched", "discotrace, watching this traffic's port (its events read and dropped)", realTracer(rxPort, false)},
	}
}

func run(rounds, n, size int, stats bool, only string) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root")
	}
	rx, err := udpload.OpenReceiver()
	if err != nil {
		return err
	}
	all := setups(rx.Port)
	if only != "" {
		want := strings.Split(only, ",")
		all = slices.DeleteFunc(all, func(s setup) bool { return s.name != "none" && !slices.Contains(want, s.name) })
	}
	fmt.Printf("loopback UDP to an unwatched port: %d datagrams of %d bytes per measurement, %d CPUs\n", n, size, runtime.NumCPU())
	if stats {
		return runStats(all[1:], rx, n, size)
	}
	if paired {
		return runPaired(all[1:], rx, rounds, n, size)
	}
	// Every round measures "none" before and after each other setup; a setup's ratio is
	// its rate over the mean of the two "none" around it, so drift cancels.
	ratios := map[string][]float64{}
	rates := map[string][]float64{}
	sendNs := map[string][]float64{}
	readNs := map[string][]float64{}
	note := func(name string, m udpload.Measurement) {
		rates[name] = append(rates[name], m.Rate())
		s, r := m.CPUNsPerDatagram()
		sendNs[name] = append(sendNs[name], s)
		readNs[name] = append(readNs[name], r)
	}
	for r := range rounds {
		order := slices.Clone(all[1:])
		rot := r % len(order)
		order = append(order[rot:], order[:rot]...)
		prev, err := udpload.Blast(rx, n, size)
		if err != nil {
			return err
		}
		note("none", prev)
		for _, s := range order {
			a, err := s.open()
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			m, err := udpload.Blast(rx, n, size)
			a.Close()
			if err != nil {
				return err
			}
			next, err := udpload.Blast(rx, n, size)
			if err != nil {
				return err
			}
			note("none", next)
			note(s.name, m)
			ratios[s.name] = append(ratios[s.name], m.Rate()/((prev.Rate()+next.Rate())/2))
			prev = next
		}
		fmt.Printf("round %d done\n", r+1)
	}
	fmt.Printf("%-9s %10s  %-31s %-22s %s\n", "setup", "median /s", "rate ratio: median (min-max)", "CPU ns/dgram send+read", "what")
	fmt.Printf("%-9s %10.0f  %-31s %5.0f + %5.0f          %s\n", "none", median(rates["none"]), "1", median(sendNs["none"]), median(readNs["none"]), all[0].desc)
	for _, s := range all[1:] {
		rs := ratios[s.name]
		fmt.Printf("%-9s %10.0f  %.3f (%.3f-%.3f)             %5.0f + %5.0f          %s\n", s.name, median(rates[s.name]), median(rs), slices.Min(rs), slices.Max(rs),
			median(sendNs[s.name]), median(readNs[s.name]), s.desc)
	}
	return nil
}

var paired bool

var snapLen = flag.Int("snaplen", 0, "the tracer's snap length (0: its default; -1: no payload)")

var ringSize = flag.Int("ringsize", 0, "the tracer's ring buffer size in bytes (0: its default)")

// runPaired measures, per setup, the CPU time one thread spends per datagram it sends to
// itself over loopback and reads back (the whole path: send, loopback receive softirq,
// recvmsg), alternately without and with the setup's programs, and reports the median of
// the paired differences: what the setup adds to each datagram, with little of the noise
// that other load puts on rates.
func runPaired(all []setup, rx *udpload.Receiver, pairs, n, size int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	udpload.Pin(1)
	defer udpload.Unpin()
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(tx)
	if err := unix.Connect(tx, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(rx.Port)}); err != nil {
		return err
	}
	payload := make([]byte, size)
	buf := make([]byte, 65536)
	pingpong := func() (float64, error) {
		var cpu0 time.Duration
		for i := -n / 10; i < n; i++ { // the first tenth warms caches after a switch
			if i == 0 {
				cpu0 = udpload.ThreadCPU()
			}
			if _, err := unix.Write(tx, payload); err != nil {
				return 0, err
			}
			if _, err := unix.Read(rx.FD, buf); err != nil {
				return 0, err
			}
		}
		return float64((udpload.ThreadCPU() - cpu0).Nanoseconds()) / float64(n), nil
	}
	if _, err := pingpong(); err != nil { // warm up
		return err
	}
	fmt.Printf("%-9s %12s %22s %s\n", "setup", "none ns/dgram", "added ns/dgram: median (IQR)", "what")
	for _, s := range all {
		var base, diffs []float64
		for i := range pairs {
			var with, without float64
			if i%2 == 1 { // alternate which comes first
				if without, err = pingpong(); err != nil {
					return err
				}
			}
			a, err := s.open()
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			with, err = pingpong()
			a.Close()
			if err != nil {
				return err
			}
			if i%2 == 0 {
				if without, err = pingpong(); err != nil {
					return err
				}
			}
			base = append(base, without)
			diffs = append(diffs, with-without)
		}
		slices.Sort(diffs)
		q := len(diffs) / 4
		fmt.Printf("%-9s %12.0f %10.0f (%.0f..%.0f)     %s\n", s.name, median(base), median(diffs), diffs[q], diffs[len(diffs)-1-q], s.desc)
	}
	return nil
}

func runStats(all []setup, rx *udpload.Receiver, n, size int) error {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable BPF statistics: %w", err)
	}
	defer c.Close()
	fmt.Printf("%-9s %-34s %12s %10s\n", "setup", "program", "runs/dgram", "ns/run")
	for _, s := range all {
		a, err := s.open()
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		before := map[string]*ebpf.ProgramStats{}
		for name, p := range a.progs {
			if before[name], err = p.Stats(); err != nil {
				return err
			}
		}
		_, err = udpload.Blast(rx, n, size)
		if err != nil {
			a.Close()
			return err
		}
		names := make([]string, 0, len(a.progs))
		for name := range a.progs {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			st, err := a.progs[name].Stats()
			if err != nil {
				return err
			}
			runs := st.RunCount - before[name].RunCount
			rt := st.Runtime - before[name].Runtime
			var per float64
			if runs > 0 {
				per = float64(rt.Nanoseconds()) / float64(runs)
			}
			fmt.Printf("%-9s %-34s %12.3f %10.1f\n", s.name, name, float64(runs)/float64(n), per)
		}
		a.Close()
	}
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
