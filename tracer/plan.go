package tracer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Backend names, best first: each event class uses the first one available.
const (
	backendFentry = "fentry"
	backendKprobe = "kprobe"
)

// HookChoice is how one event class is captured: the backend chosen, the programs and
// where they attach, and why each better backend was not used.
type HookChoice struct {
	Class    string      // send, recv, read, icmp-in, icmp-out, drop
	Backend  string      // the backend used, e.g. "tracepoint"; BackendNone when none can
	Hooks    []string    // "program: attach point"
	Missing  []string    // hooks of the backend this kernel lacks, and what that costs
	Rejected []Rejection // better backends not used, best first
}

// BackendNone is HookChoice.Backend for an event class this kernel cannot capture.
const BackendNone = "none"

// Rejection is a backend not used for an event class, and why.
type Rejection struct {
	Backend string
	Reason  string
}

func (h HookChoice) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s (%s)", h.Class, h.Backend, strings.Join(h.Hooks, ", "))
	for _, m := range h.Missing {
		fmt.Fprintf(&b, "; without %s", m)
	}
	for _, r := range h.Rejected {
		fmt.Fprintf(&b, "; not %s: %s", r.Backend, r.Reason)
	}
	return b.String()
}

// hookClass is an event class with its kernel functions for the fentry and kprobe
// backends (issue 4), and the tracepoint backend's programs.
type hookClass struct {
	name      string
	functions []string // fentry/kprobe targets; none when only a tracepoint exists
	programs  []string // tracepoint backend: the programs (see programs), essential first
	// without says what the class loses without each non-essential program.
	without map[string]string
}

var hookClasses = []hookClass{
	{"send", []string{"udp_sendmsg", "udpv6_sendmsg"}, []string{"dt_egress", "dt_send_result"},
		map[string]string{"dt_send_result": "failed sends are not reported"}},
	{"recv", []string{"udp_queue_rcv_one_skb", "udpv6_queue_rcv_one_skb"}, []string{"dt_ingress"}, nil},
	{"read", []string{"udp_recvmsg", "udpv6_recvmsg"}, []string{"dt_read"}, nil},
	{"icmp-in", []string{"__udp4_lib_err", "__udp6_lib_err"}, []string{"dt_icmp_in", "dt_error_report"},
		map[string]string{"dt_error_report": "whether the socket was notified is unknown"}},
	{"icmp-out", []string{"__icmp_send", "icmp6_send"}, []string{"dt_egress"}, nil},
	{"drop", nil, []string{"dt_drop"}, nil},
}

// probeFentry tries to attach an empty fentry program to fn. It returns why it cannot.
func probeFentry(fn string) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:       "dt_probe_fentry",
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceFEntry,
		AttachTo:   fn,
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.LoadImm(asm.R0, 0, asm.DWord),
			asm.Return(),
		},
	})
	if errors.Is(err, unix.EPERM) {
		// cilium/ebpf's hint about MEMLOCK does not apply: root is refused fentry when
		// kernel lockdown forbids it.
		return fmt.Errorf("the kernel refuses fentry/%s with EPERM (kernel lockdown?)", fn)
	}
	if err != nil {
		return fmt.Errorf("load fentry/%s: %w", fn, err)
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attach fentry/%s: %w", fn, err)
	}
	return l.Close()
}

// probeKprobe tries to attach an empty kprobe program to fn. It returns why it cannot.
func probeKprobe(fn string, ks *kernelSymbols) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "dt_probe_kprobe",
		Type:    ebpf.Kprobe,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadImm(asm.R0, 0, asm.DWord),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("load kprobe: %w", err)
	}
	defer prog.Close()
	l, err := link.Kprobe(fn, prog, nil)
	if err != nil {
		if !kprobesBuiltIn(ks) {
			return errors.New("kprobes are not built into this kernel (no register_kprobe in /proc/kallsyms)")
		}
		return fmt.Errorf("attach kprobe/%s: %w", fn, err)
	}
	return l.Close()
}

// kprobesBuiltIn tells whether the kernel has kprobes at all (CONFIG_KPROBES).
func kprobesBuiltIn(ks *kernelSymbols) bool {
	if len(ks.names) == 0 {
		return true // cannot tell: report the attach error itself
	}
	_, _, ok := ks.span("register_kprobe")
	return ok
}

// errNotInBuild is why an available backend is still not used.
var errNotInBuild = errors.New("the kernel supports it, but this build has no programs for it")

// makePlan decides each class's backend. With backend "auto" it probes fentry and kprobe
// once (on the first class's function) and gives the result as the reason; with
// "tracepoint" it does not probe.
func makePlan(backend string, attachPoints, missing map[string]string, limits map[string][]string, ks *kernelSymbols) []HookChoice {
	var fentryErr, kprobeErr error
	if backend == BackendAuto {
		if fentryErr = probeFentry("udp_sendmsg"); fentryErr == nil {
			fentryErr = errNotInBuild
		}
		if kprobeErr = probeKprobe("udp_sendmsg", ks); kprobeErr == nil {
			kprobeErr = errNotInBuild
		}
	}
	plan := make([]HookChoice, 0, len(hookClasses))
	for _, c := range hookClasses {
		h := HookChoice{Class: c.name, Backend: BackendTracepoint}
		for i, p := range c.programs {
			if why, ok := missing[p]; ok {
				if i == 0 { // the essential program: the class cannot be captured
					h.Backend = BackendNone
				}
				cost := c.without[p]
				if cost == "" {
					cost = "no " + c.name + " events"
				}
				h.Missing = append(h.Missing, fmt.Sprintf("%s (%s): %s", p, why, cost))
				continue
			}
			h.Hooks = append(h.Hooks, p+": "+attachPoints[p])
		}
		h.Missing = append(h.Missing, limits[c.name]...)
		for _, b := range []struct {
			name string
			err  error
		}{{backendFentry, fentryErr}, {backendKprobe, kprobeErr}} {
			reason := "not requested (backend " + backend + ")"
			switch {
			case len(c.functions) == 0:
				reason = "no kernel function serves this class better than its tracepoint"
			case b.err != nil:
				reason = b.err.Error()
			}
			h.Rejected = append(h.Rejected, Rejection{Backend: b.name, Reason: reason})
		}
		plan = append(plan, h)
	}
	return plan
}
