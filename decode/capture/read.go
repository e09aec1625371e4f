// Package capture reads pcap and pcapng files into records: UDP datagrams, IPv4/IPv6
// fragments reassembled (or reported lost), and ICMP/ICMPv6 errors quoting UDP datagrams.
package capture

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/discotrace/discotrace/decode/record"
)

// Errors Read returns about the file itself; match them with errors.Is.
var (
	// ErrNotCapture: the input is not a pcap or pcapng file, or its file header is cut short.
	// Nothing was emitted.
	ErrNotCapture = errors.New("not a pcap or pcapng capture file")
	// ErrUnsupportedLink: the capture's link type carries no IP this reader can find.
	// Nothing was emitted.
	ErrUnsupportedLink = errors.New("capture link type not supported")
	// ErrDamaged: the file breaks off or is corrupt after its header (a capture
	// whose writer was killed, a file cut short by a copy). Every record before the damage
	// has been emitted, and the incomplete fragmented datagrams have been reported.
	ErrDamaged = errors.New("capture file damaged")
)

// Stats counts what ReadStats found in a capture. Every frame read is
// counted once in Datagrams, ICMPErrors, Fragments, Other, Malformed or UnsupportedLink,
// and so is every datagram reassembled from fragments (also counted in Reassembled):
// Frames + Reassembled == Datagrams + ICMPErrors + Fragments + Other + Malformed + UnsupportedLink.
type Stats struct {
	Frames     int // packets read from the file
	Datagrams  int // UDP datagrams emitted (Kind Datagram), reassembled ones included
	ICMPErrors int // ICMP/ICMPv6 errors quoting a UDP datagram emitted (Kind ICMP)

	Fragments     int // IP fragments of UDP or ICMP datagrams, held for reassembly
	Reassembled   int // datagrams completed from fragments (also counted in Datagrams/ICMPErrors)
	FragmentDrops int // datagrams never completed, emitted as Kind Drop
	// DuplicateFragments: fragments that repeated or overlapped one already held (the
	// first copy is kept); counted in Fragments.
	DuplicateFragments int

	Other           int // IP traffic that is neither UDP nor an ICMP error quoting UDP (TCP, ARP, echo, ...)
	Malformed       int // frames whose link, IP, UDP or ICMP headers are invalid or cut off
	UnsupportedLink int // pcapng packets from interfaces of a link type without IP
}

// Read reads a pcap or pcapng stream and calls emit for each UDP datagram (Kind
// Datagram, Dir DirUnknown), ICMP/ICMPv6 error quoting a UDP datagram (Kind ICMP, Dir
// DirUnknown, ICMPType/Code, Src/Dst = the error's own IPs with port 0, QuotedSrc/
// QuotedDst = the quoted UDP tuple, Len and Payload = the quoted datagram's UDP length and
// whatever of its payload the error carries) and IPv4/IPv6 datagram never reassembled
// from its fragments (Kind Drop, Reason FRAG_REASM_TIMEOUT, Location one of Frag*,
// the UDP tuple, Len and payload prefix when the first fragment was seen).
//
// Records come in capture order. A record and its Payload are valid only until emit
// returns: the reader reuses both for the next (at hundreds of thousands of datagrams a
// second, their allocation was a quarter of decode's), so emit copies what it keeps, as
// the decoder does. Time is the capture's time stamp. Len is the UDP payload length from
// the UDP header, never from the (possibly padded) frame; Payload is clamped to what was
// captured. UDP checksums are not checked: captures on the sending host see them before
// the NIC fills them in.
//
// Supported: pcap (micro- and nanosecond, either byte order) and pcapng, gzip-compressed
// or not; link types Ethernet (with 802.1Q/802.1ad tags), Linux cooked SLL and SLL2, raw
// IP (101, 12, 14, 228, 229) and BSD null/loopback.
//
// It returns an error only when the file itself cannot be read: ErrNotCapture or
// ErrUnsupportedLink (nothing emitted; for pcapng, every packet came from interfaces
// without IP), ErrDamaged (everything before the damage emitted), or the first
// error emit returns (as is). Malformed packets inside a readable capture are skipped
// and counted (see ReadStats), never fatal.
func Read(r io.Reader, emit func(*record.Record) error) error {
	_, err := ReadStats(r, emit)
	return err
}

