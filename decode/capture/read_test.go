package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/discotrace/discotrace/decode/discv4"
	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/record"
)

// readAll reads a capture, checking the invariants every capture must keep.
func readAll(t testing.TB, data []byte) ([]*record.Record, Stats, error) {
	t.Helper()
	var recs []*record.Record
	st, err := ReadStats(bytes.NewReader(data), func(r *record.Record) error {
		recs = append(recs, r.Clone())
		return nil
	})
	if got := st.Datagrams + st.ICMPErrors + st.Fragments + st.Other + st.Malformed + st.UnsupportedLink; st.Frames+st.Reassembled != got {
		t.Errorf("stats do not add up: %+v", st)
	}
	for i, r := range recs {
		if r.Dir != record.DirUnknown || len(r.Payload) > r.Len {
			t.Errorf("record %d: dir %v, payload %d > len %d", i, r.Dir, len(r.Payload), r.Len)
		}
		if i > 0 && r.Time.Before(recs[i-1].Time) {
			t.Errorf("record %d at %v before record %d at %v", i, r.Time, i-1, recs[i-1].Time)
		}
	}
	return recs, st, err
}

// sharedRecords reads one of the shared captures.
func sharedRecords(t *testing.T, name string) []*record.Record {
	t.Helper()
	data, err := os.ReadFile(disctest.CapturePath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	recs, _, err := readAll(t, data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return recs
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
			data, err := os.ReadFile(disctest.CapturePath(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			recs, st, err := readAll(t, data)
			if err != nil {
				t.Fatal(err)
			}
			want := Stats{Frames: tc.datagrams + tc.icmps, Datagrams: tc.datagrams, ICMPErrors: tc.icmps}
			if st != want {
				t.Errorf("stats %+v, want %+v", st, want)
			}
			// Every ICMP error is a port unreachable that quotes, byte for byte, a datagram
			// captured before it on the same tuple.
			var datagrams []*record.Record
			for _, r := range recs {
				switch r.Kind {
				case record.Datagram:
					if r.Len != len(r.Payload) {
						t.Errorf("%v: len %d, payload %d", r.Time, r.Len, len(r.Payload))
					}
					datagrams = append(datagrams, r)
				case record.ICMP:
					if r.ICMPType != 3 || r.ICMPCode != 3 || r.Src.Port() != 0 || r.Dst.Port() != 0 ||
						r.Dst.Addr() != r.QuotedSrc.Addr() || r.Len != len(r.Payload) {
						t.Errorf("%v: %+v", r.Time, r)
					}
					found := false
					for _, d := range datagrams {
						found = found || (d.Src == r.QuotedSrc && d.Dst == r.QuotedDst && bytes.Equal(d.Payload, r.Payload))
					}
					if !found {
						t.Errorf("%v: record.ICMP quotes %v -> %v, no such datagram captured", r.Time, r.QuotedSrc, r.QuotedDst)
					}
				default:
					t.Errorf("unexpected record %+v", r)
				}
			}
			// Reading again gives the same records.
			again, _, _ := readAll(t, data)
			if !reflect.DeepEqual(recs, again) {
				t.Error("a second read differs")
			}
		})
	}

	recs := sharedRecords(t, "devp2p-discovery.pcap")
	first := recs[0]
	if !first.Time.Equal(time.Date(2026, 11, 23, 19, 56, 6, 817726000, time.UTC)) ||
		first.Src != netip.MustParseAddrPort("10.99.0.2:30303") || first.Dst != netip.MustParseAddrPort("10.99.0.1:30303") ||
		first.Kind != record.Datagram || first.Len != 132 {
		t.Errorf("first datagram: %+v", first)
	}
	recs = sharedRecords(t, "reject.pcap")
	icmp := recs[1] // 19:56:38.573707 IP 10.99.0.3 > 10.99.0.1: ICMP 10.99.0.3 udp port 30303 unreachable, length 142
	if !icmp.Time.Equal(time.Date(2026, 11, 23, 19, 56, 38, 573707000, time.UTC)) || icmp.Kind != record.ICMP ||
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
	v4 := disctest.UDPPacket(t, src4, dst4, payload)
	v6 := disctest.UDPPacket(t, src6, dst6, payload)
	frame := func(data []byte) disctest.Frame { return disctest.Frame{TS: disctest.T0, Data: data} }

	for _, tc := range []struct {
		name     string
		file     []byte
		src, dst netip.AddrPort
	}{
		{"Ethernet IPv4", disctest.WritePcap(t, layers.LinkTypeEthernet, frame(disctest.Ethernet(layers.EthernetTypeIPv4, v4))), src4, dst4},
		{"Ethernet IPv6", disctest.WritePcap(t, layers.LinkTypeEthernet, frame(disctest.Ethernet(layers.EthernetTypeIPv6, v6))), src6, dst6},
		{"Ethernet 802.1Q", disctest.WritePcap(t, layers.LinkTypeEthernet, frame(disctest.VLAN([]layers.EthernetType{layers.EthernetTypeDot1Q}, v4))), src4, dst4},
		{"Ethernet 802.1ad QinQ", disctest.WritePcap(t, layers.LinkTypeEthernet, frame(disctest.VLAN([]layers.EthernetType{layers.EthernetTypeQinQ, layers.EthernetTypeDot1Q}, v6))), src6, dst6},
		{"Linux SLL", disctest.WritePcap(t, layers.LinkTypeLinuxSLL, frame(disctest.SLL(v4))), src4, dst4},
		{"Linux SLL IPv6", disctest.WritePcap(t, layers.LinkTypeLinuxSLL, frame(disctest.SLL(v6))), src6, dst6},
		{"Linux SLL2", disctest.WritePcap(t, layers.LinkTypeLinuxSLL2, frame(disctest.SLL2(v4))), src4, dst4},
		{"Linux SLL2 IPv6", disctest.WritePcap(t, layers.LinkTypeLinuxSLL2, frame(disctest.SLL2(v6))), src6, dst6},
		{"raw IPv4 (101)", disctest.WritePcap(t, layers.LinkTypeRaw, frame(v4)), src4, dst4},
		{"raw IPv6 (101)", disctest.WritePcap(t, layers.LinkTypeRaw, frame(v6)), src6, dst6},
		{"raw (12)", disctest.WritePcap(t, 12, frame(v4)), src4, dst4},
		{"raw (14)", disctest.WritePcap(t, 14, frame(v6)), src6, dst6},
		{"IPv4 (228)", disctest.WritePcap(t, layers.LinkTypeIPv4, frame(v4)), src4, dst4},
		{"IPv6 (229)", disctest.WritePcap(t, layers.LinkTypeIPv6, frame(v6)), src6, dst6},
		{"BSD null IPv4", disctest.WritePcap(t, layers.LinkTypeNull, frame(disctest.NullHeader(2, binary.LittleEndian, v4))), src4, dst4},
		{"BSD null IPv6", disctest.WritePcap(t, layers.LinkTypeNull, frame(disctest.NullHeader(30, binary.LittleEndian, v6))), src6, dst6},
		{"OpenBSD loop", disctest.WritePcap(t, layers.LinkTypeLoop, frame(disctest.NullHeader(2, binary.BigEndian, v4))), src4, dst4},
		{"pcapng Ethernet", disctest.WritePcapng(t, []layers.LinkType{layers.LinkTypeEthernet}, frame(disctest.Ethernet(layers.EthernetTypeIPv4, v4))), src4, dst4},
		{"pcapng SLL2", disctest.WritePcapng(t, []layers.LinkType{layers.LinkTypeLinuxSLL2}, frame(disctest.SLL2(v6))), src6, dst6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, st, err := readAll(t, tc.file)
			if err != nil {
				t.Fatal(err)
			}
			want := &record.Record{Kind: record.Datagram, Time: disctest.T0, Src: tc.src, Dst: tc.dst, Len: len(payload), Payload: payload}
			if len(recs) != 1 || !reflect.DeepEqual(recs[0], want) {
				t.Fatalf("records %+v, want one %+v", recs, want)
			}
			if st != (Stats{Frames: 1, Datagrams: 1}) {
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
	pkt := disctest.UDPPacket(t, netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), []byte{1})
	if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: disctest.T0, CaptureLength: len(pkt), Length: len(pkt)}, pkt); err != nil {
		t.Fatal(err)
	}
	recs, _, err := readAll(t, buf.Bytes())
	if err != nil || len(recs) != 1 || !recs[0].Time.Equal(disctest.T0.Truncate(time.Microsecond)) {
		t.Fatalf("err %v records %+v", err, recs)
	}
}

// dumpcap and tcpdump write one pcapng interface per device; an interface whose link
// type has no IP (here 802.11, even as the first one) is counted, not fatal.
func TestReadCapturePcapngMixedInterfaces(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	file := disctest.WritePcapng(t, []layers.LinkType{layers.LinkTypeIEEE802_11, layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL2},
		disctest.Frame{TS: disctest.T0, Data: disctest.Ethernet(layers.EthernetTypeIPv4, disctest.UDPPacket(t, a, b, []byte("one"))), Iface: 1},
		disctest.Frame{TS: disctest.T0.Add(time.Millisecond), Data: []byte{0x08, 0x02, 0, 0}, Iface: 0},
		disctest.Frame{TS: disctest.T0.Add(2 * time.Millisecond), Data: disctest.SLL2(disctest.UDPPacket(t, b, a, []byte("two"))), Iface: 2},
	)
	recs, st, err := readAll(t, file)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || string(recs[0].Payload) != "one" || recs[0].Src != a || string(recs[1].Payload) != "two" || recs[1].Src != b ||
		!recs[1].Time.Equal(disctest.T0.Add(2*time.Millisecond)) {
		t.Errorf("records %+v", recs)
	}
	if st != (Stats{Frames: 3, Datagrams: 2, UnsupportedLink: 1}) {
		t.Errorf("stats %+v", st)
	}
}

// Frames shorter than Ethernet's 60-byte minimum are padded: the UDP length, not the
// frame, says where the payload ends. A snapped frame keeps its full length in Len.
func TestReadCaptureLengthFromUDPHeader(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	small := disctest.Ethernet(layers.EthernetTypeIPv4, disctest.UDPPacket(t, a, b, []byte{0xaa, 0xbb, 0xcc}))
	padded := append(small, bytes.Repeat([]byte{0xee}, 60-len(small))...)
	big := disctest.Ethernet(layers.EthernetTypeIPv4, disctest.UDPPacket(t, a, b, bytes.Repeat([]byte{0x11}, 1000)))
	snapped := big[:14+20+8+100]

	recs, st, err := readAll(t, disctest.WritePcap(t, layers.LinkTypeEthernet,
		disctest.Frame{TS: disctest.T0, Data: padded},
		disctest.Frame{TS: disctest.T0, Data: snapped, OrigLen: len(big)},
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
	sent := disctest.UDPPacket(t, local, peer, bytes.Repeat([]byte{0x42}, 200))

	icmp4 := func(typ, code uint8, quote []byte) []byte {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4,
			SrcIP: router.AsSlice(), DstIP: local.Addr().AsSlice()}
		return disctest.Serialize(t, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}, gopacket.Payload(quote))
	}
	local6, peer6 := netip.MustParseAddrPort("[2001:db8::1]:30303"), netip.MustParseAddrPort("[2001:db8::9]:30303")
	router6 := netip.MustParseAddr("2001:db8::fe")
	sent6 := disctest.UDPPacket(t, local6, peer6, bytes.Repeat([]byte{0x43}, 1400))
	icmp6 := func(typ, code uint8, rest []byte) []byte {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6,
			SrcIP: router6.AsSlice(), DstIP: local6.Addr().AsSlice()}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
		ic.SetNetworkLayerForChecksum(ip)
		return disctest.Serialize(t, ip, ic, gopacket.Payload(rest))
	}
	mtu := []byte{0, 0, 0x05, 0x00} // Packet Too Big: MTU 1280
	tcp := disctest.TCPPacket(t, local.Addr(), peer.Addr())

	frames := []disctest.Frame{
		// Port unreachable quoting the whole datagram, as Linux does up to 576 bytes.
		{TS: disctest.T0, Data: icmp4(3, 3, sent)},
		// Fragmentation needed quoting only 8 bytes after the IP header (RFC 792's minimum).
		{TS: disctest.T0, Data: icmp4(3, 4, sent[:28])},
		// Time exceeded quoting a TCP segment: no UDP tuple.
		{TS: disctest.T0, Data: icmp4(11, 0, tcp)},
		// Echo request: not an error.
		{TS: disctest.T0, Data: icmp4(8, 0, []byte("ping"))},
		// ICMPv6 Packet Too Big quoting the first 1232 bytes of a 1448-byte packet.
		{TS: disctest.T0, Data: icmp6(2, 0, append(bytes.Clone(mtu), sent6[:1232]...))},
		// ICMPv6 destination unreachable, port unreachable.
		{TS: disctest.T0, Data: icmp6(1, 4, append(make([]byte, 4), sent6[:48]...))},
		// ICMPv6 echo request: not an error.
		{TS: disctest.T0, Data: icmp6(128, 0, []byte{0, 1, 0, 1})},
		// Port unreachable whose quote stops inside the UDP header.
		{TS: disctest.T0, Data: icmp4(3, 3, sent[:24])},
	}
	var file []disctest.Frame
	for _, f := range frames {
		file = append(file, disctest.Frame{TS: f.TS, Data: f.Data})
	}
	recs, st, err := readAll(t, disctest.WritePcap(t, layers.LinkTypeRaw, file...))
	if err != nil {
		t.Fatal(err)
	}
	from4, to4 := netip.AddrPortFrom(router, 0), netip.AddrPortFrom(local.Addr(), 0)
	from6, to6 := netip.AddrPortFrom(router6, 0), netip.AddrPortFrom(local6.Addr(), 0)
	want := []*record.Record{
		{Kind: record.ICMP, Time: disctest.T0, Src: from4, Dst: to4, ICMPType: 3, ICMPCode: 3, QuotedSrc: local, QuotedDst: peer, Len: 200, Payload: bytes.Repeat([]byte{0x42}, 200)},
		{Kind: record.ICMP, Time: disctest.T0, Src: from4, Dst: to4, ICMPType: 3, ICMPCode: 4, QuotedSrc: local, QuotedDst: peer, Len: 200, Payload: []byte{}},
		{Kind: record.ICMP, Time: disctest.T0, Src: from6, Dst: to6, ICMPType: 2, ICMPCode: 0, QuotedSrc: local6, QuotedDst: peer6, Len: 1400, Payload: bytes.Repeat([]byte{0x43}, 1232-48)},
		{Kind: record.ICMP, Time: disctest.T0, Src: from6, Dst: to6, ICMPType: 1, ICMPCode: 4, QuotedSrc: local6, QuotedDst: peer6, Len: 1400, Payload: []byte{}},
	}
	if !reflect.DeepEqual(recs, want) {
		for _, r := range recs {
			t.Logf("got %+v", *r)
		}
		t.Fatal("records differ")
	}
	if st != (Stats{Frames: 8, ICMPErrors: 4, Other: 3, Malformed: 1}) {
		t.Errorf("stats %+v", st)
	}
}

