package decode

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/discotrace/discotrace/ndjson"
)

// Captures are written in-test with pcapgo (SLL and SLL2 headers by hand: gopacket cannot
// serialise them), so every case states exactly what is on the wire.

var pcapT0 = time.Date(2026, 11, 23, 19, 0, 0, 123456789, time.UTC)

// pcapFrame is one captured frame; origLen > len(data) means the capture snapped it.
type pcapFrame struct {
	ts      time.Time
	data    []byte
	origLen int
	iface   int // pcapng interface index
}

func pcapWrite(t testing.TB, link layers.LinkType, frames ...pcapFrame) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(262144, link); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		orig := max(f.origLen, len(f.data))
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: f.ts, CaptureLength: len(f.data), Length: orig}, f.data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func pcapngWrite(t testing.TB, links []layers.LinkType, frames ...pcapFrame) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{LinkType: links[0], SnapLength: 262144, TimestampResolution: 9}, pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links[1:] {
		if _, err := w.AddInterface(pcapgo.NgInterface{LinkType: l, SnapLength: 262144, TimestampResolution: 9}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range frames {
		orig := max(f.origLen, len(f.data))
		ci := gopacket.CaptureInfo{Timestamp: f.ts, CaptureLength: len(f.data), Length: orig, InterfaceIndex: f.iface}
		if err := w.WritePacket(ci, f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func pcapSerialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// pcapUDPPacket is a raw IPv4 or IPv6 packet carrying one UDP datagram.
func pcapUDPPacket(t testing.TB, src, dst netip.AddrPort, payload []byte) []byte {
	t.Helper()
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	if src.Addr().Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Protocol: layers.IPProtocolUDP,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		udp.SetNetworkLayerForChecksum(ip)
		return pcapSerialize(t, ip, udp, gopacket.Payload(payload))
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
		SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	udp.SetNetworkLayerForChecksum(ip)
	return pcapSerialize(t, ip, udp, gopacket.Payload(payload))
}

// pcapUDPDatagram is a UDP header and payload, checksummed for src/dst (IPv4).
func pcapUDPDatagram(t testing.TB, src, dst netip.AddrPort, payload []byte) []byte {
	pkt := pcapUDPPacket(t, src, dst, payload)
	if src.Addr().Is4() {
		return pkt[20:]
	}
	return pkt[40:]
}

func pcapTCPPacket(t testing.TB, src, dst netip.Addr) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: 1, DstPort: 2, SYN: true}
	tcp.SetNetworkLayerForChecksum(ip)
	return pcapSerialize(t, ip, tcp)
}

func pcapEthernet(etype layers.EthernetType, pkt []byte) []byte {
	hdr := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0, 0}
	binary.BigEndian.PutUint16(hdr[12:], uint16(etype))
	return append(hdr, pkt...)
}

func pcapEtherTypeOf(pkt []byte) layers.EthernetType {
	if pkt[0]>>4 == 6 {
		return layers.EthernetTypeIPv6
	}
	return layers.EthernetTypeIPv4
}

// pcapVLAN wraps pkt in 802.1Q tags (outermost first) inside an Ethernet frame.
func pcapVLAN(tpids []layers.EthernetType, pkt []byte) []byte {
	frame := pcapEthernet(tpids[0], nil)
	for i := range tpids {
		next := pcapEtherTypeOf(pkt)
		if i+1 < len(tpids) {
			next = tpids[i+1]
		}
		tag := []byte{0, byte(10 + i), 0, 0}
		binary.BigEndian.PutUint16(tag[2:], uint16(next))
		frame = append(frame, tag...)
	}
	return append(frame, pkt...)
}

// pcapSLL is a Linux cooked (v1) header: packet type "outgoing", Ethernet address.
func pcapSLL(pkt []byte) []byte {
	hdr := make([]byte, 16)
	binary.BigEndian.PutUint16(hdr[0:], 4) // LINUX_SLL_OUTGOING
	binary.BigEndian.PutUint16(hdr[2:], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(hdr[4:], 6)
	copy(hdr[6:], []byte{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(hdr[14:], uint16(pcapEtherTypeOf(pkt)))
	return append(hdr, pkt...)
}

// pcapSLL2 is a Linux cooked v2 header (tcpdump -i any since libpcap 1.10).
func pcapSLL2(pkt []byte) []byte {
	hdr := make([]byte, 20)
	binary.BigEndian.PutUint16(hdr[0:], uint16(pcapEtherTypeOf(pkt)))
	binary.BigEndian.PutUint32(hdr[4:], 3) // ifindex
	binary.BigEndian.PutUint16(hdr[8:], 1) // ARPHRD_ETHER
	hdr[10] = 0                            // LINUX_SLL_HOST
	hdr[11] = 6
	copy(hdr[12:], []byte{2, 0, 0, 0, 0, 1})
	return append(hdr, pkt...)
}

func pcapNullHeader(family uint32, order binary.ByteOrder, pkt []byte) []byte {
	hdr := make([]byte, 4)
	order.PutUint32(hdr, family)
	return append(hdr, pkt...)
}

// pcapReadAll reads a capture, checking the invariants every capture must keep.
func pcapReadAll(t testing.TB, data []byte) ([]*Record, CaptureStats, error) {
	t.Helper()
	var recs []*Record
	st, err := ReadCaptureStats(bytes.NewReader(data), func(r *Record) error {
		recs = append(recs, r)
		return nil
	})
	if got := st.Datagrams + st.ICMPErrors + st.Fragments + st.Other + st.Malformed + st.UnsupportedLink; st.Frames+st.Reassembled != got {
		t.Errorf("stats do not add up: %+v", st)
	}
	for i, r := range recs {
		if r.Dir != DirUnknown || len(r.Payload) > r.Len {
			t.Errorf("record %d: dir %v, payload %d > len %d", i, r.Dir, len(r.Payload), r.Len)
		}
		if i > 0 && r.Time.Before(recs[i-1].Time) {
			t.Errorf("record %d at %v before record %d at %v", i, r.Time, i-1, recs[i-1].Time)
		}
	}
	return recs, st, err
}

func TestReadCaptureSharedCaptures(t *testing.T) {
	// Counts from `tcpdump -nn -r FILE udp` and `tcpdump -nn -r FILE icmp`.
	for _, tc := range []struct {
		file             string
		datagrams, icmps int
	}{
		{"devp2p-discovery.pcap", 20, 0},
		{"reject.pcap", 21, 9},
		{"suites-devp2p.pcap", 152, 2},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(pcapDir(t), tc.file))
			if err != nil {
				t.Fatal(err)
			}
			recs, st, err := pcapReadAll(t, data)
			if err != nil {
				t.Fatal(err)
			}
			want := CaptureStats{Frames: tc.datagrams + tc.icmps, Datagrams: tc.datagrams, ICMPErrors: tc.icmps}
			if st != want {
				t.Errorf("stats %+v, want %+v", st, want)
			}
			// Every ICMP error is a port unreachable that quotes, byte for byte, a datagram
			// captured before it on the same tuple.
			var datagrams []*Record
			for _, r := range recs {
				switch r.Kind {
				case Datagram:
					if r.Len != len(r.Payload) {
						t.Errorf("%v: len %d, payload %d", r.Time, r.Len, len(r.Payload))
					}
					datagrams = append(datagrams, r)
				case ICMP:
					if r.ICMPType != 3 || r.ICMPCode != 3 || r.Src.Port() != 0 || r.Dst.Port() != 0 ||
						r.Dst.Addr() != r.QuotedSrc.Addr() || r.Len != len(r.Payload) {
						t.Errorf("%v: %+v", r.Time, r)
					}
					found := false
					for _, d := range datagrams {
						found = found || (d.Src == r.QuotedSrc && d.Dst == r.QuotedDst && bytes.Equal(d.Payload, r.Payload))
					}
					if !found {
						t.Errorf("%v: ICMP quotes %v -> %v, no such datagram captured", r.Time, r.QuotedSrc, r.QuotedDst)
					}
				default:
					t.Errorf("unexpected record %+v", r)
				}
			}
			// Reading again gives the same records.
			again, _, _ := pcapReadAll(t, data)
			if !reflect.DeepEqual(recs, again) {
				t.Error("a second read differs")
			}
		})
	}

	recs, _ := pcapRecords(t, "devp2p-discovery.pcap")
	first := recs[0]
	if !first.Time.Equal(time.Date(2026, 11, 23, 19, 56, 6, 817726000, time.UTC)) ||
		first.Src != netip.MustParseAddrPort("10.99.0.2:30303") || first.Dst != netip.MustParseAddrPort("10.99.0.1:30303") ||
		first.Kind != Datagram || first.Len != 132 {
		t.Errorf("first datagram: %+v", first)
	}
	recs, _ = pcapRecords(t, "reject.pcap")
	icmp := recs[1] // 19:56:38.573707 IP 10.99.0.3 > 10.99.0.1: ICMP 10.99.0.3 udp port 30303 unreachable, length 142
	if !icmp.Time.Equal(time.Date(2026, 11, 23, 19, 56, 38, 573707000, time.UTC)) || icmp.Kind != ICMP ||
		icmp.Src != netip.MustParseAddrPort("10.99.0.3:0") || icmp.Dst != netip.MustParseAddrPort("10.99.0.1:0") ||
		icmp.QuotedSrc != netip.MustParseAddrPort("10.99.0.1:30303") || icmp.QuotedDst != netip.MustParseAddrPort("10.99.0.3:30303") ||
		icmp.Len != 106 || !bytes.Equal(icmp.Payload, recs[0].Payload) {
		t.Errorf("first ICMP: %+v", icmp)
	}
}

func TestReadCaptureLinkTypes(t *testing.T) {
	payload := []byte("a discovery datagram")
	src4, dst4 := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:40000")
	src6, dst6 := netip.MustParseAddrPort("[2001:db8::1]:30303"), netip.MustParseAddrPort("[2001:db8::2]:40000")
	v4 := pcapUDPPacket(t, src4, dst4, payload)
	v6 := pcapUDPPacket(t, src6, dst6, payload)
	frame := func(data []byte) pcapFrame { return pcapFrame{ts: pcapT0, data: data} }

	for _, tc := range []struct {
		name     string
		file     []byte
		src, dst netip.AddrPort
	}{
		{"Ethernet IPv4", pcapWrite(t, layers.LinkTypeEthernet, frame(pcapEthernet(layers.EthernetTypeIPv4, v4))), src4, dst4},
		{"Ethernet IPv6", pcapWrite(t, layers.LinkTypeEthernet, frame(pcapEthernet(layers.EthernetTypeIPv6, v6))), src6, dst6},
		{"Ethernet 802.1Q", pcapWrite(t, layers.LinkTypeEthernet, frame(pcapVLAN([]layers.EthernetType{layers.EthernetTypeDot1Q}, v4))), src4, dst4},
		{"Ethernet 802.1ad QinQ", pcapWrite(t, layers.LinkTypeEthernet, frame(pcapVLAN([]layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}, v6))), src6, dst6},
		{"Linux SLL", pcapWrite(t, layers.LinkTypeLinuxSLL, frame(pcapSLL(v4))), src4, dst4},
		{"Linux SLL IPv6", pcapWrite(t, layers.LinkTypeLinuxSLL, frame(pcapSLL(v6))), src6, dst6},
		{"Linux SLL2", pcapWrite(t, layers.LinkTypeLinuxSLL2, frame(pcapSLL2(v4))), src4, dst4},
		{"Linux SLL2 IPv6", pcapWrite(t, layers.LinkTypeLinuxSLL2, frame(pcapSLL2(v6))), src6, dst6},
		{"raw IPv4 (101)", pcapWrite(t, layers.LinkTypeRaw, frame(v4)), src4, dst4},
		{"raw IPv6 (101)", pcapWrite(t, layers.LinkTypeRaw, frame(v6)), src6, dst6},
		{"raw (12)", pcapWrite(t, 12, frame(v4)), src4, dst4},
		{"raw (14)", pcapWrite(t, 14, frame(v6)), src6, dst6},
		{"IPv4 (228)", pcapWrite(t, layers.LinkTypeIPv4, frame(v4)), src4, dst4},
		{"IPv6 (229)", pcapWrite(t, layers.LinkTypeIPv6, frame(v6)), src6, dst6},
		{"BSD null IPv4", pcapWrite(t, layers.LinkTypeNull, frame(pcapNullHeader(2, binary.LittleEndian, v4))), src4, dst4},
		{"BSD null IPv6", pcapWrite(t, layers.LinkTypeNull, frame(pcapNullHeader(30, binary.LittleEndian, v6))), src6, dst6},
		{"OpenBSD loop", pcapWrite(t, layers.LinkTypeLoop, frame(pcapNullHeader(2, binary.BigEndian, v4))), src4, dst4},
		{"pcapng Ethernet", pcapngWrite(t, []layers.LinkType{layers.LinkTypeEthernet}, frame(pcapEthernet(layers.EthernetTypeIPv4, v4))), src4, dst4},
		{"pcapng SLL2", pcapngWrite(t, []layers.LinkType{layers.LinkTypeLinuxSLL2}, frame(pcapSLL2(v6))), src6, dst6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, st, err := pcapReadAll(t, tc.file)
			if err != nil {
				t.Fatal(err)
			}
			want := &Record{Kind: Datagram, Time: pcapT0, Src: tc.src, Dst: tc.dst, Len: len(payload), Payload: payload}
			if len(recs) != 1 || !reflect.DeepEqual(recs[0], want) {
				t.Fatalf("records %+v, want one %+v", recs, want)
			}
			if st != (CaptureStats{Frames: 1, Datagrams: 1}) {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// A microsecond pcap (tcpdump's default) keeps microseconds.
func TestReadCaptureMicrosecondPcap(t *testing.T) {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	pkt := pcapUDPPacket(t, netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), []byte{1})
	if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: pcapT0, CaptureLength: len(pkt), Length: len(pkt)}, pkt); err != nil {
		t.Fatal(err)
	}
	recs, _, err := pcapReadAll(t, buf.Bytes())
	if err != nil || len(recs) != 1 || !recs[0].Time.Equal(pcapT0.Truncate(time.Microsecond)) {
		t.Fatalf("err %v records %+v", err, recs)
	}
}

// dumpcap and tcpdump write one pcapng interface per device; an interface whose link
// type has no IP (here 802.11, even as the first one) is counted, not fatal.
func TestReadCapturePcapngMixedInterfaces(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	file := pcapngWrite(t, []layers.LinkType{layers.LinkTypeIEEE802_11, layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL2},
		pcapFrame{ts: pcapT0, data: pcapEthernet(layers.EthernetTypeIPv4, pcapUDPPacket(t, a, b, []byte("one"))), iface: 1},
		pcapFrame{ts: pcapT0.Add(time.Millisecond), data: []byte{0x08, 0x02, 0, 0}, iface: 0},
		pcapFrame{ts: pcapT0.Add(2 * time.Millisecond), data: pcapSLL2(pcapUDPPacket(t, b, a, []byte("two"))), iface: 2},
	)
	recs, st, err := pcapReadAll(t, file)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || string(recs[0].Payload) != "one" || recs[0].Src != a || string(recs[1].Payload) != "two" || recs[1].Src != b ||
		!recs[1].Time.Equal(pcapT0.Add(2*time.Millisecond)) {
		t.Errorf("records %+v", recs)
	}
	if st != (CaptureStats{Frames: 3, Datagrams: 2, UnsupportedLink: 1}) {
		t.Errorf("stats %+v", st)
	}
}

// Frames shorter than Ethernet's 60-byte minimum are padded: the UDP length, not the
// frame, says where the payload ends. A snapped frame keeps its full length in Len.
func TestReadCaptureLengthFromUDPHeader(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	small := pcapEthernet(layers.EthernetTypeIPv4, pcapUDPPacket(t, a, b, []byte{0xaa, 0xbb, 0xcc}))
	padded := append(small, bytes.Repeat([]byte{0xee}, 60-len(small))...)
	big := pcapEthernet(layers.EthernetTypeIPv4, pcapUDPPacket(t, a, b, bytes.Repeat([]byte{0x11}, 1000)))
	snapped := big[:14+20+8+100]

	recs, st, err := pcapReadAll(t, pcapWrite(t, layers.LinkTypeEthernet,
		pcapFrame{ts: pcapT0, data: padded},
		pcapFrame{ts: pcapT0, data: snapped, origLen: len(big)},
	))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || st.Datagrams != 2 {
		t.Fatalf("records %+v stats %+v", recs, st)
	}
	if recs[0].Len != 3 || !bytes.Equal(recs[0].Payload, []byte{0xaa, 0xbb, 0xcc}) {
		t.Errorf("padded frame: len %d payload %x", recs[0].Len, recs[0].Payload)
	}
	if recs[1].Len != 1000 || !bytes.Equal(recs[1].Payload, bytes.Repeat([]byte{0x11}, 100)) {
		t.Errorf("snapped frame: len %d payload %d bytes", recs[1].Len, len(recs[1].Payload))
	}
}

func TestReadCaptureICMPErrors(t *testing.T) {
	local, peer := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.9:30303")
	router := netip.MustParseAddr("10.0.0.254")
	sent := pcapUDPPacket(t, local, peer, bytes.Repeat([]byte{0x42}, 200))

	icmp4 := func(typ, code uint8, quote []byte) []byte {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4,
			SrcIP: router.AsSlice(), DstIP: local.Addr().AsSlice()}
		return pcapSerialize(t, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}, gopacket.Payload(quote))
	}
	local6, peer6 := netip.MustParseAddrPort("[2001:db8::1]:30303"), netip.MustParseAddrPort("[2001:db8::9]:30303")
	router6 := netip.MustParseAddr("2001:db8::fe")
	sent6 := pcapUDPPacket(t, local6, peer6, bytes.Repeat([]byte{0x43}, 1400))
	icmp6 := func(typ, code uint8, rest []byte) []byte {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6,
			SrcIP: router6.AsSlice(), DstIP: local6.Addr().AsSlice()}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
		ic.SetNetworkLayerForChecksum(ip)
		return pcapSerialize(t, ip, ic, gopacket.Payload(rest))
	}
	mtu := []byte{0, 0, 0x05, 0x00} // Packet Too Big: MTU 1280
	tcp := pcapTCPPacket(t, local.Addr(), peer.Addr())

	frames := []pcapFrame{
		// Port unreachable quoting the whole datagram, as Linux does up to 576 bytes.
		{ts: pcapT0, data: icmp4(3, 3, sent)},
		// Fragmentation needed quoting only 8 bytes after the IP header (RFC 792's minimum).
		{ts: pcapT0, data: icmp4(3, 4, sent[:28])},
		// Time exceeded quoting a TCP segment: no UDP tuple.
		{ts: pcapT0, data: icmp4(11, 0, tcp)},
		// Echo request: not an error.
		{ts: pcapT0, data: icmp4(8, 0, []byte("ping"))},
		// ICMPv6 Packet Too Big quoting the first 1232 bytes of a 1448-byte packet.
		{ts: pcapT0, data: icmp6(2, 0, append(bytes.Clone(mtu), sent6[:1232]...))},
		// ICMPv6 destination unreachable, port unreachable.
		{ts: pcapT0, data: icmp6(1, 4, append(make([]byte, 4), sent6[:48]...))},
		// ICMPv6 echo request: not an error.
		{ts: pcapT0, data: icmp6(128, 0, []byte{0, 1, 0, 1})},
		// Port unreachable whose quote stops inside the UDP header.
		{ts: pcapT0, data: icmp4(3, 3, sent[:24])},
	}
	var file []pcapFrame
	for _, f := range frames {
		file = append(file, pcapFrame{ts: f.ts, data: f.data})
	}
	recs, st, err := pcapReadAll(t, pcapWrite(t, layers.LinkTypeRaw, file...))
	if err != nil {
		t.Fatal(err)
	}
	from4, to4 := netip.AddrPortFrom(router, 0), netip.AddrPortFrom(local.Addr(), 0)
	from6, to6 := netip.AddrPortFrom(router6, 0), netip.AddrPortFrom(local6.Addr(), 0)
	want := []*Record{
		{Kind: ICMP, Time: pcapT0, Src: from4, Dst: to4, ICMPType: 3, ICMPCode: 3, QuotedSrc: local, QuotedDst: peer, Len: 200, Payload: bytes.Repeat([]byte{0x42}, 200)},
		{Kind: ICMP, Time: pcapT0, Src: from4, Dst: to4, ICMPType: 3, ICMPCode: 4, QuotedSrc: local, QuotedDst: peer, Len: 200, Payload: []byte{}},
		{Kind: ICMP, Time: pcapT0, Src: from6, Dst: to6, ICMPType: 2, ICMPCode: 0, QuotedSrc: local6, QuotedDst: peer6, Len: 1400, Payload: bytes.Repeat([]byte{0x43}, 1232-48)},
		{Kind: ICMP, Time: pcapT0, Src: from6, Dst: to6, ICMPType: 1, ICMPCode: 4, QuotedSrc: local6, QuotedDst: peer6, Len: 1400, Payload: []byte{}},
	}
	if !reflect.DeepEqual(recs, want) {
		for _, r := range recs {
			t.Logf("got %+v", *r)
		}
		t.Fatal("records differ")
	}
	if st != (CaptureStats{Frames: 8, ICMPErrors: 4, Other: 3, Malformed: 1}) {
		t.Errorf("stats %+v", st)
	}
}

