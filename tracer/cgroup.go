package tracer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// CgroupOf returns the cgroup v2 directory of process pid (its "0::" line in
// PROC/PID/cgroup, under the cgroup v2 mount; proc is where procfs is mounted): the
// sockets it creates belong to it, so the send and recv programs attached there see its
// traffic (Config.Cgroups).
func CgroupOf(proc string, pid int) (string, error) {
	root, err := Cgroup2Root()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(proc, fmt.Sprint(pid), "cgroup"))
	if err != nil {
		return "", fmt.Errorf("read the cgroup of pid %d: %w", pid, err)
	}
	rel, err := unifiedCgroupPath(string(b))
	if err != nil {
		return "", fmt.Errorf("pid %d: %w", pid, err)
	}
	return filepath.Join(root, rel), nil
}

// unifiedCgroupPath returns the cgroup v2 path of /proc/PID/cgroup content.
func unifiedCgroupPath(content string) (string, error) {
	for _, line := range strings.Split(content, "\n") {
		rel, ok := strings.CutPrefix(line, "0::")
		if !ok {
			continue
		}
		if !strings.HasPrefix(rel, "/") || strings.HasPrefix(rel, "/..") {
			// Seen from a cgroup namespace that does not hold the process.
			return "", fmt.Errorf("its cgroup %q is outside this process's cgroup namespace", rel)
		}
		return rel, nil
	}
	return "", errors.New("no cgroup v2 entry (0::) in its /proc/PID/cgroup")
}

// outermostCgroups returns dirs cleaned, without duplicates and without any directory
// inside another of them: a program attached to a cgroup runs for its descendants too,
// and attached to both it would report each datagram twice.
func outermostCgroups(dirs []string) []string {
	var out []string
	for _, d := range dirs {
		d = filepath.Clean(d)
		inside := func(parent string) bool {
			return parent == d || parent == "/" || strings.HasPrefix(d, parent+"/")
		}
		if slices.ContainsFunc(out, inside) {
			continue
		}
		out = slices.DeleteFunc(out, func(o string) bool {
			return d == "/" || strings.HasPrefix(o, d+"/")
		})
		out = append(out, d)
	}
	return out
}

// openCgroup opens a cgroup v2 directory to attach programs to.
func openCgroup(dir string) (*os.File, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("%s is not a cgroup v2 directory (the cgroup v2 mount is where the cgroup programs attach)", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", dir, err)
	}
	return f, nil
}
