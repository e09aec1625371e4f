// Package addrkey packs a UDP endpoint into a map key without a pointer. A
// netip.AddrPort is 32 bytes and holds a pointer (its zone), so a map keyed by it costs
// more and makes the garbage collector scan it; a Key is 19 bytes of plain data, and a
// map of Keys to pointer-free values is never scanned. The decoder's state keyed by
// endpoints (tens of thousands of entries under load) uses it.
package addrkey

import "net/netip"

// Key is an endpoint: an IPv4 or IPv6 address (as 16 bytes, IPv4 as its IPv4-mapped
// form, told apart by kind) and a port. An IPv6 zone is not kept: the decoder's
// addresses come from packet bytes, which carry none.
type Key struct {
	ip   [16]byte
	port [2]byte
	kind uint8 // 0: the invalid address, 4: IPv4, 6: IPv6
}

// Of returns a's key. Addresses that differ only in their zone have the same key.
func Of(a netip.AddrPort) Key {
	ip := a.Addr()
	k := Key{ip: ip.As16(), port: [2]byte{byte(a.Port() >> 8), byte(a.Port())}}
	switch {
	case ip.Is4():
		k.kind = 4
	case ip.Is6():
		k.kind = 6
	default:
		k.ip = [16]byte{} // As16 of the invalid address is zero too; kept explicit
	}
	return k
}

// AddrPort returns the endpoint k is the key of (without a zone).
func (k Key) AddrPort() netip.AddrPort {
	port := uint16(k.port[0])<<8 | uint16(k.port[1])
	switch k.kind {
	case 4:
		return netip.AddrPortFrom(netip.AddrFrom16(k.ip).Unmap(), port)
	case 6:
		return netip.AddrPortFrom(netip.AddrFrom16(k.ip), port)
	}
	return netip.AddrPortFrom(netip.Addr{}, port)
}