// ReadStats is Read, also telling what the capture held; the stats are
// valid up to where reading stopped, error or not.
func ReadStats(r io.Reader, emit func(*record.Record) error) (Stats, error) {
	src, err := open(r)
	if err != nil {
		return Stats{}, err
	}
	p := &parser{emit: emit, frags: make(map[fragKey]*fragQueue)}
	for {
		data, ci, err := src.ZeroCopyReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ferr := p.flushFragments(); ferr != nil {
				return p.stats, ferr
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return p.stats, fmt.Errorf("%w: the file ends in the middle of packet %d (the capture was cut short); the %d packets before it were read", ErrDamaged, p.stats.Frames+1, p.stats.Frames)
			}
			return p.stats, fmt.Errorf("%w: cannot read packet %d (%v); the %d packets before it were read", ErrDamaged, p.stats.Frames+1, err, p.stats.Frames)
		}
		link := src.LinkType()
		if len(ci.AncillaryData) > 0 { // pcapng with interfaces of several link types
			if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
				link = lt
			}
		}
		p.whole = ci.CaptureLength >= ci.Length
		if err := p.frame(link, data, ci.Timestamp); err != nil {
			return p.stats, err
		}
	}
	if err := p.flushFragments(); err != nil {
		return p.stats, err
	}
	if p.stats.Frames > 0 && p.stats.UnsupportedLink == p.stats.Frames {
		// A pcapng file whose every packet came from interfaces without IP.
		return p.stats, unsupportedLinkError(p.firstUnsupported)
	}
	return p.stats, nil
}

// source is what pcapgo's pcap and pcapng readers have in common.
type source interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

// File magics, as the first four bytes appear in the file.
var (
	pcapMagics = [][]byte{
		{0xd4, 0xc3, 0xb2, 0xa1}, {0xa1, 0xb2, 0xc3, 0xd4}, // microseconds, little/big endian
		{0x4d, 0x3c, 0xb2, 0xa1}, {0xa1, 0xb2, 0x3c, 0x4d}, // nanoseconds
	}
	pcapngMagic = []byte{0x0a, 0x0d, 0x0d, 0x0a} // section header block type
	gzipMagic   = []byte{0x1f, 0x8b}
)

// open detects the format by its magic and reads the file header.
func open(r io.Reader) (source, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(4)
	if err != nil && err != io.EOF {
		// Not a short file: the read itself failed (a directory, a closed descriptor).
		return nil, unwrapPathError(err)
	}
	if bytes.HasPrefix(head, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip-compressed, but %v", ErrNotCapture, err)
		}
		br = bufio.NewReader(zr)
		head, _ = br.Peek(4)
	}
	if len(head) == 0 {
		return nil, fmt.Errorf("%w: the file is empty (was the capture stopped before it wrote its header?)", ErrNotCapture)
	}
	switch {
	case bytes.Equal(head, pcapngMagic):
		// Mixed link types: tcpdump -i any and dumpcap write one interface block per device.
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, fmt.Errorf("%w: bad pcapng section header: %v", ErrNotCapture, err)
		}
		// Each packet names its interface's link type (see ReadStats), so a file
		// can only be refused for its link types once all its packets were read.
		return ng, nil
	case isPcapMagic(head):
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: bad pcap file header: %v", ErrNotCapture, err)
		}
		if !linkSupported(pr.LinkType()) {
			return nil, unsupportedLinkError(pr.LinkType())
		}
		return pr, nil
	}
	return nil, fmt.Errorf("%w: it starts with %x, neither a pcap nor a pcapng magic; write captures with tcpdump -w, dumpcap or Wireshark", ErrNotCapture, head)
}

func unsupportedLinkError(lt layers.LinkType) error {
	return fmt.Errorf("%w: %v (%d); capture on an Ethernet, loopback or \"any\" interface, or as raw IP", ErrUnsupportedLink, lt, int(lt))
}

func isPcapMagic(head []byte) bool {
	for _, m := range pcapMagics {
		if bytes.Equal(head, m) {
			return true
		}
	}
	return false
}

// Raw IP link types: LINKTYPE_RAW, and the DLT_RAW values some systems write (12, 14).
const (
	linkRaw12 layers.LinkType = 12
	linkRaw14 layers.LinkType = 14
)

func linkSupported(lt layers.LinkType) bool {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
		layers.LinkTypeRaw, linkRaw12, linkRaw14, layers.LinkTypeIPv4, layers.LinkTypeIPv6,
		layers.LinkTypeNull, layers.LinkTypeLoop:
		return true
	}
	return false
}

