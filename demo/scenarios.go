package demo

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/internal/netlab"
)

// clockOffset is how far behind the skewed peer's clock is: far more than the 20 s a
// discv4 packet lives, so that everything it stamps has expired on arrival.
const clockOffset = 2 * time.Minute

// fillerSize is the payload of the datagrams that fill the busy peer's receive buffer:
// large, so that a few fill it.
const fillerSize = 1200

// maxFillers bounds the datagrams sent to fill a receive buffer (the kernel's minimum
// buffer takes a handful).
const maxFillers = 64

// scenario is one thing the demo makes happen, as an operator would name it.
type scenario struct {
	title  string // what happens
	expect string // what the tracer shows for it
	run    func(ctx context.Context) error
}

func (s *stage) scenarios() []scenario {
	return []scenario{
		{"healthy peers: the local node pings both and looks up random targets, over discv4 and discv5",
			"handshake established, exchanges answered, with round-trip times", s.healthyTraffic},
		{fmt.Sprintf("a peer that is down: nothing listens on %v", s.down.addr),
			"icmp_unreachable: the kernel answered port unreachable, geth only saw a timeout", s.peerDown},
		{fmt.Sprintf("a peer that reads and never answers: %v", s.silent.addr),
			"app_drop: delivered and read by the peer's application, never answered", s.silentPeer},
		{fmt.Sprintf("a peer too busy to read: %v's receive buffer is full", s.busy.addr),
			"kernel_drop: the peer's kernel dropped the request (SOCKET_RCVBUFF)", s.busyPeer},
		{fmt.Sprintf("a peer whose clock is %v behind: %v", clockOffset, s.skewed.addr),
			"expired: its PING arrives expired and the local node ignores it", s.skewedPeer},
	}
}

// healthyTraffic is what a node does all day: pings and lookups, both protocols.
func (s *stage) healthyTraffic(ctx context.Context) error {
	for _, p := range s.healthy {
		s.outcome("discv4 PING", p.addr, pingErr(s.local.v4.Ping(p.Self())))
		if ctx.Err() != nil {
			return nil
		}
	}
	target, err := newKey()
	if err != nil {
		return err
	}
	found := s.local.v4.LookupPubkey(&target.PublicKey)
	fmt.Fprintf(s.log, "demo:   geth: discv4 lookup of a random key found %d nodes\n", len(found))
	for _, p := range s.healthy {
		if ctx.Err() != nil {
			return nil
		}
		s.outcome("discv5 PING", p.addr, pingErr(s.local.v5.Ping(p.Self())))
	}
	found = s.local.v5.Lookup(enode.PubkeyToIDV4(&target.PublicKey))
	fmt.Fprintf(s.log, "demo:   geth: discv5 lookup of a random ID found %d nodes\n", len(found))
	return nil
}

// peerDown pings a host where no socket has the port, over both protocols.
func (s *stage) peerDown(ctx context.Context) error {
	s.outcome("discv4 PING", s.down.addr, pingErr(s.local.v4.Ping(s.down.enode())))
	if ctx.Err() != nil {
		return nil
	}
	s.outcome("discv5 PING", s.down.addr, pingErr(s.local.v5.Ping(s.down.enode())))
	return nil
}

// silentPeer pings a peer whose application reads every datagram and drops it.
func (s *stage) silentPeer(context.Context) error {
	s.outcome("discv4 PING", s.silent.addr, pingErr(s.local.v4.Ping(s.silent.enode())))
	return nil
}

// busyPeer fills the peer's receive buffer (it never reads), then pings it: the kernel
// has no room for the PING.
func (s *stage) busyPeer(ctx context.Context) error {
	n, err := fillReceiveBuffer(ctx, s.busy)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.log, "demo:   %d datagrams of %d bytes filled its receive buffer\n", n, fillerSize)
	s.outcome("discv4 PING", s.busy.addr, pingErr(s.local.v4.Ping(s.busy.enode())))
	return nil
}

// skewedPeer sends the local node a discv4 PING stamped by a clock clockOffset behind.
func (s *stage) skewedPeer(context.Context) error {
	skewedNow := time.Now().Add(-clockOffset)
	ping := &v4wire.Ping{
		Version:    4,
		From:       v4wire.NewEndpoint(s.skewed.addr, s.skewed.addr.Port()),
		To:         v4wire.NewEndpoint(s.local.addr, s.local.addr.Port()),
		Expiration: uint64(skewedNow.Add(20 * time.Second).Unix()), // geth's own lifetime
	}
	b, _, err := v4wire.Encode(s.skewed.key, ping)
	if err != nil {
		return fmt.Errorf("encode the skewed peer's PING: %w", err)
	}
	if _, err := s.skewed.conn.WriteToUDPAddrPort(b, s.local.addr); err != nil {
		return fmt.Errorf("send the skewed peer's PING: %w", err)
	}
	fmt.Fprintf(s.log, "demo:   sent the local node a discv4 PING that expired %v ago\n", clockOffset-20*time.Second)
	return nil
}

// outcome says what geth itself saw of a request.
func (s *stage) outcome(what string, to netip.AddrPort, err error) {
	if err != nil {
		fmt.Fprintf(s.log, "demo:   geth: %s to %v: %v\n", what, to, err)
		return
	}
	fmt.Fprintf(s.log, "demo:   geth: %s to %v answered\n", what, to)
}

// pingErr keeps the error of a ping's two results.
func pingErr[T any](_ T, err error) error { return err }

// fillReceiveBuffer sends datagrams to p from another socket of its host until the kernel
// counts one dropped for want of receive buffer space, and returns how many it sent.
func fillReceiveBuffer(ctx context.Context, p peer) (int, error) {
	var sender *net.UDPConn
	if err := p.ns.Do(func() (err error) {
		sender, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(p.addr))
		return err
	}); err != nil {
		return 0, fmt.Errorf("open a socket to fill %v: %w", p.addr, err)
	}
	defer sender.Close()
	before, err := p.ns.Counters()
	if err != nil {
		return 0, err
	}
	filler := make([]byte, fillerSize)
	for sent := 1; sent <= maxFillers && ctx.Err() == nil; sent++ {
		if _, err := sender.Write(filler); err != nil {
			return sent, fmt.Errorf("fill %v: %w", p.addr, err)
		}
		delta, err := p.ns.WaitCounters(before, 20*time.Millisecond, func(d netlab.Counters) bool { return d[netlab.UdpRcvbufErrors] > 0 })
		if err != nil {
			return sent, err
		}
		if delta[netlab.UdpRcvbufErrors] > 0 {
			return sent, nil
		}
	}
	return maxFillers, fmt.Errorf("%d datagrams did not fill %v's receive buffer", maxFillers, p.addr)
}
