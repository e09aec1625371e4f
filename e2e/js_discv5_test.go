//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/internal/netlab"
	"github.com/discotrace/discotrace/ndjson"
)

// jsNode is a discv5 node of ChainSafe's implementation (e2e/js/discv5-node.mjs), driven
// by commands on its stdin.
type jsNode struct {
	record *enode.Node
	in     io.WriteCloser
	out    *bufio.Scanner
}

// jsReply is the node's answer to one command: what its own API returned.
type jsReply struct {
	Op    string `json:"op"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
	Nodes int    `json:"nodes"`
}

// startJSNode runs the JS node on addr inside ns with a fresh key, which it returns.
func startJSNode(t *testing.T, ns *netlab.Netns, addr netip.AddrPort) (*jsNode, string) {
	t.Helper()
	key := newKey(t)
	keyHex := fmt.Sprintf("%x", crypto.FromECDSA(key))
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "node", "js/discv5-node.mjs", addr.Addr().String(), fmt.Sprint(addr.Port()), keyHex)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the JS discv5 node (node and `npm ci` in e2e/js needed): %v", err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("JS node stderr:\n%s", stderr.String())
		}
	})
	n := &jsNode{in: in, out: bufio.NewScanner(out)}
	if !n.out.Scan() {
		t.Fatalf("the JS discv5 node printed no record (run `npm ci` in e2e/js):\n%s", stderr.String())
	}
	var hello struct {
		ENR string `json:"enr"`
	}
	if err := json.Unmarshal(n.out.Bytes(), &hello); err != nil {
		t.Fatalf("JS node's first line %q: %v", n.out.Text(), err)
	}
	if n.record, err = enode.Parse(enode.ValidSchemes, hello.ENR); err != nil {
		t.Fatalf("JS node's record %q: %v", hello.ENR, err)
	}
	return n, keyHex
}

// do sends the JS node a command about peer and returns its answer.
func (n *jsNode) do(t *testing.T, op string, peer *enode.Node) jsReply {
	t.Helper()
	if _, err := fmt.Fprintf(n.in, "%s %s\n", op, peer.String()); err != nil {
		t.Fatal(err)
	}
	if !n.out.Scan() {
		t.Fatalf("the JS node ended without answering %s", op)
	}
	var r jsReply
	if err := json.Unmarshal(n.out.Bytes(), &r); err != nil {
		t.Fatalf("JS node's answer %q: %v", n.out.Text(), err)
	}
	return r
}

// go-ethereum and ChainSafe's discv5 ping and look each other up, traced live in every
// namespace. J (JS) starts a handshake with geth node A and sends it PING and FINDNODE;
// A sends J PING and FINDNODE over that session; geth node B, behind J's other link,
// starts a handshake with J. Every request succeeded by the nodes' own account, so the
// trace must show both handshakes established (one each way between implementations),
// the exchanges answered in both directions, and no other handshake claimed established.
func TestJSDiscv5(t *testing.T) {
	p := newPair(t) // A and J
	bLink := netlab.NewVeth(t, p.veth.B, netlab.NewNetns(t))
	if err := bLink.B.AddDefaultRoute(bLink.A4); err != nil {
		t.Fatal(err)
	}
	bAddr := netip.AddrPortFrom(bLink.B4, p.port)
	a := startNode(t, p.veth.A, p.a)
	b := startNode(t, bLink.B, bAddr)
	j, jKey := startJSNode(t, p.veth.B, p.b)
	keys := []string{"--nodekey", a.keyHex(), "--nodekey", b.keyHex(), "--nodekey", jKey}
	// The JS node's namespace sees every datagram once, on its way in or out.
	capture := filepath.Join(t.TempDir(), "js.pcapng")
	stopCapture := startDumpcap(t, p.veth.B, p.port, capture)
	tr := startTrace(t, append([]string{"--port", p.portArg()}, keys...)...)

	for _, op := range []string{"ping", "findnode"} {
		if r := j.do(t, op, a.Self()); !r.OK {
			t.Fatalf("JS node's %s of geth node A: %s", op, r.Error)
		}
	}
	if err := pingErr(a.v5.Ping(j.record)); err != nil {
		t.Fatalf("geth node A's PING of the JS node: %v", err)
	}
	if _, err := a.v5.Findnode(j.record, []uint{256}); err != nil {
		t.Fatalf("geth node A's FINDNODE of the JS node: %v", err)
	}
	if err := pingErr(b.v5.Ping(j.record)); err != nil {
		t.Fatalf("geth node B's PING of the JS node: %v", err)
	}
	evs := tr.stop(t, verdictLinger)
	stopCapture()

	// The same verdicts live and from a capture of the same traffic.
	ids := [3]string{a.Self().ID().String(), b.Self().ID().String(), j.record.ID().String()}
	t.Run("live", func(t *testing.T) { checkJSVerdicts(t, evs, ids) })
	t.Run("capture", func(t *testing.T) { checkJSVerdicts(t, decodeCapture(t, capture, keys...), ids) })
}

// checkJSVerdicts checks that every exchange between geth nodes A, B and the JS node J
// was answered and that J>A and B>J each established one handshake.
func checkJSVerdicts(t *testing.T, evs events, ids [3]string) {
	aID, bID, jID := ids[0], ids[1], ids[2]
	answered := func(req, from, to string) {
		t.Helper()
		ex := evs.where(func(ev ndjson.Event) bool {
			return ev.Type == ndjson.TypeExchange && ev.Req == req && ev.InitiatorID == from && ev.RecipientID == to
		})
		if len(ex.list) == 0 {
			t.Errorf("no %s exchange %s > %s", req, from[:8], to[:8])
		}
		for i, ev := range ex.list {
			if ev.Outcome != "answered" {
				t.Errorf("want %s %s > %s answered:\n%s", req, from[:8], to[:8], ex.lines[i])
			}
		}
	}
	answered("PING/v5", jID, aID)
	answered("FINDNODE/v5", jID, aID)
	answered("PING/v5", aID, jID)
	answered("FINDNODE/v5", aID, jID)
	answered("PING/v5", bID, jID)

	established := map[[2]string]int{}
	for i, ev := range evs.list {
		if ev.Type != ndjson.TypeHandshake {
			continue
		}
		if ev.Outcome != "established" {
			t.Errorf("a failed handshake between nodes that all succeeded:\n%s", evs.lines[i])
			continue
		}
		established[[2]string{ev.InitiatorID, ev.RecipientID}]++
	}
	want := map[[2]string]int{{jID, aID}: 1, {bID, jID}: 1}
	if fmt.Sprint(established) != fmt.Sprint(want) {
		t.Errorf("established handshakes (initiator, recipient): %v, want J>A and B>J once each (J %s, A %s, B %s)",
			established, jID[:8], aID[:8], bID[:8])
	}
	wantEvidenceOnce(t, evs)
}
