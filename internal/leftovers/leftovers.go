// Package leftovers finds what a process may leave behind in the kernel (BPF programs,
// open sockets and BPF objects, child processes), for tests that check a run cleaned up.
package leftovers

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
)

// procDir is /proc/PID, or /proc/self for pid 0.
func procDir(pid int) string {
	if pid == 0 {
		return "/proc/self"
	}
	return fmt.Sprintf("/proc/%d", pid)
}

// HeldPrograms lists the BPF programs the process holds by a program or link fd (pid 0:
// this process).
func HeldPrograms(pid int) []ebpf.ProgramID {
	var ids []ebpf.ProgramID
	dir := filepath.Join(procDir(pid), "fdinfo")
	fds, _ := os.ReadDir(dir)
	for _, fd := range fds {
		f, err := os.Open(filepath.Join(dir, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			v, ok := strings.CutPrefix(sc.Text(), "prog_id:")
			if !ok {
				continue
			}
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err == nil && !slices.Contains(ids, ebpf.ProgramID(id)) {
				ids = append(ids, ebpf.ProgramID(id))
			}
		}
		f.Close()
	}
	return ids
}

// StillLoaded returns the names (with IDs) of the programs among ids that are still
// loaded after wait. The kernel frees a program once its last link and fd are gone,
// some of them after an RCU grace period or from a work queue: a program is left behind
// only if it stays.
func StillLoaded(ids []ebpf.ProgramID, wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		var loaded []string
		for _, id := range ids {
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				continue
			}
			name := ""
			if info, err := p.Info(); err == nil {
				name = info.Name
			}
			p.Close()
			loaded = append(loaded, fmt.Sprintf("%s (id %d)", name, id))
		}
		if len(loaded) == 0 || time.Now().After(deadline) {
			return loaded
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FDTargets lists what the process's fds point to, where the target starts with prefix:
// "socket:", "anon_inode:bpf" (pid 0: this process).
func FDTargets(pid int, prefix string) ([]string, error) {
	dir := filepath.Join(procDir(pid), "fd")
	fds, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, fd.Name()))
		if err == nil && strings.HasPrefix(target, prefix) {
			out = append(out, target)
		}
	}
	return out, nil
}

// Children lists the pids of the process's child processes (pid 0: this process).
func Children(pid int) []string {
	tasks, _ := filepath.Glob(filepath.Join(procDir(pid), "task", "*", "children"))
	var kids []string
	for _, task := range tasks {
		if b, err := os.ReadFile(task); err == nil {
			kids = append(kids, strings.Fields(string(b))...)
		}
	}
	return kids
}

// InProcessGroup lists the processes of process group pgid.
func InProcessGroup(pgid int) []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var in []string
	for _, stat := range stats {
		b, err := os.ReadFile(stat)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces, so count from its ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 2 && fields[2] == strconv.Itoa(pgid) {
			in = append(in, strings.Fields(s)[0])
		}
	}
	return in
}
