package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/spf13/pflag"

	"github.com/discotrace/discotrace/internal/otlptest"
	"github.com/discotrace/discotrace/ndjson"
)

// `discotrace trace` run as a service with every sink at once (a file, a socket, the
// Prometheus endpoint, an OTLP collector and a pcapng file), beside two go-ethereum
// discv4 nodes pinging each other, in its own process so that it gets real signals:
//   - the file is created 0600; logrotate renames it and sends SIGHUP while events keep
//     coming: the renamed file and the new one hold every event once, in order;
//   - of two socket readers, one reads all along and gets every event from when it
//     connected; the other reads nothing for a while: events are dropped for it alone, and
//     its stream says how many at the place they are missing;
//   - once the stream settles, /metrics counts the events the file holds;
//   - on SIGTERM it exits 0, every reader's stream ends, the socket file is gone, and none
//     of its BPF programs is left in the kernel; the collector got one log record per
//     event, and the pcapng, read back by tshark, holds every datagram.
func TestTraceSinksAsAService(t *testing.T) {
	if os.Getenv("DISCOTRACE_TEST_MAIN") == t.Name() {
		os.Args = append([]string{"discotrace"}, strings.Split(os.Getenv("DISCOTRACE_TEST_ARGS"), "\n")...)
		main()
		os.Exit(0)
	}
	pinger, pinged := newDiscv4Socket(t), newDiscv4Socket(t)
	portWithNoListener(t) // skips without root
	dir := t.TempDir()
	out, sock := filepath.Join(dir, "events.ndjson"), filepath.Join(dir, "events.sock")
	pcap := filepath.Join(dir, "trace.pcapng")
	collector := otlptest.StartGRPC(t)

	child := startTraceProcess(t, "--payload",
		"--port", strconv.Itoa(pinger.LocalAddr().(*net.UDPAddr).Port),
		"--port", strconv.Itoa(pinged.LocalAddr().(*net.UDPAddr).Port),
		"--output", out, "--listen", "unix:"+sock, "--listen-buffer", "2MiB",
		"--metrics-addr", "0", "--otlp-endpoint", collector.URL, "--pcap-out", pcap)
	metricsURL := regexp.MustCompile(`metrics at (http://\S+)`).FindStringSubmatch(child.stderr.String())
	if metricsURL == nil {
		t.Fatalf("trace did not say where its metrics are:\n%s", child.stderr.String())
	}
	links, progs := bpfObjectsOf(t, child.cmd.Process.Pid)
	for _, p := range []string{out, sock} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", p, err, fi.Mode())
		}
	}
	fastConn, slowConn := dialSocket(t, sock), dialSocket(t, sock)
	fastReader := &countingReader{r: fastConn}
	fast := readToEnd(fastReader)

	udpPinged := listenV4(t, pinged)
	defer udpPinged.Close()
	udpPinger := listenV4(t, pinger)
	defer udpPinger.Close()
	var answered, failed int
	ping := func() {
		if _, err := udpPinger.Ping(udpPinged.Self()); err != nil {
			failed++
		} else {
			answered++
		}
	}

	// Every 100 pings wait for the reader that keeps up to have what the files have
	// (nothing was traced before it connected: the ports are new), so that it never
	// falls 2 MiB behind, however busy the machine.
	pings := 0
	ping = func(ping func()) func() {
		return func() {
			ping()
			if pings++; pings%100 == 0 {
				stuck := time.Now().Add(time.Minute) // a hang guard, not a timing
				for fastReader.n.Load() < fileSize(out+".1")+fileSize(out) {
					if time.Now().After(stuck) { // Errorf: ping runs in a goroutine too
						t.Errorf("after %d pings the reader that keeps up has %d bytes, the files %d, for a minute: the stream stopped for it", pings, fastReader.n.Load(), fileSize(out+".1")+fileSize(out))
						return
					}
					time.Sleep(5 * time.Millisecond) // waiting for the reader, not timing it
				}
			}
		}
	}(ping)

	// Enough pings for their events (about 4 KiB each) to overflow what waits for the
	// slow reader: its socket buffer and its 2 MiB queue.
	for range 1200 {
		ping()
	}
	// logrotate: rename, then SIGHUP, with pings going on all along.
	stopPinging, pinging := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(pinging)
		for {
			select {
			case <-stopPinging:
				return
			default:
				ping()
			}
		}
	}()
	if err := os.Rename(out, out+".1"); err != nil {
		t.Fatal(err)
	}
	if err := child.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for fi, err := os.Stat(out); err != nil || fi.Size() == 0; fi, err = os.Stat(out) {
		time.Sleep(10 * time.Millisecond) // waiting for the reopened file's first events
	}
	close(stopPinging)
	<-pinging
	// The slow reader reads at last; more events come, and it is told what it lost.
	slow := readToEnd(slowConn)
	for range 50 {
		ping()
	}

	// Once no event has come for a while (the last verdicts are in), /metrics counts the
	// events the file holds.
	var counted float64
	var lines int
	for settled := time.Now().Add(time.Minute); ; time.Sleep(300 * time.Millisecond) {
		before := fileSize(out)
		counted = 0
		for name, v := range scrape(t, metricsURL[1]) {
			if strings.HasPrefix(name, "discotrace_events_total") {
				counted += v
			}
		}
		lines = bytes.Count(readFileOrEmpty(t, out+".1"), []byte("\n")) + bytes.Count(readFileOrEmpty(t, out), []byte("\n"))
		if fileSize(out) == before && counted == float64(lines) {
			break
		}
		if time.Now().After(settled) { // a hang guard, not a timing
			t.Fatalf("/metrics counts %v events, the files hold %d, and they never agreed", counted, lines)
		}
	}

	if err := child.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	termAt := time.Now()
	err := child.cmd.Wait()
	t.Logf("exited %v after SIGTERM (%v); geth pings: %d answered, %d failed", time.Since(termAt).Round(time.Millisecond), err, answered, failed)
	stderr := child.stderr.String()
	if err != nil {
		t.Fatalf("trace: %v; want exit status 0 on SIGTERM; stderr:\n%s", err, stderr)
	}
	// Its links go with the process: the hooks are detached. The kernel frees a
	// detached program after an RCU grace period, so that is waited for.
	for _, id := range links {
		if l, err := link.NewFromID(id); !errors.Is(err, os.ErrNotExist) {
			if err == nil {
				l.Close()
			}
			t.Errorf("BPF link %d of the trace process is still there after it exited (%v): a hook left attached", id, err)
		}
	}
	for _, id := range progs {
		for {
			p, err := ebpf.NewProgramFromID(id)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err == nil {
				p.Close()
			}
			if time.Since(termAt) > time.Minute { // a safety bound, far past any grace period
				t.Fatalf("BPF program %d of the trace process still loaded a minute after it exited (%v)", id, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("%d links gone at exit; %d programs freed within %v of SIGTERM", len(links), len(progs), time.Since(termAt).Round(time.Millisecond))
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after exit: %v; want it removed", err)
	}
	if child.stdout.Len() > 0 {
		t.Errorf("stdout written with --output and --listen, no \"--output -\":\n%s", child.stdout.String())
	}

	// The file, across the reopen: every event once, in order.
	rotated, current := readFileOrEmpty(t, out+".1"), readFileOrEmpty(t, out)
	all := append(append([]byte(nil), rotated...), current...)
	rotatedEvs, currentEvs := parseStream(t, rotated), parseStream(t, current)
	if len(rotatedEvs) == 0 || len(currentEvs) == 0 {
		t.Fatalf("%d events in the renamed file, %d in the reopened one: want both written", len(rotatedEvs), len(currentEvs))
	}
	allEvs := append(rotatedEvs, currentEvs...)
	for i, ev := range allEvs {
		if ev.Seq != uint64(i+1) {
			t.Fatalf("renamed then reopened file: event %d has seq %d, want %d: lost or repeated across the reopen", i, ev.Seq, i+1)
		}
	}
	last := uint64(len(allEvs))
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("reopened file: %v, mode %v; want 0600", err, fi.Mode())
	}

	// The reader that kept up has the file's lines from when it connected, byte for byte.
	fastData := <-fast
	if len(fastData) == 0 || !bytes.HasSuffix(all, fastData) || (len(fastData) < len(all) && all[len(all)-len(fastData)-1] != '\n') {
		t.Fatalf("the reader that kept up got %d bytes, not the file's last lines (%d bytes in the file)", len(fastData), len(all))
	}

	// The slow one: its events in order, each gap right after a lost event counting it.
	var next, received, told, pending uint64
	for _, ev := range parseStream(t, <-slow) {
		if ev.Type == ndjson.TypeLost && ev.Where == ndjson.WhereReader {
			pending += *ev.Count
			told += *ev.Count
			continue
		}
		if received > 0 && ev.Seq != next+pending {
			t.Fatalf("slow reader: seq %d after %d with %d told lost", ev.Seq, next-1, pending)
		}
		next, pending = ev.Seq+1, 0
		received++
	}
	if told == 0 {
		t.Fatalf("the slow reader was told of no loss (%d events received): the test did not overflow its queue", received)
	}
	if next-1+pending != last {
		t.Errorf("the slow reader's stream accounts for events up to seq %d, want %d", next-1+pending, last)
	}
	if !strings.Contains(stderr, "reader 2: "+strconv.FormatUint(told, 10)+" events dropped for it") {
		t.Errorf("stderr does not report the %d events dropped for the slow reader:\n%s", told, stderr)
	}
	t.Logf("%d events: %d before the reopen, %d after; fast reader %d bytes; slow reader got %d, told of %d lost",
		last, len(rotatedEvs), len(currentEvs), len(fastData), received, told)

	// The collector and the pcapng: every event, every datagram.
	if n := len(collector.Records()); n != len(allEvs) {
		t.Errorf("the OTLP collector got %d log records for %d events; stderr:\n%s", n, len(allEvs), stderr)
	}
	packets := requirePcapMatchesStream(t, pcap, all)
	t.Logf("/metrics counted %v events before SIGTERM; %d OTLP records; %d packets in the pcapng", counted, len(collector.Records()), packets)
}

// traceProcess is `discotrace trace` running in a child process (the test binary).
type traceProcess struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
}

