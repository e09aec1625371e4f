package capture

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/record"
)

// FuzzReadCapture feeds whole files to the capture reader. It must never panic, keep its
// counts consistent, emit records that respect Len, and fail only with its documented
// errors.
//
//	go test -run '^$' -fuzz '^FuzzReadCapture$' -fuzztime 60s ./decode/capture
func FuzzReadCapture(f *testing.F) {
	for _, name := range []string{"devp2p-discovery.pcap", "reject.pcap"} {
		data, err := os.ReadFile(disctest.CapturePath(f, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// Small synthetic files reaching the other paths: pcapng with two link types, SLL2,
	// IPv4 and IPv6 fragments, ICMP errors.
	a, b := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	a6, b6 := netip.MustParseAddrPort("[2001:db8::1]:30303"), netip.MustParseAddrPort("[2001:db8::2]:30303")
	udp := disctest.UDPDatagram(f, a, b, bytes.Repeat([]byte{0x5a}, 120))
	fr4 := disctest.IPv4Fragments(f, a.Addr(), b.Addr(), 3, udp, 64, len(udp)-64)
	udp6 := disctest.UDPPacket(f, a6, b6, bytes.Repeat([]byte{0x6b}, 120))[40:]
	fr6 := disctest.IPv6Fragments(f, a6.Addr(), b6.Addr(), 4, udp6, 64, len(udp6)-64)
	frame := func(d time.Duration, data []byte, iface int) disctest.Frame {
		return disctest.Frame{TS: disctest.T0.Add(d), Data: data, Iface: iface}
	}
	f.Add(disctest.WritePcapng(f, []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL2},
		frame(0, disctest.Ethernet(layers.EthernetTypeIPv4, fr4[1]), 0),
		frame(1, disctest.SLL2(fr4[0]), 1),
		frame(2, disctest.SLL2(fr6[0]), 1),
		frame(3, disctest.Ethernet(layers.EthernetTypeIPv6, fr6[1]), 0),
	))
	f.Add(disctest.WritePcap(f, layers.LinkTypeRaw,
		frame(0, fr4[0], 0), frame(40*time.Second, fr6[1], 0), frame(41*time.Second, disctest.UDPPacket(f, a6, b6, []byte{1}), 0)))

	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		st, err := ReadStats(bytes.NewReader(data), func(r *record.Record) error {
			n++
			if len(r.Payload) > r.Len {
				t.Fatalf("payload %d > len %d: %+v", len(r.Payload), r.Len, r)
			}
			if r.Kind == record.Drop && r.Reason != record.ReasonFragReasmTimeout {
				t.Fatalf("drop reason %q", r.Reason)
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrNotCapture) && !errors.Is(err, ErrUnsupportedLink) && !errors.Is(err, ErrDamaged) {
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
