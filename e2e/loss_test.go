//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/discotrace/discotrace/ndjson"
)

// Two geth nodes whose namespaces each drop half the discovery datagrams they receive
// (nft numgen): node A pings B again and again, over discv4 then discv5, and every
// verdict of the trace must agree with what A's own call returned. A call that got its
// answer is `answered` (and its handshake, if it made one, `established`); a call that
// timed out failed, and since the only loss is nft's, the cause is `kernel_drop` citing
// a NETFILTER_DROP (or `rejected` by a challenge B repeats because its first copy was
// dropped). Each disagreement names the call.
func TestRandomLossVerdictsAgreeWithGeth(t *testing.T) {
	p := newPair(t)
	a := startNode(t, p.veth.A, p.a)
	b := startNode(t, p.veth.B, p.b)
	rule := fmt.Sprintf(`table inet loss {
	chain in {
		type filter hook input priority 0;
		udp dport %d numgen random mod 2 == 0 drop
	}
}`, p.port)
	nft(t, p.veth.A, rule)
	nft(t, p.veth.B, rule)
	tr := startTrace(t, "--port", p.portArg(), "--nodekey", a.keyHex(), "--nodekey", b.keyHex())

	type call struct {
		proto      string // "v4" or "v5"
		start, end time.Time
		err        error
	}
	var calls []call
	for range 24 {
		c := call{proto: "v4", start: time.Now()}
		c.err = pingErr(a.v4.Ping(b.Self()))
		c.end = time.Now()
		calls = append(calls, c)
	}
	for range 12 {
		c := call{proto: "v5", start: time.Now()}
		c.err = pingErr(a.v5.Ping(b.Self()))
		c.end = time.Now()
		calls = append(calls, c)
	}
	evs := tr.stop(t, verdictLinger)

	at := func(ev ndjson.Event) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, ev.Time)
		if err != nil {
			t.Fatalf("event time %q: %v", ev.Time, err)
		}
		return tm
	}
	fromA := func(ev ndjson.Event) bool { return ev.Initiator == p.a.String() && ev.Recipient == p.b.String() }
	// within returns A's events of kind that started during c, earliest first (A's call
	// sends at once; other traffic of A to B, such as table revalidation, comes later).
	within := func(c call, keep func(ndjson.Event) bool) events {
		in := evs.where(func(ev ndjson.Event) bool {
			t := at(ev)
			return fromA(ev) && keep(ev) && !t.Before(c.start) && !t.After(c.end)
		})
		// In order of time, not of the verdicts (a failure waits for the loss report).
		idx := make([]int, len(in.list))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(i, j int) int { return at(in.list[i]).Compare(at(in.list[j])) })
		var sorted events
		for _, i := range idx {
			sorted.list, sorted.lines = append(sorted.list, in.list[i]), append(sorted.lines, in.lines[i])
		}
		return sorted
	}
	isDrop := func(cited ndjson.Event) bool {
		return cited.Type == ndjson.TypeDrop && cited.Reason == "NETFILTER_DROP"
	}
	// The loss's one other consequence: B holds a challenge whose WHOAREYOU was dropped
	// and repeats it to A's next call, which ignores it (another packet's nonce).
	staleChallenge := func(ev ndjson.Event) bool {
		return ev.Cause == "rejected" && slices.ContainsFunc(ev.Evidence, func(e ndjson.Evidence) bool {
			return strings.Contains(e.Detail, "repeated its challenge to an earlier packet")
		})
	}
	var answered, failed, disagree int
	for i, c := range calls {
		name := fmt.Sprintf("call %d (%s PING, %s..%s, %v)", i, c.proto, c.start.Format("15:04:05.000000"), c.end.Format("15:04:05.000000"), c.err)
		if c.err == nil {
			answered++
		} else {
			failed++
		}
		var items events
		switch c.proto {
		case "v4":
			isPing := func(ev ndjson.Event) bool { return ev.Type == ndjson.TypeExchange && ev.Req == "PING/v4" }
			items = within(c, isPing)
			if len(items.list) == 0 {
				// geth signs deterministically and expirations are whole seconds: A's call
				// may send the same bytes as a PING of its own sent just before (bonding,
				// revalidation), still waiting, and both wait on one exchange.
				earlier := within(call{start: c.start.Add(-500 * time.Millisecond), end: c.start}, func(ev ndjson.Event) bool { return isPing(ev) && ev.Attempts > 1 })
				items.list, items.lines = earlier.list[max(len(earlier.list)-1, 0):], earlier.lines[max(len(earlier.lines)-1, 0):]
			}
			if len(items.list) > 0 {
				items.list, items.lines = items.list[:1], items.lines[:1]
			}
		case "v5":
			// A call without a session starts with a random packet nobody can decrypt: met
			// by a stale challenge, it fails on its own as an exchange of MESSAGE/v5.
			items = within(c, func(ev ndjson.Event) bool {
				return ev.Type == ndjson.TypeHandshake || ev.Type == ndjson.TypeExchange && (ev.Req == "PING/v5" || ev.Req == "MESSAGE/v5")
			})
		}
		if len(items.list) == 0 {
			t.Errorf("%s: no event of the trace reports it", name)
			disagree++
			continue
		}
		for j, ev := range items.list {
			switch {
			case c.err == nil && ev.Outcome != "answered" && ev.Outcome != "established":
				t.Errorf("%s: answered for geth, but the trace says:\n%s", name, items.lines[j])
				disagree++
			case c.err != nil && ev.Outcome == "failed" && (ev.Cause != "kernel_drop" || !citesEvidence(evs, ev, isDrop)) && !staleChallenge(ev):
				t.Errorf("%s: failed for geth, and the trace says so, but not as kernel_drop citing the nft drop:\n%s", name, items.lines[j])
				disagree++
			}
		}
		if c.err != nil && len(items.where(func(ev ndjson.Event) bool { return ev.Outcome == "failed" }).list) == 0 {
			t.Errorf("%s: failed for geth, but the trace reports no failure:\n%s", name, items)
			disagree++
		}
	}
	t.Logf("%d calls: %d answered, %d timed out for geth; %d disagreements", len(calls), answered, failed, disagree)
	if answered == 0 || failed == 0 {
		t.Fatalf("the loss left %d calls answered and %d failed: nothing to compare both ways", answered, failed)
	}
	wantEvidenceOnce(t, evs)
}
