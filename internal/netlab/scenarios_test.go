package netlab

// These tests check, with the kernel's own counters and no tracer, that each scenario
// netlab builds makes the kernel do what the tracer's tests then expect to see.

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		if err := RemoveStale(); err != nil {
			fmt.Fprintln(os.Stderr, "netlab: removing namespaces of killed runs:", err)
		}
	}
	os.Exit(m.Run())
}

func doIn(t *testing.T, ns *Netns, fn func() error) {
	t.Helper()
	if err := ns.Do(fn); err != nil {
		t.Fatal(err)
	}
}

func counters(t *testing.T, ns *Netns) Counters {
	t.Helper()
	c, err := ns.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wantDelta fails the test unless each named counter changed by exactly the given amount.
func wantDelta(t *testing.T, where string, delta Counters, want Counters) {
	t.Helper()
	for name, n := range want {
		if delta[name] != n {
			t.Errorf("%s: %s changed by %d, want %d; all changes:\n%s", where, name, delta[name], n, delta)
		}
	}
}

func TestNamespacesAreSeparate(t *testing.T) {
	RequireRoot(t)
	a, b := NewNetns(t), NewNetns(t)
	var root unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &root); err != nil {
		t.Fatal(err)
	}
	if a.Inode == 0 || a.Inode == b.Inode || a.Inode == uint32(root.Ino) || b.Inode == uint32(root.Ino) {
		t.Fatalf("namespace inodes a=%d b=%d root=%d are not distinct", a.Inode, b.Inode, root.Ino)
	}
	// Do really runs inside: the namespace's own nsfs inode is what the thread sees.
	var inside unix.Stat_t
	doIn(t, a, func() error { return unix.Stat("/proc/thread-self/ns/net", &inside) })
	if uint32(inside.Ino) != a.Inode {
		t.Fatalf("inside Do the thread is in netns %d, want %d", inside.Ino, a.Inode)
	}

	rootValue, err := readSysctl("net.ipv4.ipfrag_time")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetSysctl("net.ipv4.ipfrag_time", "1"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ns   *Netns
		want string
	}{{a, "1"}, {b, "30"}} {
		got, err := c.ns.Sysctl("net.ipv4.ipfrag_time")
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("ipfrag_time in %s = %s, want %s", c.ns.Name, got, c.want)
		}
	}
	if after, _ := readSysctl("net.ipv4.ipfrag_time"); after != rootValue {
		t.Errorf("the root namespace's ipfrag_time changed from %s to %s", rootValue, after)
	}
}

// Do leaves no thread behind in the namespace, the process's main thread included
// (which /proc/self/ns/net shows, and which the Go runtime never ends), and returns only
// once its own thread is back home: every thread is looked at right after each Do (a
// tracer test once read the inner namespace in /proc/self/ns/net, just after a Do).
func TestDoLeavesEveryThreadHome(t *testing.T) {
	RequireRoot(t)
	ns := NewNetns(t)
	var before unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &before); err != nil {
		t.Fatal(err)
	}
	for i := range 10000 {
		doIn(t, ns, func() error { return nil })
		threads, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, th := range threads {
			var st unix.Stat_t
			if err := unix.Stat("/proc/self/task/"+th.Name()+"/ns/net", &st); err != nil {
				continue // the thread ended meanwhile
			}
			if st.Ino != before.Ino {
				t.Fatalf("after Do %d thread %s is in netns %d, the process in %d", i+1, th.Name(), st.Ino, before.Ino)
			}
		}
	}
}

func TestVethCarriesDatagrams(t *testing.T) {
	RequireRoot(t)
	v := Pair(t)
	port := RandomHighPort()
	var rx *net.UDPConn
	doIn(t, v.B, func() (err error) {
		rx, err = ListenUDP(netip.AddrPortFrom(v.B4, port))
		return err
	})
	defer rx.Close()
	var from netip.AddrPort
	doIn(t, v.A, func() (err error) {
		from, err = SendBurst(netip.AddrPortFrom(v.A4, 0), netip.AddrPortFrom(v.B4, port), 3, []byte("ping"))
		return err
	})
	buf := make([]byte, 100)
	for i := range 3 {
		rx.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, src, err := rx.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if src != from || string(buf[:n]) != "ping" {
			t.Fatalf("datagram %d: %q from %v, want \"ping\" from %v", i, buf[:n], src, from)
		}
	}
}

