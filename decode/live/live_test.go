package live

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

var (
	local = netip.MustParseAddrPort("10.0.0.1:30303")
	peerB = netip.MustParseAddrPort("10.0.0.2:30303")
	flood = netip.MustParseAddrPort("10.0.0.66:30303")
)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ping(t testing.TB, key *ecdsa.PrivateKey, from, to netip.AddrPort) []byte {
	return disctest.V4Encode(t, key, &v4wire.Ping{Version: 4, From: v4wire.NewEndpoint(from, 0), To: v4wire.NewEndpoint(to, 0),
		Expiration: uint64(t0.Add(20 * time.Second).Unix())})
}

func datagram(at time.Time, dir record.Direction, src, dst netip.AddrPort, payload []byte) record.Record {
	return record.Record{Kind: record.Datagram, Time: at, Dir: dir, Src: src, Dst: dst, Len: len(payload), Payload: payload}
}

// peerNo is the i-th of many peers, each an address of its own in 10.1.0.0 and up
// (clear of local and peerB).
func peerNo(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1 + byte(i>>16), byte(i >> 8), byte(i)}), 30303)
}

// fakeSource serves a script of records, and a DeliveredUntil the test sets.
type fakeSource struct {
	recs      []record.Record
	delivered time.Time
	done      chan struct{} // closed when Read reaches the end of the script
}

func (s *fakeSource) Read() (record.Record, error) {
	if len(s.recs) == 0 {
		if s.done != nil {
			close(s.done)
			s.done = nil
		}
		return record.Record{}, io.EOF
	}
	r := s.recs[0]
	s.recs = s.recs[1:]
	return r, nil
}

func (s *fakeSource) DeliveredUntil() time.Time { return s.delivered }

// collected keeps the events written, rendered; the first Write waits for hold, when set.
type collected struct {
	events  []*ndjson.Event
	hold    chan struct{}
	flushes int
}

func (c *collected) Write(ev result.Event) error {
	if c.hold != nil {
		<-c.hold
		c.hold = nil
	}
	c.events = append(c.events, ndjson.FromResult(ev, false))
	return nil
}

func (c *collected) Flush() error { c.flushes++; return nil }