// parser turns frames into records. Its layers are reused from frame to frame.
type parser struct {
	emit  func(*record.Record) error
	stats Stats

	// Fragmented datagrams being reassembled: the map finds them, fragOrder keeps them in
	// the order their first fragment arrived, so that expiry is deterministic.
	frags     map[fragKey]*fragQueue
	fragOrder []*fragQueue
	lastTime  time.Time // the latest capture time seen
	// whole says the current frame was captured entire (not cut by the snap length): an
	// IP packet shorter than its header says is then malformed, not truncated.
	whole bool

	firstUnsupported layers.LinkType // the first link type counted in UnsupportedLink

	// rec and payload are the record emitted and its payload, reused.
	rec     record.Record
	payload []byte

	eth   layers.Ethernet
	dot1q layers.Dot1Q
	sll   layers.LinuxSLL
	sll2  layers.LinuxSLL2
	loop  layers.Loopback
	ip4   layers.IPv4
	ip6   layers.IPv6
	udp   layers.UDP
	icmp4 layers.ICMPv4
	icmp6 layers.ICMPv6
}

// ipAddrs is one IP packet's addressing: what the transport layer needs.
type ipAddrs struct {
	src, dst netip.Addr
	v6       bool
}

// frame handles one captured frame.
func (p *parser) frame(link layers.LinkType, data []byte, ts time.Time) error {
	p.stats.Frames++
	if ts.After(p.lastTime) {
		p.lastTime = ts
	}
	if err := p.expireFragments(); err != nil {
		return err
	}
	if !linkSupported(link) {
		if p.stats.UnsupportedLink == 0 {
			p.firstUnsupported = link
		}
		p.stats.UnsupportedLink++
		return nil
	}
	version, pkt, ok := p.network(link, data)
	if !ok {
		return nil
	}
	switch version {
	case 4:
		return p.ipv4(pkt, ts)
	case 6:
		return p.ipv6(pkt, ts)
	}
	p.stats.Other++
	return nil
}

// network strips the link header: the IP version and the IP packet, or ok=false (counted)
// when there is none.
func (p *parser) network(link layers.LinkType, data []byte) (version int, pkt []byte, ok bool) {
	df := gopacket.NilDecodeFeedback
	var etype layers.EthernetType
	switch link {
	case layers.LinkTypeEthernet:
		if err := p.eth.DecodeFromBytes(data, df); err != nil {
			p.stats.Malformed++
			return 0, nil, false
		}
		etype, pkt = p.eth.EthernetType, p.eth.Payload
		for etype == layers.EthernetTypeDot1Q || etype == layers.EthernetTypeQinQ {
			if err := p.dot1q.DecodeFromBytes(pkt, df); err != nil {
				p.stats.Malformed++
				return 0, nil, false
			}
			etype, pkt = p.dot1q.Type, p.dot1q.Payload
		}
	case layers.LinkTypeLinuxSLL:
		if err := p.sll.DecodeFromBytes(data, df); err != nil {
			p.stats.Malformed++
			return 0, nil, false
		}
		etype, pkt = p.sll.EthernetType, p.sll.Payload
	case layers.LinkTypeLinuxSLL2:
		if err := p.sll2.DecodeFromBytes(data, df); err != nil {
			p.stats.Malformed++
			return 0, nil, false
		}
		etype, pkt = p.sll2.ProtocolType, p.sll2.Payload
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if err := p.loop.DecodeFromBytes(data, df); err != nil {
			p.stats.Malformed++
			return 0, nil, false
		}
		switch p.loop.Family {
		case layers.ProtocolFamilyIPv4:
			return 4, p.loop.Payload, true
		case layers.ProtocolFamilyIPv6BSD, layers.ProtocolFamilyIPv6FreeBSD,
			layers.ProtocolFamilyIPv6Darwin, layers.ProtocolFamilyIPv6Linux:
			return 6, p.loop.Payload, true
		}
		p.stats.Other++
		return 0, nil, false
	case layers.LinkTypeIPv4:
		return 4, data, true
	case layers.LinkTypeIPv6:
		return 6, data, true
	default: // raw IP: the version nibble tells
		if len(data) == 0 {
			p.stats.Malformed++
			return 0, nil, false
		}
		switch data[0] >> 4 {
		case 4:
			return 4, data, true
		case 6:
			return 6, data, true
		}
		p.stats.Malformed++
		return 0, nil, false
	}
	switch etype {
	case layers.EthernetTypeIPv4:
		return 4, pkt, true
	case layers.EthernetTypeIPv6:
		return 6, pkt, true
	}
	p.stats.Other++
	return 0, nil, false
}

