package decode

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/gopacket/gopacket/layers"

	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// A capture where the answer to a PING comes fragmented and loses its second fragment
// (a path whose MTU forces fragmentation, and a firewall that drops non-first
// fragments): the exchange fails for the fragment loss, decided when its timeout comes,
// not thirty seconds later when the kernel gives the datagram up.
func TestCaptureFragmentLossExplainsTimeout(t *testing.T) {
	local, peer := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	keyA, keyB := disctest.Key(t, disctest.KeyA), disctest.Key(t, disctest.KeyB)
	ping := disctest.V4Encode(t, keyA, &v4wire.Ping{Version: 4, Expiration: uint64(disctest.T0.Unix()) + 20,
		From: v4wire.NewEndpoint(local, 0), To: v4wire.NewEndpoint(peer, 0)})
	pong := disctest.V4Encode(t, keyB, &v4wire.Pong{To: v4wire.NewEndpoint(local, 0), ReplyTok: ping[:32], Expiration: uint64(disctest.T0.Unix()) + 20})
	udp := disctest.UDPDatagram(t, peer, local, pong)
	fr := disctest.IPv4Fragments(t, peer.Addr(), local.Addr(), 77, udp, 64, len(udp)-64)
	at := func(d time.Duration, pkt []byte) disctest.Frame {
		return disctest.Frame{TS: disctest.T0.Add(d), Data: pkt}
	}
	file := disctest.WritePcap(t, layers.LinkTypeRaw,
		at(0, disctest.UDPPacket(t, local, peer, ping)),
		at(2*time.Millisecond, fr[0]), // fr[1] never comes
		at(2*time.Second, disctest.UDPPacket(t, netip.MustParseAddrPort("10.0.0.9:9"), local, []byte("tick"))),
		at(40*time.Second, disctest.UDPPacket(t, netip.MustParseAddrPort("10.0.0.9:9"), local, []byte("tick"))))
	d := NewDecoder(Config{})
	var evs []*ndjson.Event
	emit := func(ev result.Event) { evs = append(evs, ndjson.FromResult(ev, false)) }
	if err := capture.Read(bytes.NewReader(file), func(r *record.Record) error { d.Feed(r, emit); return nil }); err != nil {
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
	if ex == nil || ex.Outcome != string(result.Failed) || ex.Cause != string(result.FragmentLoss) {
		t.Fatalf("exchange %+v", ex)
	}
}
