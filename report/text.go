package report

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText renders s as a page a person reads at a glance: what was lost first, then the
// totals, then the peers worst first, at most maxPeers of them (0: all). Durations are in
// milliseconds, node IDs shortened to their first 8 hex characters, as geth logs them.
func WriteText(w io.Writer, s *Summary, maxPeers int) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "%d events%s", s.Events, span(s))
	if len(s.ByType) > 0 {
		fmt.Fprintf(b, ": %s", counts(s.ByType))
	}
	b.WriteString("\n")
	b.WriteString(lossLine(s.Loss, ""))
	tallyLine(b, "handshakes", &s.Handshakes, "total")
	tallyLine(b, "exchanges", &s.Exchanges, "rtt")
	if len(s.Anomalies) > 0 {
		fmt.Fprintf(b, "anomalies   %s\n", counts(s.Anomalies))
	}
	if len(s.LocalIDs)+len(s.LocalEndpoints) > 0 {
		ids := make([]string, len(s.LocalIDs))
		for i, id := range s.LocalIDs {
			ids[i] = short(id)
		}
		fmt.Fprintf(b, "local node  %s\n", strings.TrimSpace(strings.Join(ids, " ")+" "+strings.Join(s.LocalEndpoints, " ")))
	} else if len(s.Peers) > 0 {
		b.WriteString("local node  not identified, so it is listed among the peers (--nodekey, --node-id or --enr name it)\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	return writePeers(w, s, maxPeers)
}

func writePeers(w io.Writer, s *Summary, maxPeers int) error {
	if len(s.Peers) == 0 {
		_, err := io.WriteString(w, "no peers\n")
		return err
	}
	shown := s.Peers
	if maxPeers > 0 && len(shown) > maxPeers {
		shown = shown[:maxPeers]
	}
	fmt.Fprintf(w, "\n%d peers, worst first", len(s.Peers))
	if len(shown) < len(s.Peers) {
		fmt.Fprintf(w, " (the first %d; --peers 0 lists all)", len(shown))
	}
	if s.PeersOmitted > 0 {
		fmt.Fprintf(w, "; %d events about further peers are in the totals only", s.PeersOmitted)
	}
	fmt.Fprintln(w, ":")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tENDPOINT\tIN\tOUT\tHS ok/failed\tEXCH ok/failed\tHS ms p50/90/99\tEXCH ms p50/90/99\tFAILURES, ANOMALIES")
	for i := range shown {
		p := &shown[i]
		ep := first(p.Endpoints)
		if n := len(p.Endpoints) - 1; n > 0 {
			ep += fmt.Sprintf(" +%d", n)
		}
		id := short(p.ID)
		if id == "" {
			id = "-"
		}
		notes := counts(p.Causes)
		if len(p.Anomalies) > 0 {
			notes = strings.TrimPrefix(notes+"; "+counts(p.Anomalies), "; ")
		}
		if notes == "" {
			notes = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", id, ep, p.DatagramsIn, p.DatagramsOut,
			okFailed(p.Handshakes), okFailed(p.Exchanges), triple(p.HandshakeRTT), triple(p.ExchangeRTT), notes)
	}
	return tw.Flush()
}

// WriteClosing renders the few lines `trace` prints on stderr when it stops, each
// starting with prefix.
func WriteClosing(w io.Writer, s *Summary, prefix string) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "%s%d events%s", prefix, s.Events, span(s))
	for _, t := range []struct {
		name string
		t    *Tally
	}{{"handshakes", &s.Handshakes}, {"exchanges", &s.Exchanges}} {
		if t.t.Total > 0 {
			fmt.Fprintf(b, "; %s: %s", t.name, counts(t.t.ByOutcome))
		}
	}
	b.WriteString("\n")
	if causes := addAll(addAll(nil, s.Handshakes.ByCause), s.Exchanges.ByCause); len(causes) > 0 {
		fmt.Fprintf(b, "%sfailures by cause: %s\n", prefix, counts(causes))
	}
	b.WriteString(lossLine(s.Loss, prefix))
	_, err := io.WriteString(w, b.String())
	return err
}

// lossLine says what the tracer and the decoder could not report, or that nothing was
// lost: a report that hides its gaps misleads.
func lossLine(l Loss, prefix string) string {
	if !l.Any() {
		return prefix + "nothing lost: no lost or shed events\n"
	}
	var parts []string
	if l.LostEvents > 0 {
		parts = append(parts, fmt.Sprintf("%d kernel events lost (ring buffer full, %d lost reports)", l.Lost, l.LostEvents))
	}
	if l.ShedEvents > 0 {
		parts = append(parts, fmt.Sprintf("decoder fell behind (%d shed reports): %d records dropped, %d not decoded, %d requests not followed",
			l.ShedEvents, l.ShedDropped, l.ShedUndecoded, l.ShedUntracked))
	}
	return prefix + "LOST: " + strings.Join(parts, "; ") + "; the counts miss them\n"
}

func tallyLine(b *strings.Builder, name string, t *Tally, rttName string) {
	if t.Total == 0 {
		fmt.Fprintf(b, "%-11s none\n", name)
		return
	}
	fmt.Fprintf(b, "%-11s %d: %s", name, t.Total, counts(t.ByOutcome))
	if len(t.ByCause) > 0 {
		fmt.Fprintf(b, "; failed by cause: %s", counts(t.ByCause))
		if t.Revised > 0 {
			fmt.Fprintf(b, " (%d revised by later evidence)", t.Revised)
		}
	}
	if t.RTT != nil {
		fmt.Fprintf(b, "; %s ms p50 %s, p90 %s, p99 %s", rttName, ms(t.RTT.P50Ns), ms(t.RTT.P90Ns), ms(t.RTT.P99Ns))
	}
	b.WriteString("\n")
}

// span renders the time the events cover.
func span(s *Summary) string {
	from, err1 := time.Parse(time.RFC3339Nano, s.First)
	to, err2 := time.Parse(time.RFC3339Nano, s.Last)
	if err1 != nil || err2 != nil {
		return ""
	}
	return fmt.Sprintf(" from %s to %s UTC (%s)", from.UTC().Format("2006-01-02 15:04:05.000"),
		to.UTC().Format("15:04:05.000"), duration(to.Sub(from)))
}

// counts renders a map of counts, largest first: "no_response 9, rejected 3".
func counts(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int { return cmp.Or(cmp.Compare(m[y], m[x]), cmp.Compare(x, y)) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		name := k
		if name == "" {
			name = "unknown"
		}
		parts[i] = fmt.Sprintf("%d %s", m[k], name)
	}
	return strings.Join(parts, ", ")
}

func okFailed(c Count) string {
	if c.OK+c.Failed+c.Open == 0 {
		return "-"
	}
	s := fmt.Sprintf("%d/%d", c.OK, c.Failed)
	if c.Open > 0 {
		s += fmt.Sprintf(" +%d open", c.Open)
	}
	return s
}

func triple(p *Percentiles) string {
	if p == nil {
		return "-"
	}
	return ms(p.P50Ns) + "/" + ms(p.P90Ns) + "/" + ms(p.P99Ns)
}

// ms renders nanoseconds as milliseconds with two or three significant digits.
func ms(ns int64) string {
	v := float64(ns) / 1e6
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func duration(d time.Duration) string {
	if d < time.Minute {
		return ms(int64(d)) + " ms"
	}
	return d.Round(time.Second).String()
}

// short is a node ID as geth logs it: its first 8 hex characters.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
