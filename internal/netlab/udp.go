package netlab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"
)

// RandomHighPort returns a random port in 20000..59999. Inside a fresh namespace every
// port is free; the randomness keeps concurrent runs (which a root-namespace tracer sees
// all of) apart in event dumps and lowers the odds that a watched port is also in use by
// someone else's test.
func RandomHighPort() uint16 {
	return uint16(20000 + rand.IntN(40000))
}

// ListenUDP opens a UDP socket bound to addr in the calling thread's namespace.
func ListenUDP(addr netip.AddrPort) (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("listen on %v: %w", addr, err)
	}
	return c, nil
}

// SendBurst sends count datagrams of payload from a fresh socket bound to from (port 0:
// any) to to, as fast as the socket takes them, and closes that socket. It returns the
// address the datagrams came from.
func SendBurst(from, to netip.AddrPort, count int, payload []byte) (netip.AddrPort, error) {
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(from), net.UDPAddrFromAddrPort(to))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("open sender %v -> %v: %w", from, to, err)
	}
	defer c.Close()
	src := c.LocalAddr().(*net.UDPAddr).AddrPort()
	for i := range count {
		if _, err := c.Write(payload); err != nil {
			return src, fmt.Errorf("datagram %d of %d to %v: %w", i+1, count, to, err)
		}
	}
	return src, nil
}

// FullReceiveBuffer is a receiver whose socket buffer overflowed: a UDP socket with the
// smallest receive buffer the kernel allows, sent a burst while nobody read it. The kernel
// dropped what did not fit (Udp RcvbufErrors, drop reason SOCKET_RCVBUFF) and kept the
// rest queued.
type FullReceiveBuffer struct {
	Receiver *net.UDPConn
	Addr     netip.AddrPort // where the receiver listens
	From     netip.AddrPort // where the burst came from
	Sent     int
}

// OverflowReceiveBuffer listens on addr with the minimum receive buffer and sends it a
// burst of count datagrams of payloadSize bytes from another socket on the same host,
// without reading. Call it inside Netns.Do (loopback of that namespace) or in the root
// namespace. Drain the receiver afterwards to learn how many datagrams were queued.
func OverflowReceiveBuffer(addr netip.AddrPort, count, payloadSize int) (*FullReceiveBuffer, error) {
	rx, err := ListenUDP(addr)
	if err != nil {
		return nil, err
	}
	// SO_RCVBUF of 1 is raised by the kernel to its minimum (SOCK_MIN_RCVBUF, doubled):
	// room for a handful of small datagrams.
	if err := rx.SetReadBuffer(1); err != nil {
		rx.Close()
		return nil, fmt.Errorf("shrink receive buffer: %w", err)
	}
	f := &FullReceiveBuffer{Receiver: rx, Addr: rx.LocalAddr().(*net.UDPAddr).AddrPort(), Sent: count}
	f.From, err = SendBurst(netip.AddrPortFrom(f.Addr.Addr(), 0), f.Addr, count, make([]byte, payloadSize))
	if err != nil {
		rx.Close()
		return nil, err
	}
	return f, nil
}

// Drain reads every datagram queued on the receiver, stopping once none has arrived for
// quiet, and returns how many it read.
func (f *FullReceiveBuffer) Drain(quiet time.Duration) (int, error) {
	return Drain(f.Receiver, quiet)
}

// Close closes the receiver.
func (f *FullReceiveBuffer) Close() error { return f.Receiver.Close() }

// Drain reads datagrams from c until none arrives for quiet and returns how many it read.
func Drain(c *net.UDPConn, quiet time.Duration) (int, error) {
	buf := make([]byte, 65536)
	n := 0
	for {
		if err := c.SetReadDeadline(time.Now().Add(quiet)); err != nil {
			return n, err
		}
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return n, nil
			}
			return n, err
		}
		n++
	}
}
