package netlab

import (
	"fmt"
	"net/netip"
)

// AddLoopbackAddress gives the namespace addr as a host address (/32 or /128) on its
// loopback device: an address of the namespace itself, reachable over any of its links
// once the other side routes to it.
func (ns *Netns) AddLoopbackAddress(addr netip.Addr) error {
	return ip("-n", ns.Name, "addr", "add", netip.PrefixFrom(addr, addr.BitLen()).String(), "dev", "lo")
}

// AddDefaultRoute sends the namespace's traffic for any address it has no closer route
// to through gateway, a neighbour on one of its links.
func (ns *Netns) AddDefaultRoute(gateway netip.Addr) error {
	family := "-4"
	if gateway.Is6() {
		family = "-6"
	}
	if err := ip(family, "-n", ns.Name, "route", "add", "default", "via", gateway.String()); err != nil {
		return fmt.Errorf("route namespace %s through %v: %w", ns.Name, gateway, err)
	}
	return nil
}
