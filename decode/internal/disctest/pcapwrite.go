// Package disctest is what the decode packages' tests share: the test-only node keys,
// the shared captures, go-ethereum nodes and packets built with go-ethereum's encoders,
// and captures written in-test.
package disctest

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Captures written in-test with pcapgo (SLL and SLL2 headers by hand: gopacket cannot
// serialise them), so that every case states exactly what is on the wire.

// T0 is the capture time the synthetic captures start at.
var T0 = time.Date(2026, 11, 23, 19, 0, 0, 123456789, time.UTC)

// Frame is one captured frame; OrigLen > len(Data) means the capture snapped it.
type Frame struct {
	TS      time.Time
	Data    []byte
	OrigLen int
	Iface   int // pcapng interface index
}

// WritePcap writes frames as a pcap file (nanosecond time stamps) of one link type.
func WritePcap(t testing.TB, link layers.LinkType, frames ...Frame) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(262144, link); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		orig := max(f.OrigLen, len(f.Data))
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: f.TS, CaptureLength: len(f.Data), Length: orig}, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// WritePcapng writes frames as a pcapng file with one interface per link type;
// Frame.Iface picks the interface.
func WritePcapng(t testing.TB, links []layers.LinkType, frames ...Frame) []byte {
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
		orig := max(f.OrigLen, len(f.Data))
		ci := gopacket.CaptureInfo{Timestamp: f.TS, CaptureLength: len(f.Data), Length: orig, InterfaceIndex: f.Iface}
		if err := w.WritePacket(ci, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Serialize serialises layers with lengths and checksums filled in.
func Serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// UDPPacket is a raw IPv4 or IPv6 packet carrying one UDP datagram.
func UDPPacket(t testing.TB, src, dst netip.AddrPort, payload []byte) []byte {
	t.Helper()
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	if src.Addr().Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Protocol: layers.IPProtocolUDP,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		udp.SetNetworkLayerForChecksum(ip)
		return Serialize(t, ip, udp, gopacket.Payload(payload))
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
		SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	udp.SetNetworkLayerForChecksum(ip)
	return Serialize(t, ip, udp, gopacket.Payload(payload))
}

// UDPDatagram is a UDP header and payload, checksummed for src/dst (IPv4).
func UDPDatagram(t testing.TB, src, dst netip.AddrPort, payload []byte) []byte {
	pkt := UDPPacket(t, src, dst, payload)
	if src.Addr().Is4() {
		return pkt[20:]
	}
	return pkt[40:]
}

// TCPPacket is a raw IPv4 packet carrying a TCP SYN.
func TCPPacket(t testing.TB, src, dst netip.Addr) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: 1, DstPort: 2, SYN: true}
	tcp.SetNetworkLayerForChecksum(ip)
	return Serialize(t, ip, tcp)
}

// Ethernet puts an Ethernet header of type etype before pkt.
func Ethernet(etype layers.EthernetType, pkt []byte) []byte {
	hdr := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0, 0}
	binary.BigEndian.PutUint16(hdr[12:], uint16(etype))
	return append(hdr, pkt...)
}

// EtherTypeOf is the Ethernet type of a raw IP packet, from its version nibble.
func EtherTypeOf(pkt []byte) layers.EthernetType {
	if pkt[0]>>4 == 6 {
		return layers.EthernetTypeIPv6
	}
	return layers.EthernetTypeIPv4
}

// VLAN wraps pkt in 802.1Q tags (outermost first) inside an Ethernet frame.
func VLAN(tpids []layers.EthernetType, pkt []byte) []byte {
	frame := Ethernet(tpids[0], nil)
	for i := range tpids {
		next := EtherTypeOf(pkt)
		if i+1 < len(tpids) {
			next = tpids[i+1]
		}
		tag := []byte{0, byte(10 + i), 0, 0}
		binary.BigEndian.PutUint16(tag[2:], uint16(next))
		frame = append(frame, tag...)
	}
	return append(frame, pkt...)
}

// SLL is a Linux cooked (v1) header: packet type "outgoing", Ethernet address.
func SLL(pkt []byte) []byte {
	hdr := make([]byte, 16)
	binary.BigEndian.PutUint16(hdr[0:], 4) // LINUX_SLL_OUTGOING
	binary.BigEndian.PutUint16(hdr[2:], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(hdr[4:], 6)
	copy(hdr[6:], []byte{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(hdr[14:], uint16(EtherTypeOf(pkt)))
	return append(hdr, pkt...)
}

// SLL2 is a Linux cooked v2 header (tcpdump -i any since libpcap 1.10).
func SLL2(pkt []byte) []byte {
	hdr := make([]byte, 20)
	binary.BigEndian.PutUint16(hdr[0:], uint16(EtherTypeOf(pkt)))
	binary.BigEndian.PutUint32(hdr[4:], 3) // ifindex
	binary.BigEndian.PutUint16(hdr[8:], 1) // ARPHRD_ETHER
	hdr[10] = 0                            // LINUX_SLL_HOST
	hdr[11] = 6
	copy(hdr[12:], []byte{2, 0, 0, 0, 0, 1})
	return append(hdr, pkt...)
}

// NullHeader is a BSD null/loopback header (the address family in order) before pkt.
func NullHeader(family uint32, order binary.ByteOrder, pkt []byte) []byte {
	hdr := make([]byte, 4)
	order.PutUint32(hdr, family)
	return append(hdr, pkt...)
}

// IPv4Fragments splits a UDP datagram (header and payload) into IPv4 fragments whose
// data parts have the given sizes (multiples of 8 except the last).
func IPv4Fragments(t testing.TB, src, dst netip.Addr, id uint16, udp []byte, sizes ...int) [][]byte {
	t.Helper()
	var out [][]byte
	off := 0
	for i, n := range sizes {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: id, Protocol: layers.IPProtocolUDP,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), FragOffset: uint16(off / 8)}
		if i < len(sizes)-1 {
			ip.Flags = layers.IPv4MoreFragments
		}
		out = append(out, Serialize(t, ip, gopacket.Payload(udp[off:off+n])))
		off += n
	}
	if off != len(udp) {
		t.Fatalf("fragment sizes add up to %d, datagram is %d", off, len(udp))
	}
	return out
}

// IPv6Fragments does the same with IPv6 fragment headers.
func IPv6Fragments(t testing.TB, src, dst netip.Addr, id uint32, udp []byte, sizes ...int) [][]byte {
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
		out = append(out, Serialize(t, ip, gopacket.Payload(append(fh, udp[off:off+n]...))))
		off += n
	}
	return out
}
