package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/discotrace/discotrace/attach"
	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/tracer"
)

// attachFlags decide whether trace finds the running nodes itself: when no --port is
// given (explicit flags always win).
type attachFlags struct {
	autoAttach bool
	procRoot   string // where procfs is mounted; "" is /proc (tests give a fake tree)
	wholeHost  bool   // --whole-host: the send and recv programs on the root cgroup
	nodePIDs   []int  // the nodes found running, whose cgroups trace is scoped to
}

// proc returns where procfs is mounted.
func (f *attachFlags) proc() string {
	if f.procRoot == "" {
		return "/proc"
	}
	return f.procRoot
}

// scopeToNodes attaches the send and recv programs (cgroup_skb) to the cgroups of the
// node being traced, --pid or the nodes found running, instead of the root cgroup: the
// rest of the host's traffic then never runs them. Without a known node, with
// --whole-host, or when a node's cgroup cannot be found (said on stderr), they stay on the
// root cgroup and see the whole host.
func (f *traceFlags) scopeToNodes(stderr io.Writer, cfg *tracer.Config) {
	pids := f.nodePIDs
	if f.pid != 0 {
		pids = []int{int(f.pid)}
	}
	if f.wholeHost || len(pids) == 0 {
		return
	}
	root, err := tracer.Cgroup2Root()
	if err != nil {
		return // Open says why
	}
	var dirs []string
	for _, pid := range pids {
		dir, err := tracer.CgroupOf(f.proc(), pid)
		if err != nil {
			fmt.Fprintf(stderr, "discotrace: cannot find the cgroup of pid %d (%v): sends and receives are traced for the whole host\n", pid, err)
			return
		}
		if dir == root {
			return // a node in the root cgroup: the whole host it is
		}
		dirs = append(dirs, dir)
	}
	cfg.Cgroups = dirs
}

// attachToNodes finds the Ethereum clients owning UDP sockets and sets cfg to watch
// their discovery ports and id to hold their node keys (unless --nodekey is given, or
// nothing is decoded). It says on stderr what it attached to, never a key; with nothing
// found, cfg keeps the default port and stderr says so.
func (f *traceFlags) attachToNodes(stderr io.Writer, cfg *tracer.Config, id *decode.Identity) {
	if !f.autoAttach || tracer.CheckPrivileges() != nil {
		return // without them, tracing stops at once and says why in one line
	}
	proc := f.proc()
	loadKeys := !f.raw && len(f.nodeKeys) == 0
	res, err := attach.Find(proc, attach.Filter{PID: f.pid, NetNS: uint64(f.netns)}, loadKeys)
	if err != nil {
		fmt.Fprintf(stderr, "discotrace: cannot look for running nodes (%v); watching UDP port %s, give --port N for another\n", err, portList(cfg.Ports))
		return
	}
	if len(res.Nodes) == 0 {
		fmt.Fprintf(stderr, "discotrace: no Ethereum client found among the %d processes owning UDP sockets; watching the default UDP port %s: give --port N (and --nodekey FILE) for your node\n",
			len(res.Owners), portList(cfg.Ports))
		return
	}
	cfg.Ports = nil
	for _, n := range res.Nodes {
		f.nodePIDs = append(f.nodePIDs, n.PID)
		for _, p := range n.Ports {
			if !slices.Contains(cfg.Ports, p) {
				cfg.Ports = append(cfg.Ports, p)
			}
		}
		line := fmt.Sprintf("discotrace: attached to %s (pid %d, netns %d): UDP port %s", n.Client.Name, n.PID, n.NetNS, portList(n.Ports))
		if n.Key != nil {
			id.Keys = append(id.Keys, n.Key)
			line += fmt.Sprintf(", node %s, key from %s", n.ID(), n.KeySource)
		}
		fmt.Fprintln(stderr, line)
		for _, note := range n.Notes {
			fmt.Fprintf(stderr, "discotrace: %s pid %d: %s\n", n.Client.Name, n.PID, note)
		}
	}
	how := "--port N to watch other ports"
	if len(f.nodeKeys) == 0 && !f.raw {
		how += ", --nodekey FILE to decrypt with another key"
	}
	fmt.Fprintf(stderr, "discotrace: found without configuration: give %s\n", strings.TrimSpace(how))
}
