package tracer

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests load and attach the real programs on the running kernel: they need root.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load and attach BPF programs: run `sudo go test ./tracer/`")
	}
}

// collector reads a tracer's events in the background.
type collector struct {
	tr      *Tracer
	mu      sync.Mutex
	events  []Event
	err     error
	done    chan struct{}
	started bool
}

func openCollector(t *testing.T, cfg Config) *collector {
	t.Helper()
	c := openIdle(t, cfg)
	c.start()
	return c
}

// openIdle opens a tracer whose events nobody reads until start.
func openIdle(t *testing.T, cfg Config) *collector {
	t.Helper()
	if cfg.Backend == "" {
		cfg.Backend = testBackend()
	}
	tr, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	c := &collector{tr: tr, done: make(chan struct{})}
	t.Cleanup(func() { c.close(t) })
	return c
}

func (c *collector) start() {
	c.started = true
	tr := c.tr
	go func() {
		defer close(c.done)
		for {
			ev, err := tr.Read()
			c.mu.Lock()
			if err != nil {
				c.err = err
				c.mu.Unlock()
				return
			}
			c.events = append(c.events, ev)
			c.mu.Unlock()
		}
	}()
}

// close closes the tracer and checks that Read ended with ErrClosed.
func (c *collector) close(t *testing.T) {
	t.Helper()
	if err := c.tr.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if !c.started {
		return
	}
	<-c.done
	if c.err != ErrClosed {
		t.Errorf("Read after Close returned %v, want ErrClosed", c.err)
	}
}

func (c *collector) snapshot() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

// settle waits until matching events stop arriving (none for quiet, after at least
// minWait), or timeout, and returns them.
func (c *collector) settle(minWait, quiet, timeout time.Duration, match func(Event) bool) []Event {
	start := time.Now()
	last, lastChange := -1, start
	for {
		got := filterEvents(c.snapshot(), match)
		now := time.Now()
		if len(got) != last {
			last, lastChange = len(got), now
		}
		if (now.Sub(start) >= minWait && now.Sub(lastChange) >= quiet) || now.Sub(start) >= timeout {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitUntil polls cond until it holds, failing the test after limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", limit, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func filterEvents(evs []Event, match func(Event) bool) []Event {
	var out []Event
	for _, ev := range evs {
		if match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

func ofKind(evs []Event, k Kind) []Event {
	return filterEvents(evs, func(ev Event) bool { return ev.Kind == k })
}

// onPort matches events whose datagram, or quoted datagram, has port p at either end.
func onPort(p uint16) func(Event) bool {
	return func(ev Event) bool {
		return ev.Kind == KindLost || ev.Src.Port() == p || ev.Dst.Port() == p ||
			ev.QuotedSrc.Port() == p || ev.QuotedDst.Port() == p
	}
}

func dumpEvents(evs []Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "  %s src=%v dst=%v len=%d pid=%d comm=%q cookie=%d icmp=%d/%d dir=%d quoted=%v->%v notified=%v/%v reason=%s loc=%s ret=%v/%d queue=%v/%v lost=%d\n",
			ev.Kind, ev.Src, ev.Dst, ev.Len, ev.PID, ev.Comm, ev.Cookie, ev.ICMPType, ev.ICMPCode, ev.ICMPDir,
			ev.QuotedSrc, ev.QuotedDst, ev.HasNotified, ev.Notified, ev.Reason, ev.Location, ev.HasRet, ev.Ret,
			ev.HasQueueTime, ev.QueueTime, ev.Lost)
	}
	return b.String()
}

// freePort returns a UDP port nothing is bound to on network ("udp4" or "udp6") right now:
// a random high port from the kernel's ephemeral range, so tests do not collide with
// traffic on the host.
func freePort(t *testing.T, network string) uint16 {
	t.Helper()
	c, err := net.ListenUDP(network, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

func listen(t *testing.T, network string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatalf("listen %s %v: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func localAddrPort(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func selfComm(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// isOwnThread tells whether tid is a thread of this process.
func isOwnThread(tid uint32) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid))
	return err == nil
}

// requireClass skips the test when the running kernel cannot capture a class's events, or
// lacks a program the test needs of that class (lacking: program names, as the plan's
// Missing entries start with them). The plan reports such a kernel; the test has nothing
// to verify there.
func requireClass(t *testing.T, tr *Tracer, class string, lacking ...string) {
	t.Helper()
	for _, h := range tr.Plan() {
		if h.Class != class {
			continue
		}
		if h.Backend == BackendNone {
			t.Skipf("this kernel cannot capture %s events: %s", class, strings.Join(h.Missing, "; "))
		}
		for _, m := range h.Missing {
			for _, p := range lacking {
				if strings.HasPrefix(m, p+" ") {
					t.Skipf("this kernel cannot run %s: %s", p, m)
				}
			}
		}
		return
	}
	t.Fatalf("the plan has no class %s", class)
}

// captures says whether the plan captures a class's events at all.
func captures(tr *Tracer, class string) bool {
	for _, h := range tr.Plan() {
		if h.Class == class {
			return h.Backend != BackendNone
		}
	}
	return false
}

// testBackend is the backend the tests force: DISCOTRACE_TEST_BACKEND (make vmtest sets it
// per VMTEST_BACKENDS value), else auto.
func testBackend() string {
	if b := os.Getenv("DISCOTRACE_TEST_BACKEND"); b != "" {
		return b
	}
	return BackendAuto
}
