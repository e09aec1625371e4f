package main

import (
	"bufio"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/ndjson"
	"github.com/discotrace/discotrace/tracer"
)

// A geth node in a network namespace of its own, started as `geth --datadir D --port P`
// with its key in D/geth/nodekey: `discotrace trace` without --port or --nodekey finds
// it, watches P, loads its key (a discv5 handshake with it is decrypted: the events carry
// the decrypted message) and never prints the key.
//
// The node is go-ethereum's discv5 (p2p/discover) in this test binary, run under the name
// geth (a symlink), as the geth binary would run it; a second node in the same process
// pings it once trace is attached.
func TestAttachFindsAGethNodeInANamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace and attach BPF programs")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("iproute2's ip is needed (apt-get install iproute2; .ci/run installs it)")
	}
	dir := t.TempDir()
	datadir := filepath.Join(dir, "data")
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(datadir, "geth"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := crypto.SaveECDSA(filepath.Join(datadir, "geth", "nodekey"), key); err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("dtattach-%d", os.Getpid())
	runIP(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	runIP(t, "-n", ns, "link", "set", "lo", "up")

	gethPath := filepath.Join(dir, "geth")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, gethPath); err != nil {
		t.Fatal(err)
	}
	const port = 30377 // not the default: trace must learn it from the command line
	node := exec.Command("ip", "netns", "exec", ns, gethPath, "--datadir", datadir, "--port", fmt.Sprint(port))
	node.Env = append(os.Environ(), "DISCOTRACE_TEST_GETH=1")
	node.Stderr = os.Stderr
	toNode, err := node.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	fromNode, err := node.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { toNode.Close(); node.Process.Kill(); node.Wait() }()
	lines := bufio.NewScanner(fromNode)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("the geth node did not start: %q %v", lines.Text(), lines.Err())
	}

	f := traceWith(3 * time.Second)
	f.ports = []uint{30303} // the flag's default, which attaching replaces
	f.autoAttach = true
	stdout, stderr, done := startTrace(t, f)
	if _, err := io.WriteString(toNode, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() || lines.Text() != "pinged" {
		t.Fatalf("the peer's pings: %q %v", lines.Text(), lines.Err())
	}
	if err := <-done; err != nil {
		t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
	}

	id := enode.PubkeyToIDV4(&key.PublicKey)
	want := fmt.Sprintf("discotrace: attached to geth (pid %d, ", node.Process.Pid) // ip netns exec execs geth
	line := ""
	for l := range strings.SplitSeq(stderr.String(), "\n") {
		if strings.HasPrefix(l, want) {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("stderr does not say it attached to the geth node, pid %d:\n%s", node.Process.Pid, stderr.String())
	}
	for _, part := range []string{fmt.Sprintf("UDP port %d", port), "node " + id.String(), "key from " + filepath.Join(datadir, "geth", "nodekey")} {
		if !strings.Contains(line, part) {
			t.Errorf("attach line %q: no %q", line, part)
		}
	}
	if !strings.Contains(stderr.String(), "--port N") || !strings.Contains(stderr.String(), "--nodekey FILE") {
		t.Errorf("stderr does not say how to override:\n%s", stderr.String())
	}
	keyHex := hex.EncodeToString(crypto.FromECDSA(key))
	if strings.Contains(strings.ToLower(stdout.String()+stderr.String()), keyHex) {
		t.Fatal("the node key was printed")
	}

	var decrypted int
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var ev ndjson.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if ev.Type == "recv" && ev.Disc != nil && ev.Disc.Kind == "HANDSHAKE" && ev.Disc.Msg != "" {
			decrypted++
		}
	}
	if decrypted == 0 {
		t.Errorf("no discv5 HANDSHAKE to the node was decrypted (no disc.msg):\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
}

func runIP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// The test binary runs as the geth node of TestAttachFindsAGethNodeInANamespace when
// started so; init runs before the testing flags are parsed, which geth's would upset.
func init() {
	if os.Getenv("DISCOTRACE_TEST_GETH") != "1" {
		return
	}
	if err := runTestGeth(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "test geth:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runTestGeth is the part of geth the test needs: --datadir and --port, the node key
// from <datadir>/geth/nodekey, discv5 on 127.0.0.1:port. On a line on stdin a second
// node pings it three times; it runs until stdin closes.
func runTestGeth(args []string) error {
	fs := flag.NewFlagSet("geth", flag.ContinueOnError)
	datadir := fs.String("datadir", "", "data directory")
	port := fs.Int("port", 30303, "listening port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	key, err := crypto.LoadECDSA(filepath.Join(*datadir, "geth", "nodekey"))
	if err != nil {
		return err
	}
	node, err := startV5(key, *port)
	if err != nil {
		return err
	}
	defer node.Close()
	peerKey, err := crypto.GenerateKey()
	if err != nil {
		return err
	}
	peer, err := startV5(peerKey, 0)
	if err != nil {
		return err
	}
	defer peer.Close()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		return nil
	}
	for range 3 {
		peer.Ping(node.Self()) // the handshake is what the test looks for, answered or not
	}
	fmt.Println("pinged")
	for in.Scan() {
	}
	return nil
}

func startV5(key *ecdsa.PrivateKey, port int) (*discover.UDPv5, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return nil, err
	}
	db, err := enode.OpenDB("")
	if err != nil {
		return nil, err
	}
	ln := enode.NewLocalNode(db, key)
	ln.SetStaticIP(net.IPv4(127, 0, 0, 1))
	ln.SetFallbackUDP(c.LocalAddr().(*net.UDPAddr).Port)
	return discover.ListenV5(c, ln, discover.Config{PrivateKey: key, NoFindnodeLivenessCheck: true})
}

// With no Ethereum client running, trace keeps the default port and says so, and how
// to choose another. (An empty /proc: no process owns a UDP socket.)
func TestAttachFallsBackToTheDefaultPort(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: without the capabilities to trace, nothing is attached")
	}
	f := traceWith(0, 30303)
	f.autoAttach, f.procRoot = true, t.TempDir()
	cfg := tracer.Config{Ports: []uint16{30303}}
	var id decode.Identity
	var stderr strings.Builder
	f.attachToNodes(&stderr, &cfg, &id)
	if len(cfg.Ports) != 1 || cfg.Ports[0] != 30303 || len(id.Keys) != 0 {
		t.Errorf("ports %v, %d keys; want the default port 30303 and no key", cfg.Ports, len(id.Keys))
	}
	want := "discotrace: no Ethereum client found among the 0 processes owning UDP sockets; watching the default UDP port 30303: give --port N (and --nodekey FILE) for your node\n"
	if stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}
