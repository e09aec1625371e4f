package main

import (
	"net"
	"slices"
	"testing"

	"github.com/discotrace/discotrace/internal/netlab"
)

// Lines as /proc/net/udp and udp6 show them: the local port is the hex after the address.
func TestLocalPortOfAProcNetUDPLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		port uint16
		ok   bool
	}{
		{"  227: 0100007F:765F 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 289289 2 0000000074a2c4ec 0", 30303, true},
		{" 4639: 00000000000000000000000001000000:2328 00000000000000000000000000000000:0000 07 00000000:00000900 00:00000000 00000000     0        0 289290 2 0000000031c33d2a 0", 9000, true},
		{"   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops", 0, false},
		{"", 0, false},
	} {
		if port, ok := localPort(tc.line); port != tc.port || ok != tc.ok {
			t.Errorf("%q: port %d, %v; want %d, %v", tc.line, port, ok, tc.port, tc.ok)
		}
	}
}

// A socket opened in a namespace `ip netns add` pinned, by a process that is not in it
// (a thread that entered it and left, as ip netns exec's parent or a test harness does),
// is found: no process's /proc/PID/net shows it.
func TestUDPBindingsInAPinnedNamespace(t *testing.T) {
	netlab.RequireRoot(t)
	ns := netlab.NewNetns(t)
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
	b := findUDPBindings([]uint16{port}, 0)
	if got := b.netns[port]; !slices.Contains(got, uint64(ns.Inode)) {
		t.Errorf("port %d bound in pinned network namespace %d: found in %v", port, ns.Inode, got)
	}
	if b.unbound([]uint16{port}, ns.Inode) != "" || findUDPBindings([]uint16{port}, ns.Inode).namespaces != 1 {
		t.Errorf("port %d bound in pinned network namespace %d: not found with --netns", port, ns.Inode)
	}
}