// Broken frames are counted and skipped; the good frame after them still comes out.
func TestReadCaptureSkipsMalformedFrames(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	good := pcapUDPPacket(t, a, b, []byte("still here"))
	badIHL := bytes.Clone(good)
	badIHL[0] = 0x43
	udpTooShort := bytes.Clone(good)
	binary.BigEndian.PutUint16(udpTooShort[24:], 4)
	udpTooLong := bytes.Clone(good)
	binary.BigEndian.PutUint16(udpTooLong[24:], 200)
	arp := pcapEthernet(layers.EthernetTypeARP, make([]byte, 28))
	tcp := pcapTCPPacket(t, a.Addr(), b.Addr())

	eth := func(pkt []byte) pcapFrame {
		return pcapFrame{ts: pcapT0, data: pcapEthernet(layers.EthernetTypeIPv4, pkt)}
	}
	recs, st, err := pcapReadAll(t, pcapWrite(t, layers.LinkTypeEthernet,
		pcapFrame{ts: pcapT0, data: []byte{1, 2, 3}}, // shorter than an Ethernet header
		eth(badIHL),
		eth(udpTooShort),
		eth(udpTooLong),
		eth(good[:20+4]),  // snapped inside the UDP header
		eth([]byte{0x60}), // IPv6 version in an IPv4 frame, one byte
		pcapFrame{ts: pcapT0, data: arp},
		eth(tcp),
		eth(good),
	))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || string(recs[0].Payload) != "still here" {
		t.Errorf("records %+v", recs)
	}
	if st != (CaptureStats{Frames: 9, Datagrams: 1, Malformed: 6, Other: 2}) {
		t.Errorf("stats %+v", st)
	}
}

