package report

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/discotrace/discotrace/ndjson"
)

const (
	idLocal = "1111111111111111111111111111111111111111111111111111111111111111"
	idB     = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	idC     = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	local   = "10.0.0.1:30303"
	addrB   = "10.0.0.2:30303"
	addrC   = "10.0.0.3:30303"
)

func exchange(from, fromID, to, toID, outcome, cause string, rttNs int64) *ndjson.Event {
	ev := &ndjson.Event{V: 1, Type: ndjson.TypeExchange, Time: "2026-12-04T10:00:00.000000000Z",
		Initiator: from, InitiatorID: fromID, Recipient: to, RecipientID: toID, Req: "PING/v4", Outcome: outcome, Cause: cause}
	if rttNs > 0 {
		ev.RTTNs = &rttNs
	}
	return ev
}

func datagram(typ, src, srcID, dst, dstID string) *ndjson.Event {
	return &ndjson.Event{V: 1, Type: typ, Time: "2026-12-04T10:00:00.000000000Z", Src: src, Dst: dst,
		Disc: &ndjson.Disc{Proto: "discv4", Kind: "PING", SrcID: srcID, DstID: dstID}}
}

func peerNamed(t *testing.T, s *Summary, key string) *Peer {
	t.Helper()
	for i := range s.Peers {
		if s.Peers[i].ID == key || (s.Peers[i].ID == "" && len(s.Peers[i].Endpoints) > 0 && s.Peers[i].Endpoints[0] == key) {
			return &s.Peers[i]
		}
	}
	t.Fatalf("no peer %s among %+v", key, s.Peers)
	return nil
}

// A live trace: the local node's sends tell which side it is, so only the remote nodes
// are peers, and a peer known first by its address takes its node ID when a packet names it.
func TestPeersOfALiveTrace(t *testing.T) {
	a := New(Options{})
	a.Add(datagram(ndjson.TypeSend, local, idLocal, addrB, "")) // discv4: the recipient's ID is not on the wire
	a.Add(datagram(ndjson.TypeRecv, addrC, "", local, ""))      // no ID yet: C is known by its address
	a.Add(exchange(local, idLocal, addrB, "", "failed", "icmp_unreachable", 0))
	a.Add(datagram(ndjson.TypeRecv, addrC, idC, local, idLocal)) // now C's packet names it
	a.Add(exchange(local, idLocal, addrC, idC, "answered", "", 2_000_000))
	s := a.Summary()
	if len(s.Peers) != 2 {
		t.Fatalf("peers %+v, want B and C", s.Peers)
	}
	b, c := peerNamed(t, &s, addrB), peerNamed(t, &s, idC)
	if b.DatagramsOut != 1 || b.Exchanges.Failed != 1 || b.Causes["icmp_unreachable"] != 1 {
		t.Errorf("B: %+v", b)
	}
	if c.DatagramsIn != 2 || c.Exchanges.OK != 1 || c.ExchangeRTT == nil || c.ExchangeRTT.P50Ns != 2_000_000 {
		t.Errorf("C: %+v (its address-only packet and its named one are one peer)", c)
	}
	if s.Peers[0].Failures() != 1 {
		t.Errorf("worst first: the first peer is %+v", s.Peers[0])
	}
	if !reflect.DeepEqual(s.LocalIDs, []string{idLocal}) || !reflect.DeepEqual(s.LocalEndpoints, []string{local}) {
		t.Errorf("local node: %v %v", s.LocalIDs, s.LocalEndpoints)
	}
}

// In a capture the local node is known only by the IDs given: its address, listed as a
// peer until a packet names it, leaves the table then.
func TestLocalNodeOfACaptureLeavesThePeers(t *testing.T) {
	a := New(Options{LocalIDs: []string{idLocal}})
	a.Add(datagram(ndjson.TypePacket, addrB, idB, local, "")) // local's address, unnamed
	if s := a.Summary(); len(s.Peers) != 2 {
		t.Fatalf("before the local node is named: %+v, want B and the address %s", s.Peers, local)
	}
	a.Add(datagram(ndjson.TypePacket, local, idLocal, addrB, ""))
	s := a.Summary()
	if len(s.Peers) != 1 || s.Peers[0].ID != idB || s.Peers[0].DatagramsIn != 1 || s.Peers[0].DatagramsOut != 1 {
		t.Fatalf("peers %+v, want B alone, 1 in and 1 out", s.Peers)
	}
}

