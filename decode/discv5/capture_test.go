package discv5

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"io"
	"net/netip"
	"os"
	"testing"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
)

// The shared captures (README beside them): real go-ethereum v1.17.10 traffic between
// node A (10.99.0.1, key 11..11) and the devp2p tool as node B (10.99.0.2, key 33..33).
var (
	pcapKeyA = mustKey(disctest.KeyA)
	pcapKeyB = mustKey(disctest.KeyB)
)

// readUDP reads the UDP datagrams of an Ethernet pcap with gopacket directly, so
// these tests do not depend on the package's capture reader. The payload is cut to the
// UDP header's length: small frames carry Ethernet padding.
func readUDP(t *testing.T, name string) []*record.Record {
	t.Helper()
	f, err := os.Open(disctest.CapturePath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*record.Record
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip == nil || udp == nil {
			continue
		}
		src, _ := netip.AddrFromSlice(ip.SrcIP)
		dst, _ := netip.AddrFromSlice(ip.DstIP)
		n := int(udp.Length) - 8
		payload := udp.Payload
		if len(payload) > n {
			payload = payload[:n]
		}
		recs = append(recs, &record.Record{
			Kind:    record.Datagram,
			Time:    ci.Timestamp,
			Src:     netip.AddrPortFrom(src.Unmap(), uint16(udp.SrcPort)),
			Dst:     netip.AddrPortFrom(dst.Unmap(), uint16(udp.DstPort)),
			Len:     n,
			Payload: bytes.Clone(payload),
		})
	}
	return recs
}

// devp2p-discovery.pcap: twelve discv4 packets, then two discv5 conversations
// (`devp2p discv5 ping`, `devp2p discv5 resolve`), each a fresh handshake:
// B→A random MESSAGE, A→B WHOAREYOU echoing its nonce, B→A HANDSHAKE (with B's ENR)
// carrying the request, A→B MESSAGE with the response.
func TestPcapDevp2pDiscovery(t *testing.T) {
	recs := readUDP(t, "devp2p-discovery.pcap")
	if len(recs) != 20 {
		t.Fatalf("%d datagrams, want 20", len(recs))
	}
	idA := enode.PubkeyToIDV4(&pcapKeyA.PublicKey)
	idB := enode.PubkeyToIDV4(&pcapKeyB.PublicKey)

	for _, tc := range []struct {
		name string
		keys []*ecdsa.PrivateKey
	}{
		{"key of A", []*ecdsa.PrivateKey{pcapKeyA}},
		{"keys of A and B", []*ecdsa.PrivateKey{pcapKeyA, pcapKeyB}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(tc.keys, 0)
			var got []packet.Packet
			var index []int
			for i, r := range recs {
				if p, ok := d.Decode(r); ok {
					got = append(got, p)
					index = append(index, i)
				}
			}
			if len(got) != 8 || index[0] != 12 {
				t.Fatalf("discv5 packets at %v, want the last 8 of 20", index)
			}
			for conv, wantMsg := range []struct{ req, resp string }{
				{"PING/v5", "PONG/v5"},
				{"FINDNODE/v5", "NODES/v5"},
			} {
				msg, way, hs, resp := got[4*conv], got[4*conv+1], got[4*conv+2], got[4*conv+3]

				if msg.Kind != KindMessage || !errors.Is(msg.Err, ErrRandomPacket) || msg.Msg != nil {
					t.Errorf("conv %d: first packet %s err %v, want a random MESSAGE", conv, msg.Kind, msg.Err)
				}
				checkIDs(t, msg, &idB, idA)

				if way.Kind != KindWhoareyou || way.Err != nil {
					t.Errorf("conv %d: second packet %s err %v, want WHOAREYOU", conv, way.Kind, way.Err)
				}
				if !bytes.Equal(way.Nonce, msg.Nonce) {
					t.Errorf("conv %d: WHOAREYOU nonce %x does not echo %x", conv, way.Nonce, msg.Nonce)
				}
				checkIDs(t, way, &idA, idB)
				if len(way.ChallengeData) != 63 || len(way.IDNonce) != 16 {
					t.Errorf("conv %d: challenge-data %d bytes, id-nonce %d", conv, len(way.ChallengeData), len(way.IDNonce))
				}

				if hs.Kind != KindHandshake || hs.Err != nil {
					t.Errorf("conv %d: third packet %s err %v, want a valid HANDSHAKE", conv, hs.Kind, hs.Err)
				}
				checkIDs(t, hs, &idB, idA)
				if hs.Msg == nil || hs.Msg.Name() != wantMsg.req {
					t.Fatalf("conv %d: handshake message %v, want %s", conv, hs.Msg, wantMsg.req)
				}
				if len(hs.Records) != 1 || hs.Records[0].ID() != idB {
					t.Errorf("conv %d: handshake records %v, want B's ENR", conv, hs.Records)
				}

				if resp.Kind != KindMessage || resp.Err != nil {
					t.Errorf("conv %d: fourth packet %s err %v, want a MESSAGE", conv, resp.Kind, resp.Err)
				}
				checkIDs(t, resp, &idA, idB)
				if resp.Msg == nil || resp.Msg.Name() != wantMsg.resp {
					t.Fatalf("conv %d: response %v, want %s", conv, resp.Msg, wantMsg.resp)
				}
				if !bytes.Equal(resp.Msg.RequestID(), hs.Msg.RequestID()) {
					t.Errorf("conv %d: response req-id %x, request %x", conv, resp.Msg.RequestID(), hs.Msg.RequestID())
				}
				switch m := resp.Msg.(type) {
				case *v5wire.Pong:
					// PONG tells B the address A saw it at.
					if m.ToPort != 30303 || m.ToIP.String() != "10.99.0.2" {
						t.Errorf("PONG to %v:%d, want 10.99.0.2:30303", m.ToIP, m.ToPort)
					}
				case *v5wire.Nodes:
					// resolve asks for distance 0: A answers with its own record.
					if !resp.HasNodes || resp.Nodes != 1 || len(resp.Records) != 1 || resp.Records[0].ID() != idA {
						t.Errorf("NODES %d records %v, want A's own", resp.Nodes, resp.Records)
					}
					if f := hs.Msg.(*v5wire.Findnode); len(f.Distances) != 1 || f.Distances[0] != 0 {
						t.Errorf("FINDNODE distances %v, want [0]", f.Distances)
					}
				}
			}
		})
	}

	t.Run("key of B only", func(t *testing.T) {
		// B is the initiator of both handshakes: without A's key nothing decrypts, but B's
		// packets to A unmask once A's ID is known.
		d := NewDecoder([]*ecdsa.PrivateKey{pcapKeyB}, 0)
		d.AddKnownID(idA)
		var errs []error
		for _, r := range recs {
			if p, ok := d.Decode(r); ok {
				errs = append(errs, p.Err)
			}
		}
		want := []error{ErrRandomPacket, nil, errInitiatorSide, ErrNoKey}
		want = append(want, want...)
		if len(errs) != len(want) {
			t.Fatalf("%d discv5 packets, want %d", len(errs), len(want))
		}
		for i := range want {
			if (want[i] == nil) != (errs[i] == nil) || (want[i] != nil && !errors.Is(errs[i], want[i])) {
				t.Errorf("packet %d: error %v, want %v", i, errs[i], want[i])
			}
		}
	})
}

