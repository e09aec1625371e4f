package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/discotrace/discotrace/vmtest/internal/job"
)

// vmOptions are the machine settings for one boot.
type vmOptions struct {
	Memory  string        // qemu -m, e.g. "1G"
	CPUs    int           // qemu -smp
	Timeout time.Duration // whole boot, from qemu start to its exit
	Append  string        // extra kernel command line
	Arch    *guestArch
}

// runResult is what one run (a VM boot or a host run) produced.
type runResult struct {
	Status   int           // the job's exit status; meaningful when Err is nil
	Err      error         // the run did not produce a status (timeout, crash, qemu failure)
	BootTime time.Duration // host time from qemu start to the guest's /init, 0 if unknown
	Uptime   float64       // guest uptime when /init started, seconds
	Wall     time.Duration // whole run
	// DiedBooting: the kernel stopped (panicked) before /init reported booting, so
	// nothing of the job ran. Seen rarely under TCG early in boot; worth one more boot.
	DiedBooting bool
	Rebooted    bool // this is a second boot's result; the first died booting
}

// bootVM boots kernel with initrd under TCG and streams the serial console to console (each
// line prefixed) and to log. The guest's /init reports the job's status with a marker line
// and, on x86, through isa-debug-exit; qemu's own exit code says nothing about the guest
// otherwise.
func bootVM(ctx context.Context, vmlinuz, initrd string, opt vmOptions, prefix string, console, log io.Writer) runResult {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()

	arch := opt.Arch
	cmdline := "console=" + arch.Console + " panic=-1 loglevel=4 mitigations=off"
	if opt.Append != "" {
		cmdline += " " + opt.Append
	}
	args := []string{
		// /dev/kvm here cannot run stock kernels, and CI machines may have none: TCG always,
		// one host thread per vCPU.
		"-accel", "tcg,thread=multi",
	}
	args = append(args, arch.Machine...)
	args = append(args,
		"-m", opt.Memory,
		"-smp", strconv.Itoa(opt.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio",
		"-net", "none",
		"-no-reboot",
		"-kernel", vmlinuz,
		"-initrd", initrd,
		"-append", cmdline,
	)
	cmd := exec.CommandContext(ctx, arch.Qemu, args...)
	// qemu must not outlive the runner, whatever kills the runner.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdin = nil
	var stderr strings.Builder
	cmd.Stderr = io.MultiWriter(&stderr, os.Stderr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return runResult{Err: err}
	}
	if err := cmd.Start(); err != nil {
		return runResult{Err: fmt.Errorf("starting %s: %w", arch.Qemu, err)}
	}

	res := runResult{Status: -1}
	marker := false
	var tail []string // the last console lines, for the error message when the guest dies
	rd := bufio.NewReader(stdout)
	for {
		line, err := rd.ReadString('\n')
		if line != "" {
			// SeaBIOS and the kernel emit escape sequences and \r on the serial line.
			clean := strings.TrimRight(line, "\r\n")
			fmt.Fprintf(console, "%s%s\n", prefix, clean)
			fmt.Fprintln(log, clean)
			if up, ok := job.ParseBooted(clean); ok && res.BootTime == 0 {
				res.BootTime = time.Since(start)
				res.Uptime = up
			}
			if st, ok := job.ParseExit(clean); ok {
				res.Status, marker = st, true
			}
			tail = append(tail, clean)
			if len(tail) > 15 {
				tail = tail[1:]
			}
		}
		if err != nil {
			break
		}
	}
	waitErr := cmd.Wait()
	lastLines := "(none)"
	if len(tail) > 0 {
		lastLines = "\n\t" + strings.Join(tail, "\n\t")
	}
	res.Wall = time.Since(start)

	var exitErr *exec.ExitError
	code := 0
	if errors.As(waitErr, &exitErr) {
		code = exitErr.ExitCode()
	} else if waitErr != nil {
		res.Err = waitErr
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.Err = fmt.Errorf("timed out after %s (TIMEOUT=%s); qemu killed. Last console lines: %s",
			time.Since(start).Round(time.Second), opt.Timeout, lastLines)
	case ctx.Err() != nil:
		res.Err = fmt.Errorf("interrupted; qemu killed")
	case marker && arch.DebugExit:
		// The marker has the exact status; isa-debug-exit carries it clamped to 0-127.
		if code&1 == 1 && uint32(code>>1) != job.DebugExitValue(res.Status) {
			logf("warning: console says status %d but qemu exited with %d (debug-exit value %d)", res.Status, code, code>>1)
		}
		res.Err = nil
	case marker:
		// No debug-exit device: the guest powered off after the marker, and qemu exits 0
		// on a power-off. Anything else means qemu itself failed after the guest reported.
		if code != 0 {
			logf("warning: console says status %d but %s exited with %d after it (want 0, the guest's power-off): %s",
				res.Status, arch.Qemu, code, strings.TrimSpace(stderr.String()))
		}
		res.Err = nil
	case arch.DebugExit && code&1 == 1 && code > 1:
		// The marker got lost on the console but the debug-exit device carried a status.
		res.Status = code >> 1
		res.Err = nil
	case code == 0:
		res.DiedBooting = res.BootTime == 0
		res.Err = fmt.Errorf("the guest stopped without reporting a status (kernel panic, or /init crashed). Last console lines: %s", lastLines)
	case arch.DebugExit && code == 1 && res.BootTime > 0:
		// isa-debug-exit with 0 and a qemu error both exit 1: without the marker, the
		// run cannot count as a pass.
		res.Err = fmt.Errorf("qemu exited with 1 (the guest's status 0, or a qemu error: %q) but the console carried no %q marker; last console lines: %s",
			strings.TrimSpace(stderr.String()), job.ExitPrefix, lastLines)
	default:
		res.Err = fmt.Errorf("%s failed with exit code %d before the guest reported: %s", arch.Qemu, code, strings.TrimSpace(stderr.String()))
	}
	return res
}

// runOnHost runs the job directly on this machine's kernel.
func runOnHost(ctx context.Context, args []string, dir string, env []string, timeout time.Duration) runResult {
	if os.Geteuid() != 0 {
		logf("warning: KERNEL=host runs the test as uid %d: kernel tests need root and will skip or fail", os.Geteuid())
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	res := runResult{Wall: time.Since(start)}
	var exitErr *exec.ExitError
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.Err = fmt.Errorf("timed out after %s (TIMEOUT=%s); killed", res.Wall.Round(time.Second), timeout)
	case ctx.Err() != nil:
		res.Err = fmt.Errorf("interrupted")
	case errors.As(err, &exitErr):
		res.Status = exitErr.ExitCode()
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Status = 128 + int(ws.Signal())
		}
	case err != nil:
		res.Err = err
	}
	return res
}
