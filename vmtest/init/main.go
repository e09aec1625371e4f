// Command init is PID 1 of the vmtest guest: it mounts the kernel filesystems a BPF test
// needs, loads the kernel modules the runner packed, brings loopback up, runs the job (a test
// binary) as a child, and hands the child's exit status to the host through qemu's
// isa-debug-exit device (x86) and a marker line on the serial console, then powers off.
//
// The job runs as a child rather than being exec'ed because libraries probe the system at
// package init (cilium/ebpf's rlimit package among them) and cache the result: that probe
// must run after /proc and friends exist, in a process that is not PID 1.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/discotrace/discotrace/vmtest/internal/job"
	"golang.org/x/sys/unix"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "vmtest init: refusing to run: this program is the guest's PID 1 and mounts filesystems and powers the machine off")
		os.Exit(2)
	}
	status := run()
	finish(status)
}

// mounts are created in order; a failure is reported but not fatal, so a kernel without
// (say) debugfs still runs the job, which then fails with its own clear error if it needed it.
var mounts = []struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}{
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"bpf", "/sys/fs/bpf", "bpf", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "mode=0700"},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"tracefs", "/sys/kernel/tracing", "tracefs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"debugfs", "/sys/kernel/debug", "debugfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
}

// run prepares the guest and runs the job; it returns the status to report.
func run() int {
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			logf("mkdir %s: %v", m.target, err)
			continue
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			logf("mount %s on %s: %v", m.fstype, m.target, err)
		}
	}
	ensureConsole()
	if up, err := uptime(); err == nil {
		fmt.Println(job.BootedLine(up))
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		logf("kernel %s %s", unix.ByteSliceToString(uts.Release[:]), unix.ByteSliceToString(uts.Version[:]))
	}

	j, err := readJob()
	if err != nil {
		logf("%v", err)
		return 125
	}
	for _, path := range j.Modules {
		if err := loadModule(path); err != nil {
			// A missing module is reported and the job still runs: the test that needs
			// it fails with the kernel's own error, which is more useful than no run.
			logf("%v", err)
		}
	}
	if err := linkUp("lo"); err != nil {
		logf("bringing up lo: %v", err)
	}
	if err := os.MkdirAll("/root", 0o700); err != nil {
		logf("mkdir /root: %v", err)
	}
	return runJob(j)
}

// ensureConsole gives this process stdin/stdout/stderr on /dev/console if the kernel could
// not (it opens /dev/console before starting init; the runner's archive provides the node,
// this is the fallback once devtmpfs is mounted).
func ensureConsole() {
	if _, err := unix.FcntlInt(1, unix.F_GETFD, 0); err == nil {
		return
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR, 0)
	if err != nil {
		return
	}
	for _, target := range []int{0, 1, 2} {
		_ = unix.Dup2(fd, target)
	}
	if fd > 2 {
		unix.Close(fd)
	}
}

func readJob() (*job.Job, error) {
	b, err := os.ReadFile(job.Path)
	if err != nil {
		return nil, fmt.Errorf("no job: %w (the runner puts it in the initramfs)", err)
	}
	var j job.Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%s: %w", job.Path, err)
	}
	if len(j.Args) == 0 {
		return nil, fmt.Errorf("%s: empty command", job.Path)
	}
	return &j, nil
}

// loadModule loads one kernel module file; compressed modules (.ko.xz, .ko.zst) are handed
// to the kernel as they are, which decompresses them (CONFIG_MODULE_DECOMPRESS).
func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(path, ".ko") {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	switch {
	case err == nil:
		logf("loaded module %s", path)
	case errors.Is(err, unix.EEXIST):
	default:
		return fmt.Errorf("loading module %s: %w", path, err)
	}
	return nil
}

// linkUp sets IFF_UP on a device; for lo the kernel then adds 127.0.0.1 and ::1 itself.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// runJob runs the command as a child with the console as its stdio and returns its status
// in shell convention (128+n when killed by signal n).
func runJob(j *job.Job) int {
	cmd := exec.Command(j.Args[0], j.Args[1:]...)
	cmd.Stdin = nil
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.Dir = j.Dir
	cmd.Env = append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"TMPDIR=/tmp",
		"TERM=dumb",
	}, j.Env...)
	logf("running %s", strings.Join(j.Args, " "))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logf("starting %s: %v", j.Args[0], err)
		return 126
	}
	child := cmd.Process.Pid
	// As PID 1 this process inherits every orphan the job leaves behind: reap them all,
	// and stop when the job itself has exited.
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			logf("wait: %v", err)
			return 125
		}
		if pid != child {
			continue
		}
		elapsed := time.Since(start).Round(time.Millisecond)
		switch {
		case ws.Exited():
			logf("%s exited with status %d after %s", j.Args[0], ws.ExitStatus(), elapsed)
			return ws.ExitStatus()
		case ws.Signaled():
			logf("%s killed by signal %s after %s", j.Args[0], ws.Signal(), elapsed)
			return 128 + int(ws.Signal())
		}
	}
}

// finish reports the status and stops the machine; it never returns.
func finish(status int) {
	unix.Sync()
	fmt.Println(job.ExitLine(status))
	// The console is a UART the kernel drains by interrupt: qemu exits at the port write,
	// dropping whatever the tty still holds (the job's last lines and the marker). Wait
	// until the tty has sent everything (tcdrain).
	for _, fd := range []int{1, 2} {
		if err := unix.IoctlSetInt(fd, unix.TCSBRK, 1); err != nil && fd == 1 {
			logf("draining the console: %v", err)
		}
	}
	// On x86, qemu exits at the port write with the status in its exit code; elsewhere
	// (and if the write did nothing) the power-off ends the run.
	if err := debugExit(job.DebugExitValue(status)); err != nil {
		logf("%v; powering off instead (the runner then relies on the console marker)", err)
	}
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Returning from PID 1 panics the kernel; with panic=-1 and qemu's -no-reboot that
	// also ends the run.
	for {
		time.Sleep(time.Hour)
	}
}

func uptime() (float64, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	var up float64
	_, err = fmt.Sscanf(string(b), "%f", &up)
	return up, err
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vmtest init: "+format+"\n", args...)
}
