package pcapout

import (
	"encoding/binary"
	"net/netip"

	"github.com/discotrace/discotrace/decode/record"
)

// IP protocol numbers and header sizes of the headers rebuilt here.
const (
	protoICMPv4 = 1
	protoUDP    = 17
	protoICMPv6 = 58
	ipv4Header  = 20
	ipv6Header  = 40
	udpHeader   = 8
	icmpHeader  = 8
	ttl         = 64
)

// appendDatagram appends r's datagram as IP + UDP + the captured payload, and returns it
// with the length the datagram had on the wire.
func appendDatagram(b []byte, r *record.Record) ([]byte, int) {
	src, dst := unmap(r.Src), unmap(r.Dst)
	udpLen := udpHeader + r.Len
	ipStart := len(b)
	b = appendIP(b, src.Addr(), dst.Addr(), protoUDP, udpLen)
	b = appendUDP(b, src, dst, r.Len, r.Payload)
	return b, len(b) - ipStart - udpHeader - len(r.Payload) + udpLen
}

// appendICMPError appends r's ICMP error: IP + ICMP header, quoting the datagram's IP and
// UDP headers and the payload the error carried. The error's own addresses are those of
// the record; when unknown, the error is taken to come back from the quoted destination.
func appendICMPError(b []byte, r *record.Record) []byte {
	qsrc, qdst := unmap(r.QuotedSrc), unmap(r.QuotedDst)
	src, dst := r.Src.Addr().Unmap(), r.Dst.Addr().Unmap()
	if !src.IsValid() || !dst.IsValid() {
		src, dst = qdst.Addr(), qsrc.Addr()
	}
	v6 := src.Is6()
	proto := uint8(protoICMPv4)
	if v6 {
		proto = protoICMPv6
	}
	quoteLen := ipHeaderLen(qsrc.Addr()) + udpHeader + len(r.Payload)
	b = appendIP(b, src, dst, proto, icmpHeader+quoteLen)
	icmpStart := len(b)
	b = append(b, r.ICMPType, r.ICMPCode, 0, 0, 0, 0, 0, 0) // checksum, then unused/MTU
	b = appendIP(b, qsrc.Addr(), qdst.Addr(), protoUDP, udpHeader+r.Len)
	b = appendUDP(b, qsrc, qdst, r.Len, r.Payload)
	var sum uint32
	if v6 {
		sum = pseudoHeaderSum(src, dst, protoICMPv6, len(b)-icmpStart)
	}
	binary.BigEndian.PutUint16(b[icmpStart+2:], finish(sum+onesSum(b[icmpStart:])))
	return b
}

// appendIP appends an IPv4 or IPv6 header (by src's family) for a payload of n bytes.
func appendIP(b []byte, src, dst netip.Addr, proto uint8, n int) []byte {
	if src.Is6() {
		b = append(b, 0x60, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		b = append(b, proto, ttl)
		s, d := src.As16(), dst.As16()
		b = append(b, s[:]...)
		return append(b, d[:]...)
	}
	start := len(b)
	b = append(b, 0x45, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(ipv4Header+n))
	b = append(b, 0, 0, 0x40, 0, ttl, proto, 0, 0) // id 0, don't fragment, checksum later
	s, d := src.As4(), dst.As4()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	binary.BigEndian.PutUint16(b[start+10:], finish(onesSum(b[start:])))
	return b
}

// appendUDP appends a UDP header for a payload of n bytes, then the captured payload. The
// checksum is computed when the whole payload was captured, else left 0 (none).
func appendUDP(b []byte, src, dst netip.AddrPort, n int, payload []byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	b = binary.BigEndian.AppendUint16(b, uint16(udpHeader+n))
	b = append(b, 0, 0)
	b = append(b, payload...)
	if len(payload) == n {
		sum := finish(pseudoHeaderSum(src.Addr(), dst.Addr(), protoUDP, udpHeader+n) + onesSum(b[start:]))
		if sum == 0 {
			sum = 0xffff // 0 means "no checksum"
		}
		binary.BigEndian.PutUint16(b[start+6:], sum)
	}
	return b
}

func ipHeaderLen(a netip.Addr) int {
	if a.Is6() {
		return ipv6Header
	}
	return ipv4Header
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// pseudoHeaderSum is the ones'-complement sum of the UDP/ICMPv6 pseudo-header.
func pseudoHeaderSum(src, dst netip.Addr, proto uint8, n int) uint32 {
	var ph []byte
	if src.Is6() {
		s, d := src.As16(), dst.As16()
		ph = append(append(ph, s[:]...), d[:]...)
		ph = binary.BigEndian.AppendUint32(ph, uint32(n))
		ph = append(ph, 0, 0, 0, proto)
	} else {
		s, d := src.As4(), dst.As4()
		ph = append(append(ph, s[:]...), d[:]...)
		ph = append(ph, 0, proto)
		ph = binary.BigEndian.AppendUint16(ph, uint16(n))
	}
	return onesSum(ph)
}

// onesSum adds b as big-endian 16-bit words (RFC 1071), without the final fold.
func onesSum(b []byte) uint32 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// finish folds a ones'-complement sum and complements it: the checksum field's value.
func finish(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