// ipv4 handles an IPv4 packet: transport directly, or through reassembly.
func (p *parser) ipv4(pkt []byte, ts time.Time) error {
	if err := p.ip4.DecodeFromBytes(pkt, gopacket.NilDecodeFeedback); err != nil || p.ip4.Version != 4 {
		p.stats.Malformed++
		return nil
	}
	ip := ipAddrs{src: addrOf(p.ip4.SrcIP), dst: addrOf(p.ip4.DstIP)}
	proto := p.ip4.Protocol
	declared := int(p.ip4.Length) - int(p.ip4.IHL)*4 // the IP payload length the header claims
	if p.whole && len(p.ip4.Payload) < declared {
		p.stats.Malformed++ // the header claims more than the wire carried: the kernel drops it
		return nil
	}
	if p.ip4.Flags&layers.IPv4MoreFragments != 0 || p.ip4.FragOffset != 0 {
		if proto != layers.IPProtocolUDP && proto != layers.IPProtocolICMPv4 {
			p.stats.Other++
			return nil
		}
		key := fragKey{src: ip.src, dst: ip.dst, id: uint32(p.ip4.Id), proto: uint8(proto)}
		frag := fragment{off: int(p.ip4.FragOffset) * 8, end: int(p.ip4.FragOffset)*8 + declared, data: p.ip4.Payload}
		whole, total, done, err := p.addFragment(key, frag, p.ip4.Flags&layers.IPv4MoreFragments != 0, ts)
		if !done || err != nil {
			return err
		}
		return p.transport(ip, proto, whole, total, ts)
	}
	return p.transport(ip, proto, p.ip4.Payload, declared, ts)
}

// ipv6 handles an IPv6 packet: extension headers, then transport or reassembly.
func (p *parser) ipv6(pkt []byte, ts time.Time) error {
	if err := p.ip6.DecodeFromBytes(pkt, gopacket.NilDecodeFeedback); err != nil || p.ip6.Version != 6 {
		p.stats.Malformed++
		return nil
	}
	ip := ipAddrs{src: addrOf(p.ip6.SrcIP), dst: addrOf(p.ip6.DstIP), v6: true}
	next, rest := p.ip6.NextHeader, p.ip6.Payload
	declared := int(p.ip6.Length)
	if p.ip6.HopByHop != nil {
		next = p.ip6.HopByHop.NextHeader
		declared -= p.ip6.HopByHop.ActualLength
	}
	if p.ip6.Length == 0 { // jumbogram: the payload is whatever the hop-by-hop option said
		declared = len(rest)
	}
	if p.whole && len(rest) < declared {
		p.stats.Malformed++ // the header claims more than the wire carried
		return nil
	}
	proto, upper, fh, consumed, ok := walkIPv6(next, rest)
	if !ok {
		p.stats.Malformed++
		return nil
	}
	declared -= consumed
	if fh == nil {
		return p.transport(ip, proto, upper, declared, ts)
	}
	// A fragment: upper starts at the fragmentable part, whose first header is fh.next.
	if fh.next != layers.IPProtocolUDP && fh.next != layers.IPProtocolICMPv6 &&
		!isIPv6Extension(fh.next) {
		p.stats.Other++
		return nil
	}
	key := fragKey{src: ip.src, dst: ip.dst, id: fh.id, proto: uint8(fh.next), v6: true}
	frag := fragment{off: fh.off, end: fh.off + declared, data: upper}
	whole, total, done, err := p.addFragment(key, frag, fh.more, ts)
	if !done || err != nil {
		return err
	}
	proto, upper, fh, consumed, ok = walkIPv6(layers.IPProtocol(key.proto), whole)
	if !ok || fh != nil { // a fragment header inside a reassembled datagram is invalid
		p.stats.Malformed++
		return nil
	}
	return p.transport(ip, proto, upper, total-consumed, ts)
}

// ipv6Frag is an IPv6 fragment header.
type ipv6Frag struct {
	next layers.IPProtocol
	off  int // in bytes
	more bool
	id   uint32
}

