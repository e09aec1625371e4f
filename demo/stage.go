package demo

import (
	"crypto/ecdsa"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/internal/netlab"
)

// stage is everyone the demo runs, in the lab: the local node, whose traffic the story
// follows, two healthy go-ethereum peers, and one peer for each way discovery fails.
type stage struct {
	log     io.Writer
	local   *node
	healthy []*node
	down    peer           // a host where nothing listens on the port
	silent  peer           // reads every datagram and never answers
	busy    peer           // never reads: its receive buffer fills up
	skewed  peer           // its clock is clockOffset behind
	readers sync.WaitGroup // the silent peer's
}

// peer is a host with a node key but no go-ethereum node: a peer that misbehaves.
type peer struct {
	host
	key  *ecdsa.PrivateKey
	conn *net.UDPConn // nil for a peer that is down
}

func (p peer) enode() *enode.Node { return enodeOf(p.key, p.addr) }

// cast is the keys of everyone on stage, made before the tracer starts so that the decoder
// holds them all from the first packet.
type cast struct {
	local                      *ecdsa.PrivateKey
	healthy                    [2]*ecdsa.PrivateKey
	down, silent, busy, skewed *ecdsa.PrivateKey
}

func newCast() (*cast, error) {
	c := &cast{}
	for _, k := range []**ecdsa.PrivateKey{&c.local, &c.healthy[0], &c.healthy[1], &c.down, &c.silent, &c.busy, &c.skewed} {
		var err error
		if *k, err = newKey(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// keys lists every key of the cast.
func (c *cast) keys() []*ecdsa.PrivateKey {
	return []*ecdsa.PrivateKey{c.local, c.healthy[0], c.healthy[1], c.down, c.silent, c.busy, c.skewed}
}

// setUp starts the cast in the lab: the local node in the hub, each peer in a namespace
// of its own. On error, what was started is stopped again (the lab stays to its owner).
func setUp(l *lab, c *cast, log io.Writer) (s *stage, err error) {
	s = &stage{log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.local, err = startNode(l.hub, c.local, l.hubEndpoint(), nil); err != nil {
		return s, err
	}
	for _, key := range c.healthy {
		h, err := l.addHost()
		if err != nil {
			return s, err
		}
		n, err := startNode(h.ns, key, h.addr, []*enode.Node{s.local.Self()})
		if err != nil {
			return s, err
		}
		s.healthy = append(s.healthy, n)
	}
	for _, p := range []struct {
		peer   *peer
		key    *ecdsa.PrivateKey
		listen bool
	}{{&s.down, c.down, false}, {&s.silent, c.silent, true}, {&s.busy, c.busy, true}, {&s.skewed, c.skewed, true}} {
		h, err := l.addHost()
		if err != nil {
			return s, err
		}
		*p.peer = peer{host: h, key: p.key}
		if !p.listen {
			continue
		}
		if err := h.ns.Do(func() (err error) {
			p.peer.conn, err = netlab.ListenUDP(h.addr)
			return err
		}); err != nil {
			return s, err
		}
	}
	// SO_RCVBUF of 1 is raised by the kernel to its minimum: room for a few datagrams.
	if err := s.busy.conn.SetReadBuffer(1); err != nil {
		return s, fmt.Errorf("shrink the busy peer's receive buffer: %w", err)
	}
	s.readers.Add(1)
	go func() {
		defer s.readers.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := s.silent.conn.ReadFromUDPAddrPort(buf); err != nil {
				return // closed
			}
		}
	}()
	return s, nil
}

// Close stops every node and closes every socket of the cast.
func (s *stage) Close() {
	for _, n := range s.healthy {
		n.Close()
	}
	if s.local != nil {
		s.local.Close()
	}
	for _, p := range []peer{s.silent, s.busy, s.skewed} {
		if p.conn != nil {
			p.conn.Close()
		}
	}
	s.readers.Wait()
}
