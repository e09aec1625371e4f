package decode

import (
	"crypto/ecdsa"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// decodeGethIdentity runs records through a Decoder with the given identity and returns
// its events.
func decodeGethIdentity(t *testing.T, id Identity, recs []*record.Record) []*ndjson.Event {
	t.Helper()
	d := NewDecoder(Config{Identity: id})
	var evs []*ndjson.Event
	emit := func(ev result.Event) { evs = append(evs, ndjson.FromResult(ev, false)) }
	for _, r := range recs {
		d.Feed(r, emit)
	}
	d.Advance(recs[len(recs)-1].Time.Add(5*time.Second), emit)
	d.Flush(emit)
	return evs
}

// establishedTotals lists the total_ns of the established handshakes, in output order.
func establishedTotals(evs []*ndjson.Event) []int64 {
	var out []int64
	for _, ev := range evs {
		if ev.Type == ndjson.TypeHandshake && ev.Outcome == string(result.Established) {
			out = append(out, *ev.TotalNs)
		}
	}
	return out
}

// The local go-ethereum node a starts a session with b by asking it for nodes: its
// FINDNODE rides in the HANDSHAKE, and b's NODES answers it. Without b's key nothing of
// that session decrypts (a's keys come from an ephemeral secret): given only a's ID, or
// only a's key, the trace still shows the handshake established and the request the
// HANDSHAKE carried answered, one exchange per HANDSHAKE, and nothing failed.
func TestGethDiscv5WithoutTheRecipientsKey(t *testing.T) {
	a, b := newGethNode(t, disctest.KeyA), newGethNode(t, disctest.KeyB)
	udpA := a.listenV5(t)
	udpB := b.listenV5(t)
	if _, err := udpA.Findnode(udpB.Self(), []uint{256}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	recs := a.conn.records()
	want := establishedTotals(decodeGethIdentity(t, Identity{Keys: []*ecdsa.PrivateKey{b.key}}, recs))
	for name, id := range map[string]Identity{
		"a's ID":  {IDs: []enode.ID{a.ln.ID()}},
		"a's key": {Keys: []*ecdsa.PrivateKey{a.key}},
	} {
		evs := decodeGethIdentity(t, id, recs)
		// (a's first packets go out masked with b's ID, unknown until b's answer names it:
		// their send events cannot say what they are, the handshake says it later.)
		established, carried := 0, 0
		for _, ev := range evs {
			switch {
			case ev.Type == ndjson.TypeHandshake && ev.Outcome == string(result.Established) && ev.Initiator == a.conn.local.String():
				established++
			case ev.Type == ndjson.TypeExchange && ev.Req == undecryptedName && ev.Outcome == string(result.Answered) && ev.Initiator == a.conn.local.String():
				carried++
			case ev.Outcome == string(result.Failed):
				t.Errorf("%s: %s %s failed %s", name, ev.Type, ev.Req, ev.Cause)
			}
		}
		if established == 0 || carried != established {
			t.Errorf("%s: %d handshakes from a established, %d requests carried in them answered", name, established, carried)
		}
		if got := establishedTotals(evs); !slices.Equal(got, want) {
			t.Errorf("%s: handshakes established in %v ns, with b's key in %v", name, got, want)
		}
	}
}

// With no key and no ID given, a's discv5 traffic with b is held undecoded until
// something names the nodes: here b's discv4 PING, 600 ms later, names b, whose ID
// unmasks a's packets, whose src-id names a, whose ID unmasks b's. Replayed in the
// order they happened, both directions interleaved, they give the verdicts of IDs known
// all along: the handshake established with the round trips of IDs known up front, its
// request answered, nothing failed (issue 10, item 7: replayed one direction at a time, the handshake took
// 622 ms and failed, and its PONG and NODES became failed requests).
func TestGethDiscv5HeldBothWaysReplayedInOrder(t *testing.T) {
	a, b := newGethNode(t, disctest.KeyA), newGethNode(t, disctest.KeyB)
	udpA := a.listenV5(t)
	udpB := b.listenV5(t)
	if _, err := udpA.Findnode(udpB.Self(), []uint{256}); err != nil {
		t.Fatal(err)
	}
	if _, err := udpA.Ping(udpB.Self()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	recs := a.conn.records()
	last := recs[len(recs)-1].Time
	ping, _, err := v4wire.Encode(b.key, &v4wire.Ping{Version: 4, From: v4wire.NewEndpoint(b.conn.local, 0), To: v4wire.NewEndpoint(a.conn.local, 0),
		Expiration: uint64(last.Add(20 * time.Second).Unix())})
	if err != nil {
		t.Fatal(err)
	}
	recs = append(recs, &record.Record{Kind: record.Datagram, Time: last.Add(600 * time.Millisecond), Dir: record.DirIn,
		Src: b.conn.local, Dst: a.conn.local, Len: len(ping), Payload: ping})

	evs := decodeGethIdentity(t, Identity{}, recs)
	// The round trips of IDs known all along.
	want := establishedTotals(decodeGethIdentity(t, Identity{IDs: []enode.ID{a.ln.ID(), b.ln.ID()}}, recs))
	if got := establishedTotals(evs); len(want) != 1 || !slices.Equal(got, want) {
		t.Errorf("handshakes established in %v ns, with the IDs known all along in %v", got, want)
	}
	established, answered := 0, 0
	for _, ev := range evs {
		switch {
		case ev.Type == ndjson.TypeHandshake && ev.Outcome == string(result.Established):
			established++
		case ev.Type == ndjson.TypeExchange && ev.Outcome == string(result.Answered):
			answered++
		case (ev.Type == ndjson.TypeHandshake || ev.Type == ndjson.TypeExchange) && ev.Req != "PING/v4":
			t.Errorf("%s %s %s %s %s > %s", ev.Type, ev.Req, ev.Outcome, ev.Cause, ev.Initiator, ev.Recipient)
		}
	}
	if established != 1 || answered == 0 {
		t.Errorf("%d handshakes established, %d exchanges answered; want 1 and some", established, answered)
	}
}

// Under loss (every third datagram reaching a dropped by its firewall), a's calls to b
// meet timeouts, repeated challenges and requests resent in HANDSHAKEs. Decoded with
// b's key (the recipient's: everything opens) and with only a's ID (nothing of the
// sessions a starts opens), the verdicts must agree: the same handshakes with the same
// outcomes, each request a HANDSHAKE carried once, with its decrypted twin's outcome,
// and no failure the keyed decode does not have. A handshake whose response the
// firewall dropped is established all the same: the recipient sent it, so it derived the
// keys, and the session carries a's next requests (issue 10, item 5); the request the
// HANDSHAKE carried is what failed.
func TestGethDiscv5UnderLossWithAndWithoutKey(t *testing.T) {
	a, b := newGethNode(t, disctest.KeyA), newGethNode(t, disctest.KeyB)
	var n int
	a.conn.lose = func() bool { n++; return n%3 == 2 }
	udpA := a.listenV5(t)
	udpB := b.listenV5(t)
	calls := map[bool]int{}
	for i := 0; i < 6; i++ {
		_, err := udpA.Findnode(udpB.Self(), []uint{256})
		calls[err == nil]++
	}
	t.Logf("a's FINDNODE calls: %d answered, %d failed", calls[true], calls[false])
	time.Sleep(50 * time.Millisecond)
	recs := a.conn.records()
	type key struct{ typ, t, req, outcome, cause string }
	summary := func(id Identity) (map[key]int, []string) {
		m := make(map[key]int)
		var lines []string
		for _, ev := range decodeGethIdentity(t, id, recs) {
			if ev.Type != ndjson.TypeHandshake && ev.Type != ndjson.TypeExchange || ev.Initiator != a.conn.local.String() {
				continue
			}
			m[key{ev.Type, ev.Time, ev.Req, ev.Outcome, ev.Cause}]++
			lines = append(lines, fmt.Sprintf("%s %s %s %s %s", ev.Type, ev.Time[17:], ev.Req, ev.Outcome, ev.Cause))
		}
		return m, lines
	}
	keyed, keyedLines := summary(Identity{Keys: []*ecdsa.PrivateKey{b.key}})
	blind, blindLines := summary(Identity{IDs: []enode.ID{a.ln.ID()}})
	report := func() string {
		return "with b's key:\n  " + strings.Join(keyedLines, "\n  ") + "\nwith a's ID:\n  " + strings.Join(blindLines, "\n  ")
	}
	for k, n := range blind {
		want := k
		if k.typ == ndjson.TypeExchange {
			// Its decrypted twin, at the same time: the FINDNODE.
			want.req = "FINDNODE/v5"
		}
		if keyed[want] < n {
			t.Errorf("%d × %+v without the key, not with it\n%s", n, k, report())
		}
	}
	// A session that carries answered requests was established, whatever happened to
	// the response to its HANDSHAKE: the latest handshake before each is.
	var keys []key
	for k := range keyed {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y key) int { return strings.Compare(x.t, y.t) })
	var latest *key
	for i, k := range keys {
		switch {
		case k.typ == ndjson.TypeHandshake:
			latest = &keys[i]
		case k.outcome == string(result.Answered) && latest != nil && latest.outcome != string(result.Established):
			t.Errorf("%s answered at %s in a session whose handshake is reported %s %s\n%s", k.req, k.t, latest.outcome, latest.cause, report())
		}
	}
	for k, n := range keyed {
		if k.typ == ndjson.TypeHandshake && blind[k] != n {
			t.Errorf("%d × %+v with the key, %d without\n%s", n, k, blind[k], report())
		}
	}
	t.Log(report())
}