func (c *collected) ofType(typ string) []*ndjson.Event {
	var out []*ndjson.Event
	for _, ev := range c.events {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func (c *collected) dump() string {
	s := ""
	for _, ev := range c.events {
		if ev.Type == ndjson.TypeRecv || ev.Type == ndjson.TypeSend {
			continue
		}
		s += fmt.Sprintf("  %s %s %s %s %s %s\n", ev.Type, ev.Time, ev.Req, ev.Outcome, ev.Cause, ev.Since)
	}
	return s
}

// takeAll processes everything queued, as Run does.
func (p *pipeline) takeAll() {
	for batch, _ := p.q.take(nil); len(batch) > 0; batch, _ = p.q.take(batch) {
		p.takeBatch(batch)
	}
}

// The local node PINGs B at t0, and B's PONG comes 50 ms later; but the PONG sits in the
// queue behind thousands of records of other peers while 0.8 s of wall clock passes,
// longer than the 500 ms the PING waits. Time is the records': the exchange is answered.
// The wall clock moves it on only once the queue is empty.
func TestAnswerQueuedBehindABurstIsAnswered(t *testing.T) {
	keyA, keyB := newKey(t), newKey(t)
	src := &fakeSource{}
	out := &collected{}
	p := newPipeline(src, decode.NewDecoder(decode.Config{}), out, Config{})

	req := ping(t, keyA, local, peerB)
	r := datagram(t0, record.DirOut, local, peerB, req)
	p.q.push(&r)
	p.takeAll()
	src.delivered = t0.Add(100 * time.Millisecond)
	p.tick()

	// The burst: 3000 datagrams of 3000 other peers, the PONG in the middle of it.
	const burst = 3000
	for i := range burst {
		at := t0.Add(200*time.Millisecond + time.Duration(i)*30*time.Microsecond)
		other := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 30303)
		r := datagram(at, record.DirIn, other, local, []byte("not discovery"))
		p.q.push(&r)
		if i == burst/2 {
			pong := disctest.V4Encode(t, keyB, &v4wire.Pong{To: v4wire.NewEndpoint(local, 0), ReplyTok: req[:32], Expiration: uint64(t0.Add(20 * time.Second).Unix())})
			r := datagram(t0.Add(50*time.Millisecond), record.DirIn, peerB, local, pong)
			p.q.push(&r)
		}
	}
	// 0.8 s of wall clock later the ring is empty, but the queue is not.
	src.delivered = t0.Add(900 * time.Millisecond)
	p.tick()
	if exs := out.ofType(ndjson.TypeExchange); len(exs) != 0 {
		t.Fatalf("an exchange was decided while its answer was still queued:\n%s", out.dump())
	}
	p.takeAll()
	p.tick()
	p.finish()

	exs := out.ofType(ndjson.TypeExchange)
	if len(exs) != 1 || exs[0].Req != "PING/v4" || exs[0].Outcome != "answered" {
		t.Fatalf("want one PING/v4 exchange answered, got:\n%s", out.dump())
	}
	if st := p.stats(); st.Dropped+st.Undecoded != 0 || len(out.ofType(ndjson.TypeShed)) != 0 {
		t.Errorf("shed with a queue below its high water: %+v", st)
	}
}

// A reader far faster than the output: the queue fills and the rest is dropped. Every
// record read is written or counted, once: read = written + dropped, and the shed records
// add up to the drops. The output holds its first event until the source is exhausted:
// whatever the schedule, a full queue, at most one record taken, the rest dropped.
func TestQueueFullDropsAreCountedOnce(t *testing.T) {
	for _, decoded := range []bool{false, true} {
		t.Run(fmt.Sprintf("decoded=%v", decoded), func(t *testing.T) {
			const n, capacity = 1000, 16
			src := &fakeSource{done: make(chan struct{})}
			for i := range n {
				src.recs = append(src.recs, datagram(t0.Add(time.Duration(i)*time.Millisecond), record.DirIn, peerB, local, []byte{byte(i)}))
			}
			out := &collected{hold: src.done}
			var dec *decode.Decoder
			if decoded {
				dec = decode.NewDecoder(decode.Config{})
			}
			// SkimWater above the capacity: this is about drops, not undecoded datagrams.
			st, err := Run(src, dec, out, Config{Capacity: capacity, HighWater: capacity, SkimWater: capacity + 1, Ticks: make(chan time.Time)})
			if err != nil {
				t.Fatal(err)
			}
			records := len(out.ofType(ndjson.TypeRecv))
			sheds := out.ofType(ndjson.TypeShed)
			var shedCount uint64
			for _, ev := range sheds {
				shedCount += *ev.Count
				if *ev.Undecoded != 0 {
					t.Errorf("shed event with %d undecoded: nothing was skimmed", *ev.Undecoded)
				}
				if ev.Since == "" || ev.Since > ev.Time {
					t.Errorf("shed event spans %q to %q", ev.Since, ev.Time)
				}
			}
			if st.Read != n || st.Fed != uint64(records) || st.Read != st.Fed+st.Dropped || shedCount != st.Dropped {
				t.Fatalf("read %d, %d written (fed %d), dropped %d, shed events count %d: want read = written + dropped = %d, shed = dropped",
					st.Read, records, st.Fed, st.Dropped, shedCount, n)
			}
			// The consumer takes one record (then waits in the output), before or after
			// the reader filled the queue.
			if lo, hi := uint64(n-1-capacity), uint64(n-capacity); st.Dropped < lo || st.Dropped > hi {
				t.Errorf("dropped %d, want %d or %d: a full queue of %d, and one record taken or not", st.Dropped, lo, hi, capacity)
			}
			if uint64(len(sheds)) != st.Reports || len(sheds) == 0 {
				t.Errorf("%d shed events, %d reports", len(sheds), st.Reports)
			}
			for i, ev := range out.events { // numbered in output order, with or without a decoder
				if ev.Seq != uint64(i+1) {
					t.Fatalf("event %d has seq %d", i+1, ev.Seq)
				}
			}
		})
	}
}

// One peer floods the local node while B keeps pinging it, and the queue stands above its
// high water: B's datagrams are still decoded, the flood's are reported without "disc"
// and counted as undecoded. Shedding is reported once a second of record time, and once
// more at the end.
func TestFloodFromOnePeerDoesNotBlindTheOthers(t *testing.T) {
	keyB, keyF := newKey(t), newKey(t)
	src := &fakeSource{}
	out := &collected{}
	const capacity = 256
	p := newPipeline(src, decode.NewDecoder(decode.Config{}), out, Config{Capacity: capacity})
	fromB, fromF := ping(t, keyB, peerB, local), ping(t, keyF, flood, local)
	at := t0
	for range 4 { // four rounds of a queue filled to 200 of 256: 192 of the flood, 8 of B
		for i := range 200 {
			at = at.Add(3 * time.Millisecond)
			r := datagram(at, record.DirIn, flood, local, fromF)
			if i%25 == 0 {
				r = datagram(at, record.DirIn, peerB, local, fromB)
			}
			p.q.push(&r)
		}
		p.takeAll()
	}
	p.finish()

	var floodDecoded, floodUndecoded, bDecoded int
	for _, ev := range out.ofType(ndjson.TypeRecv) {
		switch {
		case ev.Src == peerB.String() && ev.Disc != nil && ev.Disc.Kind == "PING":
			bDecoded++
		case ev.Src == peerB.String():
			t.Errorf("B's datagram at %s without its PING decoded", ev.Time)
		case ev.Disc == nil:
			floodUndecoded++
		default:
			floodDecoded++
		}
	}
	st := p.stats()
	var undecoded uint64
	for _, ev := range out.ofType(ndjson.TypeShed) {
		undecoded += *ev.Undecoded
	}
	t.Logf("B: %d decoded; flood: %d decoded, %d undecoded; %d shed events", bDecoded, floodDecoded, floodUndecoded, st.Reports)
	if bDecoded != 32 {
		t.Errorf("%d of B's 32 datagrams decoded", bDecoded)
	}
	if floodUndecoded == 0 || floodDecoded == 0 {
		t.Errorf("flood: %d decoded, %d undecoded: want both (undecoded while the queue is deep)", floodDecoded, floodUndecoded)
	}
	if st.Undecoded != uint64(floodUndecoded) || undecoded != st.Undecoded {
		t.Errorf("%d datagrams without disc, %d counted undecoded, %d in shed events", floodUndecoded, st.Undecoded, undecoded)
	}
	// 2.4 s of record time with shedding in each round: a report within the run, one at the end.
	if st.Reports < 2 {
		t.Errorf("%d shed events over 2.4 s of shedding, want one a second and one at the end:\n%s", st.Reports, out.dump())
	}
	// Their spans follow each other without overlap; each but the last spans a second.
	sheds := out.ofType(ndjson.TypeShed)
	for i, ev := range sheds {
		since, at := mustTime(t, ev.Since), mustTime(t, ev.Time)
		if i > 0 && since.Before(mustTime(t, sheds[i-1].Time)) {
			t.Errorf("shed event %d starts at %v, before the previous one ended", i, since)
		}
		if i < len(sheds)-1 && at.Sub(since) < time.Second {
			t.Errorf("shed event %d spans %v: more than one a second", i, at.Sub(since))
		}
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return at
}

// The input ends (SIGINT, --duration) with a request still waiting: Run flushes the
// decoder, and the exchange shows as open.
func TestRunFlushesAtTheEnd(t *testing.T) {
	req := ping(t, newKey(t), local, peerB)
	src := &fakeSource{recs: []record.Record{datagram(t0, record.DirOut, local, peerB, req)}}
	out := &collected{}
	if _, err := Run(src, decode.NewDecoder(decode.Config{}), out, Config{}); err != nil {
		t.Fatal(err)
	}
	exs := out.ofType(ndjson.TypeExchange)
	if len(exs) != 1 || exs[0].Outcome != "open" || out.flushes == 0 {
		t.Fatalf("want the PING's exchange open and the output flushed (%d flushes):\n%s", out.flushes, out.dump())
	}
}

// Under extreme pressure (the queue at its skim mark) every datagram is reported
// undecoded, whoever sent it; reads are still decoded.
func TestSkimAtTheSkimMark(t *testing.T) {
	out := &collected{}
	p := newPipeline(&fakeSource{}, decode.NewDecoder(decode.Config{}), out, Config{Capacity: 64})
	for i := range 64 {
		peer := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, 0, byte(i)}), 30303)
		r := datagram(t0.Add(time.Duration(i)*time.Millisecond), record.DirIn, peer, local, []byte("x"))
		if i%2 == 1 {
			r = record.Record{Kind: record.Read, Time: r.Time, Src: peer, Dst: local, Len: 1}
		}
		p.q.push(&r)
	}
	p.takeAll()
	// Taken at depths 63 down to 0: the datagrams taken at depth >= 56 are skimmed.
	if st := p.stats(); st.Undecoded != 4 || st.Fed != 60 {
		t.Errorf("undecoded %d, fed %d: want the 4 datagrams taken at depth >= 56 skimmed, the rest fed", st.Undecoded, st.Fed)
	}
}

