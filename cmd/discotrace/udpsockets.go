package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// udpBindings says in which network namespaces a UDP socket is bound to each watched port:
// a port no socket is bound to anywhere is the likeliest reason trace shows nothing.
type udpBindings struct {
	netns      map[uint16][]uint64 // port -> inodes of the namespaces where a socket has it
	namespaces int                 // namespaces whose socket tables were read
	unreadable int                 // processes whose namespace or socket table could not be read
}

// findUDPBindings reads the socket tables (/proc/PID/net/udp and udp6) of every network
// namespace a process is in, once per namespace, and of those `ip netns add` pins under
// /run/netns, and notes where a socket's local port is one of ports (a socket opened in a
// pinned namespace by a process that left it is still there). With netns not 0 only that
// namespace is read.
func findUDPBindings(ports []uint16, netns uint32) udpBindings {
	b := udpBindings{netns: map[uint16][]uint64{}}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	read := map[uint64]bool{}
	for _, proc := range procs {
		var st syscall.Stat_t
		if err := syscall.Stat(proc+"/ns/net", &st); err != nil {
			if !os.IsNotExist(err) { // a process that ended meanwhile is no loss
				b.unreadable++
			}
			continue
		}
		if read[st.Ino] || netns != 0 && st.Ino != uint64(netns) {
			continue
		}
		found, err := boundPorts(proc, ports)
		if err != nil {
			if !os.IsNotExist(err) {
				b.unreadable++
			}
			continue
		}
		b.note(read, st.Ino, found)
	}
	pinned, _ := filepath.Glob(pinnedNetnsDir + "/*")
	for _, pin := range pinned {
		var st syscall.Stat_t
		if err := syscall.Stat(pin, &st); err != nil || read[st.Ino] || netns != 0 && st.Ino != uint64(netns) {
			continue
		}
		found, err := boundPortsIn(pin, ports)
		if err != nil {
			b.unreadable++
			continue
		}
		b.note(read, st.Ino, found)
	}
	return b
}

// pinnedNetnsDir is where `ip netns add` keeps the namespaces it names.
const pinnedNetnsDir = "/run/netns"

func (b *udpBindings) note(read map[uint64]bool, netns uint64, found []uint16) {
	read[netns] = true
	b.namespaces++
	for _, p := range found {
		b.netns[p] = append(b.netns[p], netns)
	}
}

// boundPortsIn is boundPorts for the network namespace pinned at path, read by a thread
// that enters it: /proc/thread-self/net shows that thread's namespace. The thread goes
// back to its own namespace, or ends with its goroutine if it cannot.
func boundPortsIn(path string, ports []uint16) ([]uint16, error) {
	type result struct {
		found []uint16
		err   error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- result{err: err}
			return // the thread is still in its own namespace; it ends locked all the same
		}
		defer own.Close()
		target, err := os.Open(path)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: err}
			return
		}
		found, err := boundPorts("/proc/thread-self", ports)
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- result{found, err}
	}()
	r := <-done
	return r.found, r.err
}

// boundPorts returns which of ports a UDP socket of proc's network namespace has as its
// local port.
func boundPorts(proc string, ports []uint16) ([]uint16, error) {
	var found []uint16
	for _, table := range []string{"/net/udp", "/net/udp6"} {
		f, err := os.Open(proc + table)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header
		for sc.Scan() {
			if p, ok := localPort(sc.Text()); ok && slices.Contains(ports, p) && !slices.Contains(found, p) {
				found = append(found, p)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s%s: %w", proc, table, err)
		}
	}
	return found, nil
}

// localPort parses the local port of a /proc/net/udp{,6} line:
// "   12: 0100007F:7661 00000000:0000 07 ...", the port in hex after the address.
func localPort(line string) (uint16, bool) {
	fields := strings.Fields(line)
	if len(fields) < 2 {
		return 0, false
	}
	_, port, ok := strings.Cut(fields[1], ":")
	if !ok {
		return 0, false
	}
	p, err := strconv.ParseUint(port, 16, 16)
	return uint16(p), err == nil
}

// unbound says which of ports no socket is bound to, and how to pick the right one; ""
// when each has a socket.
func (b udpBindings) unbound(ports []uint16, netns uint32) string {
	var missing []uint16
	for _, p := range ports {
		if len(b.netns[p]) == 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	where := "in any network namespace"
	if netns != 0 {
		where = fmt.Sprintf("in network namespace %d", netns)
	}
	port := "port " + portList(missing)
	if len(missing) > 1 {
		port = "ports " + portList(missing)
	}
	looked := fmt.Sprintf("%d namespaces looked at", b.namespaces)
	if b.unreadable > 0 {
		looked += fmt.Sprintf("; %d processes could not be read", b.unreadable)
	}
	return fmt.Sprintf("no UDP socket is bound to %s %s, so no node is there to trace: give your node's discovery port with --port (geth: its --port or --discovery.port, 30303 by default; consensus clients: usually 9000) (%s)", port, where, looked)
}
