package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/discotrace/discotrace/tracer"
)

// runDoctorCLI runs a fresh doctor command (flags start from their defaults) with args,
// returning its stdout and the error main would print.
func runDoctorCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCommand(newDoctorCmd(), args...)
}

// tracerPlan opens the tracer with cfg and returns its own plan.
func tracerPlan(t *testing.T, cfg tracer.Config) []tracer.HookChoice {
	t.Helper()
	tr, err := tracer.Open(cfg)
	if err != nil {
		t.Fatalf("open the tracer: %v", err)
	}
	defer tr.Close()
	return tr.Plan()
}

var eventClasses = []string{"send", "recv", "read", "icmp-in", "icmp-out", "drop"}

// On this host `discotrace doctor` passes, and names for every event class the backend the
// tracer itself chooses: what an operator reads before running trace is what trace uses.
func TestDoctorNamesTheTracersBackendPerClass(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load and attach BPF programs: run `sudo go test ./cmd/discotrace/`")
	}
	for _, backend := range []string{tracer.BackendAuto, tracer.BackendTracepoint} {
		t.Run(backend, func(t *testing.T) {
			out, err := runDoctorCLI(t, "--backend", backend, "--port", "30303", "--port", "30304")
			if err != nil {
				t.Fatalf("doctor: %v\n%s", err, out)
			}
			want := map[string]string{}
			for _, h := range tracerPlan(t, tracer.Config{Ports: []uint16{30303, 30304}, Backend: backend}) {
				want[h.Class] = h.Backend
			}
			for _, class := range eventClasses {
				if want[class] == "" {
					t.Fatalf("the tracer's plan has no class %s: %v", class, want)
				}
				line := fmt.Sprintf("discotrace: %-8s %s: ", class, want[class])
				if !strings.Contains(out, "\n"+line) {
					t.Errorf("doctor does not name backend %s for %s (want a line %q):\n%s", want[class], class, line, out)
				}
			}
			if !strings.Contains(out, "discotrace: privileges ok: ") || !strings.Contains(out, "ports 30303, 30304 with backend "+backend) {
				t.Errorf("doctor does not show the privileges check and what it opened:\n%s", out)
			}
			for _, name := range []string{"privileges", "kernel", "btf", "cgroup2", "lockdown", "kallsyms", "sockets"} {
				if !strings.Contains(out, fmt.Sprintf("discotrace: %-10s ", name)) {
					t.Errorf("doctor has no %s check:\n%s", name, out)
				}
			}
			if strings.Contains(out, " fail: ") {
				t.Errorf("a check fails though the tracer opened:\n%s", out)
			}
		})
	}
}

// `discotrace doctor --json` is one JSON object with the checks and the tracer's plan.
func TestDoctorJSON(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load and attach BPF programs: run `sudo go test ./cmd/discotrace/`")
	}
	out, err := runDoctorCLI(t, "--json")
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, out)
	}
	var report doctorReport
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&report); err != nil {
		t.Fatalf("output is not one report object: %v\n%s", err, out)
	}
	if dec.More() {
		t.Errorf("more than one JSON value:\n%s", out)
	}
	if len(report.Checks) != 7 || report.Checks[0].Name != "privileges" || report.Checks[0].Status != checkOK {
		t.Errorf("checks %+v: want seven, privileges first and ok", report.Checks)
	}
	if report.Error != "" || report.Backend != tracer.BackendAuto || len(report.Ports) != 1 || report.Ports[0] != 30303 {
		t.Errorf("report error %q, backend %q, ports %v: want no error, the defaults auto and 30303", report.Error, report.Backend, report.Ports)
	}
	plan := tracerPlan(t, tracer.Config{Ports: []uint16{30303}})
	if len(report.Plan) != len(plan) {
		t.Fatalf("doctor's plan has %d classes, the tracer's %d", len(report.Plan), len(plan))
	}
	for i, h := range plan {
		got := report.Plan[i]
		if got.Class != h.Class || got.Backend != h.Backend || len(got.Hooks) != len(h.Hooks) || len(got.Rejected) != len(h.Rejected) {
			t.Errorf("doctor's plan %+v, the tracer's %+v", got, h)
		}
	}
}

// Without the capabilities to trace, `discotrace doctor` still shows the host checks, the
// privileges one failing, says on stderr in one line what is missing and exits with status
// 2, as trace does. The test binary re-runs itself as nobody, with no capabilities.
func TestDoctorWithoutPrivilegesExits2(t *testing.T) {
	stdout := runUnprivileged(t, "TestDoctorWithoutPrivilegesExits2", "doctor")
	if !strings.Contains(stdout, "discotrace: privileges fail: missing CAP_BPF") {
		t.Errorf("stdout does not show the failing privileges check:\n%s", stdout)
	}
}

func TestLockdownCheck(t *testing.T) {
	for _, tc := range []struct {
		state, status, says string
	}{
		{"[none] integrity confidentiality\n", checkOK, "none"},
		{"none [integrity] confidentiality\n", checkWarn, "blocks fentry"},
		{"none integrity [confidentiality]\n", checkWarn, "blocks fentry and kprobe"},
		{"[bogus]\n", checkWarn, "unknown state"},
	} {
		c := lockdownCheck(tc.state)
		if c.Name != "lockdown" || c.Status != tc.status || !strings.Contains(c.Detail, tc.says) {
			t.Errorf("lockdown %q: %+v, want status %s saying %q", tc.state, c, tc.status, tc.says)
		}
	}
}