// pcapIPv4Fragments splits a UDP datagram (header and payload) into IPv4 fragments whose
// data parts have the given sizes (multiples of 8 except the last).
func pcapIPv4Fragments(t testing.TB, src, dst netip.Addr, id uint16, udp []byte, sizes ...int) [][]byte {
	t.Helper()
	var out [][]byte
	off := 0
	for i, n := range sizes {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: id, Protocol: layers.IPProtocolUDP,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), FragOffset: uint16(off / 8)}
		if i < len(sizes)-1 {
			ip.Flags = layers.IPv4MoreFragments
		}
		out = append(out, pcapSerialize(t, ip, gopacket.Payload(udp[off:off+n])))
		off += n
	}
	if off != len(udp) {
		t.Fatalf("fragment sizes add up to %d, datagram is %d", off, len(udp))
	}
	return out
}

// pcapIPv6Fragments does the same with IPv6 fragment headers.
func pcapIPv6Fragments(t testing.TB, src, dst netip.Addr, id uint32, udp []byte, sizes ...int) [][]byte {
	t.Helper()
	var out [][]byte
	off := 0
	for i, n := range sizes {
		fh := make([]byte, 8)
		fh[0] = byte(layers.IPProtocolUDP)
		v := uint16(off)
		if i < len(sizes)-1 {
			v |= 1
		}
		binary.BigEndian.PutUint16(fh[2:], v)
		binary.BigEndian.PutUint32(fh[4:], id)
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Fragment,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		out = append(out, pcapSerialize(t, ip, gopacket.Payload(append(fh, udp[off:off+n]...))))
		off += n
	}
	return out
}

