package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// IPv4 and UDP header sizes; netlab builds IPv4 headers without options.
const (
	ipv4HeaderLen = 20
	udpHeaderLen  = 8
	protoUDP      = 17
	ipv4FlagMF    = 0x2000 // more fragments
	ipv4OffMask   = 0x1fff // fragment offset, in 8-byte units
)

// UDP4 describes an IPv4 UDP datagram to build by hand.
type UDP4 struct {
	Src, Dst netip.AddrPort
	ID       uint16 // IP identification: what ties fragments of one datagram together
	TTL      uint8  // 0 means 64
	Payload  []byte
}

// Packet returns the datagram as one IPv4 packet (header, UDP header, payload) with
// correct IP and UDP checksums.
func (d UDP4) Packet() ([]byte, error) {
	if !d.Src.Addr().Is4() || !d.Dst.Addr().Is4() {
		return nil, fmt.Errorf("UDP4 needs IPv4 addresses, got %v -> %v", d.Src, d.Dst)
	}
	total := ipv4HeaderLen + udpHeaderLen + len(d.Payload)
	if total > 0xffff {
		return nil, fmt.Errorf("datagram of %d bytes does not fit an IPv4 packet", total)
	}
	ttl := d.TTL
	if ttl == 0 {
		ttl = 64
	}
	p := make([]byte, total)
	p[0] = 0x45 // version 4, 5 words of header
	binary.BigEndian.PutUint16(p[2:], uint16(total))
	binary.BigEndian.PutUint16(p[4:], d.ID)
	p[8] = ttl
	p[9] = protoUDP
	src, dst := d.Src.Addr().As4(), d.Dst.Addr().As4()
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	binary.BigEndian.PutUint16(p[10:], checksum(p[:ipv4HeaderLen], 0))

	u := p[ipv4HeaderLen:]
	binary.BigEndian.PutUint16(u[0:], d.Src.Port())
	binary.BigEndian.PutUint16(u[2:], d.Dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(udpHeaderLen+len(d.Payload)))
	copy(u[udpHeaderLen:], d.Payload)
	binary.BigEndian.PutUint16(u[6:], udpChecksum(p))
	return p, nil
}

// udpChecksum computes the UDP checksum of an IPv4 packet holding a whole datagram
// (checksum field zero), over the pseudo header and the UDP header and payload.
func udpChecksum(p []byte) uint16 {
	u := p[ipv4HeaderLen:]
	var pseudo [12]byte
	copy(pseudo[0:8], p[12:20])
	pseudo[9] = protoUDP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(u)))
	sum := checksum(u, sum16(pseudo[:], 0))
	if sum == 0 {
		return 0xffff // zero means "no checksum" in IPv4 UDP; RFC 768 sends all ones
	}
	return sum
}

// CorruptUDPChecksum changes the UDP checksum of an IPv4 packet built by Packet to a
// wrong value that is not zero (zero would mean "no checksum" and be accepted).
func CorruptUDPChecksum(p []byte) {
	field := p[ipv4HeaderLen+6:]
	bad := binary.BigEndian.Uint16(field) + 1
	if bad == 0 || bad == 0xffff {
		// 0 means no checksum; 0xffff and 0 are the same value in ones' complement.
		bad = 0x1234
	}
	binary.BigEndian.PutUint16(field, bad)
}

// FragmentIPv4 splits an IPv4 packet (no options, DF clear) into fragments carrying at
// most maxData bytes of the original payload each (rounded down to a multiple of 8, as
// fragment offsets count 8-byte units). The first fragment holds the UDP header.
func FragmentIPv4(p []byte, maxData int) ([][]byte, error) {
	if len(p) < ipv4HeaderLen || p[0] != 0x45 {
		return nil, errors.New("not an IPv4 packet without options")
	}
	maxData &^= 7
	if maxData < 8 {
		return nil, fmt.Errorf("fragments must carry at least 8 bytes, got %d", maxData)
	}
	data := p[ipv4HeaderLen:]
	if len(data) <= maxData {
		return nil, fmt.Errorf("a %d-byte payload fits one fragment of %d bytes: nothing to split", len(data), maxData)
	}
	var frags [][]byte
	for off := 0; off < len(data); off += maxData {
		end := min(off+maxData, len(data))
		f := make([]byte, ipv4HeaderLen+end-off)
		copy(f, p[:ipv4HeaderLen])
		copy(f[ipv4HeaderLen:], data[off:end])
		binary.BigEndian.PutUint16(f[2:], uint16(len(f)))
		flags := uint16(off/8) & ipv4OffMask
		if end < len(data) {
			flags |= ipv4FlagMF
		}
		binary.BigEndian.PutUint16(f[6:], flags)
		f[10], f[11] = 0, 0
		binary.BigEndian.PutUint16(f[10:], checksum(f[:ipv4HeaderLen], 0))
		frags = append(frags, f)
	}
	return frags, nil
}

// sum16 adds b as big-endian 16-bit words to sum (ones' complement, carries folded later).
func sum16(b []byte, sum uint32) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// checksum is the Internet checksum of b, starting from a partial sum.
func checksum(b []byte, initial uint32) uint16 {
	sum := sum16(b, initial)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
