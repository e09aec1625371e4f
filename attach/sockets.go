package attach

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Socket is one UDP socket of a network namespace's table (/proc/net/udp or udp6).
type Socket struct {
	Inode uint64
	Port  uint16 // the local port
	IPv6  bool
	// Connected sockets have a remote port: a DNS query or a NAT mapping request, not
	// something that listens for peers.
	Connected bool
}

// ParseUDPTable reads a /proc/net/udp or /proc/net/udp6 table: a header line, then one
// line per socket ("sl local_address rem_address st ... uid timeout inode ...").
func ParseUDPTable(r io.Reader, ipv6 bool) ([]Socket, error) {
	var out []Socket
	sc := bufio.NewScanner(r)
	for line := 0; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if line == 0 || len(f) == 0 {
			continue // the header
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 10", line+1, len(f))
		}
		local, err := hexPort(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: local address %q: %w", line+1, f[1], err)
		}
		remote, err := hexPort(f[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: remote address %q: %w", line+1, f[2], err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: inode %q: %w", line+1, f[9], err)
		}
		out = append(out, Socket{Inode: inode, Port: local, IPv6: ipv6, Connected: remote != 0})
	}
	return out, sc.Err()
}

// hexPort returns the port of an "ADDRESS:PORT" field, both hexadecimal.
func hexPort(field string) (uint16, error) {
	_, port, ok := strings.Cut(field, ":")
	if !ok {
		return 0, fmt.Errorf("no port")
	}
	p, err := strconv.ParseUint(port, 16, 16)
	return uint16(p), err
}

// pids lists the processes under proc.
func pids(proc string) ([]int, error) {
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out, nil
}

// netNS returns the inode of pid's network namespace ("net:[4026531840]").
func netNS(proc string, pid int) (uint64, error) {
	link, err := os.Readlink(filepath.Join(proc, strconv.Itoa(pid), "ns", "net"))
	if err != nil {
		return 0, err
	}
	return bracketedInode(link, "net:")
}

// bracketedInode parses the "KIND:[INODE]" links of /proc/PID/ns and /proc/PID/fd.
func bracketedInode(link, kind string) (uint64, error) {
	rest, ok := strings.CutPrefix(link, kind+"[")
	if !ok || !strings.HasSuffix(rest, "]") {
		return 0, fmt.Errorf("%q is not a %s link", link, kind)
	}
	return strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
}

// udpSockets reads the UDP sockets of every network namespace, through one process of
// each (nsPID: namespace inode -> a pid in it), keyed by socket inode. A namespace whose
// process ended meanwhile is skipped.
func udpSockets(proc string, nsPID map[uint64]int) (map[uint64]Socket, error) {
	out := map[uint64]Socket{}
	for _, pid := range nsPID {
		for _, table := range []struct {
			name string
			ipv6 bool
		}{{"udp", false}, {"udp6", true}} {
			b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "net", table.name))
			if os.IsNotExist(err) {
				continue // the process ended, or IPv6 is disabled
			}
			if err != nil {
				return nil, fmt.Errorf("read the UDP sockets of pid %d: %w", pid, err)
			}
			socks, err := ParseUDPTable(strings.NewReader(string(b)), table.ipv6)
			if err != nil {
				return nil, fmt.Errorf("parse %s of pid %d: %w", table.name, pid, err)
			}
			for _, s := range socks {
				out[s.Inode] = s
			}
		}
	}
	return out, nil
}

// socketInodes lists the inodes of the sockets pid's file descriptors refer to
// ("socket:[INODE]" links); nothing when they cannot be read (the process ended).
func socketInodes(proc string, pid int) []uint64 {
	dir := filepath.Join(proc, strconv.Itoa(pid), "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []uint64
	for _, e := range entries {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if inode, err := bracketedInode(link, "socket:"); err == nil {
			out = append(out, inode)
		}
	}
	return out
}