// A flood of spoofed source addresses must not grow the load table, nor hide a real
// heavy sender among them.
func TestSourceLoadIsBoundedAndKeepsTheHeavy(t *testing.T) {
	l := newSourceLoad()
	heavyAddr := flow{netip.MustParseAddrPort("192.0.2.1:30303"), local}
	var heavy bool
	for i := range 200_000 {
		if i%4 == 0 {
			heavy = l.add(heavyAddr)
			continue
		}
		spoofed := flow{peerNo(i), local}
		if l.add(spoofed) {
			t.Fatalf("spoofed address %v, seen once, is heavy", spoofed)
		}
	}
	if len(l.heap) > maxSources || len(l.index) != len(l.heap) {
		t.Fatalf("%d counters, %d indexed: want at most %d", len(l.heap), len(l.index), maxSources)
	}
	if !heavy {
		t.Fatal("a sender of a quarter of the datagrams is not heavy")
	}
	for i, slot := range l.heap { // the heap, the slots and the index agree
		c := l.counts[slot]
		if l.index[c.addr] != slot || int(c.pos) != i || (i > 0 && l.counts[l.heap[(i-1)/2]].count > c.count) {
			t.Fatalf("heap broken at %d", i)
		}
	}
}

// A flood fills the queue only up to its guard length: the rest stays for the other
// peers, whose datagrams are queued while the flood's are dropped and counted. The
// kernel's drops of a flood (its receive buffer overflowing) are the flood's too.
func TestAFloodCannotFillTheQueue(t *testing.T) {
	for _, withDrops := range []bool{false, true} {
		t.Run(fmt.Sprintf("with kernel drops %v", withDrops), func(t *testing.T) {
			keyB, keyF := newKey(t), newKey(t)
			src := &fakeSource{}
			out := &collected{}
			p := newPipeline(src, decode.NewDecoder(decode.Config{}), out, Config{Capacity: 64})
			fromB, fromF := ping(t, keyB, peerB, local), ping(t, keyF, flood, local)
			at := t0
			for i := range 1000 {
				at = at.Add(time.Millisecond)
				r := datagram(at, record.DirIn, flood, local, fromF)
				if withDrops && i%2 == 1 {
					r = record.Record{Kind: record.Drop, Time: at, Src: flood, Dst: local, Reason: "SOCKET_RCVBUFF"}
				}
				if i%100 == 99 {
					r = datagram(at, record.DirIn, peerB, local, fromB)
				}
				p.q.push(&r)
			}
			if n := p.q.len(); n >= 64 {
				t.Fatalf("the flood filled the queue: %d of 64", n)
			}
			p.takeAll()
			p.finish()
			b := 0
			for _, ev := range out.ofType(ndjson.TypeRecv) {
				if ev.Src == peerB.String() {
					b++
				}
			}
			st := p.stats()
			if b != 10 || st.Dropped == 0 || st.Read != st.Fed+st.Undecoded+st.Dropped {
				t.Errorf("%d of B's 10 datagrams written; stats %+v", b, st)
			}
		})
	}
}

