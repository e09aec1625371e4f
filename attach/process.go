package attach

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Process is a process that owns UDP sockets, as /proc shows it.
type Process struct {
	PID   int
	NetNS uint64
	Comm  string   // the kernel's name for it (15 bytes at most)
	Exe   string   // its executable's path, as the process sees it
	Args  []string // its command line
	UID   int      // its real user ID
	// Sockets are its UDP sockets.
	Sockets []Socket

	proc string // the /proc it was read from
	env  map[string]string
}

// readProcess reads what identifies pid.
func readProcess(proc string, pid int) (*Process, error) {
	dir := filepath.Join(proc, strconv.Itoa(pid))
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return nil, err
	}
	p := &Process{PID: pid, proc: proc}
	for a := range bytes.SplitSeq(bytes.TrimRight(cmdline, "\x00"), []byte{0}) {
		p.Args = append(p.Args, string(a))
	}
	if comm, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
		p.Comm = strings.TrimSpace(string(comm))
	}
	p.Exe, _ = os.Readlink(filepath.Join(dir, "exe")) // unreadable for kernel threads
	p.UID = -1
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		p.UID = statusUID(status)
	}
	return p, nil
}

// statusUID returns the real user ID of a /proc/PID/status ("Uid:\treal\teffective...").
func statusUID(status []byte) int {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				if uid, err := strconv.Atoi(f[0]); err == nil {
					return uid
				}
			}
		}
	}
	return -1
}

// Named tells whether the process runs a program of one of names: its executable's,
// its first argument's or its kernel name (which the kernel cuts to 15 bytes).
func (p *Process) Named(names ...string) bool {
	var argv0 string
	if len(p.Args) > 0 {
		argv0 = path.Base(p.Args[0])
	}
	exe := strings.TrimSuffix(path.Base(p.Exe), " (deleted)") // a binary replaced by an upgrade
	for _, n := range names {
		if argv0 == n || exe == n || (p.Comm != "" && p.Comm == n[:min(len(n), 15)]) {
			return true
		}
	}
	return false
}

// ArgContains tells whether an argument holds sub: a Java main class, a script's path.
func (p *Process) ArgContains(sub string) bool {
	return slices.ContainsFunc(p.Args, func(a string) bool { return strings.Contains(a, sub) })
}

// UDPPorts returns the ports of the process's unconnected UDP sockets, ascending, each
// once: the ports it listens on.
func (p *Process) UDPPorts() []uint16 {
	var out []uint16
	for _, s := range p.Sockets {
		if !s.Connected && !slices.Contains(out, s.Port) {
			out = append(out, s.Port)
		}
	}
	slices.Sort(out)
	return out
}

// Path returns where a path the process names (absolute, or relative to its working
// directory) is from here: through /proc/PID/root and /proc/PID/cwd, which lead into
// its mount namespace, so that a node in a container is read in its own filesystem.
func (p *Process) Path(name string) string {
	base := "cwd"
	if filepath.IsAbs(name) {
		base = "root"
	}
	return filepath.Join(p.proc, strconv.Itoa(p.PID), base, name)
}

// Getenv returns a variable of the process's environment (as it started).
func (p *Process) Getenv(name string) string {
	if p.env == nil {
		p.env = map[string]string{}
		b, _ := os.ReadFile(filepath.Join(p.proc, strconv.Itoa(p.PID), "environ"))
		for kv := range bytes.SplitSeq(b, []byte{0}) {
			if k, v, ok := strings.Cut(string(kv), "="); ok {
				p.env[k] = v
			}
		}
	}
	return p.env[name]
}

// Home returns the process's home directory as its program finds it: $HOME, else its
// user's entry in the passwd file of its own filesystem.
func (p *Process) Home() (string, error) {
	if h := p.Getenv("HOME"); h != "" {
		return h, nil
	}
	b, err := os.ReadFile(p.Path("/etc/passwd"))
	if err != nil {
		return "", fmt.Errorf("no HOME in its environment, and no passwd file: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 6 && f[2] == strconv.Itoa(p.UID) {
			return f[5], nil
		}
	}
	return "", fmt.Errorf("no HOME in its environment, and uid %d has no entry in its /etc/passwd", p.UID)
}

// ExpandPath expands a leading "~/" to the process's home and $VARIABLES from its
// environment, as geth does for its directory flags.
func (p *Process) ExpandPath(s string) (string, error) {
	if s == "~" || strings.HasPrefix(s, "~/") {
		home, err := p.Home()
		if err != nil {
			return "", err
		}
		s = home + s[1:]
	}
	return filepath.Clean(os.Expand(s, p.Getenv)), nil
}
