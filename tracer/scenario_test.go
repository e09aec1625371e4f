package tracer_test

// Scenario tests: real kernel, root, real packets in network namespaces built by netlab.
// Each checks the tracer's events against what the kernel itself counted (/proc/net/snmp
// of the namespace involved), with exact numbers. netlab's own tests prove, without the
// tracer, that each scenario makes the kernel do what is expected here.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/discotrace/discotrace/internal/netlab"
	"github.com/discotrace/discotrace/tracer"
)

// capture is a tracer opened in the root namespace for one scenario, its events collected
// in the background.
type capture struct {
	tr      *tracer.Tracer
	mu      sync.Mutex
	events  []tracer.Event
	readErr error
	done    chan struct{}
}

// readsTraced says whether the plan captures read events (the tracepoint backend needs
// sock_recv_length, Linux 6.3+; fentry and kprobe do not): without
// it there are no read events to check, and the tracer's plan says so to the operator.
func (c *capture) readsTraced(t *testing.T) bool {
	t.Helper()
	for _, h := range c.tr.Plan() {
		if h.Class == "read" && h.Backend == tracer.BackendNone {
			t.Logf("no read events to check on this kernel: %s", strings.Join(h.Missing, "; "))
			return false
		}
	}
	return true
}

func startCapture(t *testing.T, ports ...uint16) *capture {
	t.Helper()
	backend := os.Getenv("DISCOTRACE_TEST_BACKEND") // make vmtest VMTEST_BACKENDS=...
	tr, err := tracer.Open(tracer.Config{Ports: ports, Backend: backend})
	if err != nil {
		t.Fatalf("open tracer on ports %v: %v", ports, err)
	}
	c := &capture{tr: tr, done: make(chan struct{})}
	go c.collect()
	t.Cleanup(c.stop)
	return c
}

func (c *capture) collect() {
	defer close(c.done)
	for {
		ev, err := c.tr.Read()
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.events = append(c.events, ev)
		c.mu.Unlock()
	}
}

func (c *capture) stop() {
	c.tr.Close()
	<-c.done
}

// snapshot returns the events so far; it fails the test if any were lost, since the
// scenarios' counts are only exact when nothing was.
func (c *capture) snapshot(t *testing.T) []tracer.Event {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.events {
		if ev.Kind == tracer.KindLost {
			t.Fatalf("the tracer lost %d events: counts cannot be exact (events so far:\n%s)", ev.Lost, dump(c.events))
		}
	}
	return append([]tracer.Event(nil), c.events...)
}

// waitFor returns the events that match once there are want of them, then waits a little
// longer to catch any extra ones (the count must be exact, not at least). On timeout it
// returns what matched.
func (c *capture) waitFor(t *testing.T, want int, timeout time.Duration, match func(tracer.Event) bool) []tracer.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := filter(c.snapshot(t), match)
		if len(got) >= want {
			time.Sleep(200 * time.Millisecond)
			return filter(c.snapshot(t), match)
		}
		if time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func filter(events []tracer.Event, match func(tracer.Event) bool) []tracer.Event {
	var out []tracer.Event
	for _, ev := range events {
		if match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// in matches events of one kind in one network namespace.
func in(kind tracer.Kind, netns uint32, and ...func(tracer.Event) bool) func(tracer.Event) bool {
	return func(ev tracer.Event) bool {
		if ev.Kind != kind || ev.NetNS != netns {
			return false
		}
		for _, f := range and {
			if !f(ev) {
				return false
			}
		}
		return true
	}
}

func ofKind(kind tracer.Kind) func(tracer.Event) bool {
	return func(ev tracer.Event) bool { return ev.Kind == kind }
}

func flow(src, dst netip.AddrPort) func(tracer.Event) bool {
	return func(ev tracer.Event) bool { return ev.Src == src && ev.Dst == dst }
}

func reason(names ...string) func(tracer.Event) bool {
	return func(ev tracer.Event) bool {
		for _, n := range names {
			if ev.Reason == n {
				return true
			}
		}
		return false
	}
}

// kernelHasDropReason tells whether the running kernel's BTF enum skb_drop_reason names
// the reason: older kernels free the same packets with NOT_SPECIFIED, and kernels before
// Linux 5.17 have no enum at all (kernelNamesDropReasons).
func kernelHasDropReason(t *testing.T, name string) bool {
	t.Helper()
	enum := dropReasonEnum(t)
	if enum == nil {
		return false
	}
	for _, v := range enum.Values {
		if v.Name == "SKB_DROP_REASON_"+name {
			return true
		}
	}
	return false
}

// kernelNamesDropReasons tells whether kfree_skb names its reasons on this kernel (Linux
// 5.17 and later): before, drops carry only their location, and a full receive buffer's
// an inferred reason.
func kernelNamesDropReasons(t *testing.T) bool {
	t.Helper()
	return dropReasonEnum(t) != nil
}

func dropReasonEnum(t *testing.T) *btf.Enum {
	t.Helper()
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatalf("load the kernel's BTF: %v", err)
	}
	var enum *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &enum); errors.Is(err, btf.ErrNotFound) {
		return nil
	} else if err != nil {
		t.Fatalf("find enum skb_drop_reason in the kernel's BTF: %v", err)
	}
	return enum
}

