package decode

import (
	"bytes"
	"crypto/ecdsa"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// Real go-ethereum discovery nodes (p2p/discover, the code geth runs) talking over
// loopback sockets. The local node's socket keeps what it sends and receives as Records,
// as the tracer reports them, and the decoder, given the local node's key, must follow
// every exchange and handshake to its answer.

// recordingConn is a UDP socket that keeps its traffic as Records.
type recordingConn struct {
	*net.UDPConn
	local netip.AddrPort

	mu   sync.Mutex
	recs []*record.Record
	// lose, when set, says whether the kernel drops a datagram that reached the host
	// before the node reads it (a firewall's drop): it is kept, with the drop, and the
	// node never gets it.
	lose func() bool
}

func (c *recordingConn) keep(dir record.Direction, src, dst netip.AddrPort, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, &record.Record{Kind: record.Datagram, Time: time.Now(), Dir: dir, Src: src, Dst: dst, Len: len(b), Payload: bytes.Clone(b)})
}

func (c *recordingConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, from, err := c.UDPConn.ReadFromUDPAddrPort(b)
		if err != nil {
			return n, from, err
		}
		c.keep(record.DirIn, from, c.local, b[:n])
		if c.lose == nil || !c.lose() {
			return n, from, err
		}
		c.mu.Lock()
		c.recs = append(c.recs, &record.Record{Kind: record.Drop, Time: time.Now(), Src: from, Dst: c.local, Len: n, Reason: "NETFILTER_DROP"})
		c.mu.Unlock()
	}
}

func (c *recordingConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	c.keep(record.DirOut, c.local, to, b) // before the write: its answer cannot come first
	return c.UDPConn.WriteToUDPAddrPort(b, to)
}

// records returns what the socket saw, in time order.
func (c *recordingConn) records() []*record.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.recs)
	slices.SortStableFunc(out, func(a, b *record.Record) int { return a.Time.Compare(b.Time) })
	return out
}

// gethNode is a go-ethereum discovery node on a loopback socket.
type gethNode struct {
	key  *ecdsa.PrivateKey
	ln   *enode.LocalNode
	conn *recordingConn
}

