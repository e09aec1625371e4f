package ndjson

import (
	"bytes"
	"encoding/json"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/discv4"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// disc names what a packet says beyond its kind: a FINDNODE target as the node ID an
// operator can look up, a TALKREQ protocol that survives JSON whatever its bytes, and an
// expiration only when RFC 3339 can write it.
func TestDiscFields(t *testing.T) {
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1795463766, 0)
	target := v4wire.EncodePubkey(&key.PublicKey)
	fn := new(Renderer).discFor(&packet.Packet{Proto: packet.ProtoV4, Kind: discv4.KindFindnode, Target: target[:], Expiration: discv4.ExpirationTime(1795463786)}, at)
	if want := enode.PubkeyToIDV4(&key.PublicKey).String(); fn.Target != want || fn.Expiration != "2026-11-23T19:56:26Z" {
		t.Errorf("FINDNODE target %s expiration %s, want %s and 2026-11-23T19:56:26Z", fn.Target, fn.Expiration, want)
	}
	if far := new(Renderer).discFor(&packet.Packet{Proto: packet.ProtoV4, Kind: discv4.KindPing, Expiration: discv4.ExpirationTime(math.MaxUint64)}, at); far.Expiration != "" || far.Error == "" {
		t.Errorf("expiration 2^64-1: %q, error %q; want none, and the expired-on-arrival error", far.Expiration, far.Error)
	}
	for proto, want := range map[string]string{"portal": "portal", "a b~": "a b~", "\x00\x01": "0x0001", "é": "0xc3a9"} {
		if got := new(Renderer).discFor(&packet.Packet{Proto: packet.ProtoV5, Msg: &v5wire.TalkRequest{Protocol: proto}}, at).TalkProtocol; got != want {
			t.Errorf("TALKREQ protocol %q shows as %q, want %q", proto, got, want)
		}
	}
}

// A Renderer reuses its event: each rendering must equal FromResult's, with nothing
// left over from the one before (a disc, evidence, a count).
func TestRendererLeavesNothingOver(t *testing.T) {
	at := time.Unix(1795463766, 0)
	peer, local := netip.MustParseAddrPort("10.0.0.2:30303"), netip.MustParseAddrPort("10.0.0.1:30303")
	id := enode.ID{1, 2, 3}
	results := []result.Event{
		&result.Observation{Head: result.Head{Seq: 1, Time: at}, Record: record.Record{Kind: record.Datagram, Dir: record.DirIn, Src: peer, Dst: local, Len: 3, Payload: []byte{1, 2, 3}},
			Packet: &packet.Packet{Proto: packet.ProtoV4, Kind: discv4.KindPing, SrcID: id, HasSrcID: true}, PacketTime: at},
		&result.Exchange{Head: result.Head{Seq: 2, Time: at}, Initiator: local, Recipient: peer, RecipientID: &id, Req: "PING/v4", Outcome: result.Failed, Cause: result.NoResponse,
			Evidence: []result.Evidence{{Seq: 1, Time: at, Observed: result.TypeSend, Detail: "PING/v4"}, {Seq: 0, Time: at, Observed: result.TypeLost, Detail: "2 lost"}}},
		&result.Observation{Head: result.Head{Seq: 3, Time: at}, Record: record.Record{Kind: record.Lost, Count: 2, Since: at}},
		&result.Exchange{Head: result.Head{Seq: 4, Time: at}, Initiator: local, Recipient: peer, Req: "PING/v4", Outcome: result.Failed, Cause: result.AppDrop,
			Evidence: []result.Evidence{{Seq: 1, Time: at, Observed: result.TypeRead, Detail: "read"}}},
		&result.Observation{Head: result.Head{Seq: 5, Time: at}, Record: record.Record{Kind: record.Read, Src: peer, Dst: local, Len: 3}},
	}
	// One packet judged at several times (expired from the third), and more addresses and
	// node IDs than the renderer remembers, at times a second and more apart.
	ping := &packet.Packet{Proto: packet.ProtoV4, Kind: discv4.KindPing, Expiration: at.Add(time.Second)}
	for i := range 12 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 1, byte(i % 6)}), 30303)
		tm := at.Add(time.Duration(i) * 700 * time.Millisecond)
		p := ping
		if i%2 == 1 {
			p = &packet.Packet{Proto: packet.ProtoV5, Kind: "MESSAGE", SrcID: enode.ID{byte(i % 5)}, HasSrcID: true, DstID: id, HasDstID: true}
		}
		results = append(results, &result.Observation{Head: result.Head{Seq: uint64(6 + i), Time: tm},
			Record: record.Record{Kind: record.Datagram, Dir: record.DirIn, Src: src, Dst: local, Len: 3}, Packet: p, PacketTime: tm},
			&result.Exchange{Head: result.Head{Seq: uint64(100 + i), Time: tm}, Initiator: src, Recipient: local, InitiatorID: &enode.ID{byte(i % 6)}, Req: "PING/v4", Outcome: result.Open})
	}
	// The same packet twice in a row, the second time expired: its disc is written anew.
	for _, tm := range []time.Time{at, at.Add(2 * time.Second)} {
		results = append(results, &result.Observation{Head: result.Head{Seq: 200, Time: tm},
			Record: record.Record{Kind: record.Datagram, Dir: record.DirIn, Src: peer, Dst: local, Len: 3}, Packet: ping, PacketTime: tm})
	}
	// Each is rendered twice, as a datagram's send and recv carry one packet, and written
	// by one encoder (which writes a disc it wrote before from memory) and by
	// encoding/json, against a fresh rendering.
	var r Renderer
	var lines bytes.Buffer
	enc := NewEncoder(&lines)
	for _, res := range results {
		fresh := FromResult(res, true)
		want, err := json.Marshal(fresh)
		if err != nil {
			t.Fatal(err)
		}
		fresh.V = SchemaVersion // as Encode sets it
		wantLine, err := json.Marshal(fresh)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			ev := r.Render(res, true)
			got, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			lines.Reset()
			if err := enc.Encode(ev); err != nil {
				t.Fatal(err)
			}
			if err := enc.Flush(); err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) || strings.TrimSuffix(lines.String(), "\n") != string(wantLine) {
				t.Errorf("rendered after others:\n%s\nencoded\n%s\nwant\n%s", got, lines.String(), wantLine)
			}
		}
	}
}

func TestRendererTimeIsTime(t *testing.T) {
	var r Renderer
	east := time.FixedZone("east", 3*3600)
	for _, tm := range []time.Time{
		{}, time.Unix(0, 0), time.Unix(0, 1), time.Unix(1795463766, 999_999_999), time.Unix(1795463767, 0),
		time.Unix(1795463767, 5).In(east), time.Unix(1795463767, 123_456_789), time.Unix(1795463766, 42),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC), time.Date(12000, 1, 1, 0, 0, 0, 7, time.UTC),
	} {
		if got, want := r.time(tm), Time(tm); got != want {
			t.Errorf("time %v: %q, want %q", tm, got, want)
		}
	}
}
