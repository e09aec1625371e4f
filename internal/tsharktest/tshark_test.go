package tsharktest

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// A datagram to a port another protocol registered (DNS) whose bytes are no such
// message is read as data, not as a malformed packet of that protocol: ports here are
// ephemeral, and a discv4 PING once landed on one a dissector claimed. A UDP header
// claiming more bytes than its packet holds is still malformed: the check stays on.
func TestReadDissectsOnlyOwnLayers(t *testing.T) {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, Flags: layers.IPv4DontFragment,
		SrcIP: []byte{127, 0, 0, 1}, DstIP: []byte{127, 0, 0, 1}}
	udp := &layers.UDP{SrcPort: 51396, DstPort: 53}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 132) // a DNS header claiming 0xffff questions, then nothing
	copy(payload, []byte{0x12, 0x34, 0x01, 0x00, 0xff, 0xff})
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dns-port.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	frame := buf.Bytes()
	bad := bytes.Clone(frame)
	binary.BigEndian.PutUint16(bad[20+4:], uint16(len(frame)-20+50)) // the UDP length
	for _, p := range [][]byte{frame, bad} {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(p), Length: len(p)}, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got := Read(t, path)
	if len(got) != 2 || got[0].Malformed || got[0].DstPort != "53" || got[0].Checksums != "1,1" || !got[1].Malformed {
		t.Fatalf("tshark read %+v; want a well-formed datagram to port 53 with good checksums, then a malformed one", got)
	}
}
