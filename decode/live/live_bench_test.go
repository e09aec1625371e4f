package live

import (
	"encoding/binary"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/internal/v5message"
	"github.com/discotrace/discotrace/ndjson"
)

// loopbackTriples is the shape of the load test: one peer pair on loopback, each
// 256-byte datagram seen as send, recv and read, 15 us apart (67k datagrams/s).
type loopbackTriples struct {
	n, i int
	at   time.Time
}

func (s *loopbackTriples) Read() (record.Record, error) {
	if s.i >= s.n {
		return record.Record{}, io.EOF
	}
	k := s.i % 3
	if k == 0 {
		s.at = s.at.Add(15 * time.Microsecond)
	}
	s.i++
	// Every datagram starts with bytes of its own, as a discv5 masking IV or a discv4
	// hash does: its identity in the decoder's tables.
	payload := make([]byte, 256)
	binary.BigEndian.PutUint64(payload, uint64(s.i/3)*0x9e3779b97f4a7c15)
	switch k {
	case 0:
		return datagram(s.at, record.DirOut, peerB, local, payload), nil
	case 1:
		return datagram(s.at, record.DirIn, peerB, local, payload), nil
	}
	return record.Record{Kind: record.Read, Time: s.at, Src: peerB, Dst: local, Len: 256}, nil
}

func (s *loopbackTriples) DeliveredUntil() time.Time { return time.Time{} }

// BenchmarkConsumer is what the consumer spends per record of that load with nothing shed
// (the high water above what the queue holds): decoding and NDJSON encoding, the rate the
// live path keeps up with without shedding. 40,000 datagrams, past the decoder's count
// bound, so that forgetting the oldest is counted too; queued and taken 1,024 records at a
// time, as the reader's bursts come (a queue holding the whole run would be the
// collector's work, not the consumer's).
func BenchmarkConsumer(b *testing.B) {
	const n = 3 * 40_000
	for b.Loop() {
		consume(b, &loopbackTriples{n: n, at: t0}, decode.NewDecoder(decode.Config{}), n)
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}

// consume runs n records of src through a pipeline as Run's consumer takes them, and
// fails unless every one was decoded.
func consume(b *testing.B, src Source, dec *decode.Decoder, n int) {
	const batch = 1024
	p := newPipeline(src, dec, encoded{ndjson.NewEncoder(io.Discard), new(ndjson.Renderer)}, Config{Capacity: batch, HighWater: batch, SkimWater: batch + 1, GuardWater: batch + 1})
	for done := false; !done; {
		for range batch {
			r, err := src.Read()
			if err != nil {
				done = true
				break
			}
			p.q.push(&r)
		}
		p.takeAll()
	}
	p.finish()
	if st := p.stats(); st.Fed != uint64(n) {
		b.Fatalf("%d of %d records decoded: %+v", st.Fed, n, st)
	}
}

// discv5Triples is livedecode's load (bench/livedecode): discv5 MESSAGE packets to the
// local node, whose ID the decoder knows, each seen as send, recv and read, 15 us apart;
// from one peer (pair) or each from a peer of its own (peers).
type discv5Triples struct {
	packets [][]byte
	srcs    []netip.AddrPort
	i       int
	at      time.Time
}

func newDiscv5Triples(b *testing.B, local enode.ID, n int, peers bool) *discv5Triples {
	build := v5message.NewBuilder(1)
	s := &discv5Triples{at: t0}
	peer := build.NodeID()
	for i := range n {
		src := peerB
		if peers {
			peer = build.NodeID()
			src = peerNo(i)
		}
		p, err := build.Message(local, peer, 256)
		if err != nil {
			b.Fatal(err)
		}
		s.packets, s.srcs = append(s.packets, p), append(s.srcs, src)
	}
	return s
}

func (s *discv5Triples) Read() (record.Record, error) {
	if s.i >= 3*len(s.packets) {
		return record.Record{}, io.EOF
	}
	k, d := s.i%3, s.i/3
	s.i++
	p, src := s.packets[d], s.srcs[d]
	switch k {
	case 0:
		s.at = s.at.Add(15 * time.Microsecond)
		r := datagram(s.at, record.DirOut, src, local, p)
		r.HasProc, r.PID, r.TID, r.Comm, r.Cookie = true, 7, 7, "loadgen", 1
		return r, nil
	case 1:
		r := datagram(s.at.Add(2*time.Microsecond), record.DirIn, src, local, p)
		r.Cookie = 2
		return r, nil
	}
	return record.Record{Kind: record.Read, Time: s.at.Add(5 * time.Microsecond), Src: src, Dst: local, Len: len(p),
		HasProc: true, PID: 7, TID: 8, Comm: "loadgen", Cookie: 2, HasQueueTime: true, QueueTime: 3 * time.Microsecond}, nil
}

func (s *discv5Triples) DeliveredUntil() time.Time { return time.Time{} }

// BenchmarkConsumerDiscv5 is BenchmarkConsumer on livedecode's traffic: headers unmasked
// with the local node's ID, each MESSAGE awaiting an answer that does not come, and in
// peers every datagram from a new address and node ID. 40,000 datagrams.
func BenchmarkConsumerDiscv5(b *testing.B) {
	const n = 40_000
	localID := v5message.NewBuilder(2).NodeID()
	for _, peers := range []bool{false, true} {
		name := "pair"
		if peers {
			name = "peers"
		}
		b.Run(name, func(b *testing.B) {
			src := newDiscv5Triples(b, localID, n, peers)
			for b.Loop() {
				src.i, src.at = 0, t0
				consume(b, src, decode.NewDecoder(decode.Config{Identity: decode.Identity{IDs: []enode.ID{localID}}}), 3*n)
			}
			b.ReportMetric(float64(3*n*b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// encoded is an Output that renders and encodes each event, as trace does.
type encoded struct {
	enc    *ndjson.Encoder
	render *ndjson.Renderer
}

func (e encoded) Write(ev result.Event) error { return e.enc.Encode(e.render.Render(ev, false)) }
func (e encoded) Flush() error                { return e.enc.Flush() }

// discard is an Output that writes nothing: what the queue itself costs.
type discard struct{}

func (discard) Write(result.Event) error { return nil }
func (discard) Flush() error             { return nil }

// BenchmarkQueueHandoff is the reader-to-consumer handoff through Run without a decoder
// or encoding (the consumer still builds each record's event): records/s offered by a
// reader that never waits, records/s the consumer took, and the share dropped.
func BenchmarkQueueHandoff(b *testing.B) {
	const n = 3 * 100_000
	var taken, dropped uint64
	for b.Loop() {
		st, err := Run(&loopbackTriples{n: n, at: t0}, nil, discard{}, Config{Ticks: make(chan time.Time)})
		if err != nil {
			b.Fatal(err)
		}
		if st.Read != st.Fed+st.Dropped {
			b.Fatalf("read %d, fed %d, dropped %d", st.Read, st.Fed, st.Dropped)
		}
		taken += st.Fed
		dropped += st.Dropped
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "offered/s")
	b.ReportMetric(float64(taken)/b.Elapsed().Seconds(), "taken/s")
	b.ReportMetric(float64(dropped)/float64(n*b.N), "dropped/record")
}

// BenchmarkSourceLoad is the load estimate's cost per datagram (the reader and the
// consumer each pay it) when every datagram comes from an address of its own, as in a
// flood of spoofed sources or a crowd of peers: each takes the least loaded counter.
func BenchmarkSourceLoad(b *testing.B) {
	l := newSourceLoad()
	i := 0
	for b.Loop() {
		i++
		l.add(flow{peerNo(i), local})
	}
}