// failingOutput fails its failAt-th write, and counts the writes it was asked for.
type failingOutput struct{ writes, failAt int }

func (o *failingOutput) Write(result.Event) error {
	o.writes++
	if o.writes == o.failAt {
		return errors.New("disk full")
	}
	return nil
}

func (o *failingOutput) Flush() error { return nil }

// A write error ends Run at once, with the error: nothing is written after it, though the
// rest of the batch it came in was queued already.
func TestRunStopsAtAWriteError(t *testing.T) {
	var recs []record.Record
	for i := range 500 {
		recs = append(recs, datagram(t0.Add(time.Duration(i)*time.Millisecond), record.DirIn, peerB, local, []byte("not discovery")))
	}
	src := &fakeSource{recs: slices.Clone(recs), done: make(chan struct{})}
	out := &failingOutput{failAt: 3}
	_, err := Run(src, nil, out, Config{Ticks: make(chan time.Time)})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Run returned %v, want the write error", err)
	}
	if out.writes != 3 {
		t.Errorf("%d writes asked for, want 3: none after the one that failed", out.writes)
	}

	// Queued as one batch, the records after the failed write are not even processed.
	out = &failingOutput{failAt: 3}
	p := newPipeline(&fakeSource{}, nil, out, Config{})
	for _, r := range recs {
		p.q.push(&r)
	}
	p.takeAll()
	if st := p.stats(); st.Fed != 3 || out.writes != 3 {
		t.Errorf("one batch of %d: %d processed, %d writes asked for; want 3 and 3", len(recs), st.Fed, out.writes)
	}
}