// walkIPv6 skips IPv6 extension headers starting with next: it returns the upper-layer
// protocol and its bytes, or stops at a fragment header (fh set, upper = the fragment's
// data); consumed is how many bytes the headers took.
func walkIPv6(next layers.IPProtocol, data []byte) (proto layers.IPProtocol, upper []byte, fh *ipv6Frag, consumed int, ok bool) {
	for range 16 { // bound the walk: no real packet chains more headers
		switch next {
		case layers.IPProtocolIPv6Fragment:
			if len(data) < 8 {
				return 0, nil, nil, 0, false
			}
			v := binary.BigEndian.Uint16(data[2:4])
			fh = &ipv6Frag{
				next: layers.IPProtocol(data[0]),
				off:  int(v &^ 7),
				more: v&1 != 0,
				id:   binary.BigEndian.Uint32(data[4:8]),
			}
			return next, data[8:], fh, consumed + 8, true
		case layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Destination,
			layers.IPProtocolAH, ipProtoMobility, ipProtoHIP, ipProtoShim6:
			if len(data) < 8 {
				return 0, nil, nil, 0, false
			}
			n := (int(data[1]) + 1) * 8
			if next == layers.IPProtocolAH {
				n = (int(data[1]) + 2) * 4
			}
			if n > len(data) {
				return 0, nil, nil, 0, false
			}
			next, data, consumed = layers.IPProtocol(data[0]), data[n:], consumed+n
		default:
			return next, data, nil, consumed, true
		}
	}
	return 0, nil, nil, 0, false
}

// IPv6 extension headers gopacket has no constant for.
const (
	ipProtoMobility layers.IPProtocol = 135
	ipProtoHIP      layers.IPProtocol = 139
	ipProtoShim6    layers.IPProtocol = 140
)

func isIPv6Extension(p layers.IPProtocol) bool {
	switch p {
	case layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Destination,
		layers.IPProtocolAH, ipProtoMobility, ipProtoHIP, ipProtoShim6:
		return true
	}
	return false
}

// transport handles a whole (possibly reassembled) IP payload: data is what was captured
// of it, declared its length by the IP header.
func (p *parser) transport(ip ipAddrs, proto layers.IPProtocol, data []byte, declared int, ts time.Time) error {
	switch {
	case proto == layers.IPProtocolUDP:
		src, dst, n, payload, ok := readUDP(&p.udp, data, declared)
		if !ok {
			p.stats.Malformed++
			return nil
		}
		p.stats.Datagrams++
		return p.emitWith(record.Record{
			Kind: record.Datagram,
			Time: ts,
			Src:  netip.AddrPortFrom(ip.src, src),
			Dst:  netip.AddrPortFrom(ip.dst, dst),
			Len:  n,
		}, payload)
	case proto == layers.IPProtocolICMPv4 && !ip.v6:
		return p.icmpv4(ip, data, ts)
	case proto == layers.IPProtocolICMPv6 && ip.v6:
		return p.icmpv6(ip, data, ts)
	}
	p.stats.Other++
	return nil
}

// readUDP reads a UDP header: ports, the payload length it declares and the captured part
// of the payload. declared is the IP payload length, -1 when unknown (a quoted datagram).
// ok is false when the header is cut off or its length is impossible.
func readUDP(udp *layers.UDP, data []byte, declared int) (src, dst uint16, n int, payload []byte, ok bool) {
	if err := udp.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
		return 0, 0, 0, nil, false
	}
	// Length 0 is only valid for IPv6 jumbograms (RFC 2675), whose length comes from IP.
	switch {
	case udp.Length == 0 && declared > maxIPPayload:
		n = declared - 8
	case udp.Length < 8 || (declared >= 0 && int(udp.Length) > declared):
		return 0, 0, 0, nil, false
	default:
		n = int(udp.Length) - 8
	}
	payload = udp.Payload
	if len(payload) > n {
		payload = payload[:n]
	}
	return uint16(udp.SrcPort), uint16(udp.DstPort), n, payload, true
}

