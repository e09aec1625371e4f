package disctest

import (
	"crypto/ecdsa"
	"net"
	"net/netip"
	"testing"

	"github.com/ethereum/go-ethereum/common/mclock"
	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/ethereum/go-ethereum/p2p/enr"
)

// Node is one discovery node as go-ethereum runs it: its key, its UDP endpoint, its
// local record and its own discv5 codec, so that tests build packets with go-ethereum's
// encoders and move both ends through the real protocol states.
type Node struct {
	Key   *ecdsa.PrivateKey
	Addr  netip.AddrPort
	LN    *enode.LocalNode
	Codec *v5wire.Codec
}

// NewNode returns the node of a hex private key at addr ("10.0.0.1:30303").
func NewNode(tb testing.TB, keyHex, addr string) *Node {
	tb.Helper()
	return NewNodeFromKey(tb, Key(tb, keyHex), netip.MustParseAddrPort(addr))
}

// NewNodeFromKey returns the node of key at ap.
func NewNodeFromKey(tb testing.TB, key *ecdsa.PrivateKey, ap netip.AddrPort) *Node {
	tb.Helper()
	db, err := enode.OpenDB("")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	ln := enode.NewLocalNode(db, key)
	ln.SetStaticIP(net.IP(ap.Addr().AsSlice()))
	ln.Set(enr.UDP(ap.Port()))
	return &Node{Key: key, Addr: ap, LN: ln, Codec: v5wire.NewCodec(ln, key, mclock.System{}, nil)}
}

// ID is the node's ID.
func (n *Node) ID() enode.ID { return n.LN.ID() }

// V4Encode signs and frames a discv4 packet as go-ethereum does.
func V4Encode(tb testing.TB, key *ecdsa.PrivateKey, p v4wire.Packet) []byte {
	tb.Helper()
	b, _, err := v4wire.Encode(key, p)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
