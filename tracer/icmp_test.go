package tracer

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// unreachableCases are the loopback variants of "nothing listens": the ICMP error each
// family answers with and the kernel function that drops the datagram.
var unreachableCases = []struct {
	name, network string
	host          netip.Addr
	icmpType      uint8
	icmpCode      uint8
	location      string
}{
	{"ipv4", "udp4", netip.MustParseAddr("127.0.0.1"), 3, 3, "__udp4_lib_rcv"},
	{"ipv6", "udp6", netip.IPv6Loopback(), 1, 4, "__udp6_lib_rcv"},
}

// A peer sends to a node's watched port where nothing listens. For each datagram the
// kernel answers with an ICMP port unreachable (icmp out), receives it back (icmp in,
// quoting the datagram; the unconnected sender is not told) and drops the datagram
// (NO_SOCKET).
func TestPortUnreachable(t *testing.T) {
	requireRoot(t)
	for _, tc := range unreachableCases {
		t.Run(tc.name, func(t *testing.T) {
			const n = 3
			port := freePort(t, tc.network)
			c := openCollector(t, Config{Ports: []uint16{port}})
			requireClass(t, c.tr, "icmp-in", "dt_error_report")
			peer := listen(t, tc.network, netip.AddrPortFrom(tc.host, 0))
			peerAP, nodeAP := localAddrPort(peer), netip.AddrPortFrom(tc.host, port)
			for range n {
				if _, err := peer.WriteToUDPAddrPort([]byte("ping"), nodeAP); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond) // below the ICMP rate limit's burst
			}
			evs := c.settle(300*time.Millisecond, 300*time.Millisecond, 5*time.Second, onPort(port))
			if len(evs) != 4*n {
				t.Fatalf("got %d events, want %d (send, icmp out, icmp in, drop per datagram):\n%s", len(evs), 4*n, dumpEvents(evs))
			}
			checkUnreachable(t, evs, n, peerAP, nodeAP, tc.icmpType, tc.icmpCode, tc.location, false)
			for _, ev := range ofKind(evs, KindSend) {
				if ev.HasRet {
					t.Errorf("send carries return value %d: the sends succeeded", ev.Ret)
				}
			}
		})
	}
}

// checkUnreachable checks n rounds of send, icmp out, icmp in (notified as given) and drop.
func checkUnreachable(t *testing.T, evs []Event, n int, peerAP, nodeAP netip.AddrPort, icmpType, icmpCode uint8, location string, notified bool) {
	t.Helper()
	outs := filterEvents(evs, func(ev Event) bool { return ev.Kind == KindICMP && ev.ICMPDir == ICMPOut })
	ins := filterEvents(evs, func(ev Event) bool { return ev.Kind == KindICMP && ev.ICMPDir == ICMPIn })
	drops := ofKind(evs, KindDrop)
	sends := filterEvents(ofKind(evs, KindSend), func(ev Event) bool { return !ev.HasRet })
	if len(outs) != n || len(ins) != n || len(drops) != n || len(sends) != n {
		t.Fatalf("got %d icmp out, %d icmp in, %d drops, %d sends, want %d each:\n%s", len(outs), len(ins), len(drops), len(sends), n, dumpEvents(evs))
	}
	host := nodeAP.Addr()
	for i := range n {
		for _, ev := range []Event{outs[i], ins[i]} {
			if ev.ICMPType != icmpType || ev.ICMPCode != icmpCode || ev.QuotedSrc != peerAP || ev.QuotedDst != nodeAP ||
				ev.Src != netip.AddrPortFrom(host, 0) || ev.Dst != netip.AddrPortFrom(host, 0) || ev.Len != 4 {
				t.Errorf("icmp %d: type %d/%d %v -> %v quoting %v -> %v (len %d), want %d/%d %v -> %v quoting %v -> %v (len 4)", ev.ICMPDir, ev.ICMPType, ev.ICMPCode,
					ev.Src, ev.Dst, ev.QuotedSrc, ev.QuotedDst, ev.Len, icmpType, icmpCode, host, host, peerAP, nodeAP)
			}
		}
		if outs[i].HasNotified {
			t.Errorf("icmp out %d says whether a socket was notified: only icmp in can", i)
		}
		if !ins[i].HasNotified || ins[i].Notified != notified {
			t.Errorf("icmp in %d: notified %v (known %v), want %v", i, ins[i].Notified, ins[i].HasNotified, notified)
		}
		if notified && ins[i].Cookie != sends[i].Cookie {
			t.Errorf("icmp in %d: cookie %d, want the notified sender's %d", i, ins[i].Cookie, sends[i].Cookie)
		}
		d := drops[i]
		if d.Reason != "NO_SOCKET" || d.Location != location || d.Src != peerAP || d.Dst != nodeAP || d.Len != 4 || d.HasProc {
			t.Errorf("drop %d: %s at %s, %v -> %v len %d, want NO_SOCKET at %s, %v -> %v len 4", i, d.Reason, d.Location, d.Src, d.Dst, d.Len, location, peerAP, nodeAP)
		}
	}
}

// A connected socket is told of the ICMP error (notified), and its next send fails with
// ECONNREFUSED before leaving the socket: a send event with the return value, no egress.
func TestPortUnreachableConnected(t *testing.T) {
	requireRoot(t)
	for _, tc := range unreachableCases {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t, tc.network)
			c := openCollector(t, Config{Ports: []uint16{port}})
			requireClass(t, c.tr, "icmp-in", "dt_error_report")
			requireClass(t, c.tr, "send", "dt_send_result")
			nodeAP := netip.AddrPortFrom(tc.host, port)
			conn, err := net.DialUDP(tc.network, nil, net.UDPAddrFromAddrPort(nodeAP))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			peerAP := localAddrPort(conn)
			if _, err := conn.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			if _, err := conn.Write([]byte("ping")); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("second send on the connected socket: %v, want ECONNREFUSED", err)
			}
			evs := c.settle(300*time.Millisecond, 300*time.Millisecond, 5*time.Second, onPort(port))
			if len(evs) != 5 {
				t.Fatalf("got %d events, want 5 (send, icmp out, icmp in, drop, failed send):\n%s", len(evs), dumpEvents(evs))
			}
			checkUnreachable(t, evs, 1, peerAP, nodeAP, tc.icmpType, tc.icmpCode, tc.location, true)
			failed := filterEvents(evs, func(ev Event) bool { return ev.Kind == KindSend && ev.HasRet })
			if len(failed) != 1 {
				t.Fatalf("got %d failed sends, want 1:\n%s", len(failed), dumpEvents(evs))
			}
			f := failed[0]
			if f.Ret != -int64(syscall.ECONNREFUSED) || f.Src != peerAP || f.Dst != nodeAP || !f.HasProc || f.Cookie != ofKind(evs, KindSend)[0].Cookie {
				t.Errorf("failed send: ret %d %v -> %v proc %v cookie %d, want ret %d %v -> %v from this process and socket", f.Ret, f.Src, f.Dst, f.HasProc, f.Cookie, -int64(syscall.ECONNREFUSED), peerAP, nodeAP)
			}
			if f.Len != 4 || string(f.Payload) != "ping" { // write(2) on the connected socket
				t.Errorf("failed send of %d bytes %q, want the 4 bytes \"ping\" it was asked to send", f.Len, f.Payload)
			}
		})
	}
}
