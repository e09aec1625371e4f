//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/internal/netlab"
	"github.com/discotrace/discotrace/ndjson"
)

// discotraceBin is the discotrace binary built once for every scenario.
var discotraceBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: needs root (network namespaces, nft, BPF): run `make e2e` as root")
		return 1
	}
	for _, prog := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(prog); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s not found: install iproute2 and nftables (apt-get install iproute2 nftables)\n", prog)
			return 1
		}
	}
	dir, err := os.MkdirTemp("", "discotrace-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	discotraceBin = filepath.Join(dir, "discotrace")
	build := exec.Command("go", "build", "-o", discotraceBin, "../cmd/discotrace")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build discotrace:", err)
		return 1
	}
	if err := netlab.RemoveStale(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: remove stale namespaces:", err)
	}
	return m.Run()
}

// trace is a running `discotrace trace --format ndjson`.
type trace struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr lockedBuffer
	done   chan error
}

// lockedBuffer is stderr, read while the process writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startTrace runs the binary with args (after `trace --format ndjson`) and returns once its
// hooks are attached: from then on, every datagram of the watched ports is seen.
func startTrace(t *testing.T, args ...string) *trace {
	t.Helper()
	tr := &trace{done: make(chan error, 1)}
	tr.cmd = exec.Command(discotraceBin, append([]string{"trace", "--format", "ndjson"}, args...)...)
	tr.cmd.Stdout, tr.cmd.Stderr = &tr.stdout, &tr.stderr
	if err := tr.cmd.Start(); err != nil {
		t.Fatalf("start discotrace: %v", err)
	}
	go func() { tr.done <- tr.cmd.Wait() }()
	t.Cleanup(func() {
		if tr.cmd.ProcessState == nil {
			tr.cmd.Process.Kill()
			<-tr.done
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(tr.stderr.String(), "hooks attached in") {
		select {
		case err := <-tr.done:
			t.Fatalf("discotrace ended before attaching: %v\n%s", err, tr.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("discotrace did not attach within a minute:\n%s", tr.stderr.String())
		}
	}
	return tr
}

// stop interrupts the trace after linger (time for the decoder's verdicts to come due)
// and returns its events.
func (tr *trace) stop(t *testing.T, linger time.Duration) events {
	t.Helper()
	time.Sleep(linger)
	tr.cmd.Process.Signal(syscall.SIGINT)
	if err := <-tr.done; err != nil {
		t.Fatalf("discotrace: %v\n%s", err, tr.stderr.String())
	}
	evs := parseEvents(t, tr.stdout.Bytes())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("discotrace stderr:\n%s\nevents:\n%s", tr.stderr.String(), strings.Join(evs.lines, "\n"))
		}
	})
	return evs
}

// decodeCapture runs `discotrace decode` on a capture file and returns its events.
func decodeCapture(t *testing.T, path string, args ...string) events {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(discotraceBin, append([]string{"decode", "--format", "ndjson", path}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("discotrace decode %s: %v\n%s", path, err, stderr.String())
	}
	evs := parseEvents(t, stdout.Bytes())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("decode of %s, stderr:\n%s\nevents:\n%s", path, stderr.String(), strings.Join(evs.lines, "\n"))
		}
	})
	return evs
}

// startDumpcap captures the UDP traffic to and from port in ns with Wireshark's dumpcap
// (as a capture an operator would take) into file; the returned stop ends it.
func startDumpcap(t *testing.T, ns *netlab.Netns, port uint16, file string) (stop func()) {
	t.Helper()
	stderr := &lockedBuffer{}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "dumpcap", "-q", "-i", "any", "-f", fmt.Sprintf("udp port %d", port), "-w", file)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dumpcap (Debian's wireshark-common, installed with tshark): %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "Capturing on"); {
		select {
		case err := <-done:
			t.Fatalf("dumpcap ended before capturing: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dumpcap did not start within 30 s:\n%s", stderr.String())
		}
	}
	return func() {
		t.Helper()
		cmd.Process.Signal(syscall.SIGINT)
		if err := <-done; err != nil {
			t.Fatalf("dumpcap: %v\n%s", err, stderr.String())
		}
	}
}