// kernelAtLeast tells whether the running kernel's release is major.minor or newer.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatalf("uname: %v", err)
	}
	var maj, min int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &maj, &min); err != nil {
		t.Fatalf("kernel release %q: %v", unix.ByteSliceToString(u.Release[:]), err)
	}
	return maj > major || maj == major && min >= minor
}

// dump formats events for a failure message, one a line, at most 80 of them.
func dump(events []tracer.Event) string {
	const most = 80
	var sb strings.Builder
	if len(events) == 0 {
		return "  (no events)\n"
	}
	for i, ev := range events {
		if i == most {
			fmt.Fprintf(&sb, "  ... and %d more\n", len(events)-most)
			break
		}
		fmt.Fprintf(&sb, "  %s netns=%d if=%d %v -> %v len=%d", ev.Kind, ev.NetNS, ev.Ifindex, ev.Src, ev.Dst, ev.Len)
		if ev.HasProc {
			fmt.Fprintf(&sb, " pid=%d comm=%q", ev.PID, ev.Comm)
		}
		if ev.Cookie != 0 {
			fmt.Fprintf(&sb, " cookie=%d", ev.Cookie)
		}
		switch ev.Kind {
		case tracer.KindDrop:
			fmt.Fprintf(&sb, " reason=%s at=%s", ev.Reason, ev.Location)
			if ev.ReasonInferred {
				sb.WriteString(" (inferred)")
			}
		case tracer.KindICMP:
			fmt.Fprintf(&sb, " dir=%d type=%d code=%d quoted=%v->%v", ev.ICMPDir, ev.ICMPType, ev.ICMPCode, ev.QuotedSrc, ev.QuotedDst)
			if ev.HasNotified {
				fmt.Fprintf(&sb, " notified=%v", ev.Notified)
			}
		case tracer.KindSend:
			if ev.HasRet {
				fmt.Fprintf(&sb, " ret=%d", ev.Ret)
			}
		case tracer.KindRead:
			if ev.HasQueueTime {
				fmt.Fprintf(&sb, " queued=%v", ev.QueueTime)
			}
		case tracer.KindLost:
			fmt.Fprintf(&sb, " lost=%d", ev.Lost)
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}

func mustDo(t *testing.T, ns *netlab.Netns, fn func() error) {
	t.Helper()
	if err := ns.Do(fn); err != nil {
		t.Fatal(err)
	}
}

func mustCounters(t *testing.T, ns *netlab.Netns) netlab.Counters {
	t.Helper()
	c, err := ns.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rootNetnsInode is the namespace the test (and its tracer) runs in.
func rootNetnsInode(t *testing.T) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// A full receive buffer: a discovery node that stops reading. Every datagram the kernel
// throws away for lack of room is a SOCKET_RCVBUFF drop, as many as the kernel's own
// Udp RcvbufErrors counter says.
func TestScenarioAFullReceiveBuffer(t *testing.T) {
	netlab.RequireRoot(t)
	ns := netlab.NewNetns(t)
	port := netlab.RandomHighPort()
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	c := startCapture(t, port)

	const burst = 200
	before := mustCounters(t, ns)
	var full *netlab.FullReceiveBuffer
	mustDo(t, ns, func() (err error) {
		full, err = netlab.OverflowReceiveBuffer(dst, burst, 100)
		return err
	})
	defer full.Close()
	delta, err := ns.WaitCounters(before, time.Second, func(d netlab.Counters) bool { return d[netlab.UdpRcvbufErrors] > 0 })
	if err != nil {
		t.Fatal(err)
	}
	dropped := int(delta[netlab.UdpRcvbufErrors])
	if dropped == 0 {
		t.Fatalf("the kernel dropped nothing for a full buffer; counters moved:\n%s", delta)
	}

	drops := c.waitFor(t, dropped, 3*time.Second, in(tracer.KindDrop, ns.Inode, flow(full.From, dst), reason("SOCKET_RCVBUFF")))
	if len(drops) != dropped {
		t.Fatalf("%d SOCKET_RCVBUFF drops for %v -> %v, the kernel counted %d RcvbufErrors (netns %d); all drop events:\n%s",
			len(drops), full.From, dst, dropped, ns.Inode, dump(filter(c.snapshot(t), ofKind(tracer.KindDrop))))
	}
	// Where the kernel names no reasons (before 5.17) the tracer infers this one, from
	// udp_fail_queue_rcv_skb's -ENOMEM, and says so.
	inferred := !kernelNamesDropReasons(t)
	for _, ev := range drops {
		if ev.Len != 100 {
			t.Errorf("drop of a 100-byte datagram reports len %d:\n%s", ev.Len, dump([]tracer.Event{ev}))
		}
		if ev.ReasonInferred != inferred || ev.Location != "udp_queue_rcv_one_skb" {
			t.Errorf("drop of a full buffer: reason inferred %v at %q, want inferred %v at udp_queue_rcv_one_skb:\n%s", ev.ReasonInferred, ev.Location, inferred, dump([]tracer.Event{ev}))
		}
	}
	if other := filter(c.snapshot(t), in(tracer.KindDrop, ns.Inode, func(ev tracer.Event) bool { return ev.Reason != "SOCKET_RCVBUFF" })); len(other) != 0 {
		t.Errorf("drops with other reasons while the buffer overflowed:\n%s", dump(other))
	}

	// What stayed queued is read by the node, each read naming the burst's flow.
	var queued int
	mustDo(t, ns, func() (err error) {
		queued, err = full.Drain(100 * time.Millisecond)
		return err
	})
	if queued+dropped != burst {
		t.Fatalf("the node read %d datagrams and the kernel dropped %d, of %d sent", queued, dropped, burst)
	}
	if c.readsTraced(t) {
		reads := c.waitFor(t, queued, 2*time.Second, in(tracer.KindRead, ns.Inode))
		if got := filter(reads, flow(full.From, dst)); len(reads) != queued || len(got) != queued {
			t.Errorf("the node read %d datagrams of %v -> %v; want as many read events naming that flow, got:\n%s",
				queued, full.From, dst, dump(reads))
		}
	}
	t.Logf("burst of %d: %d dropped for a full buffer, matching the kernel's count; %d read", burst, dropped, queued)
}

// lostFragmentScenario is a peer A sending a fragmented datagram to a node in B across a
// veth, with B giving up on incomplete datagrams after one second.
type lostFragmentScenario struct {
	v        *netlab.Veth
	rx       *net.UDPConn
	datagram netlab.UDP4
	capture  *capture
}

func newLostFragmentScenario(t *testing.T) *lostFragmentScenario {
	t.Helper()
	v := netlab.Pair(t)
	for key, value := range map[string]string{"net.ipv4.ipfrag_time": "1", "net.ipv4.icmp_ratelimit": "0"} {
		if err := v.B.SetSysctl(key, value); err != nil {
			t.Fatal(err)
		}
	}
	s := &lostFragmentScenario{v: v, datagram: netlab.UDP4{
		Src:     netip.AddrPortFrom(v.A4, netlab.RandomHighPort()),
		Dst:     netip.AddrPortFrom(v.B4, netlab.RandomHighPort()),
		ID:      0x5eed,
		Payload: bytes.Repeat([]byte("discv5"), 200), // 1200 bytes: 4 fragments of 400
	}}
	mustDo(t, v.B, func() (err error) {
		s.rx, err = netlab.ListenUDP(s.datagram.Dst)
		return err
	})
	t.Cleanup(func() { s.rx.Close() })
	s.capture = startCapture(t, s.datagram.Dst.Port())
	return s
}

// sendWithheld sends the datagram's fragments except the withheld ones and waits for the
// receiver to time the datagram out and, when icmp, to send its ICMP time exceeded too:
// ip_expire counts the timeout before it sends the error, so a reading between the two
// sees only the first. It returns how the receiver's counters moved.
func (s *lostFragmentScenario) sendWithheld(t *testing.T, withheld int, icmp bool) netlab.Counters {
	t.Helper()
	before := mustCounters(t, s.v.B)
	mustDo(t, s.v.A, func() error {
		_, err := netlab.SendFragmentsWithheld(s.datagram, 400, withheld)
		return err
	})
	delta, err := s.v.B.WaitCounters(before, 5*time.Second, func(d netlab.Counters) bool {
		return d[netlab.IpReasmTimeout] > 0 && (!icmp || d[netlab.IcmpOutTimeExcds] > 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if delta[netlab.IpReasmTimeout] != 1 {
		t.Fatalf("the receiver timed out %d datagrams, want 1; counters moved:\n%s", delta[netlab.IpReasmTimeout], delta)
	}
	return delta
}

// A lost fragment: the last piece of a large datagram never arrives. The receiver drops
// the pieces it holds with FRAG_REASM_TIMEOUT, attributed to the datagram's flow, and
// sends the peer ICMP time exceeded (11/1), which the peer receives. The peer sent from
// a raw socket, so no UDP socket of its is told.
func TestScenarioALostFragment(t *testing.T) {
	netlab.RequireRoot(t)
	s := newLostFragmentScenario(t)
	delta := s.sendWithheld(t, 3, true)
	if delta[netlab.IcmpOutTimeExcds] != 1 || delta[netlab.IpReasmReqds] != 3 {
		t.Fatalf("the receiver got %d fragments and sent %d ICMP time exceeded, want 3 and 1", delta[netlab.IpReasmReqds], delta[netlab.IcmpOutTimeExcds])
	}
	src, dst, c := s.datagram.Src, s.datagram.Dst, s.capture

	icmpOut := c.waitFor(t, 1, 2*time.Second, in(tracer.KindICMP, s.v.B.Inode, func(ev tracer.Event) bool {
		return ev.ICMPDir == tracer.ICMPOut
	}))
	if len(icmpOut) != 1 || icmpOut[0].ICMPType != 11 || icmpOut[0].ICMPCode != 1 ||
		icmpOut[0].QuotedSrc != src || icmpOut[0].QuotedDst != dst {
		t.Errorf("want one ICMP out 11/1 quoting %v -> %v in the receiver's namespace (netns %d), got these ICMP events:\n%s", src, dst, s.v.B.Inode, dump(filter(c.snapshot(t), ofKind(tracer.KindICMP))))
	}
	icmpIn := c.waitFor(t, 1, 2*time.Second, in(tracer.KindICMP, s.v.A.Inode, func(ev tracer.Event) bool {
		return ev.ICMPDir == tracer.ICMPIn
	}))
	if len(icmpIn) != 1 || icmpIn[0].ICMPType != 11 || icmpIn[0].ICMPCode != 1 ||
		icmpIn[0].QuotedSrc != src || icmpIn[0].QuotedDst != dst {
		t.Errorf("want one ICMP in 11/1 quoting %v -> %v in the sender's namespace (netns %d), got these ICMP events:\n%s", src, dst, s.v.A.Inode, dump(filter(c.snapshot(t), ofKind(tracer.KindICMP))))
	}
	if len(icmpIn) == 1 && icmpIn[0].HasNotified && icmpIn[0].Notified {
		t.Errorf("ICMP in says a socket was told, but the sender has no UDP socket on %v:\n%s", src, dump(icmpIn))
	}

	// Every fragment the receiver held is freed with FRAG_REASM_TIMEOUT: the first one with
	// the UDP ports, the later ones (no UDP header) recognised by addresses and IP id.
	// Kernels whose enum has no such reason (Debian's 6.1) free them as NOT_SPECIFIED.
	want := "FRAG_REASM_TIMEOUT"
	if !kernelNamesDropReasons(t) {
		want = "" // before Linux 5.17: no reason, and none certain to infer
		t.Logf("this kernel names no drop reasons: expecting drops without one")
	} else if !kernelHasDropReason(t, want) {
		want = "NOT_SPECIFIED"
		t.Logf("this kernel has no drop reason FRAG_REASM_TIMEOUT: expecting %s", want)
	}
	held := int(delta[netlab.IpReasmReqds])
	drops := c.waitFor(t, held, 2*time.Second, in(tracer.KindDrop, s.v.B.Inode, reason(want),
		func(ev tracer.Event) bool { return ev.Src.Addr() == src.Addr() && ev.Dst.Addr() == dst.Addr() }))
	withPorts := filter(drops, flow(src, dst))
	withoutPorts := filter(drops, func(ev tracer.Event) bool { return ev.Src.Port() == 0 && ev.Dst.Port() == 0 })
	if len(drops) != held || len(withPorts) != 1 || len(withoutPorts) != held-1 {
		t.Errorf("the receiver held %d fragments: want %d FRAG_REASM_TIMEOUT drops in netns %d, one with the ports %v -> %v and %d without; got %d (%d with the ports, %d without); all drop events:\n%s",
			held, held, s.v.B.Inode, src, dst, held-1, len(drops), len(withPorts), len(withoutPorts), dump(filter(c.snapshot(t), ofKind(tracer.KindDrop))))
	}
}

// A lost first fragment: without the piece carrying the UDP header the receiver still
// gives up, but must not send ICMP time exceeded (only fragment zero allows it), and the
// tracer must not invent one.
func TestScenarioALostFirstFragment(t *testing.T) {
	netlab.RequireRoot(t)
	s := newLostFragmentScenario(t)
	if sent := s.sendWithheld(t, 0, false)[netlab.IcmpOutTimeExcds]; sent != 0 {
		t.Fatalf("the receiver sent %d ICMP time exceeded, want none", sent)
	}
	time.Sleep(300 * time.Millisecond)
	if icmp := filter(s.capture.snapshot(t), ofKind(tracer.KindICMP)); len(icmp) != 0 {
		t.Errorf("ICMP events although the first fragment never arrived:\n%s", dump(icmp))
	}
}

// A bad UDP checksum on the wire: the node never sees the datagram. Short datagrams are
// dropped on arrival, longer ones when the node's recvmsg reaches them; either way the
// tracer reports one UDP_CSUM drop for the flow, as the kernel's InCsumErrors counts.
func TestScenarioABadChecksum(t *testing.T) {
	netlab.RequireRoot(t)
	for _, tc := range []struct {
		name       string
		payloadLen int
	}{
		{"checked on arrival", 40},
		{"checked when read", 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := netlab.Pair(t)
			d := netlab.UDP4{
				Src:     netip.AddrPortFrom(v.A4, netlab.RandomHighPort()),
				Dst:     netip.AddrPortFrom(v.B4, netlab.RandomHighPort()),
				ID:      1,
				Payload: bytes.Repeat([]byte{0xd5}, tc.payloadLen),
			}
			var rx *net.UDPConn
			mustDo(t, v.B, func() (err error) {
				rx, err = netlab.ListenUDP(d.Dst)
				return err
			})
			defer rx.Close()
			c := startCapture(t, d.Dst.Port())

			before := mustCounters(t, v.B)
			mustDo(t, v.A, func() error { return netlab.SendBadChecksum(d) })
			// Read, so a queued bad datagram meets its checksum check in recvmsg; from a
			// thread in the node's namespace, as a node in a container reads.
			var n int
			mustDo(t, v.B, func() (err error) {
				n, err = netlab.Drain(rx, 200*time.Millisecond)
				return err
			})
			if n != 0 {
				t.Fatalf("the node read %d datagrams, want 0", n)
			}
			delta := mustCounters(t, v.B).Since(before)
			if delta[netlab.UdpInCsumErrors] != 1 {
				t.Fatalf("the kernel counted %d checksum errors, want 1; counters moved:\n%s", delta[netlab.UdpInCsumErrors], delta)
			}
			// 6.18 names the drop UDP_CSUM in both places (measured); Debian's 6.1 and 6.12
			// free a datagram that fails the check in udp_recvmsg as NOT_SPECIFIED. The
			// kernel's InCsumErrors count above says it is the checksum either way.
			// Before 5.17 the kernel names no reason: the drop carries its location, where
			// the checksum is checked (the same function frees for other reasons, so
			// no reason is inferred).
			reasons := []string{"UDP_CSUM"}
			if tc.payloadLen > 76 && !kernelAtLeast(t, 6, 18) {
				reasons = append(reasons, "NOT_SPECIFIED")
			}
			location := "__udp4_lib_rcv"
			if tc.payloadLen > 76 {
				location = "udp_recvmsg"
			}
			if !kernelNamesDropReasons(t) {
				reasons = []string{""}
			}
			drops := c.waitFor(t, 1, 2*time.Second, in(tracer.KindDrop, v.B.Inode, flow(d.Src, d.Dst), reason(reasons...)))
			if len(drops) != 1 || drops[0].Location != location || drops[0].ReasonInferred {
				t.Errorf("want one %q drop at %s for %v -> %v, got %d; all events of the port:\n%s",
					strings.Join(reasons, " or "), location, d.Src, d.Dst, len(drops), dump(c.snapshot(t)))
			}

			// The next good datagram, from another port, is read as itself: its read
			// event names its own source and a queue time shorter than the time since
			// it was sent, not the dropped datagram's (which waited through the read
			// above).
			good := d
			good.Src = netip.AddrPortFrom(d.Src.Addr(), d.Src.Port()+1)
			sentAt := time.Now()
			mustDo(t, v.A, func() error {
				raw, err := netlab.OpenRawIPv4()
				if err != nil {
					return err
				}
				defer raw.Close()
				p, err := good.Packet()
				if err != nil {
					return err
				}
				return raw.Send(p)
			})
			mustDo(t, v.B, func() (err error) {
				n, err = netlab.Drain(rx, 200*time.Millisecond)
				return err
			})
			sinceSent := time.Since(sentAt)
			if n != 1 {
				t.Fatalf("the node read %d good datagrams, want 1", n)
			}
			if !c.readsTraced(t) {
				return
			}
			reads := c.waitFor(t, 1, 2*time.Second, in(tracer.KindRead, v.B.Inode))
			if len(reads) != 1 || reads[0].Src != good.Src || reads[0].Len != len(good.Payload) ||
				!reads[0].HasQueueTime || reads[0].QueueTime > sinceSent {
				t.Errorf("want one read of %v -> %v, %d bytes, queued less than %v; got:\n%s",
					good.Src, good.Dst, len(good.Payload), sinceSent, dump(c.snapshot(t)))
			}
		})
	}
}

// Two containers talking: a datagram between two network namespaces is seen by a tracer
// in the root namespace, the send in the sender's namespace and the receive and read in
// the receiver's, each with the datagram's own addresses.
func TestScenarioTrafficBetweenNamespaces(t *testing.T) {
	netlab.RequireRoot(t)
	v := netlab.Pair(t)
	root := rootNetnsInode(t)
	if v.A.Inode == v.B.Inode || v.A.Inode == root || v.B.Inode == root {
		t.Fatalf("namespaces not distinct: a=%d b=%d root=%d", v.A.Inode, v.B.Inode, root)
	}
	dst := netip.AddrPortFrom(v.B4, netlab.RandomHighPort())
	var rx *net.UDPConn
	mustDo(t, v.B, func() (err error) {
		rx, err = netlab.ListenUDP(dst)
		return err
	})
	defer rx.Close()
	c := startCapture(t, dst.Port())

	payload := []byte("a discv4 ping, more or less")
	var src netip.AddrPort
	mustDo(t, v.A, func() (err error) {
		src, err = netlab.SendBurst(netip.AddrPortFrom(v.A4, 0), dst, 1, payload)
		return err
	})
	buf := make([]byte, 100)
	rx.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, from, err := rx.ReadFromUDPAddrPort(buf); err != nil || from != src || !bytes.Equal(buf[:n], payload) {
		t.Fatalf("the node read %q from %v (err %v), want %q from %v", buf[:n], from, err, payload, src)
	}

	check := func(kind tracer.Kind, netns uint32, ifindex int) {
		t.Helper()
		got := c.waitFor(t, 1, 2*time.Second, in(kind, netns))
		if len(got) != 1 {
			t.Errorf("want one %s event in netns %d, got %d:\n%s", kind, netns, len(got), dump(c.snapshot(t)))
			return
		}
		ev := got[0]
		// A read may lack the peer's address (recvmsg on an unconnected socket does not
		// say); when it has one it must be the datagram's.
		if (kind != tracer.KindRead || ev.Src.IsValid()) && (ev.Src != src || ev.Dst != dst) {
			t.Errorf("%s event has %v -> %v, want %v -> %v", kind, ev.Src, ev.Dst, src, dst)
		}
		if kind != tracer.KindRead && (ev.Len != len(payload) || !bytes.Equal(ev.Payload, payload)) {
			t.Errorf("%s event has len %d payload %q, want %d %q", kind, ev.Len, ev.Payload, len(payload), payload)
		}
		if ifindex != 0 && ev.Ifindex != uint32(ifindex) {
			t.Errorf("%s event has ifindex %d, want %d (the veth end in its namespace)", kind, ev.Ifindex, ifindex)
		}
	}
	check(tracer.KindSend, v.A.Inode, 0)
	check(tracer.KindRecv, v.B.Inode, v.BIndex)
	if c.readsTraced(t) {
		check(tracer.KindRead, v.B.Inode, 0)
	}
	if stray := filter(c.snapshot(t), func(ev tracer.Event) bool { return ev.NetNS == root }); len(stray) != 0 {
		t.Errorf("events attributed to the root namespace:\n%s", dump(stray))
	}
}
