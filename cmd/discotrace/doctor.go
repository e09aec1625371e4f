package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/discotrace/discotrace/tracer"
)

// doctorFlags are the options of `discotrace doctor`.
type doctorFlags struct {
	hookFlags
	json bool
}

func newDoctorCmd() *cobra.Command {
	var f doctorFlags
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check whether this host can trace, and with which hooks",
		Long: `Doctor checks what ` + "`discotrace trace`" + ` needs from this host, one line per check saying
what is wrong and what to do: privileges, kernel release, kernel BTF, the cgroup v2 mount,
kernel lockdown, /proc/kallsyms, and a socket bound to each watched port. Then it opens the tracer as trace would, prints the
hooks chosen for each event class (and why better backends were not used), and closes it.

Exit status: 0 when the tracer opened (missing hooks are shown as warnings), 2 without the
privileges to trace, 1 for any other failure.`,
		Example: `  sudo discotrace doctor
  sudo discotrace doctor --backend tracepoint --json`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDoctor(cmd.OutOrStdout(), &f)
		},
	}
	fl := cmd.Flags()
	f.hookFlags.register(fl)
	completeBackend(cmd)
	fl.BoolVar(&f.json, "json", false, "print one JSON object (checks and plan) instead of lines")
	return cmd
}

func init() { rootCmd.AddCommand(newDoctorCmd()) }

// Check outcomes.
const (
	checkOK   = "ok"
	checkWarn = "warn" // tracing works, with less
	checkFail = "fail" // tracing cannot work
)

// check is one thing doctor looked at on the host.
type check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// doctorReport is doctor's --json output.
type doctorReport struct {
	Checks  []check      `json:"checks"`
	Ports   []uint16     `json:"ports"`
	Backend string       `json:"backend"` // as requested
	Plan    []planChoice `json:"plan,omitempty"`
	Error   string       `json:"error,omitempty"` // why the tracer did not open
}

// planChoice is tracer.HookChoice in JSON.
type planChoice struct {
	Class    string      `json:"class"`
	Backend  string      `json:"backend"`
	Hooks    []string    `json:"hooks"`
	Missing  []string    `json:"missing,omitempty"`
	Rejected []rejection `json:"rejected,omitempty"`
}

// rejection is tracer.Rejection in JSON.
type rejection struct {
	Backend string `json:"backend"`
	Reason  string `json:"reason"`
}

func runDoctor(stdout io.Writer, f *doctorFlags) error {
	var cfg tracer.Config
	if err := f.hookFlags.apply(&cfg); err != nil {
		return err
	}
	report := doctorReport{Checks: append(hostChecks(), checkSockets(cfg.Ports)), Ports: cfg.Ports, Backend: f.backend}
	if !f.json {
		for _, c := range report.Checks {
			fmt.Fprintf(stdout, "discotrace: %-10s %s: %s\n", c.Name, c.Status, c.Detail)
		}
	}
	start := time.Now()
	tr, err := tracer.Open(cfg)
	if err != nil {
		var perr *tracer.PrivilegeError
		if errors.As(err, &perr) {
			err = &exitError{code: 2, err: err}
		} else {
			err = fmt.Errorf("open the tracer: %w", err)
		}
		if f.json {
			report.Error = err.Error()
			_ = writeJSON(stdout, &report) // the tracer's error is the one to report
		}
		return err
	}
	plan := tr.Plan()
	attached := time.Since(start).Round(time.Millisecond)
	if err := tr.Close(); err != nil {
		return fmt.Errorf("close the tracer: %w", err)
	}
	if f.json {
		for _, h := range plan {
			pc := planChoice{Class: h.Class, Backend: h.Backend, Hooks: h.Hooks, Missing: h.Missing}
			for _, r := range h.Rejected {
				pc.Rejected = append(pc.Rejected, rejection{r.Backend, r.Reason})
			}
			report.Plan = append(report.Plan, pc)
		}
		return writeJSON(stdout, &report)
	}
	fmt.Fprintf(stdout, "discotrace: tracer opened for UDP ports %s with backend %s; hooks attached in %v\n",
		portList(cfg.Ports), f.backend, attached)
	printPlan(stdout, plan, true)
	return nil
}

func writeJSON(w io.Writer, report *doctorReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(report); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	return nil
}

// hostChecks looks at what the tracer needs from the host, in the order an operator
// would fix it.
func hostChecks() []check {
	return []check{
		checkPrivileges(),
		checkKernel(),
		checkBTF(),
		checkCgroup2(),
		checkLockdown(),
		checkKallsyms(),
	}
}

func checkPrivileges() check {
	c := check{Name: "privileges", Status: checkOK, Detail: "may load and attach BPF programs"}
	if err := tracer.CheckPrivileges(); err != nil {
		c.Status, c.Detail = checkFail, err.Error()
	}
	return c
}

// minKernel is the oldest Linux the tracer can run on: its events go through a BPF ring
// buffer (5.8).
var minKernel = [2]int{5, 8}

