package tracer

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// kernelPlans is the plan each kernel of make vmtest (and this machine's) must produce,
// per backend forced (auto: none): per event class, the backend, the programs it
// attaches, and after "-" each program of that backend the kernel lacks. Tests that skip
// because a kernel lacks a hook (requireClass, TestFailedSendNamesItsDestination) skip
// only where this table says so: a class or hook that silently goes missing on one of
// these kernels fails TestPlanIsWhatThisKernelGives.
var kernelPlans = map[string]map[string]map[string]string{
	// Debian bullseye: no sock_* tracepoints, no inet_sk_error_report, no drop reasons (dt_fail_queue infers a full buffer's)
	"5.10": {
		BackendFentry: {
			"send":     "fentry dt_egress dt_send_fexit dt_send6_fexit",
			"recv":     "tracepoint dt_ingress",
			"read":     "fentry dt_read_fexit dt_read6_fexit dt_enqueue_fexit",
			"icmp-in":  "fentry dt_icmp_rcv_fentry dt_icmp_rcv_fexit dt_icmp6_rcv_fentry dt_icmp6_rcv_fexit -dt_error_report",
			"icmp-out": "tracepoint dt_egress",
			"drop":     "tracepoint dt_drop dt_fail_queue",
		},
		BackendKprobe: {
			"send":     "kprobe dt_egress dt_send_kprobe dt_send6_kprobe dt_send_kretprobe",
			"recv":     "tracepoint dt_ingress",
			"read":     "kprobe dt_read_kprobe dt_read_kretprobe dt_enqueue_kprobe dt_enqueue_kretprobe",
			"icmp-in":  "kprobe dt_icmp_rcv_kprobe dt_icmp_rcv_kretprobe -dt_error_report",
			"icmp-out": "tracepoint dt_egress",
			"drop":     "tracepoint dt_drop dt_fail_queue",
		},
		BackendTracepoint: {
			"send":     "tracepoint dt_egress -dt_send_result",
			"recv":     "tracepoint dt_ingress",
			"read":     "none -dt_read",
			"icmp-in":  "tracepoint dt_icmp_in -dt_error_report",
			"icmp-out": "tracepoint dt_egress",
			"drop":     "tracepoint dt_drop dt_fail_queue",
		},
	},
	// Debian bookworm: no sock_send_length/sock_recv_length (Linux 6.3)
	"6.1": {
		BackendFentry: {
			"send":     "fentry dt_egress dt_send_fexit dt_send6_fexit",
			"recv":     "tracepoint dt_ingress",
			"read":     "fentry dt_read_fexit dt_read6_fexit dt_enqueue_fexit",
			"icmp-in":  "fentry dt_icmp_rcv_fentry dt_icmp_rcv_fexit dt_icmp6_rcv_fentry dt_icmp6_rcv_fexit dt_error_report",
			"icmp-out": "tracepoint dt_egress",
			"drop":     "tracepoint dt_drop",
		},
		BackendKprobe: {
			"send":     "kprobe dt_egress dt_send_kprobe dt_send6_kprobe dt_send_kretprobe",
			"recv":     "tracepoint dt_ingress",
			"read":     "kprobe dt_read_kprobe dt_read_kretprobe dt_enqueue_kprobe dt_enqueue_kretprobe",
			"icmp-in":  "kprobe dt_icmp_rcv_kprobe dt_icmp_rcv_kretprobe dt_error_report",
			"icmp-out": "tracepoint dt_egress",
			"drop":     "tracepoint dt_drop",
		},
		BackendTracepoint: {
			"send":     "tracepoint dt_egress -dt_send_result",
			"recv":     "tracepoint dt_ingress",
			"read":     "none -dt_read",
			"icmp-in":  "tracepoint dt_icmp_in dt_error_report",
			"icmp-out": "tracepoint dt_egress",
			"drop":     "tracepoint dt_drop",
		},
	},
	// Debian bookworm-security: every hook
	"6.12": {
		BackendFentry: {
			"send":     "fentry dt_egress dt_send_fexit dt_send6_fexit",
			"recv":     "tracepoint dt_ingress",
			"read":     "fentry dt_read_fexit dt_read6_fexit dt_enqueue_fexit",
			"icmp-in":  "fentry dt_icmp_rcv_fentry dt_icmp_rcv_fexit dt_icmp6_rcv_fentry dt_icmp6_rcv_fexit dt_error_report",
			"icmp-out": "tracepoint dt_egress",
			"drop":     "tracepoint dt_drop",
		},
		BackendKprobe: {
			"send":     "kprobe dt_egress dt_send_kprobe dt_send6_kprobe dt_send_kretprobe",
			"recv":     "tracepoint dt_ingress",
			"read":     "kprobe dt_read_kprobe dt_read_kretprobe dt_enqueue_kprobe dt_enqueue_kretprobe",
			"icmp-in":  "kprobe dt_icmp_rcv_kprobe dt_icmp_rcv_kretprobe dt_error_report",
			"icmp-out": "tracepoint dt_egress",
			"drop":     "tracepoint dt_drop",
		},
		BackendTracepoint: {
			"send":     "tracepoint dt_egress dt_send_result",
			"recv":     "tracepoint dt_ingress",
			"read":     "tracepoint dt_read",
			"icmp-in":  "tracepoint dt_icmp_in dt_error_report",
			"icmp-out": "tracepoint dt_egress",
			"drop":     "tracepoint dt_drop",
		},
	},
	// this development machine (fentry refused, no kprobes): auto is the tracepoint backend
	"6.18": {BackendAuto: tracepointPlan618, BackendTracepoint: tracepointPlan618},
}

