package decode

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/discv4"
	"github.com/discotrace/discotrace/decode/discv5"
	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// The shared captures (see ../../shared/testdata/README.md): real go-ethereum traffic
// between node A (10.99.0.1) and devp2p testers, decoded with the README's keys.

// decodeCapture runs a capture through ReadCapture and a Decoder holding keys, as
// `discotrace decode` does (Config.Capture).
func decodeCapture(t testing.TB, name string, keys ...string) []*ndjson.Event {
	t.Helper()
	return decodeCaptureAs(t, name, true, keys...)
}

// decodeCaptureAs is decodeCapture with Config.Capture set to asCapture.
func decodeCaptureAs(t testing.TB, name string, asCapture bool, keys ...string) []*ndjson.Event {
	t.Helper()
	var id Identity
	for _, k := range keys {
		key, err := crypto.HexToECDSA(k)
		if err != nil {
			t.Fatal(err)
		}
		id.Keys = append(id.Keys, key)
	}
	f, err := os.Open(disctest.CapturePath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := NewDecoder(Config{Identity: id, Capture: asCapture})
	var evs []*ndjson.Event
	emit := func(ev result.Event) { evs = append(evs, ndjson.FromResult(ev, false)) }
	if err := capture.Read(f, func(r *record.Record) error { d.Feed(r, emit); return nil }); err != nil {
		t.Fatal(err)
	}
	d.Flush(emit)
	return evs
}

// packetKinds counts datagram events by proto/kind/msg, with "!" for a decoding error.
func packetKinds(evs []*ndjson.Event) map[string]int {
	out := make(map[string]int)
	for _, ev := range evs {
		if ev.Disc == nil || ev.Type != ndjson.TypePacket {
			continue
		}
		k := ev.Disc.Proto + "/" + ev.Disc.Kind
		if ev.Disc.Msg != "" {
			k += "/" + ev.Disc.Msg
		}
		if ev.Disc.Error != "" {
			k += "!"
		}
		out[k]++
	}
	return out
}

// outcomes counts handshake and exchange events as "type req outcome cause".
func outcomes(evs []*ndjson.Event) map[string]int {
	out := make(map[string]int)
	for _, ev := range evs {
		if ev.Type == ndjson.TypeHandshake || ev.Type == ndjson.TypeExchange || ev.Type == ndjson.TypeAnomaly {
			out[strings.Join(strings.Fields(fmt.Sprint(ev.Type, " ", ev.Req, ev.Anomaly, " ", ev.Outcome, " ", ev.Cause)), " ")]++
		}
	}
	return out
}

func checkCounts(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s %q: %d, want %d", what, k, got[k], n)
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s %q: %d, want none", what, k, n)
		}
	}
}

