package main

import (
	"bufio"
	"crypto/ecdsa"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
)

// What trace says on stderr is what is wrong, not what is normal: the hooks chosen for each
// event class (and why better backends were not used) only with --verbose.
func TestTraceShowsThePlanOnlyWithVerbose(t *testing.T) {
	port := portWithNoListener(t)
	for _, verbose := range []bool{false, true} {
		f := traceWith(100*time.Millisecond, port)
		f.raw, f.verbose = true, verbose
		_, stderr, done := startTrace(t, f)
		if err := <-done; err != nil {
			t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
		}
		out := stderr.String()
		for _, class := range eventClasses {
			got := false // a line naming the class's hooks; a "without" line is a loss, always shown
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, fmt.Sprintf("discotrace: %-8s ", class)) && !strings.Contains(line, " without ") {
					got = true
				}
			}
			if got != verbose {
				t.Errorf("--verbose=%v: stderr shows the hooks of %s: %v, want %v:\n%s", verbose, class, got, verbose, out)
			}
		}
		if strings.Contains(out, "not used for") != verbose {
			t.Errorf("--verbose=%v: stderr says why better backends were not used: %v, want %v:\n%s", verbose, !verbose, verbose, out)
		}
	}
}

// A node in a container: trace and doctor say nothing of a watched port a socket is bound
// to in another network namespace, and say on stderr, with what to do, when no socket in
// any namespace has it.
func TestTraceSaysWhenNoSocketIsBoundToAWatchedPort(t *testing.T) {
	bindUDPInTheChild(t)
	port := portWithNoListener(t)
	const says = "no UDP socket is bound to port "
	warned := func() (trace, doctor string) {
		f := traceWith(100*time.Millisecond, port)
		f.raw = true
		_, stderr, done := startTrace(t, f)
		if err := <-done; err != nil {
			t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
		}
		out, err := runDoctorCLI(t, "--port", fmt.Sprint(port))
		if err != nil {
			t.Fatalf("doctor: %v\n%s", err, out)
		}
		return stderr.String(), out
	}

	trace, doctor := warned()
	if !strings.Contains(trace, says+fmt.Sprint(port)+" in any network namespace") || !strings.Contains(trace, "--port") {
		t.Errorf("nothing bound to port %d: trace does not say so, with what to do:\n%s", port, trace)
	}
	if !strings.Contains(doctor, "discotrace: sockets    warn: "+says+fmt.Sprint(port)) {
		t.Errorf("nothing bound to port %d: doctor does not warn:\n%s", port, doctor)
	}

	netns := boundInNewNamespace(t, port)
	if own := netnsOf(t, "/proc/self"); netns == own {
		t.Fatalf("the child's network namespace %d is the test's own", netns)
	}
	b := findUDPBindings([]uint16{uint16(port)}, 0)
	if got := b.netns[uint16(port)]; len(got) != 1 || got[0] != netns {
		t.Errorf("port %d bound in network namespace %d: found in %v", port, netns, got)
	}
	trace, doctor = warned()
	if strings.Contains(trace, says) {
		t.Errorf("port %d bound in network namespace %d: trace says it is not:\n%s", port, netns, trace)
	}
	if want := fmt.Sprintf("discotrace: sockets    ok: UDP sockets bound to port %d in network namespace %d", port, netns); !strings.Contains(doctor, want) {
		t.Errorf("port %d bound in network namespace %d: doctor does not say so (want %q):\n%s", port, netns, want, doctor)
	}
}

// bindUDPInTheChild is the child of boundInNewNamespace, when the test binary runs as one:
// it binds the UDP port it is given, says so on stdout and holds it until stdin closes.
func bindUDPInTheChild(t *testing.T) {
	port := os.Getenv("DISCOTRACE_TEST_BIND_UDP")
	if port == "" {
		return
	}
	c, err := net.ListenPacket("udp", ":"+port)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("bound")
	io.Copy(io.Discard, os.Stdin)
	c.Close()
	os.Exit(0)
}

// boundInNewNamespace starts the test binary (the caller's test) in a network namespace of
// its own (unshare --net) with a UDP socket bound to port, and returns the namespace's
// inode; the process ends with the test.
func boundInNewNamespace(t *testing.T, port int) uint64 {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("unshare is needed (apt-get install util-linux; .ci/run installs it)")
	}
	cmd := exec.Command(unshare, "--net", os.Args[0], "-test.run=^"+t.Name()+"$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("DISCOTRACE_TEST_BIND_UDP=%d", port))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "bound\n" {
		t.Fatalf("the child in a new network namespace did not bind port %d: %q, %v", port, line, err)
	}
	return netnsOf(t, fmt.Sprintf("/proc/%d", cmd.Process.Pid)) // unshare execs the binary: same process
}

func netnsOf(t *testing.T, proc string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(proc+"/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// trace warns, when it stops, about a node key no traced packet matched, and not about the
// key of the node that sent them.
func TestTraceWarnsAboutANodeKeyThatMatchesNothing(t *testing.T) {
	port := portWithNoListener(t)
	sender, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  *ecdsa.PrivateKey
		warn bool
	}{{sender, false}, {other, true}} {
		f := traceWith(time.Second, port)
		f.nodeKeys = []string{hex.EncodeToString(crypto.FromECDSA(tc.key))}
		_, stderr, done := startTrace(t, f)
		sendPing(t, sender, port)
		if err := <-done; err != nil {
			t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
		}
		out := stderr.String()
		want := fmt.Sprintf("discotrace: --nodekey #1 (node %x) matches no node while tracing (1 discovery packet)", enode.PubkeyToIDV4(&tc.key.PublicKey).Bytes()[:4])
		if strings.Contains(out, want) != tc.warn || strings.Contains(out, "matches no node") != tc.warn {
			t.Errorf("key of the sender %v: stderr warns %v, want %v (%q):\n%s", !tc.warn, !tc.warn, tc.warn, want, out)
		}
	}
}

// sendPing sends a discv4 PING signed with key to port on the loopback.
func sendPing(t *testing.T, key *ecdsa.PrivateKey, port int) {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	from := c.LocalAddr().(*net.UDPAddr)
	packet, _, err := v4wire.Encode(key, &v4wire.Ping{
		Version:    4,
		From:       v4wire.Endpoint{IP: from.IP, UDP: uint16(from.Port)},
		To:         v4wire.Endpoint{IP: net.IPv4(127, 0, 0, 1), UDP: uint16(port)},
		Expiration: uint64(time.Now().Add(20 * time.Second).Unix()),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(packet); err != nil {
		t.Fatal(err)
	}
}
