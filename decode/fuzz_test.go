package decode

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/gopacket/gopacket/layers"
)

// Fuzz targets for the parts that read untrusted bytes: a discv4 payload and a capture
// file. CI runs each for a bounded time:
//
//	go test -run '^$' -fuzz '^FuzzV4Decode$' -fuzztime 60s ./decode
//	go test -run '^$' -fuzz '^FuzzReadCapture$' -fuzztime 60s ./decode

// FuzzV4Decode feeds payloads to the discv4 decoder twice: as they are (almost always
// rejected by the hash check) and with the hash made valid, which reaches signature
// recovery and RLP decoding. It must never panic, accept exactly the hash-valid
// payloads, and give the same answer from its cache.
func FuzzV4Decode(f *testing.F) {
	for _, pkt := range v4CapturedPackets(f) {
		f.Add(pkt)
	}
	keyB := v4Key(f, v4TestKeyB)
	f.Add(v4Frame(f, keyB, 66, []byte{0xc1, 0x01}))
	f.Add(v4Frame(f, keyB, v4wire.NeighborsPacket, []byte{0xc3, 0xc1, 0xc0, 0x01}))
	f.Add(v4Frame(f, keyB, v4wire.ENRResponsePacket, []byte{0xc2, 0x80, 0xc0}))
	f.Add(make([]byte, v4HeadSize+1))

	d := newV4Decoder(8)
	f.Fuzz(func(t *testing.T, payload []byte) {
		check := func(pkt []byte, wantOK bool) {
			p, ok := d.Decode(v4Rec(pkt))
			if ok != wantOK {
				t.Fatalf("ok %v, want %v", ok, wantOK)
			}
			if !ok {
				return
			}
			if p.Proto != ProtoV4 || !bytes.Equal(p.Hash, pkt[:v4HashSize]) {
				t.Fatalf("proto %q hash %x", p.Proto, p.Hash)
			}
			if p.Err == nil && (p.Kind == "" || !p.HasSrcID) {
				t.Fatalf("decoded without error but kind %q, sender %v", p.Kind, p.HasSrcID)
			}
			if p.Nodes < len(p.Records) {
				t.Fatalf("%d records of %d nodes", len(p.Records), p.Nodes)
			}
			again, _ := d.Decode(v4Rec(bytes.Clone(pkt)))
			if again.Kind != p.Kind || again.SrcID != p.SrcID || v4ErrString(again.Err) != v4ErrString(p.Err) {
				t.Fatalf("cached %+v, first %+v", again, p)
			}
		}
		hashOK := len(payload) > v4HeadSize && bytes.Equal(payload[:v4HashSize], v4Keccak(payload[v4HashSize:]))
		check(payload, hashOK)
		if len(payload) > v4HeadSize {
			fixed := bytes.Clone(payload)
			v4Rehash(fixed)
			check(fixed, true)
		}
	})
}

func v4ErrString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func v4Keccak(b []byte) []byte {
	d := newV4Decoder(0)
	d.keccak.Write(b)
	out := make([]byte, v4HashSize)
	d.keccak.Read(out)
	return out
}

// FuzzReadCapture feeds whole files to the capture reader. It must never panic, keep its
// counts consistent, emit records that respect Len, and fail only with its documented
// errors.
func FuzzReadCapture(f *testing.F) {
	for _, name := range []string{"devp2p-discovery.pcap", "reject.pcap"} {
		data, err := os.ReadFile(filepath.Join(pcapDir(f), name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// Small synthetic files reaching the other paths: pcapng with two link types, SLL2,
	// IPv4 and IPv6 fragments, ICMP errors.
	a, b := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	a6, b6 := netip.MustParseAddrPort("[2001:db8::1]:30303"), netip.MustParseAddrPort("[2001:db8::2]:30303")
	udp := pcapUDPDatagram(f, a, b, bytes.Repeat([]byte{0x5a}, 120))
	fr4 := pcapIPv4Fragments(f, a.Addr(), b.Addr(), 3, udp, 64, len(udp)-64)
	udp6 := pcapUDPPacket(f, a6, b6, bytes.Repeat([]byte{0x6b}, 120))[40:]
	fr6 := pcapIPv6Fragments(f, a6.Addr(), b6.Addr(), 4, udp6, 64, len(udp6)-64)
	frame := func(d time.Duration, data []byte, iface int) pcapFrame {
		return pcapFrame{ts: pcapT0.Add(d), data: data, iface: iface}
	}
	f.Add(pcapngWrite(f, []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL2},
		frame(0, pcapEthernet(layers.EthernetTypeIPv4, fr4[1]), 0),
		frame(1, pcapSLL2(fr4[0]), 1),
		frame(2, pcapSLL2(fr6[0]), 1),
		frame(3, pcapEthernet(layers.EthernetTypeIPv6, fr6[1]), 0),
	))
	f.Add(pcapWrite(f, layers.LinkTypeRaw,
		frame(0, fr4[0], 0), frame(40*time.Second, fr6[1], 0), frame(41*time.Second, pcapUDPPacket(f, a6, b6, []byte{1}), 0)))

	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		st, err := ReadCaptureStats(bytes.NewReader(data), func(r *Record) error {
			n++
			if len(r.Payload) > r.Len {
				t.Fatalf("payload %d > len %d: %+v", len(r.Payload), r.Len, r)
			}
			if r.Kind == Drop && r.Reason != ReasonFragReasmTimeout {
				t.Fatalf("drop reason %q", r.Reason)
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrNotCapture) && !errors.Is(err, ErrUnsupportedLink) && !errors.Is(err, ErrCaptureDamaged) {
			t.Fatalf("undocumented error: %v", err)
		}
		if n != st.Datagrams+st.ICMPErrors+st.FragmentDrops {
			t.Fatalf("%d records emitted, stats %+v", n, st)
		}
		if sum := st.Datagrams + st.ICMPErrors + st.Fragments + st.Other + st.Malformed + st.UnsupportedLink; st.Frames+st.Reassembled != sum {
			t.Fatalf("stats do not add up: %+v", st)
		}
	})
}