func checkKernel() check {
	c := check{Name: "kernel"}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		c.Status, c.Detail = checkWarn, fmt.Sprintf("uname: %v", err)
		return c
	}
	release, machine := unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:])
	c.Status, c.Detail = checkOK, "Linux "+release+" "+machine
	var major, minor int
	if n, _ := fmt.Sscanf(release, "%d.%d", &major, &minor); n == 2 &&
		(major < minKernel[0] || major == minKernel[0] && minor < minKernel[1]) {
		c.Status = checkFail
		c.Detail += fmt.Sprintf(": discotrace needs Linux %d.%d or later (BPF ring buffer)", minKernel[0], minKernel[1])
	}
	return c
}

const btfPath = "/sys/kernel/btf/vmlinux"

func checkBTF() check {
	c := check{Name: "btf", Status: checkOK, Detail: btfPath}
	fi, err := os.Stat(btfPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		c.Status, c.Detail = checkFail, "no "+btfPath+": the kernel needs CONFIG_DEBUG_INFO_BTF=y for discotrace's CO-RE programs"
	case err != nil:
		c.Status, c.Detail = checkFail, err.Error()
	default:
		c.Detail += fmt.Sprintf(" (%.1f MB)", float64(fi.Size())/1e6)
	}
	return c
}

// checkCgroup2 finds the cgroup v2 mount the tracer attaches its cgroup_skb programs to.
func checkCgroup2() check {
	root, err := tracer.Cgroup2Root()
	if err != nil {
		return check{Name: "cgroup2", Status: checkFail, Detail: err.Error()}
	}
	return check{Name: "cgroup2", Status: checkOK, Detail: root}
}

const securityfs = "/sys/kernel/security"

func checkLockdown() check {
	c := check{Name: "lockdown"}
	b, err := os.ReadFile(securityfs + "/lockdown")
	if errors.Is(err, os.ErrNotExist) {
		if entries, _ := os.ReadDir(securityfs); len(entries) == 0 {
			c.Status, c.Detail = checkWarn, "cannot tell: securityfs is not mounted (mount -t securityfs none "+securityfs+"); if fentry is refused with EPERM below, lockdown is the likely cause"
		} else {
			c.Status, c.Detail = checkOK, "none (no lockdown LSM in this kernel)"
		}
		return c
	}
	if err != nil {
		c.Status, c.Detail = checkWarn, "cannot tell: "+err.Error()
		return c
	}
	return lockdownCheck(string(b))
}

// lockdownCheck judges /sys/kernel/security/lockdown content, such as
// "none [integrity] confidentiality": the bracketed mode is in force.
func lockdownCheck(state string) check {
	c := check{Name: "lockdown"}
	mode := state
	if i, j := strings.IndexByte(mode, '['), strings.IndexByte(mode, ']'); i >= 0 && j > i {
		mode = mode[i+1 : j]
	}
	mode = strings.TrimSpace(mode)
	switch mode {
	case "none":
		c.Status, c.Detail = checkOK, mode
	case "integrity":
		c.Status, c.Detail = checkWarn, mode+": blocks fentry programs on distribution kernels that tie BPF to lockdown; kprobe or tracepoint hooks are used instead (boot with lockdown=none, or turn off Secure Boot, for fentry)"
	case "confidentiality":
		c.Status, c.Detail = checkWarn, mode+": blocks fentry and kprobe programs and BPF reads of kernel memory; only what the tracepoint backend can do without them works (boot with lockdown=none, or turn off Secure Boot)"
	default:
		c.Status, c.Detail = checkWarn, fmt.Sprintf("unknown state %q", strings.TrimSpace(state))
	}
	return c
}

// checkSockets looks for a UDP socket bound to each watched port, in every network
// namespace: without one the tracer works and has nothing to show.
func checkSockets(ports []uint16) check {
	c := check{Name: "sockets", Status: checkOK}
	b := findUDPBindings(ports, 0)
	if problem := b.unbound(ports, 0); problem != "" {
		c.Status, c.Detail = checkWarn, problem
		return c
	}
	var bound []string
	for _, p := range ports {
		bound = append(bound, fmt.Sprintf("%d in network namespace %s", p, inodeList(b.netns[p])))
	}
	c.Detail = "UDP sockets bound to port " + strings.Join(bound, ", port ")
	return c
}

func inodeList(inodes []uint64) string {
	s := make([]string, len(inodes))
	for i, n := range inodes {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, " and ")
}

func checkKallsyms() check {
	c := check{Name: "kallsyms"}
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		c.Status, c.Detail = checkWarn, err.Error()+": dropped packets are reported without the kernel function that dropped them"
		return c
	}
	defer f.Close()
	// Text addresses are all zero or all shown: the first text symbol tells. (Per-CPU
	// symbols come first, at offsets from 0.)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || (fields[1] != "t" && fields[1] != "T") {
			continue
		}
		if strings.Trim(fields[0], "0") != "" {
			c.Status, c.Detail = checkOK, "/proc/kallsyms shows addresses"
			return c
		}
		break
	}
	b, _ := os.ReadFile("/proc/sys/kernel/kptr_restrict")
	restrict := strings.TrimSpace(string(b))
	fix := "run as root (CAP_SYSLOG)"
	if restrict == "2" {
		fix = "sysctl kernel.kptr_restrict=1 and run as root (CAP_SYSLOG)"
	}
	c.Status = checkWarn
	c.Detail = fmt.Sprintf("/proc/kallsyms hides addresses from this process (kernel.kptr_restrict=%s): drops are reported without the kernel function that dropped them, and ICMP-in costs more CPU; %s",
		restrict, fix)
	return c
}
