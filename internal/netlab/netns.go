// Package netlab builds real network scenarios for the kernel tests and for `discotrace
// demo`: network namespaces joined by veth pairs and routed, sysctls inside them, raw
// senders of malformed or fragmented datagrams, and the kernel's own counters
// (/proc/net/snmp, snmp6, netstat) read in a given namespace.
//
// Everything it creates lives inside namespaces it created, under names carrying the
// process's pid, with addresses from 10.199.0.0/16 and fd00:199::/32 only, so parallel runs
// do not collide and nothing leaks onto the host's own networks. Everything is removed
// again by Close (or by the test's cleanup when made with the testing.TB helpers).
//
// Most functions need root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN for setns);
// RequireRoot skips a test otherwise.
package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// namePrefix starts the name of every namespace netlab creates; the pid that follows lets
// RemoveStale tell the leftovers of killed runs from namespaces of runs still going.
const namePrefix = "dtlab-"

// netnsDir is where `ip netns` keeps its named namespaces (bind mounts of nsfs files).
const netnsDir = "/run/netns"

// sequence makes names unique within this process.
var sequence atomic.Uint32

// RequireRoot skips the test unless it runs as root with iproute2's ip on the PATH.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: it creates network namespaces and raw sockets")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("needs iproute2's ip on the PATH")
	}
}

// Netns is a network namespace created by netlab, named in /run/netns like `ip netns add`
// does, so `ip netns exec NAME ...` works on it while a test is paused.
type Netns struct {
	Name  string
	Inode uint32 // the nsfs inode: what the tracer reports as the event's netns
	path  string
}

// CreateNetns makes a fresh network namespace with its loopback device up.
func CreateNetns() (*Netns, error) {
	name := fmt.Sprintf("%s%d-%d", namePrefix, os.Getpid(), sequence.Add(1))
	if err := ip("netns", "add", name); err != nil {
		return nil, err
	}
	ns := &Netns{Name: name, path: filepath.Join(netnsDir, name)}
	var st unix.Stat_t
	if err := unix.Stat(ns.path, &st); err != nil {
		ns.Close()
		return nil, fmt.Errorf("stat namespace %s: %w", ns.path, err)
	}
	ns.Inode = uint32(st.Ino)
	if err := ip("-n", name, "link", "set", "lo", "up"); err != nil {
		ns.Close()
		return nil, err
	}
	return ns, nil
}

// NewNetns is CreateNetns for tests: it fails the test on error and removes the
// namespace when the test ends.
func NewNetns(tb testing.TB) *Netns {
	tb.Helper()
	ns, err := CreateNetns()
	if err != nil {
		tb.Fatalf("creating a network namespace: %v", err)
	}
	tb.Cleanup(func() {
		if err := ns.Close(); err != nil {
			tb.Errorf("removing network namespace %s: %v", ns.Name, err)
		}
	})
	return ns
}

// Close deletes the namespace; its devices (veth ends included) go with it. Sockets
// still open in it keep the namespace itself alive until they are closed.
func (ns *Netns) Close() error {
	return ip("netns", "delete", ns.Name)
}

// Do runs fn with the calling goroutine's work moved into the namespace: fn runs on an OS
// thread of its own that has joined the namespace, so sockets fn opens belong to it (and
// stay there after fn returns, usable from any goroutine), and /proc/thread-self/net and
// /proc/sys/net show it. Goroutines fn starts run elsewhere, in the root namespace.
// fn must report failure by its error, not by t.Fatal (it runs on another goroutine).
func (ns *Netns) Do(fn func() error) error {
	result := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Sent only once inside has returned, the thread back home: this may be the
		// process's main thread, whose namespace /proc/self/ns/net shows the caller.
		result <- ns.inside(fn)
	}()
	return <-result
}

// inside runs fn on the calling thread, locked to it, moved into the namespace, and moves
// the thread back to its own namespace before it returns. The thread is unlocked only if
// that worked; otherwise it stays locked and the Go runtime ends it with its goroutine.
// (Ending is not enough by itself: the process's main thread is never ended, only parked,
// and /proc/self/... would show the namespace it was left in.)
func (ns *Netns) inside(fn func() error) (err error) {
	home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open this thread's namespace: %w", err)
	}
	defer unix.Close(home)
	fd, err := unix.Open(ns.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", ns.path, err)
	}
	err = unix.Setns(fd, unix.CLONE_NEWNET)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("join namespace %s: %w", ns.Name, err)
	}
	defer func() {
		if unix.Setns(home, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic inside namespace %s: %v", ns.Name, r)
		}
	}()
	return fn()
}

// SetSysctl writes a sysctl of this namespace, e.g. SetSysctl("net.ipv4.ipfrag_time", "1").
func (ns *Netns) SetSysctl(key, value string) error {
	return ns.Do(func() error { return writeSysctl(key, value) })
}

// Sysctl reads a sysctl of this namespace.
func (ns *Netns) Sysctl(key string) (string, error) {
	var value string
	err := ns.Do(func() error {
		var err error
		value, err = readSysctl(key)
		return err
	})
	return value, err
}

// Counters reads the kernel's SNMP and netstat counters of this namespace.
func (ns *Netns) Counters() (Counters, error) {
	var c Counters
	err := ns.Do(func() error {
		var err error
		c, err = ReadCounters()
		return err
	})
	return c, err
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// writeSysctl writes a sysctl of the calling thread's network namespace (net.* sysctls
// are looked up in the namespace of the thread that opens the file).
func writeSysctl(key, value string) error {
	if err := os.WriteFile(sysctlPath(key), []byte(value), 0); err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// RemoveStale deletes namespaces left behind by netlab runs whose process no longer
// exists (a test binary killed before its cleanup ran). Namespaces of live runs stay.
func RemoveStale() error {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), namePrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || processExists(pid) {
			continue
		}
		if err := ip("netns", "delete", e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func processExists(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ip runs iproute2's ip with args and returns its stderr in the error. It runs in a
// process group of its own: a Ctrl-C meant for its parent must not kill it halfway
// through making or removing a namespace, which the parent then would not know of.
func ip(args ...string) error {
	cmd := exec.Command("ip", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// NamespacesOf lists the namespaces netlab made in process pid that still exist.
func NamespacesOf(pid int) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), fmt.Sprintf("%s%d-", namePrefix, pid)) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