// startTraceProcess runs `discotrace trace args...` in a child (the test binary re-run
// for the calling test) and returns once its hooks are attached.
func startTraceProcess(t *testing.T, args ...string) *traceProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$")
	cmd.Env = append(os.Environ(), "DISCOTRACE_TEST_MAIN="+t.Name(), "DISCOTRACE_TEST_ARGS="+strings.Join(append([]string{"trace"}, args...), "\n"))
	p := &traceProcess{cmd: cmd, stdout: new(lockedBuffer), stderr: new(lockedBuffer)}
	cmd.Stdout = p.stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	attached := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(errPipe)
		seen := false
		for sc.Scan() {
			p.stderr.Write(append(sc.Bytes(), '\n'))
			if !seen && strings.Contains(sc.Text(), "hooks attached in") {
				seen = true
				attached <- true
			}
		}
		if !seen {
			attached <- false
		}
	}()
	if !<-attached {
		cmd.Wait()
		t.Fatalf("trace ended before attaching: %v; stderr:\n%s", cmd.ProcessState, p.stderr.String())
	}
	return p
}

// bpfObjectsOf lists the BPF links and programs process pid holds, as its file
// descriptors show them.
func bpfObjectsOf(t *testing.T, pid int) (links []link.ID, progs []ebpf.ProgramID) {
	t.Helper()
	fdinfo := filepath.Join("/proc", strconv.Itoa(pid), "fdinfo")
	ents, err := os.ReadDir(fdinfo)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(fdinfo, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			key, v, ok := strings.Cut(line, ":")
			if !ok || (key != "link_id" && key != "prog_id") || seen[line] {
				continue
			}
			seen[line] = true
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			switch {
			case err != nil || id == 0:
			case key == "link_id":
				links = append(links, link.ID(id))
			default:
				progs = append(progs, ebpf.ProgramID(id))
			}
		}
	}
	if len(links) == 0 || len(progs) == 0 {
		t.Fatalf("%d BPF links and %d programs among the file descriptors of trace (pid %d): nothing to check its detach by", len(links), len(progs), pid)
	}
	return links, progs
}

