package decode

import (
	"crypto/ecdsa"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"

	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/discv4"
	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// captureRecords reads a shared capture's records.
func captureRecords(tb testing.TB, name string) []*record.Record {
	tb.Helper()
	f, err := os.Open(disctest.CapturePath(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var recs []*record.Record
	if err := capture.Read(f, func(r *record.Record) error { recs = append(recs, r.Clone()); return nil }); err != nil {
		tb.Fatal(err)
	}
	return recs
}

// FuzzDecoderFeed feeds arbitrary payloads, both ways, with an ICMP error and a drop
// quoting them: whatever the bytes, every record gives exactly one event of its own and
// nothing panics. Run: go test ./decode -fuzz FuzzDecoderFeed -fuzztime 30s
func FuzzDecoderFeed(f *testing.F) {
	key, _ := crypto.HexToECDSA(disctest.KeyA)
	ping, _, _ := v4wire.Encode(key, &v4wire.Ping{Version: 4, Expiration: 1 << 40})
	f.Add(ping, []byte{}, uint8(3), uint8(3))
	for _, name := range []string{"devp2p-discovery.pcap", "suites-devp2p.pcap"} {
		if p := os.Getenv("DISCOTRACE_TESTDATA"); p != "" || disctest.FileExists("/work/shared/testdata/pcap/"+name) {
			recs := captureRecords(f, name)
			for i := 0; i+1 < len(recs); i += 7 {
				f.Add(recs[i].Payload, recs[i+1].Payload, uint8(3), uint8(4))
			}
		}
	}
	f.Fuzz(func(t *testing.T, a, b []byte, typ, code uint8) {
		d := NewDecoder(Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{key}}})
		x, y := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
		now := time.Unix(1_800_000_000, 0)
		recs := []*record.Record{
			{Kind: record.Datagram, Src: x, Dst: y, Len: len(a), Payload: a},
			{Kind: record.Datagram, Src: y, Dst: x, Len: len(b), Payload: b},
			{Kind: record.ICMP, Src: netip.AddrPortFrom(y.Addr(), 0), Dst: netip.AddrPortFrom(x.Addr(), 0), ICMPType: typ, ICMPCode: code, QuotedSrc: x, QuotedDst: y, Len: len(a), Payload: a},
			{Kind: record.Datagram, Src: x, Dst: y, Len: len(a) + 1, Payload: a, Dir: record.DirOut, HasSendRet: true, SendRet: -int64(code)},
			{Kind: record.Read, Src: y, Dst: x, Len: len(b)},
			{Kind: record.Drop, Src: y, Dst: x, Reason: "SOCKET_RCVBUFF"},
			{Kind: record.Datagram, Src: y, Dst: x, Len: len(a), Payload: a},
		}
		own := 0
		emit := func(res result.Event) {
			ev := ndjson.FromResult(res, true)
			switch ev.Type {
			case ndjson.TypeHandshake, ndjson.TypeExchange, ndjson.TypeAnomaly, ndjson.TypeRevision:
			default:
				own++
			}
		}
		for i, r := range recs {
			r.Time = now.Add(time.Duration(i) * 300 * time.Millisecond)
			d.Feed(r, emit)
		}
		d.Flush(emit)
		if own != len(recs) {
			t.Fatalf("%d record events for %d records", own, len(recs))
		}
	})
}

// BenchmarkDecoderCapture decodes the conformance-suite capture end to end (wire
// decoding, signature recovery, discv5 decryption, tracking), a fresh Decoder per
// pass so that no cache carries over. It prints packets/s.
func BenchmarkDecoderCapture(b *testing.B) {
	recs := captureRecords(b, "suites-devp2p.pcap")
	key, _ := crypto.HexToECDSA(disctest.KeyA)
	events := 0
	emit := func(ev result.Event) { ndjson.FromResult(ev, false); events++ }
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d := NewDecoder(Config{Identity: Identity{Keys: []*ecdsa.PrivateKey{key}}})
		for _, r := range recs {
			d.Feed(r, emit)
		}
		d.Flush(emit)
	}
	b.ReportMetric(float64(len(recs)*b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(events)/float64(b.N), "events/pass")
}

// BenchmarkDecoderTrackingV4 measures what the Decoder adds to wire decoding: PING/PONG
// pairs whose signatures the discv4 cache already holds (as for retransmits and both
// directions of a traced host), so the figure is pairing, timers, evidence and events.
func BenchmarkDecoderTrackingV4(b *testing.B) {
	keys := []string{disctest.KeyA, disctest.KeyB}
	var recs []*record.Record
	now := time.Unix(1_800_000_000, 0)
	warm := discv4.NewDecoder()
	for i := 0; i < 1000; i++ {
		ka, _ := crypto.HexToECDSA(keys[i%2])
		kb, _ := crypto.HexToECDSA(keys[(i+1)%2])
		x := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 30303)
		y := netip.MustParseAddrPort("10.99.0.1:30303")
		ping, hash, _ := v4wire.Encode(ka, &v4wire.Ping{Version: 4, Expiration: uint64(now.Unix()) + 20, ENRSeq: uint64(i)})
		pong, _, _ := v4wire.Encode(kb, &v4wire.Pong{ReplyTok: hash, Expiration: uint64(now.Unix()) + 20})
		t := now.Add(time.Duration(i) * time.Millisecond)
		recs = append(recs,
			&record.Record{Kind: record.Datagram, Time: t, Src: x, Dst: y, Len: len(ping), Payload: ping},
			&record.Record{Kind: record.Datagram, Time: t.Add(300 * time.Microsecond), Src: y, Dst: x, Len: len(pong), Payload: pong})
	}
	for _, r := range recs {
		warm.Decode(r)
	}
	events := 0
	emit := func(ev result.Event) { ndjson.FromResult(ev, false); events++ }
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d := NewDecoder(Config{})
		d.v4 = warm
		for _, r := range recs {
			d.Feed(r, emit)
		}
		d.Flush(emit)
	}
	b.ReportMetric(float64(len(recs)*b.N)/b.Elapsed().Seconds(), "records/s")
	if events != b.N*3000 {
		b.Fatalf("%d events, want 3000 per pass (2000 packets, 1000 exchanges)", events/b.N)
	}
}
