package decode

import (
	"net/netip"
	"time"

	"github.com/discotrace/discotrace/decode/internal/bounded"
	"github.com/discotrace/discotrace/decode/record"
)

// A NAT between two traced namespaces shows one peer at two endpoints: its own, in its
// namespace, and the router's mapping, in the other's. The first datagram observed on
// both sides of the router (a twin with one endpoint rewritten) links the two, and from
// then on the trackers and the discv5 sessions know the peer by the endpoint seen first,
// so that a request seen at one and its answer sent to the other meet. Events keep the
// endpoints the kernel saw.
const (
	maxNATAliases = 4096
	// natAliasRetention is how long an alias unused is kept: longer than Linux keeps an
	// idle UDP mapping (nf_conntrack_udp_timeout_stream, 120 s).
	natAliasRetention = 3 * time.Minute
)

type natAlias struct {
	to   netip.AddrPort // the endpoint the trackers know the peer by
	used time.Time
}

type natAliases struct {
	m *bounded.Map[netip.AddrPort, natAlias]
}

func (n *natAliases) init() { n.m = bounded.New[netip.AddrPort, natAlias](maxNATAliases) }

// resolve returns the endpoint the trackers know a by (a itself when no NAT maps it).
func (n *natAliases) resolve(a netip.AddrPort, now time.Time) netip.AddrPort {
	a = unmapAP(a)
	if n.m.Len() == 0 {
		return a
	}
	al, ok := n.m.Get(a)
	switch {
	case !ok:
		return a
	case now.Sub(al.used) > natAliasRetention:
		n.m.Delete(a)
		return a
	}
	if now.After(al.used) {
		al.used = now
		n.m.Put(a, al)
	}
	return al.to
}

// link learns, from r and the earlier observation first of the same datagram, the
// endpoint a NAT rewrote: r's differs from what first's is known by.
func (n *natAliases) link(first *seenDatagram, r *record.Record) {
	for _, e := range [2][2]netip.AddrPort{{first.src.AddrPort(), r.Src}, {first.dst.AddrPort(), r.Dst}} {
		known, other := n.resolve(e[0], r.Time), unmapAP(e[1])
		if other != known && n.resolve(other, r.Time) != known {
			n.m.Put(other, natAlias{to: known, used: r.Time})
		}
	}
}

// canonical returns r with its endpoints as the trackers know them: r itself when no
// NAT maps them, else a copy.
func (n *natAliases) canonical(r *record.Record) *record.Record {
	if n.m.Len() == 0 {
		return r
	}
	src, dst := n.resolve(r.Src, r.Time), n.resolve(r.Dst, r.Time)
	if src == unmapAP(r.Src) && dst == unmapAP(r.Dst) {
		return r
	}
	c := *r
	c.Src, c.Dst = src, dst
	return &c
}
