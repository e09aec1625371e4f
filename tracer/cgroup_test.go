package tracer

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestOutermostCgroups(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{nil, nil},
		{[]string{"/sys/fs/cgroup/a"}, []string{"/sys/fs/cgroup/a"}},
		{[]string{"/sys/fs/cgroup/a/b", "/sys/fs/cgroup/a"}, []string{"/sys/fs/cgroup/a"}},
		{[]string{"/sys/fs/cgroup/a", "/sys/fs/cgroup/a/b/", "/sys/fs/cgroup/a"}, []string{"/sys/fs/cgroup/a"}},
		{[]string{"/sys/fs/cgroup/a", "/sys/fs/cgroup/ab"}, []string{"/sys/fs/cgroup/a", "/sys/fs/cgroup/ab"}},
		{[]string{"/sys/fs/cgroup/a/x", "/sys/fs/cgroup/b", "/sys/fs/cgroup/a/y"}, []string{"/sys/fs/cgroup/a/x", "/sys/fs/cgroup/b", "/sys/fs/cgroup/a/y"}},
	} {
		if got := outermostCgroups(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("outermostCgroups(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestUnifiedCgroupPath(t *testing.T) {
	got, err := unifiedCgroupPath("4:memory:/x\n0::/system.slice/geth.service\n")
	if err != nil || got != "/system.slice/geth.service" {
		t.Errorf("got %q, %v; want /system.slice/geth.service", got, err)
	}
	if _, err := unifiedCgroupPath("0::/../other.slice\n"); err == nil {
		t.Error("a cgroup outside the reader's cgroup namespace was accepted")
	}
	if _, err := unifiedCgroupPath("4:memory:/x\n"); err == nil {
		t.Error("a cgroup v1-only entry was accepted")
	}
}

// cgroupNodeEnv tells the test binary, started again, to act as the node in
// TestTracingScopedToTheNodesCgroup.
const cgroupNodeEnv = "DISCOTRACE_TEST_CGROUP_NODE"

// A node in its own cgroup, traced with the cgroup programs attached there: its sends and
// the datagrams reaching its socket are reported; a process outside the cgroup, on the
// same watched ports, is not seen sending or receiving (those programs never run for it).
func TestTracingScopedToTheNodesCgroup(t *testing.T) {
	requireRoot(t)
	root, err := Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, fmt.Sprintf("discotrace-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create a child cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove the child cgroup: %v", err)
		}
	})
	nodePort, peerPort, outsiderPort := freePort(t, "udp4"), freePort(t, "udp4"), freePort(t, "udp4")
	c := openCollector(t, Config{Ports: []uint16{nodePort, peerPort, outsiderPort}, Cgroups: []string{dir}})
	if cg := c.tr.Plan()[0].Hooks[0]; !strings.Contains(cg, dir) {
		t.Errorf("the plan's send hook %q does not name the cgroup %s", cg, dir)
	}

	// The outside peer, and an outsider on another watched port talking to it.
	lo := netip.MustParseAddr("127.0.0.1")
	peer := listen(t, "udp4", netip.AddrPortFrom(lo, peerPort))
	outsider := listen(t, "udp4", netip.AddrPortFrom(lo, outsiderPort))

	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	node := exec.Command(os.Args[0], "-test.run=^TestTracingScopedToTheNodesCgroup$")
	node.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%d", cgroupNodeEnv, nodePort, peerPort))
	node.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	node.Stderr = os.Stderr
	out, err := node.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(); err != nil {
		t.Fatalf("start the node in cgroup %s: %v", dir, err)
	}
	ready, _ := bufio.NewReader(out).ReadString('\n')
	if ready != "ready\n" {
		node.Process.Kill()
		node.Wait()
		t.Fatalf("the node process said %q, want ready", ready)
	}
	// The node pings the peer, the peer answers; the outsider sends the peer a datagram.
	buf := make([]byte, 64)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("the peer got no ping from the node: %v", err)
	}
	if _, err := peer.WriteToUDPAddrPort([]byte("pong"), from); err != nil {
		t.Fatal(err)
	}
	if err := node.Wait(); err != nil {
		t.Fatalf("the node process: %v", err)
	}
	if _, err := outsider.WriteToUDPAddrPort([]byte("outsider"), localAddrPort(peer)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := peer.ReadFromUDPAddrPort(buf); err != nil {
		t.Fatal(err)
	}

	evs := c.settle(500*time.Millisecond, 300*time.Millisecond, 3*time.Second, func(ev Event) bool {
		return ev.Kind == KindSend || ev.Kind == KindRecv || ev.Kind == KindLost
	})
	if lost := ofKind(evs, KindLost); len(lost) > 0 {
		t.Fatalf("events were lost:\n%s", dumpEvents(lost))
	}
	count := func(k Kind, src, dst uint16) int {
		return len(filterEvents(evs, func(ev Event) bool {
			return ev.Kind == k && ev.Src.Port() == src && ev.Dst.Port() == dst
		}))
	}
	for _, w := range []struct {
		what     string
		k        Kind
		src, dst uint16
		want     int
	}{
		{"the node's ping leaving", KindSend, nodePort, peerPort, 1},
		{"the answer reaching the node", KindRecv, peerPort, nodePort, 1},
		{"the ping reaching the peer outside", KindRecv, nodePort, peerPort, 0},
		{"the peer's answer leaving", KindSend, peerPort, nodePort, 0},
		{"the outsider's datagram leaving", KindSend, outsiderPort, peerPort, 0},
		{"the outsider's datagram reaching the peer", KindRecv, outsiderPort, peerPort, 0},
	} {
		if got := count(w.k, w.src, w.dst); got != w.want {
			t.Errorf("%s: %d %v events, want %d; send and recv events:\n%s", w.what, got, w.k, w.want, dumpEvents(evs))
		}
	}
}

// cgroupNodeMain is the node of TestTracingScopedToTheNodesCgroup, in its own process:
// it binds its port, says ready, pings the peer and waits for the answer.
func cgroupNodeMain(arg string) int {
	var nodePort, peerPort int
	if _, err := fmt.Sscanf(arg, "%d,%d", &nodePort, &peerPort); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 2
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: nodePort})
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 1
	}
	fmt.Println("ready")
	peer := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: peerPort}
	if _, err := conn.WriteToUDP([]byte("ping from "+strconv.Itoa(os.Getpid())), peer); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 1
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := conn.ReadFromUDP(make([]byte, 64)); err != nil {
		fmt.Fprintln(os.Stderr, "node: no answer:", err)
		return 1
	}
	return 0
}

func TestMain(m *testing.M) {
	if arg := os.Getenv(cgroupNodeEnv); arg != "" {
		os.Exit(cgroupNodeMain(arg))
	}
	os.Exit(m.Run())
}
