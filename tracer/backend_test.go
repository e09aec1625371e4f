package tracer

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/discotrace/discotrace/internal/netlab"
)

// functionClasses are the event classes the fentry and kprobe backends serve.
var functionClasses = []string{"send", "read", "icmp-in"}

// backendSupportHere is what the running kernel allows of fentry and kprobes.
func backendSupportHere(t *testing.T) backendSupport {
	t.Helper()
	kernel, err := loadKernelBTF()
	if err != nil {
		t.Fatal(err)
	}
	symbols, err := loadKernelSymbols()
	if err != nil {
		t.Fatal(err)
	}
	return probeBackends(BackendAuto, kernel, symbols)
}

// Forcing a backend either gives that backend for every class it serves, with its own
// hooks, or fails to open saying why (on this machine's kernel: lockdown refuses fentry,
// kprobes are not built in; under make vmtest both work).
func TestForcedBackend(t *testing.T) {
	requireRoot(t)
	support := backendSupportHere(t)
	wantHook := map[string]map[string]string{
		BackendFentry:     {"send": "fexit/udp_sendmsg", "read": "fexit/udpv6_recvmsg", "icmp-in": "fentry/icmpv6_rcv"},
		BackendKprobe:     {"send": "kretprobe/udpv6_sendmsg", "read": "kprobe/udp_recvmsg", "icmp-in": "kretprobe/icmp_rcv"},
		BackendTracepoint: {"send": "tp_btf/sock_send_length", "read": "tp_btf/sock_recv_length", "icmp-in": "tp_btf/consume_skb"},
	}
	for _, b := range []string{BackendFentry, BackendKprobe, BackendTracepoint} {
		t.Run(b, func(t *testing.T) {
			tr, err := Open(Config{Ports: []uint16{freePort(t, "udp4")}, Backend: b})
			if why := support.unusable[b]; b != BackendTracepoint && why != nil {
				want := fmt.Sprintf("backend %s cannot capture send events on this kernel: %v", b, why)
				if err == nil {
					tr.Close()
					t.Fatalf("Open with backend %s succeeded, though the kernel cannot run it (%v)", b, why)
				}
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("Open with backend %s: %v\nwant it to say %q", b, err, want)
				}
				t.Logf("as expected on this kernel: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Open with backend %s: %v", b, err)
			}
			defer tr.Close()
			for _, h := range tr.Plan() {
				t.Logf("%s", h)
				if !slices.Contains(functionClasses, h.Class) {
					if h.Backend != BackendTracepoint {
						t.Errorf("%s: backend %s, want tracepoint (the only one it has)", h.Class, h.Backend)
					}
					continue
				}
				if h.Backend == BackendNone && b == BackendTracepoint {
					continue // an older kernel without the tracepoint: the plan says so
				}
				if h.Backend != b {
					t.Errorf("%s: backend %s, want %s", h.Class, h.Backend, b)
				}
				if b == BackendTracepoint && len(h.Missing) > 0 && strings.Contains(h.Missing[0], strings.TrimPrefix(wantHook[b][h.Class], "tp_btf/")) {
					continue // this kernel lacks that tracepoint: the plan says so
				}
				if hooks := strings.Join(h.Hooks, ", "); !strings.Contains(hooks, wantHook[b][h.Class]) {
					t.Errorf("%s hooks %q lack %s", h.Class, hooks, wantHook[b][h.Class])
				}
			}
		})
	}
}

// With backend auto each class takes the best backend this kernel runs: fentry, then
// kprobe, then tracepoint.
func TestAutoBackendPrefersFentry(t *testing.T) {
	requireRoot(t)
	support := backendSupportHere(t)
	want := BackendTracepoint
	for _, b := range []string{BackendKprobe, BackendFentry} {
		if support.unusable[b] == nil {
			want = b
		}
	}
	tr, err := Open(Config{Ports: []uint16{freePort(t, "udp4")}, Backend: BackendAuto})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for _, h := range tr.Plan() {
		if slices.Contains(functionClasses, h.Class) && h.Backend != want && h.Backend != BackendNone {
			t.Errorf("%s: backend %s, want %s (fentry: %v; kprobe: %v)", h.Class, h.Backend, want,
				support.unusable[BackendFentry], support.unusable[BackendKprobe])
		}
	}
}