func newGethNode(t *testing.T, keyHex string) *gethNode {
	t.Helper()
	key, err := crypto.HexToECDSA(keyHex)
	if err != nil {
		t.Fatal(err)
	}
	socket, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IP{127, 0, 0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	db, err := enode.OpenDB("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	addr := socket.LocalAddr().(*net.UDPAddr).AddrPort()
	ln := enode.NewLocalNode(db, key)
	ln.SetStaticIP(net.IP(addr.Addr().AsSlice()))
	ln.SetFallbackUDP(int(addr.Port()))
	return &gethNode{key: key, ln: ln, conn: &recordingConn{UDPConn: socket, local: addr}}
}

// listenV5 runs go-ethereum's discv5 on the node's socket until the test ends.
func (n *gethNode) listenV5(t *testing.T) *discover.UDPv5 {
	t.Helper()
	udp, err := discover.ListenV5(n.conn, n.ln, n.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(udp.Close)
	return udp
}

func (n *gethNode) config() discover.Config {
	return discover.Config{PrivateKey: n.key, NoFindnodeLivenessCheck: true}
}

// decodeGeth runs records through a Decoder that holds the local node's key, and counts
// the handshake and exchange verdicts.
func decodeGeth(t *testing.T, local *gethNode, recs []*record.Record) (map[string]int, []*ndjson.Event) {
	t.Helper()
	d := NewDecoder(Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{local.key}}})
	var evs []*ndjson.Event
	emit := func(ev result.Event) { evs = append(evs, ndjson.FromResult(ev, false)) }
	for _, r := range recs {
		d.Feed(r, emit)
	}
	d.Advance(recs[len(recs)-1].Time.Add(5*time.Second), emit)
	d.Flush(emit)
	verdicts := make(map[string]int)
	for _, ev := range evs {
		switch ev.Type {
		case ndjson.TypeHandshake:
			verdicts["handshake "+ev.Outcome+" "+ev.Cause]++
		case ndjson.TypeExchange:
			verdicts[ev.Req+" "+ev.Outcome+" "+ev.Cause]++
		}
	}
	return verdicts, evs
}

// checkGethDecoded fails for a datagram the decoder could not place as discovery.
func checkGethDecoded(t *testing.T, evs []*ndjson.Event, proto string) int {
	t.Helper()
	n := 0
	for _, ev := range evs {
		if ev.Type != ndjson.TypeSend && ev.Type != ndjson.TypeRecv {
			continue
		}
		n++
		if ev.Disc != nil && ev.Disc.Error == errUnknownDestination.Error() {
			continue // a first packet to a peer of unknown ID: followed once it answers
		}
		if ev.Disc == nil || ev.Disc.Proto != proto {
			t.Errorf("%s %s > %s not decoded as %s: %+v", ev.Type, ev.Src, ev.Dst, proto, ev.Disc)
		}
	}
	return n
}

// A discv5 node (the local one, whose key the decoder holds) is pinged by a peer, which
// starts the handshake, then asks that peer for nodes and its record; and it pings a
// second peer itself, whose ID the decoder learns only from its answer.
func TestGethDiscv5(t *testing.T) {
	a, b, c := newGethNode(t, disctest.KeyA), newGethNode(t, disctest.KeyB), newGethNode(t, disctest.KeyC)
	udpA := a.listenV5(t)
	udpB := b.listenV5(t)
	udpC := c.listenV5(t)

	if _, err := udpB.Ping(udpA.Self()); err != nil { // b starts the session
		t.Fatal(err)
	}
	if _, err := udpA.Findnode(udpB.Self(), []uint{256}); err != nil {
		t.Fatal(err)
	}
	if _, err := udpA.RequestENR(udpB.Self()); err != nil {
		t.Fatal(err)
	}
	if _, err := udpA.Ping(udpC.Self()); err != nil { // a starts this one
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)

	verdicts, evs := decodeGeth(t, a, a.conn.records())
	if n := checkGethDecoded(t, evs, packet.ProtoV5); n < 12 {
		t.Errorf("%d datagrams, want at least 12", n)
	}
	// The nodes' tables work in the background too (a node just added is pinged), so
	// the counts are at least these, and nothing fails.
	checkGethVerdicts(t, verdicts, map[string]int{
		"handshake established ": 2,
		// In b's session, which a's key opens: b's PING, a's FINDNODE and RequestENR's
		// FINDNODE for distance 0. a's PING to c travels in a session a set up, which
		// no key of a's opens: the handshake alone shows it answered.
		"PING/v5 answered ": 1, "FINDNODE/v5 answered ": 2,
	})
	for _, ev := range evs {
		if ev.Type == ndjson.TypeHandshake && (ev.WhoareyouRTTNs == nil || ev.HandshakeRTTNs == nil || *ev.TotalNs <= 0 || *ev.TotalNs > int64(time.Second)) {
			t.Errorf("handshake without its round trips: %+v", ev)
		}
	}
}

// Two discv4 nodes bond (PING both ways), then the local one asks for the other's record
// and looks up a key, which sends FINDNODE.
func TestGethDiscv4(t *testing.T) {
	a, b := newGethNode(t, disctest.KeyA), newGethNode(t, disctest.KeyB)
	udpB, err := discover.ListenV4(b.conn, b.ln, b.config())
	if err != nil {
		t.Fatal(err)
	}
	defer udpB.Close()
	cfgA := a.config()
	cfgA.Bootnodes = []*enode.Node{udpB.Self()}
	udpA, err := discover.ListenV4(a.conn, a.ln, cfgA)
	if err != nil {
		t.Fatal(err)
	}
	defer udpA.Close()

	if _, err := udpA.Ping(udpB.Self()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // b pings back: the bond FINDNODE needs
	if _, err := udpA.RequestENR(udpB.Self()); err != nil {
		t.Fatal(err)
	}
	udpA.LookupPubkey(&b.key.PublicKey)
	time.Sleep(50 * time.Millisecond)

	verdicts, evs := decodeGeth(t, a, a.conn.records())
	checkGethDecoded(t, evs, packet.ProtoV4)
	checkGethVerdicts(t, verdicts, map[string]int{
		"PING/v4 answered ":       2, // a's, and b's to bond back
		"ENRREQUEST/v4 answered ": 1, "FINDNODE/v4 answered ": 1,
	})
}

// checkGethVerdicts wants at least the given counts, and every verdict a success.
func checkGethVerdicts(t *testing.T, got, atLeast map[string]int) {
	t.Helper()
	for k, n := range atLeast {
		if got[k] < n {
			t.Errorf("%d × %q, want at least %d (all: %v)", got[k], k, n, got)
		}
	}
	for k, n := range got {
		if !strings.Contains(k, " answered ") && !strings.Contains(k, " established ") {
			t.Errorf("%d × %q", n, k)
		}
	}
}
