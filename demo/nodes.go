package demo

import (
	"crypto/ecdsa"
	"fmt"
	"net"
	"net/netip"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/internal/netlab"
)

// node is a go-ethereum discovery node run as geth runs it: discv4 and discv5 on one UDP
// socket, discv5 reading what discv4 does not recognise (p2p.Server's setupDiscovery).
type node struct {
	key  *ecdsa.PrivateKey
	addr netip.AddrPort
	db   *enode.DB
	conn *net.UDPConn
	v4   *discover.UDPv4
	v5   *discover.UDPv5
}

// newKey makes a node key; the demo's keys exist only for the run.
func newKey() (*ecdsa.PrivateKey, error) {
	key, err := crypto.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate a node key: %w", err)
	}
	return key, nil
}

// enodeOf is the record a node of key at addr would have: what a peer needs to reach it.
func enodeOf(key *ecdsa.PrivateKey, addr netip.AddrPort) *enode.Node {
	return enode.NewV4(&key.PublicKey, net.IP(addr.Addr().AsSlice()), int(addr.Port()), int(addr.Port()))
}

// startNode starts a node with key on addr inside ns, bootstrapping from bootnodes.
func startNode(ns *netlab.Netns, key *ecdsa.PrivateKey, addr netip.AddrPort, bootnodes []*enode.Node) (*node, error) {
	n := &node{key: key, addr: addr}
	if err := ns.Do(func() (err error) {
		n.conn, err = netlab.ListenUDP(addr)
		return err
	}); err != nil {
		return nil, err
	}
	var err error
	if n.db, err = enode.OpenDB(""); err != nil { // in memory
		n.conn.Close()
		return nil, fmt.Errorf("open the node database: %w", err)
	}
	ln := enode.NewLocalNode(n.db, key)
	ln.SetStaticIP(net.IP(addr.Addr().AsSlice()))
	ln.SetFallbackUDP(int(addr.Port()))

	unhandled := make(chan discover.ReadPacket, 100)
	if n.v4, err = discover.ListenV4(n.conn, ln, discover.Config{PrivateKey: key, Bootnodes: bootnodes, Unhandled: unhandled}); err != nil {
		n.conn.Close()
		n.db.Close()
		return nil, fmt.Errorf("start discv4 on %v: %w", addr, err)
	}
	shared := &discover.SharedUDPConn{UDPConn: n.conn, Unhandled: unhandled}
	if n.v5, err = discover.ListenV5(shared, ln, discover.Config{PrivateKey: key, Bootnodes: bootnodes}); err != nil {
		n.v4.Close()
		n.db.Close()
		return nil, fmt.Errorf("start discv5 on %v: %w", addr, err)
	}
	return n, nil
}

// Self is the node's record.
func (n *node) Self() *enode.Node { return n.v4.Self() }

// Close stops both protocols and closes the socket. discv4 goes first: its read loop
// owns the socket and, ending, closes the channel discv5 reads from.
func (n *node) Close() {
	n.v4.Close()
	n.v5.Close()
	n.db.Close()
}
