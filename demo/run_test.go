package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/internal/leftovers"
	"github.com/discotrace/discotrace/internal/netlab"
	"github.com/discotrace/discotrace/tracer"
)

// TestDemo runs the demo end to end on this kernel and checks, from the typed results,
// that each scenario showed what it is there to show, then that the demo left nothing
// behind: no namespace, socket, child process, node or BPF program.
func TestDemo(t *testing.T) {
	netlab.RequireRoot(t)
	socketsBefore := sockets(t)
	out := &recordingOutput{}
	counts, err := Run(context.Background(), Config{Output: out, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	evs := out.events
	bySeq := map[uint64]*result.Observation{}
	for _, ev := range evs {
		if o, ok := ev.(*result.Observation); ok {
			bySeq[o.Seq] = o
		}
	}
	// cites reports whether ev's evidence cites an observation for which match is true.
	cites := func(evidence []result.Evidence, match func(*result.Observation) bool) bool {
		return slices.ContainsFunc(evidence, func(e result.Evidence) bool {
			o := bySeq[e.Seq]
			return o != nil && match(o)
		})
	}

	var established int
	answered := map[string]int{}
	failed := map[result.Cause]int{}
	for _, ev := range evs {
		switch ev := ev.(type) {
		case *result.Handshake:
			if ev.Outcome != result.Established {
				continue
			}
			established++
			if ev.WhoareyouRTT == nil || ev.HandshakeRTT == nil || ev.Total == nil || *ev.WhoareyouRTT <= 0 || *ev.HandshakeRTT <= 0 {
				t.Errorf("handshake %v -> %v established without its round trips: %+v", ev.Initiator, ev.Recipient, ev)
			}
		case *result.Exchange:
			switch ev.Outcome {
			case result.Answered:
				answered[ev.Req]++
				if ev.RTT == nil || *ev.RTT <= 0 {
					t.Errorf("%s %v -> %v answered without its round trip", ev.Req, ev.Initiator, ev.Recipient)
				}
			case result.Failed:
				if explained(ev, cites) {
					failed[ev.Cause]++
				}
			}
		}
	}
	if established == 0 {
		t.Error("no discv5 handshake established")
	}
	for _, req := range []string{"PING/v4", "FINDNODE/v4", "PING/v5", "FINDNODE/v5"} {
		if answered[req] == 0 {
			t.Errorf("no %s answered; answered: %v", req, answered)
		}
	}
	for _, c := range []result.Cause{result.ICMPUnreachable, result.AppDrop, result.KernelDrop, result.Expired} {
		if failed[c] == 0 {
			t.Errorf("no discv4 PING failed with %s and its evidence; failures with evidence: %v, all causes: %v", c, failed, counts.Causes)
		}
	}
	if counts.Drops["SOCKET_RCVBUFF"] == 0 {
		t.Errorf("no SOCKET_RCVBUFF drop; drops: %v", counts.Drops)
	}
	checkCounts(t, counts, evs)

	checkNothingLeft(t, out.programs, socketsBefore)
}

// Interrupted (Ctrl-C cancels the context) while its nodes talk, the demo stops, says so,
// and still removes everything it made.
func TestDemoInterrupted(t *testing.T) {
	netlab.RequireRoot(t)
	socketsBefore := sockets(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &recordingOutput{onEvent: func(ev result.Event) {
		if _, ok := ev.(*result.Handshake); ok {
			cancel() // mid-run: the healthy nodes have met
		}
	}}
	_, err := Run(ctx, Config{Output: out, Log: testLog{t}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted demo returned %v, want an error saying it was interrupted", err)
	}
	checkNothingLeft(t, out.programs, socketsBefore)
}

// Where the kernel cannot run the tracer (here: a backend it refuses), the demo fails
// with one line saying so, before it makes anything.
func TestDemoWhereTheKernelCannotTrace(t *testing.T) {
	netlab.RequireRoot(t)
	backend := ""
	for _, b := range []string{tracer.BackendFentry, tracer.BackendKprobe} {
		tr, err := tracer.Open(tracer.Config{Ports: []uint16{netlab.RandomHighPort()}, Backend: b})
		if err == nil {
			tr.Close()
			continue
		}
		backend = b
		break
	}
	if backend == "" {
		t.Skip("this kernel runs every backend")
	}
	_, err := Run(context.Background(), Config{Output: &recordingOutput{}, Backend: backend})
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "start tracing") || strings.Contains(err.Error(), "\n") {
		t.Errorf("demo with the %s backend this kernel refuses: %v, want one line saying tracing could not start", backend, err)
	}
	if ns, _ := netlab.NamespacesOf(os.Getpid()); len(ns) > 0 {
		t.Errorf("namespaces made: %v", ns)
	}
}

// explained reports whether a failed exchange is one the scenarios make, a discv4 PING,
// with the evidence its cause rests on.
func explained(ev *result.Exchange, cites func([]result.Evidence, func(*result.Observation) bool) bool) bool {
	if ev.Req != "PING/v4" {
		return false
	}
	switch ev.Cause {
	case result.ICMPUnreachable:
		return cites(ev.Evidence, func(o *result.Observation) bool {
			return o.Record.Kind == record.ICMP && o.Record.ICMPType == 3 && o.Record.ICMPCode == 3 // port unreachable
		})
	case result.KernelDrop:
		return cites(ev.Evidence, func(o *result.Observation) bool {
			return o.Record.Kind == record.Drop && o.Record.Reason == "SOCKET_RCVBUFF"
		})
	case result.AppDrop:
		return cites(ev.Evidence, func(o *result.Observation) bool { return o.Record.Kind == record.Read })
	case result.Expired:
		return len(ev.Evidence) > 0
	}
	return false
}

// checkCounts wants the counts Run returns to be those of the events it wrote.
func checkCounts(t *testing.T, got *Counts, evs []result.Event) {
	t.Helper()
	want := newCounts()
	for _, ev := range evs {
		want.add(ev)
	}
	if fmt.Sprint(*got) != fmt.Sprint(*want) {
		t.Errorf("counts %+v, the events written add up to %+v", *got, *want)
	}
}

// programFreeWait bounds how long the kernel may take to free a program after its
// last reference is closed.
const programFreeWait = 10 * time.Second

// checkNothingLeft fails for anything of the demo still there: a network namespace of
// this process, a socket opened since before, a child process, a goroutine of a
// go-ethereum node, a BPF program the demo loaded or a BPF object this process holds.
func checkNothingLeft(t *testing.T, programs []ebpf.ProgramID, socketsBefore []string) {
	t.Helper()
	namespaces, err := netlab.NamespacesOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		t.Errorf("network namespace %s left behind", ns)
	}
	for _, s := range sockets(t) {
		if !slices.Contains(socketsBefore, s) {
			t.Errorf("socket %s left open", s)
		}
	}
	if kids := leftovers.Children(0); len(kids) > 0 {
		t.Errorf("child processes left: %v", kids)
	}
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "go-ethereum/p2p/discover.") {
		t.Errorf("a go-ethereum node is still running:\n%s", stacks)
	}
	if len(programs) == 0 {
		t.Error("no BPF program was seen while the demo ran: nothing to check")
	}
	if loaded := leftovers.StillLoaded(programs, programFreeWait); len(loaded) > 0 {
		t.Errorf("BPF programs still loaded %v after the demo ended: %v", programFreeWait, loaded)
	}
	objs, err := leftovers.FDTargets(0, "anon_inode:bpf")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) > 0 {
		t.Errorf("BPF objects still held: %v", objs)
	}
}

// recordingOutput keeps the events, and the BPF programs this process holds when the
// first event comes (the tracer's, then attached).
type recordingOutput struct {
	once     sync.Once
	programs []ebpf.ProgramID
	events   []result.Event
	onEvent  func(result.Event) // when set, called with each event
}

func (o *recordingOutput) Write(ev result.Event) error {
	o.once.Do(func() { o.programs = leftovers.HeldPrograms(0) })
	o.events = append(o.events, result.Keep(ev))
	if o.onEvent != nil {
		o.onEvent(ev)
	}
	return nil
}

func (o *recordingOutput) Flush() error { return nil }

// sockets lists this process's open sockets.
func sockets(t *testing.T) []string {
	t.Helper()
	s, err := leftovers.FDTargets(0, "socket:")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testLog writes the demo's progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
