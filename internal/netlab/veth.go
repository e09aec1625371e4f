package netlab

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
)

// Veth is a veth pair joining two namespaces, addressed on both ends with IPv4 from
// 10.199.0.0/16 and IPv6 from fd00:199::/32. Neighbour entries are permanent on both
// sides, so the first packet goes out at once instead of waiting in the ARP/ND queue:
// a scenario's packets are exactly the packets the test sent.
type Veth struct {
	A, B         *Netns
	AName, BName string     // device names, AName inside A and BName inside B
	AIndex       int        // ifindex of AName inside A
	BIndex       int        // ifindex of BName inside B
	A4, B4       netip.Addr // IPv4 addresses (/24)
	A6, B6       netip.Addr // IPv6 addresses (/64)
}

// ConnectNetns creates a veth pair between a and b. The devices are created directly
// inside the namespaces, never in the root one, and disappear with them.
func ConnectNetns(a, b *Netns) (*Veth, error) {
	n := sequence.Add(1)
	subnet := n % 250
	v := &Veth{
		A: a, B: b,
		AName: fmt.Sprintf("dtv%da", n), BName: fmt.Sprintf("dtv%db", n),
		A4: netip.AddrFrom4([4]byte{10, 199, byte(subnet), 1}),
		B4: netip.AddrFrom4([4]byte{10, 199, byte(subnet), 2}),
		A6: netip.MustParseAddr(fmt.Sprintf("fd00:199:0:%x::1", subnet)),
		B6: netip.MustParseAddr(fmt.Sprintf("fd00:199:0:%x::2", subnet)),
	}
	// Locally administered MACs, fixed so the neighbour entries can be set up front.
	aMAC := fmt.Sprintf("02:d7:00:%02x:%02x:01", byte(n>>8), byte(n))
	bMAC := fmt.Sprintf("02:d7:00:%02x:%02x:02", byte(n>>8), byte(n))
	steps := [][]string{
		{"-n", a.Name, "link", "add", v.AName, "address", aMAC, "type", "veth",
			"peer", "name", v.BName, "address", bMAC, "netns", b.Name},
		{"-n", a.Name, "addr", "add", v.A4.String() + "/24", "dev", v.AName},
		{"-n", b.Name, "addr", "add", v.B4.String() + "/24", "dev", v.BName},
		{"-n", a.Name, "addr", "add", v.A6.String() + "/64", "dev", v.AName, "nodad"},
		{"-n", b.Name, "addr", "add", v.B6.String() + "/64", "dev", v.BName, "nodad"},
		{"-n", a.Name, "link", "set", v.AName, "up"},
		{"-n", b.Name, "link", "set", v.BName, "up"},
		{"-n", a.Name, "neigh", "replace", v.B4.String(), "lladdr", bMAC, "dev", v.AName, "nud", "permanent"},
		{"-n", b.Name, "neigh", "replace", v.A4.String(), "lladdr", aMAC, "dev", v.BName, "nud", "permanent"},
		{"-n", a.Name, "neigh", "replace", v.B6.String(), "lladdr", bMAC, "dev", v.AName, "nud", "permanent"},
		{"-n", b.Name, "neigh", "replace", v.A6.String(), "lladdr", aMAC, "dev", v.BName, "nud", "permanent"},
	}
	for _, args := range steps {
		if err := ip(args...); err != nil {
			v.Close()
			return nil, err
		}
	}
	var err error
	if v.AIndex, err = ifindex(a, v.AName); err != nil {
		v.Close()
		return nil, err
	}
	if v.BIndex, err = ifindex(b, v.BName); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// Close deletes the pair (deleting one end deletes both). Deleting the namespaces does
// it too, so Close is only needed to cut a link while the namespaces live on.
func (v *Veth) Close() error {
	return ip("-n", v.A.Name, "link", "delete", v.AName)
}

// NewVeth is ConnectNetns for tests: it fails the test on error. The pair goes away with
// the namespaces at the end of the test.
func NewVeth(tb testing.TB, a, b *Netns) *Veth {
	tb.Helper()
	v, err := ConnectNetns(a, b)
	if err != nil {
		tb.Fatalf("connecting namespaces %s and %s: %v", a.Name, b.Name, err)
	}
	return v
}

// Pair is the usual two-host setup: two fresh namespaces joined by a veth pair.
func Pair(tb testing.TB) *Veth {
	tb.Helper()
	return NewVeth(tb, NewNetns(tb), NewNetns(tb))
}

func ifindex(ns *Netns, dev string) (int, error) {
	var index int
	err := ns.Do(func() error {
		// The routing socket behind InterfaceByName is opened on this thread, in ns.
		iface, err := net.InterfaceByName(dev)
		if err != nil {
			return fmt.Errorf("find %s in namespace %s: %w", dev, ns.Name, err)
		}
		index = iface.Index
		return nil
	})
	return index, err
}