// A full receive buffer: the kernel counts every datagram that did not fit as a
// RcvbufErrors (and InErrors); the rest stay queued for the reader.
func TestAFullReceiveBuffer(t *testing.T) {
	RequireRoot(t)
	ns := NewNetns(t)
	const burst = 200
	before := counters(t, ns)
	var full *FullReceiveBuffer
	doIn(t, ns, func() (err error) {
		full, err = OverflowReceiveBuffer(netip.MustParseAddrPort("127.0.0.1:0"), burst, 100)
		return err
	})
	defer full.Close()
	delta, err := ns.WaitCounters(before, time.Second, func(d Counters) bool { return d[UdpRcvbufErrors] > 0 })
	if err != nil {
		t.Fatal(err)
	}
	queued, err := full.Drain(100 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	dropped := delta[UdpRcvbufErrors]
	t.Logf("burst %d: %d dropped for a full buffer, %d queued", burst, dropped, queued)
	if dropped == 0 || queued == 0 {
		t.Fatalf("want both drops and queued datagrams, got %d dropped, %d queued", dropped, queued)
	}
	if int(dropped)+queued != burst {
		t.Errorf("%d dropped + %d queued != %d sent", dropped, queued, burst)
	}
	wantDelta(t, "after the burst", delta, Counters{UdpInErrors: dropped, UdpInCsumErrors: 0, UdpNoPorts: 0})
	after := counters(t, ns).Since(before)
	wantDelta(t, "after draining", after, Counters{UdpInDatagrams: int64(queued), UdpRcvbufErrors: dropped})
}

// fragmentScenario is a sender namespace A and a receiver namespace B with a listener on
// B's side, fragment expiry shortened to one second and ICMP rate limiting off in B.
type fragmentScenario struct {
	v        *Veth
	rx       *net.UDPConn
	datagram UDP4
}

func newFragmentScenario(t *testing.T) *fragmentScenario {
	t.Helper()
	v := Pair(t)
	if err := v.B.SetSysctl("net.ipv4.ipfrag_time", "1"); err != nil {
		t.Fatal(err)
	}
	if err := v.B.SetSysctl("net.ipv4.icmp_ratelimit", "0"); err != nil {
		t.Fatal(err)
	}
	port := RandomHighPort()
	s := &fragmentScenario{v: v, datagram: UDP4{
		Src:     netip.AddrPortFrom(v.A4, RandomHighPort()),
		Dst:     netip.AddrPortFrom(v.B4, port),
		ID:      0x5eed,
		Payload: bytes.Repeat([]byte("discv5"), 200), // 1200 bytes: 4 fragments of 400
	}}
	doIn(t, v.B, func() (err error) {
		s.rx, err = ListenUDP(s.datagram.Dst)
		return err
	})
	t.Cleanup(func() { s.rx.Close() })
	return s
}

func (s *fragmentScenario) send(t *testing.T, withheld ...int) int {
	t.Helper()
	var n int
	doIn(t, s.v.A, func() (err error) {
		n, err = SendFragmentsWithheld(s.datagram, 400, withheld...)
		return err
	})
	return n
}

// The positive control for the lost fragment: with nothing withheld, the same fragments
// are reassembled and delivered intact.
func TestAWholeFragmentedDatagram(t *testing.T) {
	RequireRoot(t)
	s := newFragmentScenario(t)
	before := counters(t, s.v.B)
	frags := s.send(t)
	if frags != 4 {
		t.Fatalf("%d fragments, want 4", frags)
	}
	buf := make([]byte, 2000)
	s.rx.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := s.rx.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if from != s.datagram.Src || !bytes.Equal(buf[:n], s.datagram.Payload) {
		t.Fatalf("received %d bytes from %v, want the %d-byte payload from %v", n, from, len(s.datagram.Payload), s.datagram.Src)
	}
	wantDelta(t, "receiver", counters(t, s.v.B).Since(before),
		Counters{IpReasmReqds: 4, IpReasmOKs: 1, IpReasmFails: 0, UdpInDatagrams: 1})
}

// A lost fragment: the last fragment never comes; the first did, so after ipfrag_time the
// receiver gives up (ReasmTimeout, ReasmFails) and tells the sender with ICMP time
// exceeded, code 1 (fragment reassembly time exceeded).
func TestALostFragment(t *testing.T) {
	RequireRoot(t)
	s := newFragmentScenario(t)
	beforeA, beforeB := counters(t, s.v.A), counters(t, s.v.B)
	s.send(t, 3)
	delta, err := s.v.B.WaitCounters(beforeB, 5*time.Second, func(d Counters) bool { return d[IpReasmTimeout] > 0 })
	if err != nil {
		t.Fatal(err)
	}
	wantDelta(t, "receiver", delta, Counters{
		IpReasmReqds: 3, IpReasmTimeout: 1, IpReasmFails: 1, IpReasmOKs: 0,
		IcmpOutTimeExcds: 1, "IcmpMsgOutType11": 1, UdpInDatagrams: 0,
	})
	deltaA, err := s.v.A.WaitCounters(beforeA, time.Second, func(d Counters) bool { return d[IcmpInTimeExcds] > 0 })
	if err != nil {
		t.Fatal(err)
	}
	wantDelta(t, "sender", deltaA, Counters{IcmpInTimeExcds: 1})
}

// A lost first fragment: without the fragment holding the UDP header the receiver still
// times the datagram out, but sends no ICMP (RFC 792: only when fragment zero arrived).
func TestALostFirstFragment(t *testing.T) {
	RequireRoot(t)
	s := newFragmentScenario(t)
	before := counters(t, s.v.B)
	s.send(t, 0)
	delta, err := s.v.B.WaitCounters(before, 5*time.Second, func(d Counters) bool { return d[IpReasmTimeout] > 0 })
	if err != nil {
		t.Fatal(err)
	}
	wantDelta(t, "receiver", delta, Counters{
		IpReasmReqds: 3, IpReasmTimeout: 1, IpReasmFails: 1, IcmpOutTimeExcds: 0, IcmpOutDestUnreachs: 0,
	})
}

// A bad UDP checksum over veth. Short datagrams (UDP header and payload of at most 76
// bytes) are checked on arrival and never queued; longer ones are queued unchecked and
// dropped when the socket reads them, so the reader gets nothing either way.
func TestABadChecksum(t *testing.T) {
	RequireRoot(t)
	for _, c := range []struct {
		name       string
		payloadLen int
	}{
		{"checked on arrival", 40},
		{"checked when read", 600},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := Pair(t)
			d := UDP4{
				Src:     netip.AddrPortFrom(v.A4, RandomHighPort()),
				Dst:     netip.AddrPortFrom(v.B4, RandomHighPort()),
				ID:      1,
				Payload: bytes.Repeat([]byte{0xd5}, c.payloadLen),
			}
			var rx *net.UDPConn
			doIn(t, v.B, func() (err error) {
				rx, err = ListenUDP(d.Dst)
				return err
			})
			defer rx.Close()

			// Control: the same datagram with its checksum intact arrives.
			before := counters(t, v.B)
			doIn(t, v.A, func() error {
				raw, err := OpenRawIPv4()
				if err != nil {
					return err
				}
				defer raw.Close()
				p, err := d.Packet()
				if err != nil {
					return err
				}
				return raw.Send(p)
			})
			if n, err := Drain(rx, 200*time.Millisecond); err != nil || n != 1 {
				t.Fatalf("control datagram: read %d (err %v), want 1", n, err)
			}

			mid := counters(t, v.B)
			wantDelta(t, "control", mid.Since(before), Counters{UdpInDatagrams: 1, UdpInCsumErrors: 0})
			doIn(t, v.A, func() error { return SendBadChecksum(d) })
			if n, err := Drain(rx, 200*time.Millisecond); err != nil || n != 0 {
				t.Fatalf("bad-checksum datagram: read %d (err %v), want 0", n, err)
			}
			wantDelta(t, "bad checksum", counters(t, v.B).Since(mid),
				Counters{UdpInCsumErrors: 1, UdpInErrors: 1, UdpInDatagrams: 0, UdpRcvbufErrors: 0})
		})
	}
}