// tracepointPlan618 is what auto picks there too.
var tracepointPlan618 = map[string]string{
	"send":     "tracepoint dt_egress dt_send_result",
	"recv":     "tracepoint dt_ingress",
	"read":     "tracepoint dt_read",
	"icmp-in":  "tracepoint dt_icmp_in dt_error_report",
	"icmp-out": "tracepoint dt_egress",
	"drop":     "tracepoint dt_drop",
}

// kernelRelease returns the running kernel's major.minor.
func kernelRelease(t *testing.T) string {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatalf("uname: %v", err)
	}
	var major, minor int
	rel := unix.ByteSliceToString(u.Release[:])
	if _, err := fmt.Sscanf(rel, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", rel, err)
	}
	return fmt.Sprintf("%d.%d", major, minor)
}

// planSummary is one class of a plan as kernelPlans writes it.
func planSummary(h HookChoice) string {
	parts := []string{h.Backend}
	for _, hook := range h.Hooks {
		name, _, _ := strings.Cut(hook, ":")
		parts = append(parts, name)
	}
	for _, m := range h.Missing {
		if name, _, _ := strings.Cut(m, " "); strings.HasPrefix(name, "dt_") {
			parts = append(parts, "-"+name)
		}
	}
	return strings.Join(parts, " ")
}

func TestPlanIsWhatThisKernelGives(t *testing.T) {
	requireRoot(t)
	release, backend := kernelRelease(t), testBackend()
	tr, err := Open(Config{Ports: []uint16{freePort(t, "udp4")}, Backend: backend})
	if err != nil {
		t.Fatalf("Open with backend %s: %v", backend, err)
	}
	defer tr.Close()
	got := map[string]string{}
	for _, h := range tr.Plan() {
		got[h.Class] = planSummary(h)
		t.Logf("%s", h)
	}
	rows, known := kernelPlans[release]
	want, ok := rows[backend]
	if known && !ok && backend != BackendAuto {
		t.Fatalf("kernel %s is in kernelPlans but backend %s has no row; this kernel gives:\n%s", release, backend, planTable(got))
	}
	if !ok {
		// A kernel nobody wrote expectations for (or auto on a VM kernel, whose rows
		// are per forced backend) cannot be judged; every kernel CI runs has its rows.
		t.Skipf("no expected plan for kernel %s with backend %s in kernelPlans; this kernel gives:\n%s", release, backend, planTable(got))
	}
	for class, w := range want {
		if got[class] != w {
			t.Errorf("%s: %q, want %q", class, got[class], w)
		}
	}
	for class := range got {
		if _, ok := want[class]; !ok {
			t.Errorf("%s: %q, not in kernelPlans", class, got[class])
		}
	}
	if t.Failed() {
		t.Logf("this kernel gives, for kernelPlans[%q][%q]:\n%s", release, backend, planTable(got))
	}
}

func planTable(plan map[string]string) string {
	classes := make([]string, 0, len(plan))
	for c := range plan {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	var b strings.Builder
	for _, c := range classes {
		fmt.Fprintf(&b, "\t%q: %q,\n", c, plan[c])
	}
	return b.String()
}