func dialSocket(t *testing.T, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fileSize is the size of the file at path, 0 when there is none.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// readToEnd reads c until the other side closes it, and yields what it read.
func readToEnd(c io.Reader) <-chan []byte {
	done := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		done <- b
	}()
	return done
}

func readFileOrEmpty(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return b
}

// parseStream parses NDJSON, failing on any line that is not an event.
func parseStream(t *testing.T, data []byte) []ndjson.Event {
	t.Helper()
	var evs []ndjson.Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev ndjson.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// lockedBuffer is a buffer a child process's output is copied into while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// An output that cannot be opened stops trace before it attaches anything, with one
// line naming it: exit status 2 for a bad value, 1 for what the system refuses.
func TestTraceSinkOpenFailures(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--output", dir}, 1, "--output " + dir + ": open " + dir + ": is a directory"},
		{[]string{"--output", filepath.Join(dir, "missing", "x.ndjson")}, 1, "no such file or directory"},
		{[]string{"--listen", "unix:" + live}, 1, "--listen unix:" + live + ": " + live + ": address in use"},
		{[]string{"--listen", "tcp:127.0.0.1:9000"}, 2, `--listen "tcp:127.0.0.1:9000": want unix:PATH`},
		{[]string{"--output", filepath.Join(dir, "x"), "--output-max-size", "lots"}, 2, `--output-max-size "lots"`},
		{[]string{"--listen", "unix:" + filepath.Join(dir, "s"), "--listen-buffer", "0"}, 2, `--listen-buffer "0"`},
		{[]string{"--output", "a", "--output", "a"}, 2, "--output a is given twice"},
		{[]string{"--output-max-size", "1MiB"}, 2, "--output-max-size rotates an --output file"},
		{[]string{"--output-max-age", "1h"}, 2, "--output-max-age rotates an --output file"},
		{[]string{"--output", filepath.Join(dir, "x"), "--output-max-age", "-1h"}, 2, "--output-max-age -1h0m0s: " + wantMaxAge},
	} {
		f := traceWith(time.Second)
		fl := pflag.NewFlagSet("trace", pflag.ContinueOnError)
		f.sinkFlags.register(fl)
		if err := fl.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		err := runTrace(t.Context(), io.Discard, io.Discard, f)
		var ee *exitError
		code := 1
		if errors.As(err, &ee) {
			code = ee.code
		}
		if err == nil || code != c.code || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("trace %s: %v (exit status %d); want one line with %q, exit status %d", strings.Join(c.args, " "), err, code, c.want, c.code)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "s")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a socket was left after a failed start: %v", err)
	}
}