// The event stream is the same whichever backend produced it: two tracers, one with the
// tracepoint backend and one with fentry or kprobe, watch the same traffic (an exchange,
// and a connected send to a port where nothing listens, whose second send fails) and must
// report the same events, field for field. Runs where the kernel has the other backend
// (make vmtest); what the tracepoint backend cannot capture on an older kernel is left out.
func TestBackendsGiveTheSameEvents(t *testing.T) {
	requireRoot(t)
	support := backendSupportHere(t)
	ran := false
	for _, b := range functionBackends {
		if support.unusable[b] != nil {
			continue
		}
		ran = true
		t.Run(b, func(t *testing.T) {
			for _, tc := range unreachableCases {
				t.Run(tc.name, func(t *testing.T) { compareBackends(t, b, tc.network, tc.host) })
			}
		})
	}
	if !ran {
		t.Skipf("this kernel runs neither fentry (%v) nor kprobes (%v)", support.unusable[BackendFentry], support.unusable[BackendKprobe])
	}
}

func compareBackends(t *testing.T, backend, network string, host netip.Addr) {
	port, gone := freePort(t, network), freePort(t, network)
	ref := openCollector(t, Config{Ports: []uint16{port, gone}, Backend: BackendTracepoint})
	other := openCollector(t, Config{Ports: []uint16{port, gone}, Backend: backend})

	node := listen(t, network, netip.AddrPortFrom(host, port))
	peer := listen(t, network, netip.AddrPortFrom(host, 0))
	buf := make([]byte, 2048)
	for i := range 3 {
		if _, err := peer.WriteToUDPAddrPort([]byte(fmt.Sprintf("ping %d", i)), localAddrPort(node)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := node.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := node.WriteToUDPAddrPort([]byte("pong"), localAddrPort(peer)); err != nil {
		t.Fatal(err)
	}
	// A connected socket: the first send draws a port unreachable, the second fails.
	conn, err := net.DialUDP(network, nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(host, gone)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("anyone?"))
	time.Sleep(50 * time.Millisecond)
	if _, err := conn.Write([]byte("anyone?")); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("second send to a port nobody listens on: %v, want ECONNREFUSED", err)
	}

	match := onPorts(port, gone)
	refEvents := ref.settle(300*time.Millisecond, 300*time.Millisecond, 5*time.Second, match)
	otherEvents := other.settle(300*time.Millisecond, 300*time.Millisecond, 5*time.Second, match)
	keep := capturedByTracepoints(ref.tr)
	got, want := eventKeys(otherEvents, keep), eventKeys(refEvents, keep)
	if len(want) < 10 {
		t.Fatalf("the tracepoint backend saw only %d events:\n%s", len(want), dumpEvents(refEvents))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("backend %s and tracepoint differ:\n%s\ntracepoint:\n%s\n%s:\n%s", backend,
			diffKeys(want, got), dumpEvents(refEvents), backend, dumpEvents(otherEvents))
	}
	t.Logf("%d events, the same from both backends", len(got))
}

func onPorts(ports ...uint16) func(Event) bool {
	return func(ev Event) bool {
		for _, p := range ports {
			if ev.Kind != KindLost && onPort(p)(ev) {
				return true
			}
		}
		return false
	}
}

// capturedByTracepoints says which events the tracepoint backend captures on this kernel:
// all but reads and failed sends where it lacks their tracepoints (Linux 6.1).
func capturedByTracepoints(ref *Tracer) func(Event) bool {
	reads, failedSends := captures(ref, "read"), true
	for _, h := range ref.Plan() {
		for _, m := range h.Missing {
			failedSends = failedSends && !strings.HasPrefix(m, "dt_send_result ")
		}
	}
	return func(ev Event) bool {
		return (reads || ev.Kind != KindRead) && (failedSends || !ev.HasRet)
	}
}

// eventKeys renders each event without what legitimately differs between two tracers
// (the time and the reading of queue time), sorted.
func eventKeys(evs []Event, keep func(Event) bool) []string {
	var keys []string
	for _, ev := range evs {
		if !keep(ev) {
			continue
		}
		keys = append(keys, fmt.Sprintf("%s %v->%v len=%d proc=%v/%d/%d/%q netns=%d ifindex=%d icmp=%d/%d/%d quoted=%v->%v notified=%v/%v reason=%s ret=%v/%d queue=%v payload=%q",
			ev.Kind, ev.Src, ev.Dst, ev.Len, ev.HasProc, ev.PID, ev.TID, ev.Comm, ev.NetNS, ev.Ifindex,
			ev.ICMPType, ev.ICMPCode, ev.ICMPDir, ev.QuotedSrc, ev.QuotedDst, ev.HasNotified, ev.Notified,
			ev.Reason, ev.HasRet, ev.Ret, ev.HasQueueTime, ev.Payload))
	}
	slices.Sort(keys)
	return keys
}

func diffKeys(want, got []string) string {
	var b strings.Builder
	for _, k := range want {
		if !slices.Contains(got, k) {
			fmt.Fprintf(&b, "  only tracepoint: %s\n", k)
		}
	}
	for _, k := range got {
		if !slices.Contains(want, k) {
			fmt.Fprintf(&b, "  only the other:  %s\n", k)
		}
	}
	if b.Len() == 0 {
		b.WriteString("  the same events, in different numbers\n")
	}
	return b.String()
}

// A send to a watched port that fails from an unconnected socket on an unwatched one is
// reported with its destination and the datagram it would have sent: fentry and kprobe
// read the msghdr, the tracepoint backend the system call's registers (sock_send_length
// knows only the socket), so the decoder knows which request never left.
func TestFailedSendNamesItsDestination(t *testing.T) {
	netlab.RequireRoot(t)
	port := freePort(t, "udp4")
	c := openCollector(t, Config{Ports: []uint16{port}})
	// Kernels before 5.15 cannot read the system call's registers: the failed send
	// carries its destination (from the msghdr) but not the datagram, as the plan says.
	datagramKnown := true
	for _, h := range c.tr.Plan() {
		if h.Class == "send" && h.Backend == BackendTracepoint && slices.ContainsFunc(h.Missing, func(m string) bool { return strings.HasPrefix(m, "dt_send_result ") }) {
			t.Skip("no failed sends on this kernel with the tracepoint backend (no sock_send_length), as the README's kernel table says")
		}
		if h.Class == "send" && slices.ContainsFunc(h.Missing, func(m string) bool { return strings.HasPrefix(m, "the datagram of a failed send") }) {
			datagramKnown = false
		}
	}
	ns := netlab.NewNetns(t) // only lo: no route to 192.0.2.1
	dst := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port)
	var sendErr error
	if err := ns.Do(func() error {
		conn, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, sendErr = conn.WriteToUDPAddrPort([]byte("lost"), dst)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(sendErr, syscall.ENETUNREACH) {
		t.Fatalf("send to %v in a namespace with no route: %v, want ENETUNREACH", dst, sendErr)
	}
	evs := c.settle(200*time.Millisecond, 200*time.Millisecond, 5*time.Second, onPort(port))
	wantLen, wantPayload := 4, "lost"
	if !datagramKnown {
		wantLen, wantPayload = 0, ""
	}
	if len(evs) != 1 || evs[0].Kind != KindSend || !evs[0].HasRet || evs[0].Ret != -int64(syscall.ENETUNREACH) ||
		evs[0].Dst != dst || evs[0].NetNS != ns.Inode || evs[0].Len != wantLen || string(evs[0].Payload) != wantPayload {
		t.Fatalf("got:\n%swant one failed send of %q (%d bytes) to %v with -ENETUNREACH in netns %d", dumpEvents(evs), wantPayload, wantLen, dst, ns.Inode)
	}
}
