package netlab

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

func testDatagram(payloadLen int) UDP4 {
	payload := make([]byte, payloadLen)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	return UDP4{
		Src:     netip.MustParseAddrPort("10.199.1.1:40000"),
		Dst:     netip.MustParseAddrPort("10.199.1.2:30303"),
		ID:      0xbeef,
		Payload: payload,
	}
}

// verifies reports whether the Internet checksum over b (checksum field included) is valid.
func verifies(b []byte, initial uint32) bool { return checksum(b, initial) == 0 }

func udpValid(p []byte) bool {
	u := p[ipv4HeaderLen:]
	var pseudo [12]byte
	copy(pseudo[0:8], p[12:20])
	pseudo[9] = protoUDP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(u)))
	return verifies(u, sum16(pseudo[:], 0))
}

func TestPacketChecksums(t *testing.T) {
	for _, n := range []int{0, 1, 68, 69, 1000, 1001} {
		p, err := testDatagram(n).Packet()
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != 28+n {
			t.Errorf("payload %d: packet is %d bytes, want %d", n, len(p), 28+n)
		}
		if !verifies(p[:ipv4HeaderLen], 0) {
			t.Errorf("payload %d: IP header checksum does not verify", n)
		}
		if !udpValid(p) {
			t.Errorf("payload %d: UDP checksum does not verify", n)
		}
		CorruptUDPChecksum(p)
		if udpValid(p) {
			t.Errorf("payload %d: corrupted UDP checksum still verifies", n)
		}
		if binary.BigEndian.Uint16(p[26:]) == 0 {
			t.Errorf("payload %d: corrupted checksum is 0, which means no checksum", n)
		}
	}
}

func TestFragmentIPv4Reassembles(t *testing.T) {
	d := testDatagram(1000)
	p, err := d.Packet()
	if err != nil {
		t.Fatal(err)
	}
	frags, err := FragmentIPv4(p, 300)
	if err != nil {
		t.Fatal(err)
	}
	// 1008 bytes of UDP header and payload in pieces of 296 (300 rounded down to 8s).
	wantSizes := []int{296, 296, 296, 120}
	if len(frags) != len(wantSizes) {
		t.Fatalf("%d fragments, want %d", len(frags), len(wantSizes))
	}
	var whole []byte
	for i, f := range frags {
		if got := len(f) - ipv4HeaderLen; got != wantSizes[i] {
			t.Errorf("fragment %d carries %d bytes, want %d", i, got, wantSizes[i])
		}
		if int(binary.BigEndian.Uint16(f[2:])) != len(f) {
			t.Errorf("fragment %d: total length field %d, packet %d", i, binary.BigEndian.Uint16(f[2:]), len(f))
		}
		if !verifies(f[:ipv4HeaderLen], 0) {
			t.Errorf("fragment %d: header checksum does not verify", i)
		}
		if binary.BigEndian.Uint16(f[4:]) != d.ID {
			t.Errorf("fragment %d: id %#x, want %#x", i, binary.BigEndian.Uint16(f[4:]), d.ID)
		}
		flags := binary.BigEndian.Uint16(f[6:])
		if off := int(flags&ipv4OffMask) * 8; off != len(whole) {
			t.Errorf("fragment %d: offset %d, want %d", i, off, len(whole))
		}
		if more, last := flags&ipv4FlagMF != 0, i == len(frags)-1; more == last {
			t.Errorf("fragment %d: more-fragments flag %v on fragment %d of %d", i, more, i, len(frags))
		}
		whole = append(whole, f[ipv4HeaderLen:]...)
	}
	if !bytes.Equal(whole, p[ipv4HeaderLen:]) {
		t.Error("fragments joined do not give back the UDP header and payload")
	}
}

func TestFragmentIPv4RefusesWhatCannotBeSplit(t *testing.T) {
	p, _ := testDatagram(100).Packet()
	if _, err := FragmentIPv4(p, 200); err == nil {
		t.Error("a datagram that fits one fragment was split")
	}
	if _, err := FragmentIPv4(p, 7); err == nil {
		t.Error("fragments of fewer than 8 bytes were made")
	}
}

func TestCountersParse(t *testing.T) {
	snmp := "Ip: Forwarding DefaultTTL ReasmTimeout\nIp: 1 64 3\n" +
		"Tcp: RtoMin MaxConn\nTcp: 200 -1\n" +
		"Udp: InDatagrams RcvbufErrors\nUdp: 10 7\n"
	snmp6 := "Ip6InReceives                   \t5\nUdp6InCsumErrors                \t2\n"
	c := Counters{}
	if err := parseHeaderValuePairs([]byte(snmp), c); err != nil {
		t.Fatal(err)
	}
	if err := parseNameValueLines([]byte(snmp6), c); err != nil {
		t.Fatal(err)
	}
	want := Counters{
		"IpForwarding": 1, "IpDefaultTTL": 64, "IpReasmTimeout": 3,
		"TcpRtoMin": 200, "TcpMaxConn": -1,
		"UdpInDatagrams": 10, "UdpRcvbufErrors": 7,
		"Ip6InReceives": 5, "Udp6InCsumErrors": 2,
	}
	if c.String() != want.String() {
		t.Errorf("parsed\n%s\nwant\n%s", c, want)
	}
	after := Counters{"UdpRcvbufErrors": 9, "UdpInDatagrams": 10}
	if d := after.Since(c); len(d) != 1 || d["UdpRcvbufErrors"] != 2 {
		t.Errorf("Since = %v, want only UdpRcvbufErrors 2", d)
	}
	if err := parseHeaderValuePairs([]byte("Udp: A B\nUdp: 1\n"), Counters{}); err == nil {
		t.Error("names and values of different counts were accepted")
	}
}