// suites-devp2p.pcap: go-ethereum's discv5 conformance suite against A. With A's key,
// A's next packet to the sender of every packet A could not decrypt must be a
// WHOAREYOU, and every WHOAREYOU must echo the nonce of such a packet (a resend echoes
// the first one: HandshakeResend): the decoder's view of what A could read agrees with
// what A did. PingMultiIP's reuse of a session from another address
// decrypts (the keys are known) but is flagged, as A challenged it.
func TestPcapConformanceSuite(t *testing.T) {
	recs := readUDP(t, "suites-devp2p.pcap")
	if len(recs) != 152 { // 154 frames, 2 of them ICMP errors
		t.Fatalf("%d UDP datagrams, want 152", len(recs))
	}
	idA := enode.PubkeyToIDV4(&pcapKeyA.PublicKey)
	d := NewDecoder([]*ecdsa.PrivateKey{pcapKeyA}, 0)
	counts := make(map[string]int)
	unreadable := make(map[string]bool) // nonces of packets to A that A could not accept
	var challenged []string
	pending := make(map[netip.AddrPort]bool) // senders A owes a WHOAREYOU
	for _, r := range recs {
		p, ok := d.Decode(r)
		if !ok {
			counts["not discv5"]++
			continue
		}
		key := p.Kind
		if p.Msg != nil {
			key += " " + p.Msg.Name()
		}
		switch {
		case errors.Is(p.Err, ErrRandomPacket):
			key += " random"
		case errors.Is(p.Err, errOtherAddress):
			key += " other-address"
		case errors.Is(p.Err, errBadMessage):
			key += " bad-message"
		case p.Err != nil:
			t.Errorf("unexpected error %v on %s %s->%s", p.Err, p.Kind, r.Src, r.Dst)
		}
		counts[key]++
		nonce := string(p.Nonce)
		if p.DstID != idA && pending[r.Dst] {
			if p.Kind != KindWhoareyou {
				t.Errorf("A answered an unreadable packet from %s with %s, not WHOAREYOU", r.Dst, p.Kind)
			}
			delete(pending, r.Dst)
		}
		switch {
		case p.Kind == KindWhoareyou:
			if p.HasSrcID && p.SrcID != idA {
				t.Errorf("WHOAREYOU attributed to %v, want A", p.SrcID)
			}
			challenged = append(challenged, nonce)
		case p.DstID == idA && (errors.Is(p.Err, ErrRandomPacket) || errors.Is(p.Err, errOtherAddress)):
			unreadable[nonce] = true
			pending[r.Src] = true
		}
	}
	for addr := range pending {
		t.Errorf("A never answered the unreadable packet from %s", addr)
	}
	want := map[string]int{
		"not discv5":                        60, // discv4 suite and one A->B session from before the capture
		"MESSAGE random":                    17,
		"MESSAGE PING/v5 other-address":     2,
		"MESSAGE FINDNODE/v5 other-address": 1,
		"WHOAREYOU":                         20,
		"HANDSHAKE PING/v5":                 10,
		"HANDSHAKE FINDNODE/v5":             4,
		"HANDSHAKE TALKREQ/v5":              1,
		"HANDSHAKE bad-message":             1, // a request ID longer than 8 bytes, on purpose
		"MESSAGE PING/v5":                   7,
		"MESSAGE PONG/v5":                   17,
		"MESSAGE FINDNODE/v5":               2,
		"MESSAGE NODES/v5":                  7,
		"MESSAGE TALKREQ/v5":                1,
		"MESSAGE TALKRESP/v5":               2,
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s: %d, want %d", k, counts[k], n)
		}
	}
	for k, n := range counts {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s: %d", k, n)
		}
	}
	for _, n := range challenged {
		if !unreadable[n] {
			t.Errorf("WHOAREYOU for nonce %x answers no packet the decoder found unreadable to A", n)
		}
	}
	if len(challenged) != len(unreadable) {
		t.Errorf("%d WHOAREYOU for %d unreadable packets", len(challenged), len(unreadable))
	}
}
