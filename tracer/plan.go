package tracer

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
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

// hookClass is an event class and, per backend, the programs that capture it, essential
// first. A class only one backend serves uses it whatever the configured backend.
type hookClass struct {
	name     string
	backends map[string][]string
	// without says what the class loses without each non-essential program.
	without map[string]string
}

var hookClasses = []hookClass{
	{"send", map[string][]string{
		BackendFentry:     {"dt_egress", "dt_send_fexit", "dt_send6_fexit"},
		BackendKprobe:     {"dt_egress", "dt_send_kprobe", "dt_send6_kprobe", "dt_send_kretprobe"},
		BackendTracepoint: {"dt_egress", "dt_send_result"},
	}, map[string]string{"dt_send_result": "failed sends are not reported"}},
	{"recv", map[string][]string{BackendTracepoint: {"dt_ingress"}}, nil},
	{"read", map[string][]string{
		BackendFentry:     {"dt_read_fexit", "dt_read6_fexit", "dt_enqueue_fexit"},
		BackendKprobe:     {"dt_read_kprobe", "dt_read_kretprobe", "dt_enqueue_kprobe", "dt_enqueue_kretprobe"},
		BackendTracepoint: {"dt_read"},
	}, nil},
	{"icmp-in", map[string][]string{
		BackendFentry:     {"dt_icmp_rcv_fentry", "dt_icmp_rcv_fexit", "dt_icmp6_rcv_fentry", "dt_icmp6_rcv_fexit", "dt_error_report"},
		BackendKprobe:     {"dt_icmp_rcv_kprobe", "dt_icmp_rcv_kretprobe", "dt_error_report"},
		BackendTracepoint: {"dt_icmp_in", "dt_error_report"},
	}, map[string]string{"dt_error_report": "whether the socket was notified is unknown"}},
	{"icmp-out", map[string][]string{BackendTracepoint: {"dt_egress"}}, nil},
	{"drop", map[string][]string{BackendTracepoint: {"dt_drop", "dt_fail_queue"}},
		map[string]string{"dt_fail_queue": "a full receive buffer's drop carries no reason on this kernel"}},
}

// functionBackends are the backends that hook kernel functions, best first.
var functionBackends = []string{BackendFentry, BackendKprobe}