func TestReadCaptureFragments(t *testing.T) {
	local, peer := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	ping := v4Encode(t, v4Key(t, v4TestKeyB), &v4wire.Ping{Version: 4, Expiration: 1795463786,
		From: v4wire.NewEndpoint(local, 0), To: v4wire.NewEndpoint(peer, 0)})
	udp := pcapUDPDatagram(t, local, peer, ping) // 8 + 130 bytes
	at := func(d time.Duration, pkt []byte) pcapFrame { return pcapFrame{ts: pcapT0.Add(d), data: pkt} }

	t.Run("complete, out of order, with a duplicate", func(t *testing.T) {
		fr := pcapIPv4Fragments(t, local.Addr(), peer.Addr(), 7, udp, 48, 48, len(udp)-96)
		recs, st, err := pcapReadAll(t, pcapWrite(t, layers.LinkTypeRaw,
			at(0, fr[2]), at(1*time.Millisecond, fr[0]), at(2*time.Millisecond, fr[0]), at(3*time.Millisecond, fr[1])))
		if err != nil {
			t.Fatal(err)
		}
		want := &Record{Kind: Datagram, Time: pcapT0.Add(3 * time.Millisecond), Src: local, Dst: peer, Len: len(ping), Payload: ping}
		if len(recs) != 1 || !reflect.DeepEqual(recs[0], want) {
			t.Fatalf("records %+v", recs)
		}
		if st != (CaptureStats{Frames: 4, Datagrams: 1, Fragments: 4, Reassembled: 1, DuplicateFragments: 1}) {
			t.Errorf("stats %+v", st)
		}
		p, ok := NewV4Decoder().Decode(recs[0])
		if !ok || p.Err != nil || p.Kind != KindV4Ping || p.SrcID != v4ID(t, v4TestKeyB) {
			t.Errorf("reassembled PING decodes as %+v", p)
		}
	})

	t.Run("first fragment only: lost when the rest does not follow", func(t *testing.T) {
		fr := pcapIPv4Fragments(t, local.Addr(), peer.Addr(), 8, udp, 64, len(udp)-64)
		later := pcapUDPPacket(t, peer, local, []byte("later"))
		recs, st, err := pcapReadAll(t, pcapWrite(t, layers.LinkTypeRaw,
			at(0, fr[0]), at(300*time.Millisecond, later), at(31*time.Second, later)))
		if err != nil {
			t.Fatal(err)
		}
		// Reported at the gap, in time for the request waiting on it; nothing again at
		// the kernel's 30 s timeout.
		drop := &Record{Kind: Drop, Time: pcapT0.Add(pcapFragGap), Src: local, Dst: peer, Len: len(ping),
			Payload: ping[:64-8], Reason: ReasonFragReasmTimeout, Location: PcapFragStalled}
		if len(recs) != 3 || !reflect.DeepEqual(recs[0], drop) || recs[1].Kind != Datagram || recs[2].Kind != Datagram {
			for _, r := range recs {
				t.Logf("%+v", *r)
			}
			t.Fatal("want the drop at the gap, then the two datagrams")
		}
		if st != (CaptureStats{Frames: 3, Datagrams: 2, Fragments: 1, FragmentDrops: 1}) {
			t.Errorf("stats %+v", st)
		}
		// A discv4 hash covers the whole packet, so the prefix does not decode as discv4:
		// the tracker matches the loss on the tuple and Len.
		if _, ok := NewV4Decoder().Decode(recs[1]); ok {
			t.Error("the prefix of a lost datagram decoded as discv4")
		}
	})

	t.Run("a late fragment still completes its datagram", func(t *testing.T) {
		fr := pcapIPv4Fragments(t, local.Addr(), peer.Addr(), 13, udp, 64, len(udp)-64)
		recs, _, err := pcapReadAll(t, pcapWrite(t, layers.LinkTypeRaw, at(0, fr[0]), at(time.Second, fr[1])))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 || recs[0].Location != PcapFragStalled || recs[1].Kind != Datagram || !bytes.Equal(recs[1].Payload, ping) {
			t.Fatalf("records %+v", recs)
		}
	})

	t.Run("middle fragment lost, capture ends", func(t *testing.T) {
		fr := pcapIPv4Fragments(t, local.Addr(), peer.Addr(), 9, udp, 48, 48, len(udp)-96)
		recs, st, err := pcapReadAll(t, pcapWrite(t, layers.LinkTypeRaw,
			at(0, fr[0]), at(time.Millisecond, fr[2]), at(50*time.Millisecond, pcapUDPPacket(t, peer, local, []byte("x")))))
		if err != nil {
			t.Fatal(err)
		}
		drop := &Record{Kind: Drop, Time: pcapT0.Add(50 * time.Millisecond), Src: local, Dst: peer, Len: len(ping),
			Payload: ping[:48-8], Reason: ReasonFragReasmTimeout, Location: PcapFragEndOfCapture}
		if len(recs) != 2 || recs[0].Kind != Datagram || !reflect.DeepEqual(recs[1], drop) {
			for _, r := range recs {
				t.Logf("%+v", *r)
			}
			t.Fatal("want datagram, then the drop at the end of the capture")
		}
		if st != (CaptureStats{Frames: 3, Datagrams: 1, Fragments: 2, FragmentDrops: 1}) {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("first fragment lost", func(t *testing.T) {
		fr := pcapIPv4Fragments(t, local.Addr(), peer.Addr(), 10, udp, 64, len(udp)-64)
		recs, _, err := pcapReadAll(t, pcapWrite(t, layers.LinkTypeRaw, at(0, fr[1])))
		if err != nil {
			t.Fatal(err)
		}
		drop := &Record{Kind: Drop, Time: pcapT0, Src: netip.AddrPortFrom(local.Addr(), 0), Dst: netip.AddrPortFrom(peer.Addr(), 0),
			Reason: ReasonFragReasmTimeout, Location: PcapFragEndOfCapture}
		if len(recs) != 1 || !reflect.DeepEqual(recs[0], drop) {
			t.Fatalf("records %+v", recs)
		}
	})

	t.Run("invalid fragments", func(t *testing.T) {
		fr := pcapIPv4Fragments(t, local.Addr(), peer.Addr(), 11, udp, 60, len(udp)-60) // 60: not a multiple of 8
		overlap := pcapIPv4Fragments(t, local.Addr(), peer.Addr(), 12, udp, 64, len(udp)-64)
		shifted := pcapIPv4Fragments(t, local.Addr(), peer.Addr(), 12, udp, 56, len(udp)-56)
		recs, st, err := pcapReadAll(t, pcapWrite(t, layers.LinkTypeRaw,
			at(0, fr[0]), at(0, fr[1]), // first is malformed; the second waits alone
			at(0, overlap[0]), at(0, shifted[1]), at(0, overlap[1])))
		if err != nil {
			t.Fatal(err)
		}
		// id 12 completes from overlap[0]+overlap[1]; shifted[1] overlapped overlap[0] and was ignored.
		if len(recs) != 2 || recs[0].Kind != Datagram || !bytes.Equal(recs[0].Payload, ping) ||
			recs[1].Kind != Drop || recs[1].Location != PcapFragEndOfCapture || recs[1].Src.Port() != 0 {
			for _, r := range recs {
				t.Logf("%+v", *r)
			}
			t.Fatal("records differ")
		}
		if st != (CaptureStats{Frames: 5, Datagrams: 1, Fragments: 4, Reassembled: 1, FragmentDrops: 1, DuplicateFragments: 1, Malformed: 1}) {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("too many incomplete datagrams", func(t *testing.T) {
		var frames []pcapFrame
		for i := range pcapMaxPendingFrags + 1 {
			fr := pcapIPv4Fragments(t, local.Addr(), peer.Addr(), uint16(100+i), udp, 64, len(udp)-64)
			frames = append(frames, at(time.Duration(i)*time.Microsecond, fr[0]))
		}
		recs, st, err := pcapReadAll(t, pcapWrite(t, layers.LinkTypeRaw, frames...))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != pcapMaxPendingFrags+1 || recs[0].Location != PcapFragEvicted ||
			!recs[0].Time.Equal(pcapT0.Add(pcapMaxPendingFrags*time.Microsecond)) || recs[1].Location != PcapFragEndOfCapture {
			t.Fatalf("%d records, first %+v", len(recs), recs[0])
		}
		if st.FragmentDrops != pcapMaxPendingFrags+1 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("IPv6", func(t *testing.T) {
		l6, p6 := netip.MustParseAddrPort("[2001:db8::1]:30303"), netip.MustParseAddrPort("[2001:db8::2]:30303")
		big := bytes.Repeat([]byte("discv5 NODES response "), 80) // 1760 bytes: more than the IPv6 minimum MTU
		udp6 := pcapUDPPacket(t, l6, p6, big)[40:]
		fr := pcapIPv6Fragments(t, l6.Addr(), p6.Addr(), 0xdead, udp6, 1232, len(udp6)-1232)
		lost := pcapIPv6Fragments(t, l6.Addr(), p6.Addr(), 0xbeef, udp6, 1232, len(udp6)-1232)
		recs, st, err := pcapReadAll(t, pcapWrite(t, layers.LinkTypeRaw,
			at(0, fr[1]), at(0, lost[0]), at(time.Millisecond, fr[0]), at(61*time.Second, fr[0])))
		if err != nil {
			t.Fatal(err)
		}
		want := []*Record{
			{Kind: Datagram, Time: pcapT0.Add(time.Millisecond), Src: l6, Dst: p6, Len: len(big), Payload: big},
			{Kind: Drop, Time: pcapT0.Add(60 * time.Second), Src: l6, Dst: p6, Len: len(big), Payload: big[:1232-8],
				Reason: ReasonFragReasmTimeout, Location: PcapFragTimeout},
			{Kind: Drop, Time: pcapT0.Add(61 * time.Second), Src: l6, Dst: p6, Len: len(big), Payload: big[:1232-8],
				Reason: ReasonFragReasmTimeout, Location: PcapFragEndOfCapture},
		}
		if !reflect.DeepEqual(recs, want) {
			for _, r := range recs {
				t.Logf("%+v", *r)
			}
			t.Fatal("records differ")
		}
		if st != (CaptureStats{Frames: 4, Datagrams: 1, Fragments: 4, Reassembled: 1, FragmentDrops: 2}) {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestReadCaptureRejectsWhatIsNotACapture(t *testing.T) {
	shared, err := os.ReadFile(filepath.Join(pcapDir(t), "devp2p-discovery.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	var gzGarbage bytes.Buffer
	zw := gzip.NewWriter(&gzGarbage)
	zw.Write([]byte("just some text, compressed"))
	zw.Close()
	ngHeader := pcapngWrite(t, []layers.LinkType{layers.LinkTypeEthernet})

	for _, tc := range []struct {
		name, data string
		want       error
		says       string
	}{
		{"empty file", "", ErrNotCapture, "empty"},
		{"text", "timestamp,src,dst\n1,2,3\n", ErrNotCapture, "neither a pcap nor a pcapng"},
		{"pcap header cut short", string(shared[:10]), ErrNotCapture, "pcap file header"},
		{"pcapng header cut short", string(ngHeader[:12]), ErrNotCapture, "pcapng section header"},
		{"gzip of text", gzGarbage.String(), ErrNotCapture, "neither a pcap nor a pcapng"},
		{"802.11 capture", string(pcapWrite(t, layers.LinkTypeIEEE802_11)), ErrUnsupportedLink, "802.11"},
		{"802.11 pcapng", string(pcapngWrite(t, []layers.LinkType{layers.LinkTypeIEEE802_11},
			pcapFrame{ts: pcapT0, data: []byte{0x08, 0x02, 0, 0}})), ErrUnsupportedLink, "802.11"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emitted := 0
			err := ReadCapture(strings.NewReader(tc.data), func(*Record) error { emitted++; return nil })
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %v, want %v saying %q", err, tc.want, tc.says)
			}
			if emitted != 0 {
				t.Errorf("%d records emitted", emitted)
			}
		})
	}
}

func TestReadCaptureGzip(t *testing.T) {
	shared, err := os.ReadFile(filepath.Join(pcapDir(t), "devp2p-discovery.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(shared)
	zw.Close()
	recs, st, err := pcapReadAll(t, gz.Bytes())
	if err != nil || len(recs) != 20 || st.Datagrams != 20 {
		t.Errorf("err %v, %d records, stats %+v", err, len(recs), st)
	}
}

// A capture cut short (tcpdump killed, a partial copy) yields everything before the cut,
// then ErrCaptureDamaged; fragments still pending are reported first.
func TestReadCaptureDamagedFile(t *testing.T) {
	shared, err := os.ReadFile(filepath.Join(pcapDir(t), "devp2p-discovery.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	recs, st, err := pcapReadAll(t, shared[:len(shared)-10])
	if !errors.Is(err, ErrCaptureDamaged) || !strings.Contains(err.Error(), "packet 20") {
		t.Errorf("error %v", err)
	}
	if len(recs) != 19 || st.Frames != 19 {
		t.Errorf("%d records, stats %+v", len(recs), st)
	}

	a, b := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	fr := pcapIPv4Fragments(t, a.Addr(), b.Addr(), 1, pcapUDPDatagram(t, a, b, make([]byte, 100)), 64, 44)
	file := pcapWrite(t, layers.LinkTypeRaw, pcapFrame{ts: pcapT0, data: fr[0]}, pcapFrame{ts: pcapT0, data: fr[1]})
	recs, _, err = pcapReadAll(t, file[:len(file)-5])
	if !errors.Is(err, ErrCaptureDamaged) || len(recs) != 1 || recs[0].Kind != Drop || recs[0].Location != PcapFragEndOfCapture {
		t.Errorf("err %v records %+v", err, recs)
	}
}

func TestReadCaptureStopsOnEmitError(t *testing.T) {
	shared, err := os.ReadFile(filepath.Join(pcapDir(t), "reject.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("output closed")
	calls := 0
	err = ReadCapture(bytes.NewReader(shared), func(*Record) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 3 {
		t.Errorf("error %v after %d calls, want the emit error after 3", err, calls)
	}
}

// BenchmarkReadCapture reads the largest shared capture from memory.
// Run: go test -bench BenchmarkReadCapture -run '^$' ./decode
func BenchmarkReadCapture(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(pcapDir(b), "suites-devp2p.pcap"))
	if err != nil {
		b.Fatal(err)
	}
	frames := 0
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		st, err := ReadCaptureStats(bytes.NewReader(data), func(*Record) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		frames += st.Frames
	}
	b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
}

// A capture where the answer to a PING comes fragmented and loses its second fragment
// (a path whose MTU forces fragmentation, and a firewall that drops non-first
// fragments): the exchange fails for the fragment loss, decided when its timeout comes,
// not thirty seconds later when the kernel gives the datagram up.
func TestCaptureFragmentLossExplainsTimeout(t *testing.T) {
	local, peer := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	keyA, keyB := v4Key(t, v4TestKeyA), v4Key(t, v4TestKeyB)
	ping := v4Encode(t, keyA, &v4wire.Ping{Version: 4, Expiration: uint64(pcapT0.Unix()) + 20,
		From: v4wire.NewEndpoint(local, 0), To: v4wire.NewEndpoint(peer, 0)})
	pong := v4Encode(t, keyB, &v4wire.Pong{To: v4wire.NewEndpoint(local, 0), ReplyTok: ping[:32], Expiration: uint64(pcapT0.Unix()) + 20})
	udp := pcapUDPDatagram(t, peer, local, pong)
	fr := pcapIPv4Fragments(t, peer.Addr(), local.Addr(), 77, udp, 64, len(udp)-64)
	at := func(d time.Duration, pkt []byte) pcapFrame { return pcapFrame{ts: pcapT0.Add(d), data: pkt} }
	capture := pcapWrite(t, layers.LinkTypeRaw,
		at(0, pcapUDPPacket(t, local, peer, ping)),
		at(2*time.Millisecond, fr[0]), // fr[1] never comes
		at(2*time.Second, pcapUDPPacket(t, netip.MustParseAddrPort("10.0.0.9:9"), local, []byte("tick"))),
		at(40*time.Second, pcapUDPPacket(t, netip.MustParseAddrPort("10.0.0.9:9"), local, []byte("tick"))))
	d := NewDecoder(Config{})
	var evs []*ndjson.Event
	emit := func(ev *ndjson.Event) { evs = append(evs, ev) }
	if err := ReadCapture(bytes.NewReader(capture), func(r *Record) error { d.Feed(r, emit); return nil }); err != nil {
		t.Fatal(err)
	}
	d.Flush(emit)
	var ex *ndjson.Event
	for _, ev := range evs {
		if ev.Type == ndjson.TypeExchange {
			if ex != nil {
				t.Fatalf("two exchanges")
			}
			ex = ev
		}
	}
	if ex == nil || ex.Outcome != OutcomeFailed || ex.Cause != CauseFragmentLoss {
		t.Fatalf("exchange %+v", ex)
	}
}

// An IP header that claims more than the frame carries is a snapped capture when the
// frame was cut (origLen above what was captured), and a malformed packet, which the
// kernel drops, when the frame is whole.
func TestReadCaptureIPLengthBeyondFrame(t *testing.T) {
	for _, c := range []struct {
		name        string
		local, peer netip.AddrPort
		lengthAt    int // the IP header's length field
		lengthOf    func(pkt []byte) int
		header      int // IP and UDP headers
	}{
		{"IPv4", netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303"),
			2, func(pkt []byte) int { return len(pkt) }, 20 + 8},
		{"IPv6", netip.MustParseAddrPort("[2001:db8::1]:30303"), netip.MustParseAddrPort("[2001:db8::2]:30303"),
			4, func(pkt []byte) int { return len(pkt) - 40 }, 40 + 8},
	} {
		pkt := pcapUDPPacket(t, c.local, c.peer, bytes.Repeat([]byte{7}, 100))
		liar := bytes.Clone(pkt)
		binary.BigEndian.PutUint16(liar[c.lengthAt:], uint16(c.lengthOf(pkt)+100))
		snap := c.header + 32
		recs, st, err := pcapReadAll(t, pcapWrite(t, layers.LinkTypeRaw,
			pcapFrame{ts: pcapT0, data: liar},
			pcapFrame{ts: pcapT0, data: pkt[:snap], origLen: len(pkt)}))
		if err != nil {
			t.Fatal(err)
		}
		if st.Malformed != 1 || len(recs) != 1 || recs[0].Len != 100 || len(recs[0].Payload) != snap-c.header {
			t.Errorf("%s: stats %+v, records %+v", c.name, st, recs)
		}
	}
}
