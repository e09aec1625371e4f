package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"

	"github.com/discotrace/discotrace/ndjson"
	"github.com/discotrace/discotrace/tracer"
)

// traceWith is `discotrace trace` with its flags' defaults (decoded, auto backend) on
// ports, for d.
func traceWith(d time.Duration, ports ...int) *traceFlags {
	f := &traceFlags{duration: d, snapLen: tracer.MaxSnapLen, ringSize: tracer.DefaultRingSize,
		hookFlags: hookFlags{backend: "auto"}, decoderFlags: defaultDecoderFlags()}
	for _, p := range ports {
		f.ports = append(f.ports, uint(p))
	}
	return f
}

// `discotrace trace --raw` on a watched port: a datagram sent to it where nothing listens
// shows as one send, one icmp out, one icmp in and one drop line, valid NDJSON.
func TestTraceRawPrintsKernelEvents(t *testing.T) {
	port := portWithNoListener(t)
	f := traceWith(2*time.Second, port)
	f.raw, f.payload = true, true
	stdout, stderr, done := startTrace(t, f)
	peer, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
	}
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var ev ndjson.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		want := peer.LocalAddr().String()
		if ev.Type == "send" && (ev.Src != want || ev.Payload != "70696e67" || ev.PID == nil || *ev.PID != uint32(os.Getpid())) {
			t.Errorf("send line %q: want src %s, payload 70696e67, pid %d", line, want, os.Getpid())
		}
		if ev.Type == "drop" && ev.Reason != "NO_SOCKET" {
			t.Errorf("drop line %q: want reason NO_SOCKET", line)
		}
		types = append(types, ev.Type+"/"+ev.Dir)
	}
	sort.Strings(types)
	if got := strings.Join(types, " "); got != "drop/ icmp/in icmp/out send/" {
		t.Errorf("event lines %q, want send, icmp out, drop, icmp in:\n%s", got, stdout.String())
	}
	if !strings.Contains(stderr.String(), "hooks attached in") {
		t.Errorf("stderr does not show the attach time:\n%s", stderr.String())
	}
}

// `discotrace trace` (decoded) on a node whose peer is gone: a discv4 PING sent to a watched
// port where nothing listens shows as a decoded PING send, and the exchange it starts fails
// with cause icmp_unreachable, the ICMP error as evidence: what the node itself only sees as
// a timeout.
func TestTraceDecodesAPingToAGonePeer(t *testing.T) {
	port := portWithNoListener(t) // the peer is gone
	f := traceWith(2*time.Second, port)
	stdout, stderr, done := startTrace(t, f)
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	node, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	from := node.LocalAddr().(*net.UDPAddr)
	ping := &v4wire.Ping{
		Version:    4,
		From:       v4wire.Endpoint{IP: from.IP, UDP: uint16(from.Port)},
		To:         v4wire.Endpoint{IP: net.IPv4(127, 0, 0, 1), UDP: uint16(port)},
		Expiration: uint64(time.Now().Add(20 * time.Second).Unix()),
	}
	packet, _, err := v4wire.Encode(key, ping)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node.Write(packet); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
	}
	var sends, exchanges int
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var ev ndjson.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		switch ev.Type {
		case "send":
			sends++
			if ev.Disc == nil || ev.Disc.Proto != "discv4" || ev.Disc.Kind != "PING" {
				t.Errorf("send line %q: want a decoded discv4 PING", line)
			}
		case "exchange":
			exchanges++
			if ev.Req != "PING/v4" || ev.Outcome != "failed" || ev.Cause != "icmp_unreachable" || len(ev.Evidence) == 0 {
				t.Errorf("exchange line %q: want PING/v4 failed with cause icmp_unreachable and evidence", line)
			}
		}
	}
	if sends != 1 || exchanges != 1 {
		t.Errorf("got %d send and %d exchange lines, want 1 and 1:\n%s", sends, exchanges, stdout.String())
	}
	// The closing summary on stderr adds up what stdout shows.
	lines := strings.Count(stdout.String(), "\n")
	for _, want := range []string{fmt.Sprintf("discotrace: %d events from ", lines), "; exchanges: 1 failed\n",
		"discotrace: failures by cause: 1 icmp_unreachable\n", "discotrace: nothing lost"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("closing summary: no %q in stderr:\n%s", want, stderr.String())
		}
	}
}

