package demo

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/discotrace/discotrace/internal/netlab"
)

// hubAddr is the hub's own address, on its loopback device: the local node's, the same
// whichever link a peer reaches it over.
var hubAddr = netip.AddrFrom4([4]byte{10, 199, 255, 1})

// lab is the demo's network: a hub namespace where the local node runs, and one namespace
// per peer, joined to the hub by a veth pair and routed through it, so that every host
// reaches every other as on one small network. Every node listens on the same UDP port,
// each in its own namespace, as nodes on separate machines would.
type lab struct {
	port       uint16
	hub        *netlab.Netns
	namespaces []*netlab.Netns // every namespace made, the hub first
}

// host is one peer's namespace and its address.
type host struct {
	ns   *netlab.Netns
	addr netip.AddrPort
}

// newLab makes the hub namespace; its nodes listen on port.
func newLab(port uint16) (*lab, error) {
	hub, err := netlab.CreateNetns()
	if err != nil {
		return nil, fmt.Errorf("create the hub's network namespace: %w", err)
	}
	l := &lab{port: port, hub: hub, namespaces: []*netlab.Netns{hub}}
	if err := hub.AddLoopbackAddress(hubAddr); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	if err := hub.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// hubEndpoint is where the local node listens.
func (l *lab) hubEndpoint() netip.AddrPort { return netip.AddrPortFrom(hubAddr, l.port) }

// addHost makes a peer's namespace, joined and routed to the hub.
func (l *lab) addHost() (host, error) {
	ns, err := netlab.CreateNetns()
	if err != nil {
		return host{}, fmt.Errorf("create a peer's network namespace: %w", err)
	}
	l.namespaces = append(l.namespaces, ns)
	v, err := netlab.ConnectNetns(l.hub, ns)
	if err != nil {
		return host{}, err
	}
	// Port unreachable errors are rate limited per destination; a demo sends few, and
	// each must be seen.
	if err := ns.SetSysctl("net.ipv4.icmp_ratelimit", "0"); err != nil {
		return host{}, err
	}
	if err := ns.AddDefaultRoute(v.A4); err != nil {
		return host{}, err
	}
	return host{ns: ns, addr: netip.AddrPortFrom(v.B4, l.port)}, nil
}

// Close deletes every namespace, and with them their links and routes.
func (l *lab) Close() error {
	var errs []error
	for _, ns := range l.namespaces {
		if err := ns.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	l.namespaces = nil
	return errors.Join(errs...)
}
