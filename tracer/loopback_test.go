package tracer

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"
)

// A discovery node on loopback: a peer sends it datagrams on its watched port and the node
// reads each one 20 ms after it arrived. The tracer must see each datagram exactly once
// leaving the peer, once reaching the node's socket and once read, by this process, with
// the payload, and a queue time of at least the 20 ms the datagram waited.
func TestLoopbackExchange(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name, network string
		node          netip.Addr
	}{
		{"ipv4", "udp4", netip.MustParseAddr("127.0.0.1")},
		{"ipv6", "udp6", netip.IPv6Loopback()},
	} {
		t.Run(tc.name, func(t *testing.T) { testLoopbackExchange(t, tc.network, tc.node) })
	}
}

func testLoopbackExchange(t *testing.T, network string, nodeAddr netip.Addr) {
	const n = 5
	const wait = 20 * time.Millisecond
	port := freePort(t, network)
	c := openCollector(t, Config{Ports: []uint16{port}})
	requireClass(t, c.tr, "read")
	senderKnown := c.tr.helpers.task // else the plan says sends carry no process
	node := listen(t, network, netip.AddrPortFrom(nodeAddr, port))
	peer := listen(t, network, netip.AddrPortFrom(nodeAddr, 0))
	nodeAP, peerAP := localAddrPort(node), localAddrPort(peer)

	var payloads [][]byte
	buf := make([]byte, 2048)
	for i := range n {
		p := bytes.Repeat([]byte{byte('a' + i)}, 100+i*300) // 100 .. 1300 bytes: every size class, and one past the snap length
		payloads = append(payloads, p)
		if _, err := peer.WriteToUDPAddrPort(p, nodeAP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(wait)
		m, from, err := node.ReadFromUDPAddrPort(buf)
		if err != nil || m != len(p) || from != peerAP {
			t.Fatalf("read %d: got %d bytes from %v (%v), want %d from %v", i, m, from, err, len(p), peerAP)
		}
	}
	evs := c.settle(300*time.Millisecond, 300*time.Millisecond, 5*time.Second, onPort(port))
	if len(evs) != 3*n {
		t.Fatalf("got %d events on port %d, want %d (send, recv, read per datagram):\n%s", len(evs), port, 3*n, dumpEvents(evs))
	}
	pid, comm := uint32(os.Getpid()), selfComm(t)
	sends, recvs, reads := ofKind(evs, KindSend), ofKind(evs, KindRecv), ofKind(evs, KindRead)
	if len(sends) != n || len(recvs) != n || len(reads) != n {
		t.Fatalf("got %d sends, %d recvs, %d reads, want %d each:\n%s", len(sends), len(recvs), len(reads), n, dumpEvents(evs))
	}
	for i, p := range payloads {
		want := p
		if len(want) > MaxSnapLen {
			want = want[:MaxSnapLen]
		}
		for _, ev := range []Event{sends[i], recvs[i], reads[i]} {
			what := fmt.Sprintf("%s %d", ev.Kind, i)
			if ev.Src != peerAP || ev.Dst != nodeAP || ev.Len != len(p) {
				t.Errorf("%s: %v -> %v len %d, want %v -> %v len %d", what, ev.Src, ev.Dst, ev.Len, peerAP, nodeAP, len(p))
			}
			if ev.Kind == KindRead {
				continue
			}
			if !bytes.Equal(ev.Payload, want) {
				t.Errorf("%s: payload %d bytes %.8q..., want %d bytes %.8q...", what, len(ev.Payload), ev.Payload, len(want), want)
			}
		}
		for _, ev := range []Event{sends[i], reads[i]} {
			if ev.Kind == KindSend && !senderKnown {
				if ev.HasProc {
					t.Errorf("send %d claims process %d though this kernel cannot tell", i, ev.PID)
				}
				continue
			}
			if !ev.HasProc || ev.PID != pid || ev.Comm != comm || !isOwnThread(ev.TID) {
				t.Errorf("%s %d: process %v pid %d tid %d comm %q, want pid %d (a thread of it), comm %q", ev.Kind, i, ev.HasProc, ev.PID, ev.TID, ev.Comm, pid, comm)
			}
		}
		if recvs[i].HasProc {
			t.Errorf("recv %d claims a process (pid %d): softirq context has none", i, recvs[i].PID)
		}
		if sends[i].Cookie == 0 || recvs[i].Cookie == 0 || recvs[i].Cookie != reads[i].Cookie || sends[i].Cookie == recvs[i].Cookie {
			t.Errorf("datagram %d: cookies send %d recv %d read %d: want the peer's socket on send, the node's on recv and read", i, sends[i].Cookie, recvs[i].Cookie, reads[i].Cookie)
		}
		if sends[i].HasRet {
			t.Errorf("send %d: carries a return value %d; only failed sends do", i, sends[i].Ret)
		}
		r := reads[i]
		if !r.HasQueueTime || r.QueueTime < wait || r.QueueTime > wait+time.Second {
			t.Errorf("read %d: queue time %v (known %v), want between %v and %v", i, r.QueueTime, r.HasQueueTime, wait, wait+time.Second)
		}
		if !recvs[i].Time.Before(r.Time) || r.Time.Sub(recvs[i].Time) < r.QueueTime {
			t.Errorf("read %d at %v, recv at %v: the read must come at least its queue time %v after", i, r.Time, recvs[i].Time, r.QueueTime)
		}
		if d := time.Since(sends[i].Time); d < 0 || d > time.Minute {
			t.Errorf("send %d time %v is %v from now: the clock conversion is off", i, sends[i].Time, d)
		}
	}
}

// Traffic between two sockets on ports nobody watches gives no event at all.
func TestUnwatchedPortIsSilent(t *testing.T) {
	requireRoot(t)
	watched := freePort(t, "udp4")
	c := openCollector(t, Config{Ports: []uint16{watched}})
	a := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	b := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	buf := make([]byte, 64)
	for range 20 {
		if _, err := a.WriteToUDPAddrPort([]byte("not watched"), localAddrPort(b)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing listens on this unwatched port either: no icmp, no drop.
	if _, err := a.WriteToUDPAddrPort([]byte("nobody"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t, "udp4"))); err != nil {
		t.Fatal(err)
	}
	evs := c.settle(500*time.Millisecond, 300*time.Millisecond, 2*time.Second, func(ev Event) bool {
		return ev.Kind == KindLost || ev.Src.Port() == localAddrPort(a).Port() || ev.Dst.Port() == localAddrPort(a).Port() ||
			ev.QuotedSrc.Port() == localAddrPort(a).Port()
	})
	if len(evs) != 0 {
		t.Fatalf("got %d events for unwatched traffic, want none:\n%s", len(evs), dumpEvents(evs))
	}
	if all := c.snapshot(); len(all) != 0 {
		t.Fatalf("got %d events with only unused port %d watched, want none:\n%s", len(all), watched, dumpEvents(all))
	}
}

// A datagram still queued when its socket closes is freed by the close, not dropped by
// the network: no drop event.
func TestUnreadDatagramAtCloseIsNoDrop(t *testing.T) {
	requireRoot(t)
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			host := netip.MustParseAddr("127.0.0.1")
			if network == "udp6" {
				host = netip.IPv6Loopback()
			}
			port := freePort(t, network)
			c := openCollector(t, Config{Ports: []uint16{port}})
			node := listen(t, network, netip.AddrPortFrom(host, port))
			peer := listen(t, network, netip.AddrPortFrom(host, 0))
			if _, err := peer.WriteToUDPAddrPort([]byte("never read"), localAddrPort(node)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			node.Close()
			evs := c.settle(300*time.Millisecond, 300*time.Millisecond, 5*time.Second, onPort(port))
			if len(evs) != 2 || len(ofKind(evs, KindSend)) != 1 || len(ofKind(evs, KindRecv)) != 1 {
				t.Fatalf("got %d events, want one send and one recv:\n%s", len(evs), dumpEvents(evs))
			}
		})
	}
}

