// Package childproc builds the discotrace binary of this tree and measures it as a child
// process: CPU time and peak RSS as the kernel accounts them (getrusage), and RSS while it
// runs. The load benchmarks measure the binary an operator would run, not a library call
// inside the benchmark's own process, whose memory and CPU would mix with the load's.
package childproc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Build compiles ./cmd/discotrace (run from the module root, as bench/run.sh does) into
// dir and returns the binary's path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "discotrace")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/discotrace")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build discotrace (run from the repository root, or give -discotrace PATH): %v\n%s", err, stderr.String())
	}
	return bin, nil
}

// Usage is what a finished child cost.
type Usage struct {
	Wall      time.Duration
	User, Sys time.Duration
	MaxRSS    int64 // bytes
}

// CPU is user plus system time.
func (u Usage) CPU() time.Duration { return u.User + u.Sys }

func (u Usage) String() string {
	return fmt.Sprintf("wall %.2f s, CPU %.2f s (user %.2f, sys %.2f), max RSS %.1f MiB",
		u.Wall.Seconds(), u.CPU().Seconds(), u.User.Seconds(), u.Sys.Seconds(), float64(u.MaxRSS)/(1<<20))
}

// UsageOf reads a waited-for child's rusage; wall is measured by the caller.
func UsageOf(ps *os.ProcessState, wall time.Duration) Usage {
	u := Usage{Wall: wall, User: ps.UserTime(), Sys: ps.SystemTime()}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		u.MaxRSS = ru.Maxrss << 10 // Linux reports KiB
	}
	return u
}

// RSS is a running process's resident set size now, from /proc/PID/status (VmRSS).
func RSS(pid int) (int64, error) {
	m, err := MemoryOf(pid)
	return m.RSS, err
}

// Memory is a running process's resident memory, in bytes: RSS is Anon (heap, stacks,
// the Go runtime's own) plus File (pages of mapped files: mostly the binary's code and
// read-only data, which the kernel's readahead may map whole) plus Shmem.
type Memory struct{ RSS, Anon, File int64 }

func (m Memory) String() string {
	return fmt.Sprintf("%.1f MiB (anon %.1f, file %.1f)",
		float64(m.RSS)/(1<<20), float64(m.Anon)/(1<<20), float64(m.File)/(1<<20))
}

// MemoryOf reads VmRSS, RssAnon and RssFile from /proc/PID/status.
func MemoryOf(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	var m Memory
	found := false
	fields := map[string]*int64{"VmRSS:": &m.RSS, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for name, dst := range fields {
			if v, ok := strings.CutPrefix(sc.Text(), name); ok {
				kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err != nil {
					return Memory{}, fmt.Errorf("/proc/%d/status: %s %v", pid, name, err)
				}
				*dst = kib << 10
				found = found || name == "VmRSS:"
			}
		}
	}
	if !found {
		return Memory{}, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, sc.Err()
}