// parseEvents reads an NDJSON event stream.
func parseEvents(t *testing.T, out []byte) events {
	t.Helper()
	var evs events
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev ndjson.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		evs.list = append(evs.list, ev)
		evs.lines = append(evs.lines, sc.Text())
	}
	return evs
}

// events are a trace's NDJSON lines, parsed, with their text for failure messages.
type events struct {
	list  []ndjson.Event
	lines []string
}

// where returns the events (and their lines) that keep says to keep.
func (e events) where(keep func(ndjson.Event) bool) events {
	var out events
	for i, ev := range e.list {
		if keep(ev) {
			out.list = append(out.list, ev)
			out.lines = append(out.lines, e.lines[i])
		}
	}
	return out
}

func (e events) String() string { return strings.Join(e.lines, "\n") }

// exchanges are the exchange events of request req (e.g. "PING/v4") from initiator to
// recipient (either may be "" for any).
func (e events) exchanges(req, initiator, recipient string) events {
	return e.where(func(ev ndjson.Event) bool {
		return ev.Type == ndjson.TypeExchange && ev.Req == req &&
			(initiator == "" || ev.Initiator == initiator) && (recipient == "" || ev.Recipient == recipient)
	})
}

// handshakes are the handshake events from initiator to recipient ("" for any).
func (e events) handshakes(initiator, recipient string) events {
	return e.where(func(ev ndjson.Event) bool {
		return ev.Type == ndjson.TypeHandshake &&
			(initiator == "" || ev.Initiator == initiator) && (recipient == "" || ev.Recipient == recipient)
	})
}

