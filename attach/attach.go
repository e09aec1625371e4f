// Package attach finds the Ethereum nodes running on this host, so that `discotrace
// trace` can watch them without being told their ports and keys: the processes that own
// UDP sockets (every network namespace's /proc/net/udp and udp6, matched to the
// socket:[INODE] links of /proc/PID/fd), the clients among them (by executable and
// command line), their discovery ports (from the command line, checked against the
// sockets) and their node keys (from where each client documents it keeps them, read
// through /proc/PID/root so that a node in a container is read in its own filesystem).
//
// Every function reads a /proc given as a path, so that tests run it over a fake tree.
package attach

import (
	"crypto/ecdsa"
	"fmt"
	"io/fs"
	"slices"
	"sort"

	"github.com/ethereum/go-ethereum/p2p/enode"
)

// Filter narrows the search to one process or network namespace (0: any).
type Filter struct {
	PID   uint32
	NetNS uint64
}

// Result is what Find saw.
type Result struct {
	// Nodes are the Ethereum clients found, by pid.
	Nodes []*Node
	// Owners are all the processes that own UDP sockets, clients or not.
	Owners []*Process
}

// Node is one running Ethereum client, attached to.
type Node struct {
	*Process
	Client *Client
	// Ports are the UDP ports its discovery listens on.
	Ports []uint16
	// Key is its node key; nil when it was not loaded (Notes say why).
	Key *ecdsa.PrivateKey
	// KeySource says where the key was read, as the process names it.
	KeySource string
	// Notes are what the user should know: a key not loaded and why, a key file others
	// can read, ports that differ from what the command line says.
	Notes []string
}

// ID returns the node ID of its key; the zero ID without a key.
func (n *Node) ID() enode.ID {
	if n.Key == nil {
		return enode.ID{}
	}
	return enode.PubkeyToIDV4(&n.Key.PublicKey)
}

// Find looks under proc (a procfs mount: "/proc") for the processes owning UDP sockets
// and the Ethereum clients among them, and attaches to each: its discovery ports and,
// when loadKeys, its node key. Processes that end meanwhile are skipped.
func Find(proc string, only Filter, loadKeys bool) (*Result, error) {
	all, err := pids(proc)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	sort.Ints(all)
	nsOf := map[int]uint64{}
	onePID := map[uint64]int{} // a process of each network namespace, to read its tables
	for _, pid := range all {
		ns, err := netNS(proc, pid)
		if err != nil {
			continue // ended, or a kernel thread without namespaces shown
		}
		nsOf[pid] = ns
		if _, ok := onePID[ns]; !ok {
			onePID[ns] = pid
		}
	}
	sockets, err := udpSockets(proc, onePID)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	for _, pid := range all {
		if (only.PID != 0 && pid != int(only.PID)) || (only.NetNS != 0 && nsOf[pid] != only.NetNS) {
			continue
		}
		var owned []Socket
		for _, inode := range socketInodes(proc, pid) {
			if s, ok := sockets[inode]; ok {
				owned = append(owned, s)
			}
		}
		if len(owned) == 0 {
			continue
		}
		p, err := readProcess(proc, pid)
		if err != nil {
			continue
		}
		p.NetNS, p.Sockets = nsOf[pid], owned
		res.Owners = append(res.Owners, p)
		if c := Recognise(p); c != nil {
			res.Nodes = append(res.Nodes, c.attach(p, loadKeys))
		}
	}
	return res, nil
}

// attach works out the node's discovery ports and loads its key.
func (c *Client) attach(p *Process, loadKeys bool) *Node {
	n := &Node{Process: p, Client: c}
	listening := p.UDPPorts()
	expected, err := c.discoveryPorts(p)
	if err != nil {
		n.Notes = append(n.Notes, err.Error())
	}
	for _, port := range expected {
		if slices.Contains(listening, port) {
			n.Ports = append(n.Ports, port)
		}
	}
	if len(n.Ports) == 0 {
		// Its configuration file or environment may set ports its command line does not
		// show: what it listens on is the better guess.
		n.Ports = listening
		if len(expected) > 0 {
			n.Notes = append(n.Notes, fmt.Sprintf("its command line implies discovery on UDP %v, but it listens on UDP %v: watching those", expected, listening))
		}
	}
	if !loadKeys {
		return n
	}
	if c.nodeKey == nil {
		n.Notes = append(n.Notes, fmt.Sprintf("discotrace does not know where %s keeps its node key", c.Name))
		return n
	}
	loc, err := c.nodeKey(p)
	switch {
	case err != nil:
		n.Notes = append(n.Notes, "cannot tell where its node key is: "+err.Error())
	case loc.None != "":
		n.Notes = append(n.Notes, loc.None)
	case loc.Flag != "":
		key, err := parseKey([]byte(loc.Text))
		if err != nil {
			n.Notes = append(n.Notes, fmt.Sprintf("its %s %v", loc.Flag, err))
			break
		}
		n.Key, n.KeySource = key, "its "+loc.Flag
	default:
		key, mode, err := readKeyFile(p, loc.File)
		if err != nil {
			n.Notes = append(n.Notes, err.Error())
			break
		}
		n.Key, n.KeySource = key, loc.File
		if mode&0o077 != 0 {
			n.Notes = append(n.Notes, fmt.Sprintf("key file %s can be read by %s (mode %v): chmod 600 it",
				loc.File, readers(mode), mode))
		}
	}
	return n
}

// readers names who besides the owner may read or write a file of mode m.
func readers(m fs.FileMode) string {
	switch {
	case m&0o070 != 0 && m&0o007 != 0:
		return "its group and others"
	case m&0o070 != 0:
		return "its group"
	}
	return "others"
}
