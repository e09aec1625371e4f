package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/discotrace/discotrace/tracer"
)

// cgroups are where the benchmark's flows live: the watched flow's sockets in node (the
// traced node's cgroup), the unwatched flow's and iperf3 in host (the rest of the host).
// The process itself stays in node; a socket belongs to the cgroup its creator was in
// when it created it, so the unwatched sockets are made while the process visits host.
type cgroups struct {
	host, node string
}

func makeCgroups() (*cgroups, error) {
	root, err := tracer.Cgroup2Root()
	if err != nil {
		return nil, err
	}
	host, err := tracer.CgroupOf("/proc", os.Getpid())
	if err != nil {
		return nil, err
	}
	node := filepath.Join(root, fmt.Sprintf("discotrace-bench-%d", os.Getpid()))
	if err := os.Mkdir(node, 0o755); err != nil {
		return nil, fmt.Errorf("create the node's cgroup: %w", err)
	}
	cg := &cgroups{host: host, node: node}
	return cg, cg.enter(node)
}

// enter moves this process (all its threads) into dir.
func (c *cgroups) enter(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("move into cgroup %s: %w", dir, err)
	}
	return nil
}

// inHost runs f with the process in the host's cgroup.
func (c *cgroups) inHost(f func() error) error {
	if err := c.enter(c.host); err != nil {
		return err
	}
	err := f()
	return errors.Join(err, c.enter(c.node))
}

func (c *cgroups) remove() error {
	return errors.Join(c.enter(c.host), os.Remove(c.node))
}

// setup is a way the host runs during a measurement: untraced, or with a tracer.
type setup struct {
	name  string
	start func(b *bench) (running, error) // nil: untraced
}

// running is a tracer at work; stop ends it and returns its event counts.
type running interface {
	settle()      // wait until the events of the traffic so far are counted
	take() counts // the counts so far, starting again from zero
	stop() error  // end it; take then returns what it still delivered
}

var allSetups = []setup{
	{"untraced", nil},
	{"discotrace", func(b *bench) (running, error) { return startTracing(b.watched, b.unwatched, nil) }},
	{"discotrace-node", func(b *bench) (running, error) {
		return startTracing(b.watched, b.unwatched, []string{b.cg.node})
	}},
	{"trace-raw", func(b *bench) (running, error) { return b.startBinary("--port", fmt.Sprint(b.watched.Port), "--raw") }},
	{"trace-raw-node", func(b *bench) (running, error) {
		return b.startBinary("--port", fmt.Sprint(b.watched.Port), "--raw", "--pid", strconv.Itoa(os.Getpid()))
	}},
	{"trace", func(b *bench) (running, error) { return b.startBinary("--port", fmt.Sprint(b.watched.Port)) }},
	{"tcpdump", func(b *bench) (running, error) { return b.startTcpdump() }},
}

// binaryRun is `discotrace trace` as a child process, its NDJSON written to a file that
// is counted once the measurement is over (the benchmark's CPUs measure, not parse).
type binaryRun struct {
	cmd  *exec.Cmd
	out  *os.File
	read int64 // how far out has been counted
	c    counts
	port string
}