// A node first seen at an address without its ID, then named at another address: the
// address's counts fold into the node.
func TestAddressFoldsIntoItsNode(t *testing.T) {
	a := New(Options{LocalIDs: []string{idLocal}})
	a.Add(datagram(ndjson.TypePacket, "10.0.0.9:1", idB, local, idLocal))
	a.Add(exchange(local, idLocal, addrB, "", "failed", "no_response", 0))
	a.Add(datagram(ndjson.TypePacket, addrB, idB, local, idLocal))
	s := a.Summary()
	if len(s.Peers) != 1 {
		t.Fatalf("peers %+v, want one", s.Peers)
	}
	p := s.Peers[0]
	if p.ID != idB || p.Exchanges.Failed != 1 || p.DatagramsIn != 2 || !reflect.DeepEqual(p.Endpoints, []string{"10.0.0.9:1", addrB}) {
		t.Errorf("peer %+v", p)
	}
}

// Past MaxPeers, events about new peers are counted in the totals and in PeersOmitted,
// and the table stays at its bound.
func TestPeerTableIsBounded(t *testing.T) {
	a := New(Options{MaxPeers: 3})
	for i := range 10 {
		a.Add(exchange(local, idLocal, fmt.Sprintf("10.0.1.%d:30303", i), fmt.Sprintf("%064x", i+1), "failed", "no_response", 0))
		a.Add(datagram(ndjson.TypeSend, local, idLocal, fmt.Sprintf("10.0.1.%d:30303", i), fmt.Sprintf("%064x", i+1)))
	}
	s := a.Summary()
	if len(s.Peers) != 3 || s.Exchanges.ByCause["no_response"] != 10 {
		t.Fatalf("%d peers, %d no_response, want 3 and 10", len(s.Peers), s.Exchanges.ByCause["no_response"])
	}
	// The first exchange's initiator took a place only until the first send told it was
	// the local node: peers 0-2 are listed, the exchange and send of each other one omitted.
	if s.PeersOmitted != 2*7 || a.listed != 3 {
		t.Errorf("omitted %d, listed %d, want 14 and 3", s.PeersOmitted, a.listed)
	}
	for _, p := range s.Peers {
		if p.ID == idLocal {
			t.Errorf("the local node is listed: %+v", p)
		}
	}
}

func TestPercentilesByNearestRank(t *testing.T) {
	var s sample
	rng := splitmix{}
	for v := int64(100); v >= 1; v-- {
		s.add(v, 1000, &rng)
	}
	p := s.percentiles()
	if p.P50Ns != 50 || p.P90Ns != 90 || p.P99Ns != 99 || p.Seen != 100 || p.Kept != 100 {
		t.Errorf("1..100: %+v", p)
	}
	var one sample
	one.add(7, 10, &rng)
	if p := one.percentiles(); p.P50Ns != 7 || p.P99Ns != 7 {
		t.Errorf("one value: %+v", p)
	}
}

// Past its cap the sample keeps cap values, uniformly: the median of 0..99,999 stays
// near 50,000, and the same stream gives the same figures.
func TestSampleIsBoundedAndDeterministic(t *testing.T) {
	run := func() *Percentiles {
		var s sample
		rng := splitmix{state: 1}
		for v := range int64(100_000) {
			s.add(v, 256, &rng)
		}
		if len(s.kept) != 256 {
			t.Fatalf("kept %d", len(s.kept))
		}
		return s.percentiles()
	}
	p := run()
	if p.Seen != 100_000 || p.Kept != 256 || p.P50Ns < 40_000 || p.P50Ns > 60_000 || p.P99Ns < 95_000 {
		t.Errorf("percentiles of a uniform stream: %+v", p)
	}
	if q := run(); *q != *p {
		t.Errorf("two runs differ: %+v %+v", p, q)
	}
}