// Broken frames are counted and skipped; the good frame after them still comes out.
func TestReadCaptureSkipsMalformedFrames(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	good := disctest.UDPPacket(t, a, b, []byte("still here"))
	badIHL := bytes.Clone(good)
	badIHL[0] = 0x43
	udpTooShort := bytes.Clone(good)
	binary.BigEndian.PutUint16(udpTooShort[24:], 4)
	udpTooLong := bytes.Clone(good)
	binary.BigEndian.PutUint16(udpTooLong[24:], 200)
	arp := disctest.Ethernet(layers.EthernetTypeARP, make([]byte, 28))
	tcp := disctest.TCPPacket(t, a.Addr(), b.Addr())

	eth := func(pkt []byte) disctest.Frame {
		return disctest.Frame{TS: disctest.T0, Data: disctest.Ethernet(layers.EthernetTypeIPv4, pkt)}
	}
	recs, st, err := readAll(t, disctest.WritePcap(t, layers.LinkTypeEthernet,
		disctest.Frame{TS: disctest.T0, Data: []byte{1, 2, 3}}, // shorter than an Ethernet header
		eth(badIHL),
		eth(udpTooShort),
		eth(udpTooLong),
		eth(good[:20+4]),  // snapped inside the UDP header
		eth([]byte{0x60}), // IPv6 version in an IPv4 frame, one byte
		disctest.Frame{TS: disctest.T0, Data: arp},
		eth(tcp),
		eth(good),
	))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || string(recs[0].Payload) != "still here" {
		t.Errorf("records %+v", recs)
	}
	if st != (Stats{Frames: 9, Datagrams: 1, Malformed: 6, Other: 2}) {
		t.Errorf("stats %+v", st)
	}
}