// portWithNoListener returns a loopback UDP port that was just in use and now has no
// socket, skipping the test when it cannot attach BPF programs.
func portWithNoListener(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load and attach BPF programs: run `sudo go test ./cmd/discotrace/`")
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startTrace runs the trace command in the background and returns once its hooks are
// attached (its --duration counts from there); done yields its result.
func startTrace(t *testing.T, f *traceFlags) (stdout *bytes.Buffer, stderr *statusWriter, done chan error) {
	t.Helper()
	stdout = new(bytes.Buffer)
	stderr = &statusWriter{attached: make(chan struct{})}
	done = make(chan error, 1)
	go func() { done <- runTrace(context.Background(), schemaChecked(t, stdout), stderr, f) }()
	select {
	case <-stderr.attached:
	case err := <-done:
		t.Fatalf("trace ended before attaching: %v (stderr: %s)", err, stderr.String())
	}
	return stdout, stderr, done
}

// statusWriter collects trace's stderr and signals when the hooks are attached.
type statusWriter struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	attached chan struct{} // closed once, when the attach line is written
	signaled bool
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.signaled && strings.Contains(w.buf.String(), "hooks attached in") {
		close(w.attached)
		w.signaled = true
	}
	return len(p), nil
}

func (w *statusWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Without the capabilities to trace, `discotrace trace` says in one line what is missing
// and exits with status 2. The test binary re-runs itself as nobody, with no capabilities.
func TestTraceWithoutPrivilegesExits2(t *testing.T) {
	runUnprivileged(t, "TestTraceWithoutPrivilegesExits2", "trace", "--raw", "--duration", "1s")
}

// runUnprivileged re-runs the test binary's test (the caller) as nobody, with no
// capabilities, where it runs discotrace with args; it checks that discotrace exits with
// status 2 and one line on stderr naming what is missing, and returns its stdout. In the
// re-run it does not return: main exits.
func runUnprivileged(t *testing.T, test string, args ...string) string {
	t.Helper()
	if os.Getenv("DISCOTRACE_TEST_UNPRIVILEGED") == test {
		os.Args = append([]string{"discotrace"}, args...)
		main() // exits
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop to an unprivileged user: run `sudo go test ./cmd/discotrace/`")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), "DISCOTRACE_TEST_UNPRIVILEGED="+test)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("unprivileged discotrace %s: %v, want exit status 2; stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "missing CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN") ||
		!strings.Contains(lines[0], "run as root") {
		t.Errorf("stderr %q: want one line naming the missing capabilities and what to do", stderr.String())
	}
	return stdout.String()
}

// A burst into a one-page ring buffer: the tracer loses events, and each lost line says
// the span the loss happened in (since, before its time), for the decoder to weigh
// against the requests that waited meanwhile.
func TestTraceLostEventsCarryTheirSpan(t *testing.T) {
	port := portWithNoListener(t)
	node, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	f := traceWith(2*time.Second, port)
	f.ringSize = os.Getpagesize()
	stdout, stderr, done := startTrace(t, f)
	peer, err := net.DialUDP("udp4", nil, node.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	payload := make([]byte, 1000) // three records fill the ring
	for range 300 {
		if _, err := peer.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
	}
	var lost uint64
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var ev ndjson.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if ev.Type != ndjson.TypeLost {
			continue
		}
		lost += *ev.Count
		since, err1 := time.Parse(time.RFC3339Nano, ev.Since)
		at, err2 := time.Parse(time.RFC3339Nano, ev.Time)
		if err1 != nil || err2 != nil || !since.Before(at) {
			t.Errorf("lost line %q: want since, before time", line)
		}
	}
	if lost == 0 {
		t.Fatalf("no event lost with a %d-byte ring and a burst of 300 datagrams of 1000 bytes: the test did not overflow it", os.Getpagesize())
	}
}