func ofType(evs []*ndjson.Event, typ string) []*ndjson.Event {
	var out []*ndjson.Event
	for _, ev := range evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func TestCaptureDevp2pDiscovery(t *testing.T) {
	evs := decodeCapture(t, "devp2p-discovery.pcap", disctest.KeyA)
	checkCounts(t, "packets", packetKinds(evs), map[string]int{
		"discv4/PING": 4, "discv4/PONG": 4, "discv4/ENRREQUEST": 2, "discv4/ENRRESPONSE": 2,
		"discv5/MESSAGE!":  2, // the random first packets
		"discv5/WHOAREYOU": 2, "discv5/HANDSHAKE/PING/v5": 1, "discv5/MESSAGE/PONG/v5": 1,
		"discv5/HANDSHAKE/FINDNODE/v5": 1, "discv5/MESSAGE/NODES/v5": 1,
	})
	checkCounts(t, "outcomes", outcomes(evs), map[string]int{
		"exchange PING/v4 answered": 4, "exchange ENRREQUEST/v4 answered": 2,
		"exchange PING/v5 answered": 1, "exchange FINDNODE/v5 answered": 1,
		"handshake established": 2,
	})

	// The discv5 ping: B's random MESSAGE, A's WHOAREYOU echoing its nonce, B's
	// HANDSHAKE carrying PING, A's PONG with the same request ID.
	pkts := ofType(evs, ndjson.TypePacket)
	if len(pkts) != 20 {
		t.Fatalf("%d packets, want 20", len(pkts))
	}
	msg, way, hs, pong := pkts[12].Disc, pkts[13].Disc, pkts[14].Disc, pkts[15].Disc
	if msg.Kind != discv5.KindMessage || way.Kind != discv5.KindWhoareyou || hs.Kind != discv5.KindHandshake || pong.Kind != discv5.KindMessage {
		t.Fatalf("sequence %s %s %s %s", msg.Kind, way.Kind, hs.Kind, pong.Kind)
	}
	if way.Nonce != msg.Nonce || hs.Msg != "PING/v5" || pong.Msg != "PONG/v5" || pong.ReqID != hs.ReqID || hs.ReqID == "" {
		t.Fatalf("nonces %s/%s, %s req %s → %s req %s", msg.Nonce, way.Nonce, hs.Msg, hs.ReqID, pong.Msg, pong.ReqID)
	}
	// The endpoints the packets name: B's PING says where it is and where it sends to;
	// A's PONG (discv4 and discv5) says where it saw B, here without NAT: B's address.
	if ping := pkts[0].Disc; ping.Kind != discv4.KindPing || ping.From != "10.99.0.2:30303" || ping.To != "10.99.0.1:30303" ||
		ping.Expiration == "" {
		t.Errorf("discv4 PING: %+v", ping)
	}
	if v4pong := pkts[1].Disc; v4pong.Kind != discv4.KindPong || v4pong.To != "10.99.0.2:30303" || v4pong.From != "" {
		t.Errorf("discv4 PONG: %+v", v4pong)
	}
	if pong.To != "10.99.0.2:30303" {
		t.Errorf("discv5 PONG to %q, want B's address", pong.To)
	}
	if fn := pkts[18].Disc; fn.Msg != "FINDNODE/v5" || len(fn.Distances) != 1 || fn.Distances[0] != 0 {
		t.Errorf("discv5 FINDNODE (devp2p resolve asks for distance 0, the node's own record): %+v", fn)
	}
	idA, idB := "969b0a11b8a56bacf1ac18f219e7e376e7c213b7e7e7e46cc70a5dd086daff2a", "ae6856aac48989adf1e084945cbdd86a2fa8dc4bddd8a8f69dba48572eec07fb"
	if msg.SrcID != idB || msg.DstID != idA || way.DstID != idB || hs.SrcID != idB {
		t.Fatalf("ids: msg %s→%s, whoareyou →%s, handshake %s", msg.SrcID, msg.DstID, way.DstID, hs.SrcID)
	}

	// Both handshakes, with RTTs from the capture's microsecond timestamps.
	want := []struct {
		time                     string
		whoareyou, handshake, tl int64
	}{
		{"2026-11-23T19:56:07.937004000Z", 3063000, 346000, 3718000},
		{"2026-11-23T19:56:07.979989000Z", 160000, 438000, 938000},
	}
	hss := ofType(evs, ndjson.TypeHandshake)
	for i, w := range want {
		h := hss[i]
		if h.Time != w.time || h.Outcome != string(result.Established) || h.Attempts != 1 ||
			*h.WhoareyouRTTNs != w.whoareyou || *h.HandshakeRTTNs != w.handshake || *h.TotalNs != w.tl {
			t.Errorf("handshake %d: %s %s attempts %d rtts %d %d %d, want %+v", i, h.Time, h.Outcome, h.Attempts,
				*h.WhoareyouRTTNs, *h.HandshakeRTTNs, *h.TotalNs, w)
		}
		if h.Initiator != "10.99.0.2:30303" || h.Recipient != "10.99.0.1:30303" || h.InitiatorID != idB || h.RecipientID != idA {
			t.Errorf("handshake %d: %s (%s) → %s (%s)", i, h.Initiator, h.InitiatorID, h.Recipient, h.RecipientID)
		}
	}
	for _, ex := range ofType(evs, ndjson.TypeExchange) {
		if ex.RTTNs == nil || *ex.RTTNs <= 0 {
			t.Errorf("exchange %s without rtt", ex.Req)
		}
	}
}

// Without any key, handshakes are still followed from the headers (node IDs come from
// the discv4 traffic first); only the messages inside stay closed. The request each
// HANDSHAKE carries (B's PING and FINDNODE) is an exchange all the same, answered by the
// recipient's first response.
func TestCaptureDevp2pDiscoveryWithoutKeys(t *testing.T) {
	evs := decodeCapture(t, "devp2p-discovery.pcap")
	checkCounts(t, "outcomes", outcomes(evs), map[string]int{
		"exchange PING/v4 answered": 4, "exchange ENRREQUEST/v4 answered": 2, "handshake established": 2,
		"exchange MESSAGE/v5 answered": 2,
	})
	checkCounts(t, "packets", packetKinds(evs), map[string]int{
		"discv4/PING": 4, "discv4/PONG": 4, "discv4/ENRREQUEST": 2, "discv4/ENRRESPONSE": 2,
		"discv5/MESSAGE!": 4, "discv5/WHOAREYOU": 2, "discv5/HANDSHAKE!": 2,
	})
	h := ofType(evs, ndjson.TypeHandshake)[0]
	if *h.WhoareyouRTTNs != 3063000 || *h.HandshakeRTTNs != 346000 {
		t.Fatalf("rtts %d %d", *h.WhoareyouRTTNs, *h.HandshakeRTTNs)
	}
}

// geth behind `reject with icmp type port-unreachable`: the failures are ICMP-classified.
func TestCaptureRejectICMP(t *testing.T) {
	evs := decodeCapture(t, "reject.pcap", disctest.KeyA, disctest.KeyG, disctest.KeyB, disctest.KeyC)
	checkCounts(t, "packets", packetKinds(evs), map[string]int{
		"discv4/PING": 5, "discv4/PONG": 2, "discv4/FINDNODE": 2, "discv4/ENRREQUEST": 2,
		"discv5/MESSAGE!": 9, "discv5/WHOAREYOU": 1,
	})
	if n := len(ofType(evs, ndjson.TypeICMP)); n != 9 {
		t.Errorf("%d icmp events, want 9", n)
	}
	type failure struct{ typ, time, from, to, req, outcome, cause string }
	want := []failure{
		{"exchange", "19:56:38.573670", "10.99.0.1:30303", "10.99.0.3:30303", "MESSAGE/v5", "failed", "icmp_unreachable"},
		{"exchange", "19:56:38.573805", "10.99.0.1:30303", "10.99.0.2:30303", "MESSAGE/v5", "failed", "no_response"},
		{"exchange", "19:56:38.870594", "10.99.0.1:30303", "10.99.0.2:30303", "FINDNODE/v4", "failed", "no_response"},
		{"exchange", "19:56:38.870729", "10.99.0.1:30303", "10.99.0.2:30303", "ENRREQUEST/v4", "failed", "no_response"},
		// B pings G three times with the same bytes: one exchange, three ICMP errors.
		{"exchange", "19:56:39.022943", "10.99.0.2:30303", "10.99.0.1:30303", "PING/v4", "failed", "icmp_unreachable"},
		// G's PING: B's PONG is on the wire, and G's own firewall rejects it. G sends the
		// same bytes again while it still waits: one exchange, two ICMP errors.
		{"exchange", "19:56:39.215275", "10.99.0.1:30303", "10.99.0.2:30303", "PING/v4", "failed", "icmp_unreachable"},
		{"exchange", "19:56:39.371715", "10.99.0.1:30303", "10.99.0.2:30303", "FINDNODE/v4", "failed", "no_response"},
		{"exchange", "19:56:39.274860", "10.99.0.1:30303", "10.99.0.3:30303", "MESSAGE/v5", "failed", "icmp_unreachable"},
		// B's discv5 ping: its random first packet bounces.
		{"handshake", "19:56:39.561335", "10.99.0.2:30303", "10.99.0.1:30303", "", "failed", "icmp_unreachable"},
		// Within a second of the previous one to C: the kernel rate-limits the ICMP error.
		{"exchange", "19:56:39.975199", "10.99.0.1:30303", "10.99.0.3:30303", "MESSAGE/v5", "failed", "no_response"},
		{"exchange", "19:56:40.373662", "10.99.0.1:30303", "10.99.0.2:30303", "ENRREQUEST/v4", "failed", "no_response"},
		{"exchange", "19:56:40.275805", "10.99.0.1:30303", "10.99.0.2:30303", "MESSAGE/v5", "failed", "icmp_unreachable"},
		// G never answers B's challenge: decided at the end of the capture, which comes
		// before the grace for a late HANDSHAKE ends but after the challenge expired.
		{"handshake", "19:56:39.574983", "10.99.0.1:30303", "10.99.0.2:30303", "", "failed", "no_response"},
		{"exchange", "19:56:40.676308", "10.99.0.1:30303", "10.99.0.3:30303", "MESSAGE/v5", "open", ""},
		{"exchange", "19:56:40.976952", "10.99.0.1:30303", "10.99.0.2:30303", "MESSAGE/v5", "open", ""},
	}
	var got []failure
	for _, ev := range evs {
		if ev.Type != ndjson.TypeExchange && ev.Type != ndjson.TypeHandshake {
			continue
		}
		got = append(got, failure{ev.Type, ev.Time[11:26], ev.Initiator, ev.Recipient, ev.Req, ev.Outcome, ev.Cause})
		if ev.Cause != string(result.ICMPUnreachable) {
			continue
		}
		icmps := 0
		for _, e := range ev.Evidence {
			if e.Type == ndjson.TypeICMP && strings.HasPrefix(e.Detail, "icmp 3/3 port unreachable") {
				icmps++
			}
		}
		wantICMP := 1
		switch ev.Time[11:26] {
		case "19:56:39.022943":
			wantICMP = 3
		case "19:56:39.215275":
			wantICMP = 2
		}
		if icmps != wantICMP {
			t.Errorf("%s %s: %d ICMP evidence items, want %d: %+v", ev.Req, ev.Time, icmps, wantICMP, ev.Evidence)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d handshakes and exchanges, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// The conformance suites, deliberately malformed packets included.
func TestCaptureConformanceSuites(t *testing.T) {
	evs := decodeCapture(t, "suites-devp2p.pcap", disctest.KeyA)
	checkCounts(t, "packets", packetKinds(evs), map[string]int{
		"unknown/!":        1, // A's packet to B sent before B's node ID was seen
		"discv4/!":         1, // packet type 66
		"discv4/PING":      26,
		"discv4/PING!":     1, // expiration 2^64-now: expired for go-ethereum
		"discv4/FINDNODE!": 1, // the same
		"discv4/PONG":      20,
		"discv4/FINDNODE":  5,
		"discv4/NEIGHBORS": 3, "discv4/ENRREQUEST": 1, "discv4/ENRRESPONSE": 1,
		"discv5/MESSAGE!": 17, "discv5/WHOAREYOU": 20,
		"discv5/HANDSHAKE!": 1, "discv5/HANDSHAKE/PING/v5": 10, "discv5/HANDSHAKE/FINDNODE/v5": 4, "discv5/HANDSHAKE/TALKREQ/v5": 1,
		"discv5/MESSAGE/PING/v5": 7, "discv5/MESSAGE/PING/v5!": 2, "discv5/MESSAGE/PONG/v5": 17,
		"discv5/MESSAGE/FINDNODE/v5": 2, "discv5/MESSAGE/FINDNODE/v5!": 1, "discv5/MESSAGE/NODES/v5": 7,
		"discv5/MESSAGE/TALKREQ/v5": 1, "discv5/MESSAGE/TALKRESP/v5": 2,
	})
	checkCounts(t, "outcomes", outcomes(evs), map[string]int{
		"exchange PING/v4 answered": 19, "exchange PING/v4 failed no_response": 5, "exchange PING/v4 failed icmp_unreachable": 1,
		"exchange PING/v4 open": 1, "exchange ENRREQUEST/v4 answered": 1,
		"exchange FINDNODE/v4 answered": 2, "exchange FINDNODE/v4 failed no_response": 1, "exchange FINDNODE/v4 open": 2,
		// The suite's PING and FINDNODE with expiration 2^64-1: A ignores both.
		"exchange PING/v4 failed expired": 1, "exchange FINDNODE/v4 failed expired": 1,
		"exchange PING/v5 answered": 17, "exchange PING/v5 failed rejected": 1,
		"exchange FINDNODE/v5 answered": 6, "exchange FINDNODE/v5 failed rejected": 1, "exchange TALKREQ/v5 answered": 2,
		"handshake established": 15, "handshake failed no_response": 3, "handshake failed rejected": 1,
		// The PING with a 9-byte request ID in a HANDSHAKE: A refuses the message.
		"exchange MESSAGE/v5 failed rejected": 1,
		// No anomaly: the testers' PINGs inside HANDSHAKEs carry an enr-seq one below
		// the record beside them, which is not a regression.
	})
	expired := 0
	for _, ev := range ofType(evs, ndjson.TypePacket) {
		if ev.Disc.Proto == packet.ProtoV4 && ev.Disc.Kind == "" && !strings.Contains(ev.Disc.Error, "unknown packet type 66") {
			t.Errorf("discv4 packet not decoded: %+v", ev.Disc)
		}
		if strings.HasPrefix(ev.Disc.Error, "expired on arrival") {
			expired++
		}
	}
	if expired != 2 {
		t.Errorf("%d packets expired on arrival, want 2", expired)
	}
	// The suite's TALKREQ test names its protocol; every discv4 FINDNODE names a target.
	talks, targets := 0, 0
	for _, ev := range ofType(evs, ndjson.TypePacket) {
		switch d := ev.Disc; {
		case d.Msg == "TALKREQ/v5":
			talks++
			if d.TalkProtocol != "test-protocol" {
				t.Errorf("TALKREQ protocol %q", d.TalkProtocol)
			}
		case d.Proto == packet.ProtoV4 && d.Kind == discv4.KindFindnode:
			targets++
			if len(d.Target) != 64 {
				t.Errorf("FINDNODE target %q", d.Target)
			}
		}
	}
	if talks != 2 || targets != 6 {
		t.Errorf("%d TALKREQs, %d discv4 FINDNODEs, want 2 and 6", talks, targets)
	}
}

// The same capture gives the same events, byte for byte.
// The same capture decodes to the same bytes every time, and Config.Capture (datagrams
// not queued for reads, which a capture never has) changes none of them.
func TestCaptureDeterministic(t *testing.T) {
	for _, name := range []string{"devp2p-discovery.pcap", "reject.pcap", "suites-devp2p.pcap"} {
		encode := func(asCapture bool) []byte {
			var buf bytes.Buffer
			enc := ndjson.NewEncoder(&buf)
			for _, ev := range decodeCaptureAs(t, name, asCapture, disctest.KeyA, disctest.KeyG, disctest.KeyB, disctest.KeyC) {
				if err := enc.Encode(ev); err != nil {
					t.Fatal(err)
				}
			}
			if err := enc.Flush(); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}
		a, b := encode(true), encode(true)
		if !bytes.Equal(a, b) || len(a) == 0 {
			t.Errorf("%s: two runs differ (%d and %d bytes)", name, len(a), len(b))
		}
		if c := encode(false); !bytes.Equal(a, c) {
			t.Errorf("%s: decoded as a capture and not, the outputs differ (%d and %d bytes)", name, len(a), len(c))
		}
	}
}

// Every event is numbered in output order, and evidence cites the event it rests on:
// the cited event came earlier, with the type and time the evidence gives.
func TestCaptureEvidenceCitesEvents(t *testing.T) {
	cited := 0
	for _, name := range []string{"devp2p-discovery.pcap", "reject.pcap", "suites-devp2p.pcap"} {
		evs := decodeCapture(t, name, disctest.KeyA, disctest.KeyG, disctest.KeyB, disctest.KeyC)
		for i, ev := range evs {
			if ev.Seq != uint64(i+1) {
				t.Fatalf("%s: event %d has seq %d", name, i+1, ev.Seq)
			}
			for _, e := range ev.Evidence {
				if e.Seq == 0 {
					continue
				}
				cited++
				if e.Seq >= ev.Seq {
					t.Errorf("%s: event %d cites a later event %d", name, ev.Seq, e.Seq)
					continue
				}
				if c := evs[e.Seq-1]; c.Type != e.Type || c.Time != e.Time {
					t.Errorf("%s: event %d cites %d as a %s at %s, but it is a %s at %s", name, ev.Seq, e.Seq, e.Type, e.Time, c.Type, c.Time)
				}
			}
		}
	}
	if cited < 10 {
		t.Errorf("%d evidence items cite an event, want the failures' datagrams and ICMP errors cited", cited)
	}
}