// icmpv4 emits an ICMP error that quotes a UDP datagram.
func (p *parser) icmpv4(ip ipAddrs, data []byte, ts time.Time) error {
	if err := p.icmp4.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
		p.stats.Malformed++
		return nil
	}
	typ, code := p.icmp4.TypeCode.Type(), p.icmp4.TypeCode.Code()
	switch typ {
	case layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4TypeSourceQuench, layers.ICMPv4TypeRedirect,
		layers.ICMPv4TypeTimeExceeded, layers.ICMPv4TypeParameterProblem:
	default:
		p.stats.Other++ // echo, timestamp, ...: not an error
		return nil
	}
	// The quoted IPv4 header and at least 8 bytes of what followed it (RFC 792).
	q := p.icmp4.Payload
	if len(q) < 20 || q[0]>>4 != 4 {
		p.stats.Malformed++
		return nil
	}
	ihl := int(q[0]&0x0f) * 4
	if ihl < 20 || len(q) < ihl {
		p.stats.Malformed++
		return nil
	}
	if layers.IPProtocol(q[9]) != layers.IPProtocolUDP || binary.BigEndian.Uint16(q[6:8])&0x1fff != 0 {
		p.stats.Other++ // quotes TCP, or a non-first fragment: no UDP ports to match
		return nil
	}
	quoted := q[ihl:]
	if total := int(binary.BigEndian.Uint16(q[2:4])); total >= ihl && total-ihl < len(quoted) {
		quoted = quoted[:total-ihl] // the error itself may be padded
	}
	qsrc, qdst := netip.AddrFrom4([4]byte(q[12:16])), netip.AddrFrom4([4]byte(q[16:20]))
	return p.emitICMP(ip, uint8(typ), uint8(code), qsrc, qdst, quoted, ts)
}

// icmpv6 emits an ICMPv6 error that quotes a UDP datagram.
func (p *parser) icmpv6(ip ipAddrs, data []byte, ts time.Time) error {
	if err := p.icmp6.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
		p.stats.Malformed++
		return nil
	}
	typ, code := p.icmp6.TypeCode.Type(), p.icmp6.TypeCode.Code()
	switch typ {
	case layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6TypePacketTooBig,
		layers.ICMPv6TypeTimeExceeded, layers.ICMPv6TypeParameterProblem:
	default:
		p.stats.Other++ // echo, neighbour discovery, ...: not an error
		return nil
	}
	// 4 more bytes (unused, MTU or pointer), then the quoted IPv6 packet (RFC 4443).
	q := p.icmp6.Payload
	if len(q) < 4+40 || q[4]>>4 != 6 {
		p.stats.Malformed++
		return nil
	}
	q = q[4:]
	proto, quoted, fh, _, ok := walkIPv6(layers.IPProtocol(q[6]), q[40:])
	if ok && fh != nil {
		if fh.off != 0 {
			p.stats.Other++ // a non-first fragment: no UDP ports to match
			return nil
		}
		proto, quoted, _, _, ok = walkIPv6(fh.next, quoted)
	}
	if !ok {
		p.stats.Malformed++
		return nil
	}
	if proto != layers.IPProtocolUDP {
		p.stats.Other++
		return nil
	}
	qsrc, qdst := netip.AddrFrom16([16]byte(q[8:24])), netip.AddrFrom16([16]byte(q[24:40]))
	return p.emitICMP(ip, uint8(typ), uint8(code), qsrc, qdst, quoted, ts)
}

// emitICMP emits an ICMP error record for the quoted UDP datagram that starts at udp.
func (p *parser) emitICMP(ip ipAddrs, typ, code uint8, qsrc, qdst netip.Addr, udp []byte, ts time.Time) error {
	// The quote is usually cut (RFC 792 requires only 8 bytes after the IP header; Linux
	// quotes up to 576 bytes in all): the header's length still tells the datagram's size.
	if len(udp) < 8 {
		p.stats.Malformed++
		return nil
	}
	sport, dport, n, payload, ok := readUDP(&p.udp, udp, -1)
	if !ok {
		p.stats.Malformed++
		return nil
	}
	p.stats.ICMPErrors++
	return p.emitWith(record.Record{
		Kind:      record.ICMP,
		Time:      ts,
		Src:       netip.AddrPortFrom(ip.src, 0),
		Dst:       netip.AddrPortFrom(ip.dst, 0),
		ICMPType:  typ,
		ICMPCode:  code,
		QuotedSrc: netip.AddrPortFrom(qsrc, sport),
		QuotedDst: netip.AddrPortFrom(qdst, dport),
		Len:       n,
	}, payload)
}

// emitWith emits rec with a copy of payload (which points into the frame), both in the
// parser's own buffers, reused from one record to the next.
func (p *parser) emitWith(rec record.Record, payload []byte) error {
	p.payload = append(p.payload[:0], payload...)
	p.rec = rec
	p.rec.Payload = p.payload
	return p.emit(&p.rec)
}

// addrOf converts a 4- or 16-byte IP from a decoded layer.
func addrOf(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}

// unwrapPathError drops the *os.PathError wrapper, whose text repeats the path.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