func TestReadCaptureFragments(t *testing.T) {
	local, peer := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	ping := disctest.V4Encode(t, disctest.Key(t, disctest.KeyB), &v4wire.Ping{Version: 4, Expiration: 1795463786,
		From: v4wire.NewEndpoint(local, 0), To: v4wire.NewEndpoint(peer, 0)})
	udp := disctest.UDPDatagram(t, local, peer, ping) // 8 + 130 bytes
	at := func(d time.Duration, pkt []byte) disctest.Frame {
		return disctest.Frame{TS: disctest.T0.Add(d), Data: pkt}
	}

	t.Run("complete, out of order, with a duplicate", func(t *testing.T) {
		fr := disctest.IPv4Fragments(t, local.Addr(), peer.Addr(), 7, udp, 48, 48, len(udp)-96)
		recs, st, err := readAll(t, disctest.WritePcap(t, layers.LinkTypeRaw,
			at(0, fr[2]), at(1*time.Millisecond, fr[0]), at(2*time.Millisecond, fr[0]), at(3*time.Millisecond, fr[1])))
		if err != nil {
			t.Fatal(err)
		}
		want := &record.Record{Kind: record.Datagram, Time: disctest.T0.Add(3 * time.Millisecond), Src: local, Dst: peer, Len: len(ping), Payload: ping}
		if len(recs) != 1 || !reflect.DeepEqual(recs[0], want) {
			t.Fatalf("records %+v", recs)
		}
		if st != (Stats{Frames: 4, Datagrams: 1, Fragments: 4, Reassembled: 1, DuplicateFragments: 1}) {
			t.Errorf("stats %+v", st)
		}
		p, ok := discv4.NewDecoder().Decode(recs[0])
		if !ok || p.Err != nil || p.Kind != discv4.KindPing || p.SrcID != disctest.ID(t, disctest.KeyB) {
			t.Errorf("reassembled PING decodes as %+v", p)
		}
	})

	t.Run("first fragment only: lost when the rest does not follow", func(t *testing.T) {
		fr := disctest.IPv4Fragments(t, local.Addr(), peer.Addr(), 8, udp, 64, len(udp)-64)
		later := disctest.UDPPacket(t, peer, local, []byte("later"))
		recs, st, err := readAll(t, disctest.WritePcap(t, layers.LinkTypeRaw,
			at(0, fr[0]), at(300*time.Millisecond, later), at(31*time.Second, later)))
		if err != nil {
			t.Fatal(err)
		}
		// Reported at the gap, in time for the request waiting on it; nothing again at
		// the kernel's 30 s timeout.
		drop := &record.Record{Kind: record.Drop, Time: disctest.T0.Add(fragGap), Src: local, Dst: peer, Len: len(ping),
			Payload: ping[:64-8], Reason: record.ReasonFragReasmTimeout, Location: FragStalled}
		if len(recs) != 3 || !reflect.DeepEqual(recs[0], drop) || recs[1].Kind != record.Datagram || recs[2].Kind != record.Datagram {
			for _, r := range recs {
				t.Logf("%+v", *r)
			}
			t.Fatal("want the drop at the gap, then the two datagrams")
		}
		if st != (Stats{Frames: 3, Datagrams: 2, Fragments: 1, FragmentDrops: 1}) {
			t.Errorf("stats %+v", st)
		}
		// A discv4 hash covers the whole packet, so the prefix does not decode as discv4:
		// the tracker matches the loss on the tuple and Len.
		if _, ok := discv4.NewDecoder().Decode(recs[1]); ok {
			t.Error("the prefix of a lost datagram decoded as discv4")
		}
	})

	t.Run("a late fragment still completes its datagram", func(t *testing.T) {
		fr := disctest.IPv4Fragments(t, local.Addr(), peer.Addr(), 13, udp, 64, len(udp)-64)
		recs, _, err := readAll(t, disctest.WritePcap(t, layers.LinkTypeRaw, at(0, fr[0]), at(time.Second, fr[1])))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 || recs[0].Location != FragStalled || recs[1].Kind != record.Datagram || !bytes.Equal(recs[1].Payload, ping) {
			t.Fatalf("records %+v", recs)
		}
	})

	t.Run("middle fragment lost, capture ends", func(t *testing.T) {
		fr := disctest.IPv4Fragments(t, local.Addr(), peer.Addr(), 9, udp, 48, 48, len(udp)-96)
		recs, st, err := readAll(t, disctest.WritePcap(t, layers.LinkTypeRaw,
			at(0, fr[0]), at(time.Millisecond, fr[2]), at(50*time.Millisecond, disctest.UDPPacket(t, peer, local, []byte("x")))))
		if err != nil {
			t.Fatal(err)
		}
		drop := &record.Record{Kind: record.Drop, Time: disctest.T0.Add(50 * time.Millisecond), Src: local, Dst: peer, Len: len(ping),
			Payload: ping[:48-8], Reason: record.ReasonFragReasmTimeout, Location: FragEndOfCapture}
		if len(recs) != 2 || recs[0].Kind != record.Datagram || !reflect.DeepEqual(recs[1], drop) {
			for _, r := range recs {
				t.Logf("%+v", *r)
			}
			t.Fatal("want datagram, then the drop at the end of the capture")
		}
		if st != (Stats{Frames: 3, Datagrams: 1, Fragments: 2, FragmentDrops: 1}) {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("first fragment lost", func(t *testing.T) {
		fr := disctest.IPv4Fragments(t, local.Addr(), peer.Addr(), 10, udp, 64, len(udp)-64)
		recs, _, err := readAll(t, disctest.WritePcap(t, layers.LinkTypeRaw, at(0, fr[1])))
		if err != nil {
			t.Fatal(err)
		}
		drop := &record.Record{Kind: record.Drop, Time: disctest.T0, Src: netip.AddrPortFrom(local.Addr(), 0), Dst: netip.AddrPortFrom(peer.Addr(), 0),
			Reason: record.ReasonFragReasmTimeout, Location: FragEndOfCapture}
		if len(recs) != 1 || !reflect.DeepEqual(recs[0], drop) {
			t.Fatalf("records %+v", recs)
		}
	})

	t.Run("invalid fragments", func(t *testing.T) {
		fr := disctest.IPv4Fragments(t, local.Addr(), peer.Addr(), 11, udp, 60, len(udp)-60) // 60: not a multiple of 8
		overlap := disctest.IPv4Fragments(t, local.Addr(), peer.Addr(), 12, udp, 64, len(udp)-64)
		shifted := disctest.IPv4Fragments(t, local.Addr(), peer.Addr(), 12, udp, 56, len(udp)-56)
		recs, st, err := readAll(t, disctest.WritePcap(t, layers.LinkTypeRaw,
			at(0, fr[0]), at(0, fr[1]), // first is malformed; the second waits alone
			at(0, overlap[0]), at(0, shifted[1]), at(0, overlap[1])))
		if err != nil {
			t.Fatal(err)
		}
		// id 12 completes from overlap[0]+overlap[1]; shifted[1] overlapped overlap[0] and was ignored.
		if len(recs) != 2 || recs[0].Kind != record.Datagram || !bytes.Equal(recs[0].Payload, ping) ||
			recs[1].Kind != record.Drop || recs[1].Location != FragEndOfCapture || recs[1].Src.Port() != 0 {
			for _, r := range recs {
				t.Logf("%+v", *r)
			}
			t.Fatal("records differ")
		}
		if st != (Stats{Frames: 5, Datagrams: 1, Fragments: 4, Reassembled: 1, FragmentDrops: 1, DuplicateFragments: 1, Malformed: 1}) {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("too many incomplete datagrams", func(t *testing.T) {
		var frames []disctest.Frame
		for i := range maxPendingFrags + 1 {
			fr := disctest.IPv4Fragments(t, local.Addr(), peer.Addr(), uint16(100+i), udp, 64, len(udp)-64)
			frames = append(frames, at(time.Duration(i)*time.Microsecond, fr[0]))
		}
		recs, st, err := readAll(t, disctest.WritePcap(t, layers.LinkTypeRaw, frames...))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != maxPendingFrags+1 || recs[0].Location != FragEvicted ||
			!recs[0].Time.Equal(disctest.T0.Add(maxPendingFrags*time.Microsecond)) || recs[1].Location != FragEndOfCapture {
			t.Fatalf("%d records, first %+v", len(recs), recs[0])
		}
		if st.FragmentDrops != maxPendingFrags+1 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("IPv6", func(t *testing.T) {
		l6, p6 := netip.MustParseAddrPort("[2001:db8::1]:30303"), netip.MustParseAddrPort("[2001:db8::2]:30303")
		big := bytes.Repeat([]byte("discv5 NODES response "), 80) // 1760 bytes: more than the IPv6 minimum MTU
		udp6 := disctest.UDPPacket(t, l6, p6, big)[40:]
		fr := disctest.IPv6Fragments(t, l6.Addr(), p6.Addr(), 0xdead, udp6, 1232, len(udp6)-1232)
		lost := disctest.IPv6Fragments(t, l6.Addr(), p6.Addr(), 0xbeef, udp6, 1232, len(udp6)-1232)
		recs, st, err := readAll(t, disctest.WritePcap(t, layers.LinkTypeRaw,
			at(0, fr[1]), at(0, lost[0]), at(time.Millisecond, fr[0]), at(61*time.Second, fr[0])))
		if err != nil {
			t.Fatal(err)
		}
		want := []*record.Record{
			{Kind: record.Datagram, Time: disctest.T0.Add(time.Millisecond), Src: l6, Dst: p6, Len: len(big), Payload: big},
			{Kind: record.Drop, Time: disctest.T0.Add(60 * time.Second), Src: l6, Dst: p6, Len: len(big), Payload: big[:1232-8],
				Reason: record.ReasonFragReasmTimeout, Location: FragTimeout},
			{Kind: record.Drop, Time: disctest.T0.Add(61 * time.Second), Src: l6, Dst: p6, Len: len(big), Payload: big[:1232-8],
				Reason: record.ReasonFragReasmTimeout, Location: FragEndOfCapture},
		}
		if !reflect.DeepEqual(recs, want) {
			for _, r := range recs {
				t.Logf("%+v", *r)
			}
			t.Fatal("records differ")
		}
		if st != (Stats{Frames: 4, Datagrams: 1, Fragments: 4, Reassembled: 1, FragmentDrops: 2}) {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestReadCaptureRejectsWhatIsNotACapture(t *testing.T) {
	shared, err := os.ReadFile(disctest.CapturePath(t, "devp2p-discovery.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	var gzGarbage bytes.Buffer
	zw := gzip.NewWriter(&gzGarbage)
	zw.Write([]byte("just some text, compressed"))
	zw.Close()
	ngHeader := disctest.WritePcapng(t, []layers.LinkType{layers.LinkTypeEthernet})

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
		{"802.11 capture", string(disctest.WritePcap(t, layers.LinkTypeIEEE802_11)), ErrUnsupportedLink, "802.11"},
		{"802.11 pcapng", string(disctest.WritePcapng(t, []layers.LinkType{layers.LinkTypeIEEE802_11},
			disctest.Frame{TS: disctest.T0, Data: []byte{0x08, 0x02, 0, 0}})), ErrUnsupportedLink, "802.11"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emitted := 0
			err := Read(strings.NewReader(tc.data), func(*record.Record) error { emitted++; return nil })
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
	shared, err := os.ReadFile(disctest.CapturePath(t, "devp2p-discovery.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(shared)
	zw.Close()
	recs, st, err := readAll(t, gz.Bytes())
	if err != nil || len(recs) != 20 || st.Datagrams != 20 {
		t.Errorf("err %v, %d records, stats %+v", err, len(recs), st)
	}
}

// A capture cut short (tcpdump killed, a partial copy) yields everything before the cut,
// then ErrDamaged; fragments still pending are reported first.
func TestReadCaptureDamagedFile(t *testing.T) {
	shared, err := os.ReadFile(disctest.CapturePath(t, "devp2p-discovery.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	recs, st, err := readAll(t, shared[:len(shared)-10])
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "packet 20") {
		t.Errorf("error %v", err)
	}
	if len(recs) != 19 || st.Frames != 19 {
		t.Errorf("%d records, stats %+v", len(recs), st)
	}

	a, b := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	fr := disctest.IPv4Fragments(t, a.Addr(), b.Addr(), 1, disctest.UDPDatagram(t, a, b, make([]byte, 100)), 64, 44)
	file := disctest.WritePcap(t, layers.LinkTypeRaw, disctest.Frame{TS: disctest.T0, Data: fr[0]}, disctest.Frame{TS: disctest.T0, Data: fr[1]})
	recs, _, err = readAll(t, file[:len(file)-5])
	if !errors.Is(err, ErrDamaged) || len(recs) != 1 || recs[0].Kind != record.Drop || recs[0].Location != FragEndOfCapture {
		t.Errorf("err %v records %+v", err, recs)
	}
}

func TestReadCaptureStopsOnEmitError(t *testing.T) {
	shared, err := os.ReadFile(disctest.CapturePath(t, "reject.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("output closed")
	calls := 0
	err = Read(bytes.NewReader(shared), func(*record.Record) error {
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
// Run: go test -bench BenchmarkReadCapture -run '^$' ./decode/capture
func BenchmarkReadCapture(b *testing.B) {
	data, err := os.ReadFile(disctest.CapturePath(b, "suites-devp2p.pcap"))
	if err != nil {
		b.Fatal(err)
	}
	frames := 0
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		st, err := ReadStats(bytes.NewReader(data), func(*record.Record) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		frames += st.Frames
	}
	b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
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
		pkt := disctest.UDPPacket(t, c.local, c.peer, bytes.Repeat([]byte{7}, 100))
		liar := bytes.Clone(pkt)
		binary.BigEndian.PutUint16(liar[c.lengthAt:], uint16(c.lengthOf(pkt)+100))
		snap := c.header + 32
		recs, st, err := readAll(t, disctest.WritePcap(t, layers.LinkTypeRaw,
			disctest.Frame{TS: disctest.T0, Data: liar},
			disctest.Frame{TS: disctest.T0, Data: pkt[:snap], OrigLen: len(pkt)}))
		if err != nil {
			t.Fatal(err)
		}
		if st.Malformed != 1 || len(recs) != 1 || recs[0].Len != 100 || len(recs[0].Payload) != snap-c.header {
			t.Errorf("%s: stats %+v, records %+v", c.name, st, recs)
		}
	}
}