// bySeq finds the event numbered seq.
func (e events) bySeq(seq uint64) (ndjson.Event, bool) {
	for _, ev := range e.list {
		if ev.Seq == seq {
			return ev, true
		}
	}
	return ndjson.Event{}, false
}

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

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// startNode starts a node on addr inside ns; it stops when the test ends.
func startNode(t *testing.T, ns *netlab.Netns, addr netip.AddrPort) *node {
	t.Helper()
	n := &node{key: newKey(t), addr: addr}
	if err := ns.Do(func() (err error) {
		n.conn, err = netlab.ListenUDP(addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var err error
	if n.db, err = enode.OpenDB(""); err != nil {
		n.conn.Close()
		t.Fatal(err)
	}
	ln := enode.NewLocalNode(n.db, n.key)
	ln.SetStaticIP(net.IP(addr.Addr().AsSlice()))
	ln.SetFallbackUDP(int(addr.Port()))
	unhandled := make(chan discover.ReadPacket, 100)
	if n.v4, err = discover.ListenV4(n.conn, ln, discover.Config{PrivateKey: n.key, Unhandled: unhandled}); err != nil {
		n.conn.Close()
		n.db.Close()
		t.Fatal(err)
	}
	shared := &discover.SharedUDPConn{UDPConn: n.conn, Unhandled: unhandled}
	if n.v5, err = discover.ListenV5(shared, ln, discover.Config{PrivateKey: n.key}); err != nil {
		n.v4.Close()
		n.db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.v4.Close()
		n.v5.Close()
		n.db.Close()
	})
	return n
}

// Self is the node's record.
func (n *node) Self() *enode.Node { return n.v4.Self() }

// keyHex is the node key as --nodekey takes it.
func (n *node) keyHex() string { return fmt.Sprintf("%x", crypto.FromECDSA(n.key)) }

// recordOf is the record a node of key at addr would have, for a peer with no node.
func recordOf(key *ecdsa.PrivateKey, addr netip.AddrPort) *enode.Node {
	return enode.NewV4(&key.PublicKey, net.IP(addr.Addr().AsSlice()), int(addr.Port()), int(addr.Port()))
}

// pair is two namespaces joined by a veth pair, each with the scenario's port.
type pair struct {
	veth *netlab.Veth
	a, b netip.AddrPort
	port uint16
}

func newPair(t *testing.T) pair {
	t.Helper()
	v := netlab.Pair(t)
	port := netlab.RandomHighPort()
	for _, ns := range []*netlab.Netns{v.A, v.B} {
		// Port unreachable errors are rate limited per destination; each must be seen.
		if err := ns.SetSysctl("net.ipv4.icmp_ratelimit", "0"); err != nil {
			t.Fatal(err)
		}
	}
	return pair{veth: v, a: netip.AddrPortFrom(v.A4, port), b: netip.AddrPortFrom(v.B4, port), port: port}
}

// portArg is --port for the scenario.
func (p pair) portArg() string { return strconv.Itoa(int(p.port)) }

// nft runs an nft script inside ns (the script is read from stdin).
func nft(t *testing.T, ns *netlab.Netns, script string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s\nscript:\n%s", ns.Name, err, out, script)
	}
}

// timed runs call and returns how long it took: the most any round trip in it can have
// taken, as the node itself measured around it.
func timed(call func() error) (time.Duration, error) {
	start := time.Now()
	err := call()
	return time.Since(start), err
}

// pingErr keeps the error of a ping's two results.
func pingErr[T any](_ T, err error) error { return err }

// itoa formats a namespace inode for --netns.
func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// wantFailed asserts that the exchanges of req from initiator to recipient exist and all
// failed with cause, and returns them.
func wantFailed(t *testing.T, evs events, req, initiator, recipient, cause string) events {
	t.Helper()
	ex := evs.exchanges(req, initiator, recipient)
	if len(ex.list) == 0 {
		t.Fatalf("no %s exchange %s > %s", req, initiator, recipient)
	}
	for i, ev := range ex.list {
		if ev.Outcome != "failed" || ev.Cause != cause {
			t.Errorf("want %s %s > %s failed with %s, got:\n%s", req, initiator, recipient, cause, ex.lines[i])
		}
	}
	return ex
}

// citesEvidence reports whether ev's evidence cites an event of the stream that match
// accepts.
func citesEvidence(evs events, ev ndjson.Event, match func(ndjson.Event) bool) bool {
	for _, e := range ev.Evidence {
		if cited, ok := evs.bySeq(e.Seq); ok && match(cited) {
			return true
		}
	}
	return false
}

// verdictLinger is how long a trace runs on after the last request: the discv5 wait
// (700 ms) plus the live decoder's wait for the loss report covering it (up to 1.1 s).
const verdictLinger = 2500 * time.Millisecond

// listenIn opens a bare UDP socket on addr inside ns, closed when the test ends: a peer
// that is no discovery node (it stays silent, or sends hand-made packets).
func listenIn(t *testing.T, ns *netlab.Netns, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = netlab.ListenUDP(addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantEvidenceOnce asserts that no handshake or exchange cites one event twice.
func wantEvidenceOnce(t *testing.T, evs events) {
	t.Helper()
	for i, ev := range evs.list {
		seen := map[uint64]bool{}
		for _, e := range ev.Evidence {
			if e.Seq != 0 && seen[e.Seq] {
				t.Errorf("event %d cites event %d twice:\n%s", ev.Seq, e.Seq, evs.lines[i])
			}
			seen[e.Seq] = true
		}
	}
}

// ipIn runs iproute2's ip with args inside ns.
func ipIn(t *testing.T, ns *netlab.Netns, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v\n%s", ns.Name, strings.Join(args, " "), err, out)
	}
}

// sysctl sets a sysctl of ns.
func sysctl(t *testing.T, ns *netlab.Netns, key, value string) {
	t.Helper()
	if err := ns.SetSysctl(key, value); err != nil {
		t.Fatal(err)
	}
}