// A client on an ephemeral port asks a node on the watched port and reads the answers:
// its reads are traced too (its socket was queued watched datagrams), linked to the
// answer with its queue time, so that an answer read and ignored can be told from one
// never delivered. Its other sockets' reads stay silent.
func TestReadOnAClientSocket(t *testing.T) {
	requireRoot(t)
	const n = 3
	const wait = 20 * time.Millisecond
	port := freePort(t, "udp4")
	c := openCollector(t, Config{Ports: []uint16{port}})
	requireClass(t, c.tr, "read")
	node := listen(t, "udp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	client := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	other := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	nodeAP, clientAP := localAddrPort(node), localAddrPort(client)
	buf := make([]byte, 256)
	for i := range n {
		if _, err := node.WriteToUDPAddrPort(bytes.Repeat([]byte{'a' + byte(i)}, 100), clientAP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(wait)
		if m, from, err := client.ReadFromUDPAddrPort(buf); err != nil || m != 100 || from != nodeAP {
			t.Fatalf("client read %d: %d bytes from %v (%v)", i, m, from, err)
		}
		// Unwatched traffic to and read by another ephemeral socket.
		if _, err := client.WriteToUDPAddrPort([]byte("unwatched"), localAddrPort(other)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := other.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	evs := c.settle(300*time.Millisecond, 300*time.Millisecond, 5*time.Second, func(ev Event) bool {
		return onPort(port)(ev) || ev.Kind == KindRead
	})
	reads := ofKind(evs, KindRead)
	if len(reads) != n {
		t.Fatalf("got %d reads, want %d, all of the client's answers from the node:\n%s", len(reads), n, dumpEvents(evs))
	}
	for i, r := range reads {
		if r.Src != nodeAP || r.Dst != clientAP || r.Len != 100 || !r.HasQueueTime || r.QueueTime < wait || r.QueueTime > wait+time.Second {
			t.Errorf("read %d: %v -> %v len %d, queue time %v (%v); want %v -> %v, 100 bytes, at least %v",
				i, r.Src, r.Dst, r.Len, r.QueueTime, r.HasQueueTime, nodeAP, clientAP, wait)
		}
	}
}