func (b *bench) startBinary(args ...string) (running, error) {
	out, err := os.CreateTemp("", "discotrace-bench-*.ndjson")
	if err != nil {
		return nil, err
	}
	os.Remove(out.Name())
	cmd := exec.Command(b.discotrace, append([]string{"trace", "--format", "ndjson"}, args...)...)
	cmd.Stdout = out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		if strings.Contains(lines.Text(), "hooks attached") {
			go func() {
				for lines.Scan() {
				}
			}()
			return &binaryRun{cmd: cmd, out: out, port: ":" + fmt.Sprint(b.watched.Port)}, nil
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, fmt.Errorf("%s did not attach", b.discotrace)
}

func (r *binaryRun) settle() {
	last := int64(-1)
	for {
		time.Sleep(300 * time.Millisecond)
		st, err := r.out.Stat()
		if err != nil || st.Size() == last {
			return
		}
		last = st.Size()
	}
}

func (r *binaryRun) take() counts {
	r.out.Seek(r.read, 0)
	sc := bufio.NewScanner(r.out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var ev struct {
		Type  string  `json:"type"`
		Dst   string  `json:"dst"`
		Count *uint64 `json:"count"`
	}
	for sc.Scan() {
		line := sc.Bytes()
		r.read += int64(len(line)) + 1
		ev.Type, ev.Dst, ev.Count = "", "", nil
		if json.Unmarshal(line, &ev) != nil {
			r.c.other++
			continue
		}
		switch {
		case ev.Type == "lost" || ev.Type == "shed":
			if ev.Count != nil {
				r.c.lost += *ev.Count
			}
		case !strings.HasSuffix(ev.Dst, r.port):
			r.c.other++
		case ev.Type == "send":
			r.c.send++
		case ev.Type == "recv":
			r.c.recv++
		case ev.Type == "read":
			r.c.read++
		default:
			r.c.other++
		}
	}
	c := r.c
	r.c = counts{}
	if r.cmd.ProcessState != nil { // stopped: this was the last take
		r.out.Close()
	}
	return c
}

// stop ends trace; its output stays open for the last take.
func (r *binaryRun) stop() error {
	r.cmd.Process.Signal(syscall.SIGINT)
	return r.cmd.Wait()
}

// tcpdumpRun is tcpdump capturing the watched port on loopback into a file, as an
// operator would: the reference the issue compares with.
type tcpdumpRun struct {
	cmd    *exec.Cmd
	stderr *strings.Builder
	dir    string
}

func (b *bench) startTcpdump() (running, error) {
	dir, err := os.MkdirTemp("", "discotrace-bench-tcpdump")
	if err != nil {
		return nil, err
	}
	// -B: a 64 MiB kernel buffer (KiB), as the tracer's ring is 8 MiB and the receiver's 64.
	cmd := exec.Command("tcpdump", "-i", "lo", "-n", "-B", "65536", "-w", filepath.Join(dir, "cap.pcap"), "udp", "port", fmt.Sprint(b.watched.Port))
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tcpdump (apt-get install tcpdump): %w", err)
	}
	r := &tcpdumpRun{cmd: cmd, stderr: &strings.Builder{}, dir: dir}
	lines := bufio.NewScanner(pipe)
	for lines.Scan() {
		if strings.Contains(lines.Text(), "listening on") {
			go func() {
				for lines.Scan() {
					r.stderr.WriteString(lines.Text() + "\n")
				}
			}()
			return r, nil
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, errors.New("tcpdump did not start listening")
}

func (r *tcpdumpRun) settle()      { time.Sleep(150 * time.Millisecond) }
func (r *tcpdumpRun) take() counts { return counts{} }

var tcpdumpDropped = regexp.MustCompile(`(\d+) packets dropped by kernel`)

func (r *tcpdumpRun) stop() error {
	r.cmd.Process.Signal(syscall.SIGINT)
	err := r.cmd.Wait()
	if m := tcpdumpDropped.FindStringSubmatch(r.stderr.String()); m != nil && m[1] != "0" {
		fmt.Printf("tcpdump: %s packets dropped by kernel\n", m[1])
	}
	os.RemoveAll(r.dir)
	return err
}

// iperf3 measures TCP bulk throughput over loopback between processes in the host's
// cgroup (the rest of the host's traffic, which a tracer should not slow).
type iperf3 struct {
	server *exec.Cmd
	port   int
	cg     *cgroups
	secs   float64
}

func startIperf3(cg *cgroups, port int, secs float64) (*iperf3, error) {
	ip := &iperf3{port: port, cg: cg, secs: secs}
	err := cg.inHost(func() error {
		ip.server = exec.Command("iperf3", "-s", "-p", fmt.Sprint(port), "-A", "1")
		return ip.server.Start()
	})
	if err != nil {
		return nil, fmt.Errorf("iperf3 (apt-get install iperf3): %w", err)
	}
	time.Sleep(300 * time.Millisecond)
	return ip, nil
}

// run measures TCP throughput in bits/s for ip.secs.
func (ip *iperf3) run() (float64, error) {
	var out []byte
	err := ip.cg.inHost(func() error {
		var err error
		out, err = exec.Command("iperf3", "-c", "127.0.0.1", "-p", fmt.Sprint(ip.port), "-A", "0", "-t", fmt.Sprint(ip.secs), "-J").Output()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("iperf3 client: %w: %s", err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	return res.End.SumReceived.BitsPerSecond, nil
}

func (ip *iperf3) stop() {
	ip.server.Process.Kill()
	ip.server.Wait()
}
