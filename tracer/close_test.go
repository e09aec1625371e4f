package tracer

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// programIDs returns the kernel IDs of the tracer's programs, once per attachment (a kprobe
// program attached to two functions twice), so that its length is the number of links.
func (t *Tracer) programIDs() ([]ebpf.ProgramID, error) {
	var ids []ebpf.ProgramID
	found := 0
	// Before Linux 5.15 a kprobe attaches through its perf event, not a BPF link (the
	// link has no info): such attachments are not among the system's links, and go with
	// the tracer's files all the same. Their programs are left out here.
	kprobeLinks := true
	for _, l := range t.links {
		if _, err := l.Info(); err != nil {
			kprobeLinks = false
		}
	}
	for _, p := range programs {
		prog := t.coll.Programs[p.name]
		if prog == nil {
			continue
		}
		found++
		info, err := prog.Info()
		if err != nil {
			return nil, err
		}
		id, ok := info.ID()
		if !ok {
			return nil, errors.New("kernel gives no program IDs")
		}
		attachments := 1
		if p.backend == BackendKprobe {
			attachments = len(p.functions)
			if !kprobeLinks {
				attachments = 0
			}
		}
		for range attachments {
			ids = append(ids, id)
		}
	}
	if found != len(t.coll.Programs) {
		return nil, fmt.Errorf("%d programs loaded, %d of them in the programs table", len(t.coll.Programs), found)
	}
	return ids, nil
}

// linksTo lists the links in the whole system that attach one of the programs.
func linksTo(t *testing.T, progs []ebpf.ProgramID) []string {
	t.Helper()
	want := map[ebpf.ProgramID]bool{}
	for _, id := range progs {
		want[id] = true
	}
	var found []string
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue // gone meanwhile
		}
		if want[info.Program] {
			found = append(found, fmt.Sprintf("link %d (%v) -> program %d", info.ID, info.Type, info.Program))
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate links: %v", err)
	}
	return found
}

// checkGone checks that no link attaches the programs, and that the programs are freed
// within a few seconds (the kernel frees detached tracing programs after an RCU grace
// period).
func checkGone(t *testing.T, progs []ebpf.ProgramID) {
	t.Helper()
	if l := linksTo(t, progs); len(l) != 0 {
		t.Errorf("still attached: %v", l)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, id := range progs {
		for {
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				break
			}
			p.Close()
			if time.Now().After(deadline) {
				t.Errorf("program %d still exists 5s after", id)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Close detaches everything, and the events still in the ring buffer stay readable.
func TestCloseDetachesEverything(t *testing.T) {
	requireRoot(t)
	port := freePort(t, "udp4")
	tr, err := Open(Config{Ports: []uint16{port}, Backend: testBackend()})
	if err != nil {
		t.Fatal(err)
	}
	// Four events nobody reads before Close: send, icmp out, icmp in, drop.
	peer := listen(t, "udp4", netip.MustParseAddrPort("127.0.0.1:0"))
	if _, err := peer.WriteToUDPAddrPort([]byte("ping"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	progs, err := tr.programIDs()
	if err != nil {
		t.Fatal(err)
	}
	if l := linksTo(t, progs); len(l) != len(progs) {
		t.Fatalf("before Close: %d links to the tracer's programs, want %d (one per attachment): %v", len(l), len(progs), l)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkGone(t, progs)
	var kinds []string
	for {
		ev, err := tr.Read()
		if err == ErrClosed {
			break
		}
		if err != nil {
			t.Fatalf("Read after Close: %v", err)
		}
		kinds = append(kinds, ev.Kind.String())
	}
	sort.Strings(kinds)
	if got := strings.Join(kinds, " "); got != "drop icmp icmp send" {
		t.Errorf("Read after Close gave %q, want the four events left in the ring buffer", got)
	}
	if _, err := tr.Read(); err != ErrClosed {
		t.Errorf("Read after the last event: %v, want ErrClosed", err)
	}
}

// A tracer killed with SIGKILL leaves nothing attached: its links die with its files.
func TestKilledProcessLeavesNothingAttached(t *testing.T) {
	requireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperTracerProcess$")
	cmd.Env = append(os.Environ(), "DISCOTRACE_HELPER_TRACER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("helper gave no program IDs: %v", err)
	}
	var progs []ebpf.ProgramID
	for _, f := range strings.Fields(strings.TrimPrefix(line, "programs:")) {
		id, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			t.Fatalf("helper said %q", line)
		}
		progs = append(progs, ebpf.ProgramID(id))
	}
	// Iterating the system's links races with other processes creating and closing
	// theirs; look again before calling a count wrong.
	deadline := time.Now().Add(3 * time.Second)
	for l := linksTo(t, progs); len(l) != len(progs); l = linksTo(t, progs) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("helper running: %d links to its programs, want %d (one per attachment): %v", len(l), len(progs), l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	checkGone(t, progs)
}

// TestHelperTracerProcess is TestKilledProcessLeavesNothingAttached's child: it opens a
// tracer, prints its program IDs and waits to be killed.
func TestHelperTracerProcess(t *testing.T) {
	if os.Getenv("DISCOTRACE_HELPER_TRACER") != "1" {
		t.Skip("helper process of TestKilledProcessLeavesNothingAttached")
	}
	tr, err := Open(Config{Ports: []uint16{freePort(t, "udp4")}, Backend: testBackend()})
	if err != nil {
		t.Fatal(err)
	}
	progs, err := tr.programIDs()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Print("programs:")
	for _, id := range progs {
		fmt.Print(" ", id)
	}
	fmt.Println()
	time.Sleep(time.Minute)
}