// What was lost is summed from lost and shed events, and leads the page.
func TestLossLeadsThePage(t *testing.T) {
	a := New(Options{})
	n := func(v uint64) *uint64 { return &v }
	a.Add(&ndjson.Event{V: 1, Type: ndjson.TypeLost, Time: "2026-12-04T10:00:00.000000000Z", Count: n(12)})
	a.Add(&ndjson.Event{V: 1, Type: ndjson.TypeShed, Time: "2026-12-04T10:00:01.000000000Z", Count: n(30), Undecoded: n(10), Untracked: n(2)})
	s := a.Summary()
	want := Loss{LostEvents: 1, Lost: 12, ShedEvents: 1, ShedDropped: 30, ShedUndecoded: 10, ShedUntracked: 2}
	if s.Loss != want {
		t.Errorf("loss %+v, want %+v", s.Loss, want)
	}
	var page strings.Builder
	if err := WriteText(&page, &s, 0); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(page.String(), "\n")
	if !strings.HasPrefix(lines[1], "LOST: 12 kernel events lost") || !strings.Contains(lines[1], "30 records dropped, 10 not decoded, 2 requests not followed") {
		t.Errorf("second line %q: want what was lost", lines[1])
	}
	var closing strings.Builder
	if err := WriteClosing(&closing, &s, "discotrace: "); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(closing.String(), "discotrace: LOST: 12 kernel events lost") {
		t.Errorf("closing summary:\n%s", closing.String())
	}
}

// The JSON form decodes back to the same summary.
func TestSummaryJSONRoundTrips(t *testing.T) {
	a := New(Options{})
	a.Add(datagram(ndjson.TypeSend, local, idLocal, addrB, ""))
	a.Add(exchange(local, idLocal, addrB, idB, "answered", "", 1_500_000))
	a.Add(exchange(local, idLocal, addrC, "", "failed", "expired", 0))
	a.Add(&ndjson.Event{V: 1, Type: ndjson.TypeAnomaly, Time: "2026-12-04T10:00:02.000000000Z", Anomaly: "clock_skew", Peer: addrC})
	s := a.Summary()
	data, err := json.Marshal(&s)
	if err != nil {
		t.Fatal(err)
	}
	var back Summary
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("round trip differs:\n%+v\n%+v", back, s)
	}
}

// A revision event moves the failure it names to its new cause, in the totals and for
// its peers; one naming an unknown event changes nothing.
func TestRevisionMovesTheCause(t *testing.T) {
	a := New(Options{LocalIDs: []string{"aa"}})
	a.Add(&ndjson.Event{Type: ndjson.TypeExchange, Seq: 7, Initiator: "10.0.0.1:30303", InitiatorID: "aa", Recipient: "10.0.0.2:30303", RecipientID: "bb", Req: "PING/v4", Outcome: "failed", Cause: "no_response"})
	a.Add(&ndjson.Event{Type: ndjson.TypeRevision, Seq: 9, Revises: 7, RevisesType: ndjson.TypeExchange, Cause: "fragment_loss"})
	a.Add(&ndjson.Event{Type: ndjson.TypeRevision, Seq: 10, Revises: 99, RevisesType: ndjson.TypeExchange, Cause: "kernel_drop"})
	s := a.Summary()
	if got := s.Exchanges.ByCause; len(got) != 1 || got["fragment_loss"] != 1 || s.Exchanges.Revised != 1 {
		t.Fatalf("exchanges by cause %v, revised %d", got, s.Exchanges.Revised)
	}
	if len(s.Peers) != 1 || len(s.Peers[0].Causes) != 1 || s.Peers[0].Causes["fragment_loss"] != 1 {
		t.Fatalf("peers %+v", s.Peers)
	}
}
