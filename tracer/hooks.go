package tracer

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
)

// program is one BPF program, its backend and where it attaches.
type program struct {
	name       string
	backend    string          // BackendTracepoint (tracepoints and cgroup_skb), BackendFentry or BackendKprobe
	cgroup     ebpf.AttachType // cgroup_skb programs: egress or ingress, on the cgroup v2 root or Config.Cgroups
	tracepoint string          // tp_btf programs: the tracepoint
	since      string          // the Linux version that added the tracepoint, for messages
	// functions are the kernel functions of an fentry/fexit program (one: its section
	// names it, and the kernel binds it at load) or of a kprobe program (one or more).
	functions []string
	ret       bool // fexit or kretprobe: runs when the function returns
}

var programs = []program{
	{name: "dt_egress", backend: BackendTracepoint, cgroup: ebpf.AttachCGroupInetEgress},
	{name: "dt_ingress", backend: BackendTracepoint, cgroup: ebpf.AttachCGroupInetIngress},
	{name: "dt_send_result", backend: BackendTracepoint, tracepoint: "sock_send_length", since: "6.3"},
	{name: "dt_read", backend: BackendTracepoint, tracepoint: "sock_recv_length", since: "6.3"},
	{name: "dt_error_report", backend: BackendTracepoint, tracepoint: "inet_sk_error_report", since: "5.14"},
	{name: "dt_icmp_in", backend: BackendTracepoint, tracepoint: "consume_skb"},
	{name: "dt_drop", backend: BackendTracepoint, tracepoint: "kfree_skb"},
	{name: "dt_fail_queue", backend: BackendTracepoint, tracepoint: "udp_fail_queue_rcv_skb", since: "3.6"},

	{name: "dt_send_fexit", backend: BackendFentry, functions: []string{"udp_sendmsg"}, ret: true},
	{name: "dt_send6_fexit", backend: BackendFentry, functions: []string{"udpv6_sendmsg"}, ret: true},
	{name: "dt_read_fexit", backend: BackendFentry, functions: []string{"udp_recvmsg"}, ret: true},
	{name: "dt_read6_fexit", backend: BackendFentry, functions: []string{"udpv6_recvmsg"}, ret: true},
	{name: "dt_enqueue_fexit", backend: BackendFentry, functions: []string{"__udp_enqueue_schedule_skb"}, ret: true},
	{name: "dt_icmp_rcv_fentry", backend: BackendFentry, functions: []string{"icmp_rcv"}},
	{name: "dt_icmp_rcv_fexit", backend: BackendFentry, functions: []string{"icmp_rcv"}, ret: true},
	{name: "dt_icmp6_rcv_fentry", backend: BackendFentry, functions: []string{"icmpv6_rcv"}},
	{name: "dt_icmp6_rcv_fexit", backend: BackendFentry, functions: []string{"icmpv6_rcv"}, ret: true},

	{name: "dt_send_kprobe", backend: BackendKprobe, functions: []string{"udp_sendmsg"}},
	{name: "dt_send6_kprobe", backend: BackendKprobe, functions: []string{"udpv6_sendmsg"}},
	{name: "dt_send_kretprobe", backend: BackendKprobe, functions: []string{"udp_sendmsg", "udpv6_sendmsg"}, ret: true},
	{name: "dt_read_kprobe", backend: BackendKprobe, functions: []string{"udp_recvmsg", "udpv6_recvmsg"}},
	{name: "dt_read_kretprobe", backend: BackendKprobe, functions: []string{"udp_recvmsg", "udpv6_recvmsg"}, ret: true},
	{name: "dt_enqueue_kprobe", backend: BackendKprobe, functions: []string{"__udp_enqueue_schedule_skb"}},
	{name: "dt_enqueue_kretprobe", backend: BackendKprobe, functions: []string{"__udp_enqueue_schedule_skb"}, ret: true},
	{name: "dt_icmp_rcv_kprobe", backend: BackendKprobe, functions: []string{"icmp_rcv", "icmpv6_rcv"}},
	{name: "dt_icmp_rcv_kretprobe", backend: BackendKprobe, functions: []string{"icmp_rcv", "icmpv6_rcv"}, ret: true},
}

func programByName(name string) program {
	for _, p := range programs {
		if p.name == name {
			return p
		}
	}
	panic("tracer: no program " + name)
}

// attachPoint says where p attaches, as the plan shows it; cgroups lists the cgroup
// directories the cgroup programs attach to.
func (p program) attachPoint(cgroups string) string {
	switch {
	case p.tracepoint != "":
		return "tp_btf/" + p.tracepoint
	case p.backend == BackendFentry && p.ret:
		return "fexit/" + p.functions[0]
	case p.backend == BackendFentry:
		return "fentry/" + p.functions[0]
	case p.backend == BackendKprobe:
		kind := "kprobe/"
		if p.ret {
			kind = "kretprobe/"
		}
		return kind + strings.Join(p.functions, ", "+kind)
	case p.cgroup == ebpf.AttachCGroupInetEgress:
		return "cgroup_skb/egress on " + cgroups
	default:
		return "cgroup_skb/ingress on " + cgroups
	}
}

// tracepointArgs returns how many arguments each tracepoint the programs use takes on the
// running kernel (from its BTF, btf_trace_<name>); a tracepoint the kernel lacks is absent.
func tracepointArgs(kernel *btf.Spec) map[string]int {
	args := map[string]int{}
	for _, p := range programs {
		if p.tracepoint == "" {
			continue
		}
		var td *btf.Typedef
		if err := kernel.TypeByName("btf_trace_"+p.tracepoint, &td); err != nil {
			continue
		}
		ptr, ok := td.Type.(*btf.Pointer)
		if !ok {
			continue
		}
		if proto, ok := ptr.Target.(*btf.FuncProto); ok {
			args[p.tracepoint] = len(proto.Params) - 1 // the first is the tracepoint's context
		}
	}
	return args
}