// functions returns the kernel functions a class's programs of backend b hook.
func (c hookClass) functions(b string) []string {
	var fns []string
	for _, name := range c.backends[b] {
		for _, fn := range programByName(name).functions {
			if !slices.Contains(fns, fn) {
				fns = append(fns, fn)
			}
		}
	}
	return fns
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
		// kernel lockdown forbids it, as it does on many distribution kernels: a normal
		// state of the host, said as one.
		return fmt.Errorf("this kernel does not allow fentry programs (EPERM on fentry/%s: kernel lockdown, or its distribution's policy)", fn)
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
			return errors.New("this kernel is built without kprobes (no register_kprobe in /proc/kallsyms)")
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

// backendSupport is what the running kernel allows of the function backends.
type backendSupport struct {
	// unusable holds, per function backend, why the kernel cannot run it at all.
	unusable map[string]error
	kernel   *btf.Spec
	symbols  *kernelSymbols
}

// fentryTried holds, per kernel function, what attaching an empty fentry program gave.
// The answer cannot change while the process lives (BTF, ftrace and lockdown are fixed
// at boot), and each try costs a trampoline: a process opening many tracers asks once.
var fentryTried struct {
	sync.Mutex
	err map[string]error
}

// probeFentryOnce is probeFentry, remembered per function.
func probeFentryOnce(fn string) error {
	fentryTried.Lock()
	defer fentryTried.Unlock()
	if err, ok := fentryTried.err[fn]; ok {
		return err
	}
	if fentryTried.err == nil {
		fentryTried.err = map[string]error{}
	}
	err := probeFentry(fn)
	fentryTried.err[fn] = err
	return err
}

// probeBackends tries an empty fentry and an empty kprobe program on udp_sendmsg; only
// those the configured backend may use are tried.
func probeBackends(backend string, kernel *btf.Spec, ks *kernelSymbols) backendSupport {
	s := backendSupport{unusable: map[string]error{}, kernel: kernel, symbols: ks}
	for _, b := range functionBackends {
		switch {
		case backend != BackendAuto && backend != b:
			s.unusable[b] = fmt.Errorf("not requested (backend %s)", backend)
		case b == BackendFentry:
			s.unusable[b] = probeFentryOnce("udp_sendmsg")
		default:
			s.unusable[b] = probeKprobe("udp_sendmsg", ks)
		}
	}
	return s
}

// missingFunction says why backend b cannot hook fn on this kernel, or nil if it can.
func (s backendSupport) missingFunction(b, fn string) error {
	if b == BackendKprobe {
		if _, _, ok := s.symbols.span(fn); !ok && len(s.symbols.names) > 0 {
			return fmt.Errorf("no function %s in /proc/kallsyms (inlined or renamed in this kernel)", fn)
		}
		return nil
	}
	var f *btf.Func
	if err := s.kernel.TypeByName(fn, &f); err != nil {
		return fmt.Errorf("no function %s in the kernel's BTF (inlined or renamed in this kernel)", fn)
	}
	// A function in BTF may still refuse a trampoline (a static one the compiler cloned
	// or partly inlined): try it.
	return probeFentryOnce(fn)
}

// recvmsgHasNoblock tells whether udp_recvmsg takes (sk, msg, len, noblock, flags,
// addr_len), as before Linux 5.19.
func recvmsgHasNoblock(kernel *btf.Spec) bool {
	var f *btf.Func
	if kernel.TypeByName("udp_recvmsg", &f) != nil {
		return false
	}
	proto, ok := f.Type.(*btf.FuncProto)
	return ok && len(proto.Params) > 3 && proto.Params[3].Name == "noblock"
}

// choice is the backend picked for each class, and why better ones were not.
type choice struct {
	backend  map[string]string      // class -> backend
	rejected map[string][]Rejection // class -> better backends not used, best first
}

// chooseBackends picks each class's backend: the configured one, or with "auto" the
// first of fentry, kprobe and tracepoint this kernel can run for all of the class's
// functions. A backend that was asked for by name and cannot run is an error.
func chooseBackends(backend string, s backendSupport) (choice, error) {
	ch := choice{backend: map[string]string{}, rejected: map[string][]Rejection{}}
	for _, c := range hookClasses {
		chosen := ""
		for _, b := range functionBackends {
			if chosen != "" {
				break
			}
			if len(c.backends[b]) == 0 {
				ch.rejected[c.name] = append(ch.rejected[c.name], Rejection{b, "no kernel function serves this class better than its tracepoint or skb-level hook"})
				continue
			}
			why := s.unusable[b]
			for _, fn := range c.functions(b) {
				if why != nil {
					break
				}
				why = s.missingFunction(b, fn)
			}
			if why == nil {
				chosen = b
				continue
			}
			if backend == b {
				return ch, fmt.Errorf("backend %s cannot capture %s events on this kernel: %w (use --backend auto to take the best this kernel offers)", b, c.name, why)
			}
			ch.rejected[c.name] = append(ch.rejected[c.name], Rejection{b, why.Error()})
		}
		if chosen == "" {
			chosen = BackendTracepoint
		}
		ch.backend[c.name] = chosen
	}
	return ch, nil
}

// programsToLoad returns the programs the chosen backends use, less those this kernel
// does not need (unneeded).
func (ch choice) programsToLoad(unneeded map[string]bool) map[string]bool {
	load := map[string]bool{}
	for _, c := range hookClasses {
		for _, p := range c.backends[ch.backend[c.name]] {
			if !unneeded[p] {
				load[p] = true
			}
		}
	}
	return load
}

// unneededPrograms returns the programs that add nothing on this kernel: dt_fail_queue
// infers the reason of a drop only where kfree_skb names none (before Linux 5.17).
func unneededPrograms(reasons dropReasons) map[string]bool {
	return map[string]bool{"dt_fail_queue": len(reasons) > 0}
}

// reasonLimits says, for the drop class, what a kernel without drop reasons cannot tell.
func reasonLimits(reasons dropReasons, failQueueMissing bool) map[string][]string {
	if len(reasons) > 0 {
		return nil
	}
	what := "a full receive buffer's drop is reported with its reason inferred (reason_inferred)"
	if failQueueMissing {
		what = "no reason is inferred either"
	}
	return map[string][]string{"drop": {"the kernel's drop reasons (no enum skb_drop_reason before Linux 5.17): drops carry only the kernel function that freed them; " + what}}
}

// makePlan describes, per class, the backend chosen, its programs and where they attach,
// what the kernel lacks of them (missing: program -> why) and the limits of this kernel.
func makePlan(ch choice, unneeded map[string]bool, attachPoints, missing map[string]string, limits map[string][]string) []HookChoice {
	plan := make([]HookChoice, 0, len(hookClasses))
	for _, c := range hookClasses {
		b := ch.backend[c.name]
		h := HookChoice{Class: c.name, Backend: b, Rejected: ch.rejected[c.name]}
		for i, p := range c.backends[b] {
			if unneeded[p] {
				continue
			}
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
		plan = append(plan, h)
	}
	return plan
}