// unavailable returns, per program, why the running kernel cannot run it.
func unavailable(args map[string]int) map[string]string {
	missing := map[string]string{}
	for _, p := range programs {
		if _, ok := args[p.tracepoint]; p.tracepoint != "" && !ok {
			missing[p.name] = fmt.Sprintf("no tracepoint %s in this kernel (Linux %s+)", p.tracepoint, p.since)
		}
	}
	return missing
}

// loadKernelBTF loads the running kernel's BTF, which CO-RE and the drop reasons need.
func loadKernelBTF() (*btf.Spec, error) {
	spec, err := btf.LoadKernelSpec()
	if errors.Is(err, btf.ErrNotSupported) {
		return nil, fmt.Errorf("this kernel has no BTF (/sys/kernel/btf/vmlinux): it needs CONFIG_DEBUG_INFO_BTF=y: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("load kernel BTF from /sys/kernel/btf/vmlinux: %w", err)
	}
	return spec, nil
}

// skbHelpers says which helpers beyond the basics the cgroup_skb programs may call on the
// running kernel: the task helpers (sender pid/comm) came to cgroup_skb late; and whether
// the send-result hooks may read the system call's registers.
type skbHelpers struct {
	task      bool // bpf_get_current_pid_tgid and bpf_get_current_comm
	probeRead bool // bpf_probe_read_kernel (the socket's network namespace)
	sendCall  bool // bpf_get_current_task_btf and bpf_task_pt_regs (a failed send's datagram)
	// tracingCookie: tracing programs may call bpf_get_socket_cookie (Linux 5.12).
	tracingCookie bool
	// taskBTF: tracing programs may call bpf_get_current_task_btf (Linux 5.11).
	taskBTF bool
}

func probeSkbHelpers() skbHelpers {
	// Only ErrNotSupported is a conclusive no; on any other probe failure the load itself
	// will tell.
	has := func(fn asm.BuiltinFunc) bool {
		return !errors.Is(features.HaveProgramHelper(ebpf.CGroupSKB, fn), ebpf.ErrNotSupported)
	}
	tracing := func(fn asm.BuiltinFunc) bool {
		return !errors.Is(features.HaveProgramHelper(ebpf.Kprobe, fn), ebpf.ErrNotSupported)
	}
	return skbHelpers{
		task:      has(asm.FnGetCurrentPidTgid) && has(asm.FnGetCurrentComm),
		probeRead: has(asm.FnProbeReadKernel),
		sendCall:  tracing(asm.FnGetCurrentTaskBtf) && tracing(asm.FnTaskPtRegs),
		taskBTF:   tracing(asm.FnGetCurrentTaskBtf),

		tracingCookie: !verifierSays(&ebpf.ProgramSpec{
			// A tp_btf program calling the helper with no socket: a kernel that has the
			// helper for tracing programs refuses the argument, one without it the call.
			Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "kfree_skb", License: "GPL",
			Instructions: asm.Instructions{
				asm.Mov.Imm(asm.R1, 0),
				asm.FnGetSocketCookie.Call(),
				asm.Return(),
			},
		}, "unknown func"),
	}
}

// verifierSays tells whether the kernel refuses spec with a verifier message containing
// msg. Any other outcome (loaded, or refused for another reason) is no: the load of the
// real programs will tell.
func verifierSays(spec *ebpf.ProgramSpec, msg string) bool {
	prog, err := ebpf.NewProgram(spec)
	if err == nil {
		prog.Close()
		return false
	}
	return verifierSaid(err, msg)
}

// verifierSaid tells whether err is the verifier's refusal with a message containing msg.
func verifierSaid(err error, msg string) bool {
	var verr *ebpf.VerifierError
	return errors.As(err, &verr) && slices.ContainsFunc(verr.Log, func(l string) bool { return strings.Contains(l, msg) })
}

// withoutAtomicFetch rewrites the atomic fetch-and-add instructions of spec's programs
// into plain atomic adds and clears cfg_atomic_fetch, for a kernel whose verifier refuses
// the fetch (before Linux 5.12) even where it is never run: the programs run them only
// with cfg_atomic_fetch set.
func withoutAtomicFetch(spec *ebpf.CollectionSpec) error {
	if err := spec.Variables["cfg_atomic_fetch"].Set(false); err != nil {
		return fmt.Errorf("set cfg_atomic_fetch: %w", err)
	}
	for _, p := range spec.Programs {
		for i, ins := range p.Instructions {
			if ins.OpCode.AtomicOp() == asm.FetchAdd {
				// The loader keeps the operation in the opcode and in the constant
				// (the instruction's imm field): both.
				p.Instructions[i].OpCode = ins.OpCode.SetAtomicOp(asm.AddAtomic)
				p.Instructions[i].Constant = 0
			}
		}
	}
	return nil
}

// limits says, per event class, what these helpers' absence costs.
func (h skbHelpers) limits() map[string][]string {
	l := map[string][]string{}
	if !h.task {
		l["send"] = append(l["send"], "the sender's pid and comm (cgroup_skb cannot call bpf_get_current_pid_tgid on this kernel; a pid filter does not apply to sends)")
	}
	if !h.probeRead {
		for _, c := range []string{"send", "recv", "icmp-out"} {
			l[c] = append(l[c], "the network namespace (cgroup_skb cannot call bpf_probe_read_kernel on this kernel; a netns filter drops these events)")
		}
	}
	if !h.sendCall {
		l["send"] = append(l["send"], "the datagram of a failed send, and its destination with the tracepoint backend (no bpf_task_pt_regs on this kernel): the request that never left is not known")
	}
	return l
}
