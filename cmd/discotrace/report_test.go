package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/discotrace/discotrace/report"
)

// The test keys of ../shared/testdata/README.md: A and G are the local nodes of the
// captures, B and C the testers.
const (
	testKeyG = "2222222222222222222222222222222222222222222222222222222222222222"
	testKeyB = "3333333333333333333333333333333333333333333333333333333333333333"
	testKeyC = "4444444444444444444444444444444444444444444444444444444444444444"
)

// reportCase is a shared capture decoded with some of the test keys.
type reportCase struct {
	name, path string
	keys       []string
}

// reportCases are every shared capture without keys, with its local node's key, and with
// all the test keys.
func reportCases(t *testing.T) []reportCase {
	var cases []reportCase
	for _, c := range []struct{ file, localKey string }{
		{"devp2p-discovery.pcap", testKeyA}, {"reject.pcap", testKeyG}, {"suites-devp2p.pcap", testKeyA},
	} {
		path := testCapture(t, c.file)
		cases = append(cases,
			reportCase{c.file + "/no keys", path, nil},
			reportCase{c.file + "/local key", path, []string{c.localKey}},
			reportCase{c.file + "/all keys", path, []string{testKeyA, testKeyG, testKeyB, testKeyC}})
	}
	return cases
}

func (c reportCase) keyArgs() []string {
	var args []string
	for _, k := range c.keys {
		args = append(args, "--nodekey", k)
	}
	return args
}

// runReportCLI runs a fresh report command with args, returning its stdout, its stderr
// and the error main would print.
func runReportCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runCommandSplit(newReportCmd(), args...)
}

// decodedNDJSON is `discotrace decode` of c, written to a file whose path it returns,
// and what decode said on stderr (a key of a node not in the capture is warned of).
func decodedNDJSON(t *testing.T, c reportCase) (path, stderr string) {
	t.Helper()
	out, diag, err := runCommandSplit(newDecodeCmd(), append([]string{c.path}, c.keyArgs()...)...)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "events.ndjson")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, diag
}

// reportJSON is `discotrace report --json` of path, decoded.
func reportJSON(t *testing.T, path string, extra ...string) (report.Summary, string) {
	t.Helper()
	out, diag, err := runReportCLI(t, append([]string{"--json", path}, extra...)...)
	if err != nil || diag != "" {
		t.Fatalf("report %s: %v (stderr %q)", path, err, diag)
	}
	var s report.Summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("report --json is not JSON: %v\n%s", err, out)
	}
	return s, out
}

// The report's numbers are those of a count of decode's NDJSON made here, line by line
// as generic JSON: totals by type, outcome and cause, anomalies, losses, the round-trip
// percentiles, and per peer what the events about it add up to.
func TestReportNumbersEqualACountOfTheNDJSON(t *testing.T) {
	for _, c := range reportCases(t) {
		t.Run(c.name, func(t *testing.T) {
			path, _ := decodedNDJSON(t, c)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := reportJSON(t, path, c.keyArgs()...)
			n := countNDJSON(t, data)
			if s.Events != n.events || !reflect.DeepEqual(s.ByType, n.byType) || s.First != n.first || s.Last != n.last {
				t.Errorf("events %d %v %s..%s, counted %d %v %s..%s", s.Events, s.ByType, s.First, s.Last, n.events, n.byType, n.first, n.last)
			}
			checkTally(t, "handshakes", s.Handshakes, n.handshakes, n.handshakeRTT)
			checkTally(t, "exchanges", s.Exchanges, n.exchanges, n.exchangeRTT)
			if !reflect.DeepEqual(s.Anomalies, nilIfEmpty(n.anomalies)) {
				t.Errorf("anomalies %v, counted %v", s.Anomalies, n.anomalies)
			}
			if s.Loss != n.loss {
				t.Errorf("loss %+v, counted %+v", s.Loss, n.loss)
			}
			if s.PeersOmitted != 0 {
				t.Fatalf("%d events omitted from the peers of a small capture", s.PeersOmitted)
			}
			// With every test key, every node of the first two captures is local.
			wantPeers := len(c.keys) <= 1 || strings.HasPrefix(c.name, "suites")
			checkPeers(t, &s, n.sides, wantPeers)
			if wantPeers != (len(s.Peers) > 0) {
				t.Errorf("%d peers; want some: %v", len(s.Peers), wantPeers)
			}
		})
	}
}

// counted is what countNDJSON finds.
type counted struct {
	events                    uint64
	first, last               string
	byType, anomalies         map[string]uint64
	handshakes, exchanges     outcomeCount
	handshakeRTT, exchangeRTT []int64
	loss                      report.Loss
	sides                     []side
}

type outcomeCount struct{ byOutcome, byCause map[string]uint64 }

// side is one end of a datagram, handshake, exchange or anomaly, as a line names it.
type side struct {
	typ, addr, id string
	sent          bool   // a datagram's source
	outcome       string // handshake and exchange
	cause         string
	rtt           *int64
	anomaly       string
}

func countNDJSON(t *testing.T, data []byte) counted {
	n := counted{byType: map[string]uint64{}, anomalies: map[string]uint64{},
		handshakes: outcomeCount{map[string]uint64{}, map[string]uint64{}}, exchanges: outcomeCount{map[string]uint64{}, map[string]uint64{}}}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	num := func(m map[string]any, k string) (int64, bool) { f, ok := m[k].(float64); return int64(f), ok }
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		n.events++
		typ := str(m, "type")
		n.byType[typ]++
		// The times are written with a fixed nine-digit fraction: they sort as text.
		if tm := str(m, "time"); n.first == "" || tm < n.first {
			n.first = tm
		}
		if tm := str(m, "time"); tm > n.last {
			n.last = tm
		}
		disc, _ := m["disc"].(map[string]any)
		count := func(k string) uint64 { v, _ := num(m, k); return uint64(v) }
		switch typ {
		case "packet":
			n.sides = append(n.sides, side{typ: typ, addr: str(m, "src"), id: str(disc, "src_id"), sent: true},
				side{typ: typ, addr: str(m, "dst"), id: str(disc, "dst_id")})
		case "handshake", "exchange":
			oc, rtts, rttKey := &n.handshakes, &n.handshakeRTT, "total_ns"
			if typ == "exchange" {
				oc, rtts, rttKey = &n.exchanges, &n.exchangeRTT, "rtt_ns"
			}
			oc.byOutcome[str(m, "outcome")]++
			if str(m, "outcome") == "failed" {
				oc.byCause[str(m, "cause")]++
			}
			var rtt *int64
			if v, ok := num(m, rttKey); ok {
				*rtts = append(*rtts, v)
				rtt = &v
			}
			for _, who := range []string{"initiator", "recipient"} {
				n.sides = append(n.sides, side{typ: typ, addr: str(m, who), id: str(m, who+"_id"),
					outcome: str(m, "outcome"), cause: str(m, "cause"), rtt: rtt})
			}
		case "anomaly":
			n.anomalies[str(m, "anomaly")]++
			n.sides = append(n.sides, side{typ: typ, addr: str(m, "peer"), id: str(m, "peer_id"), anomaly: str(m, "anomaly")})
		case "lost":
			n.loss.LostEvents++
			n.loss.Lost += count("count")
		case "shed":
			n.loss.ShedEvents++
			n.loss.ShedDropped += count("count")
			n.loss.ShedUndecoded += count("undecoded")
			n.loss.ShedUntracked += count("untracked")
		}
	}
	return n
}

func checkTally(t *testing.T, name string, got report.Tally, want outcomeCount, rtts []int64) {
	t.Helper()
	var total uint64
	for _, v := range want.byOutcome {
		total += v
	}
	if got.Total != total || !reflect.DeepEqual(got.ByOutcome, nilIfEmpty(want.byOutcome)) || !reflect.DeepEqual(got.ByCause, nilIfEmpty(want.byCause)) {
		t.Errorf("%s: %d %v %v, counted %d %v %v", name, got.Total, got.ByOutcome, got.ByCause, total, want.byOutcome, want.byCause)
	}
	if w := percentilesOf(rtts); !reflect.DeepEqual(got.RTT, w) {
		t.Errorf("%s round trips: %+v, counted %+v", name, got.RTT, w)
	}
}

// checkPeers compares the peers with the sides the lines name. A side is the local node's
// when its ID is local, or it has none and its address is local. Summed over the peers,
// the counts are those of the sides that are not local; and each peer with an ID and no
// address shared with another peer has exactly the sides that carry its ID or, without
// an ID, one of its addresses.
func checkPeers(t *testing.T, s *report.Summary, sides []side, wantChecked bool) {
	t.Helper()
	isLocal := func(sd side) bool {
		return slices.Contains(s.LocalIDs, sd.id) || (sd.id == "" && slices.Contains(s.LocalEndpoints, sd.addr))
	}
	var remote []side
	for _, sd := range sides {
		if !isLocal(sd) && (sd.addr != "" || sd.id != "") {
			remote = append(remote, sd)
		}
	}
	if got, want := sumPeers(s.Peers), first(tallySides(remote)); !reflect.DeepEqual(got, want) {
		t.Errorf("summed over the peers:\n%+v\nsides not local:\n%+v", got, want)
	}
	owners := map[string]int{}
	for _, p := range s.Peers {
		for _, ep := range p.Endpoints {
			owners[ep]++
		}
	}
	checked := 0
	for _, p := range s.Peers {
		if p.ID == "" || p.UnlistedEndpointEvents > 0 || slices.ContainsFunc(p.Endpoints, func(ep string) bool { return owners[ep] > 1 }) {
			continue
		}
		var own []side
		for _, sd := range remote {
			if sd.id == p.ID || (sd.id == "" && slices.Contains(p.Endpoints, sd.addr)) {
				own = append(own, sd)
			}
		}
		got := sumPeers([]report.Peer{p})
		want, rtts := tallySides(own)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("peer %s %v:\n%+v\nits sides:\n%+v", p.ID[:8], p.Endpoints, got, want)
		}
		if w := percentilesOf(rtts["exchange"]); !reflect.DeepEqual(p.ExchangeRTT, w) {
			t.Errorf("peer %s exchange round trips %+v, counted %+v", p.ID[:8], p.ExchangeRTT, w)
		}
		if w := percentilesOf(rtts["handshake"]); !reflect.DeepEqual(p.HandshakeRTT, w) {
			t.Errorf("peer %s handshake round trips %+v, counted %+v", p.ID[:8], p.HandshakeRTT, w)
		}
		checked++
	}
	if wantChecked && checked == 0 {
		t.Error("no peer checked one by one")
	}
}

// peerTally is what is compared per peer, or summed over peers.
type peerTally struct {
	in, out             uint64
	handshakes, exchges report.Count
	causes, anomalies   map[string]uint64
}

func sumPeers(peers []report.Peer) peerTally {
	var t peerTally
	t.causes, t.anomalies = map[string]uint64{}, map[string]uint64{}
	for _, p := range peers {
		t.in += p.DatagramsIn
		t.out += p.DatagramsOut
		for _, c := range [][2]*report.Count{{&t.handshakes, &p.Handshakes}, {&t.exchges, &p.Exchanges}} {
			c[0].OK += c[1].OK
			c[0].Failed += c[1].Failed
			c[0].Open += c[1].Open
		}
		for k, v := range p.Causes {
			t.causes[k] += v
		}
		for k, v := range p.Anomalies {
			t.anomalies[k] += v
		}
	}
	return t
}

// tallySides adds up sides as a peer's counts, and collects their round trips by type.
func tallySides(sides []side) (t peerTally, rtts map[string][]int64) {
	t = peerTally{causes: map[string]uint64{}, anomalies: map[string]uint64{}}
	rtts = map[string][]int64{}
	for _, sd := range sides {
		switch sd.typ {
		case "packet":
			if sd.sent {
				t.in++
			} else {
				t.out++
			}
		case "handshake", "exchange":
			c := &t.handshakes
			if sd.typ == "exchange" {
				c = &t.exchges
			}
			switch sd.outcome {
			case "failed":
				c.Failed++
				t.causes[sd.cause]++
			case "open":
				c.Open++
			default:
				c.OK++
			}
			if sd.rtt != nil {
				rtts[sd.typ] = append(rtts[sd.typ], *sd.rtt)
			}
		case "anomaly":
			t.anomalies[sd.anomaly]++
		}
	}
	return t, rtts
}

// percentilesOf computes nearest-rank percentiles of every value: what the report gives
// while a sample is below its cap.
func percentilesOf(v []int64) *report.Percentiles {
	if len(v) == 0 {
		return nil
	}
	s := slices.Sorted(slices.Values(v))
	rank := func(p int) int64 {
		i := (p*len(s)+99)/100 - 1
		return s[max(i, 0)]
	}
	return &report.Percentiles{Seen: uint64(len(s)), Kept: len(s), P50Ns: rank(50), P90Ns: rank(90), P99Ns: rank(99)}
}

func first[A, B any](a A, _ B) A { return a }

func nilIfEmpty(m map[string]uint64) map[string]uint64 {
	if len(m) == 0 {
		return nil
	}
	return m
}

// A capture read directly gives the report its NDJSON gives, as JSON and as text.
func TestReportOfACaptureEqualsReportOfItsNDJSON(t *testing.T) {
	for _, c := range reportCases(t) {
		t.Run(c.name, func(t *testing.T) {
			ndjsonPath, decodeDiag := decodedNDJSON(t, c)
			for _, format := range [][]string{{"--json"}, {"--peers", "0"}} {
				fromCapture, diag1, err1 := runReportCLI(t, append(append([]string{c.path}, format...), c.keyArgs()...)...)
				fromNDJSON, diag2, err2 := runReportCLI(t, append(append([]string{ndjsonPath}, format...), c.keyArgs()...)...)
				if err1 != nil || err2 != nil || diag1 != decodeDiag || diag2 != "" {
					t.Fatalf("report: %v %v (stderr %q %q)", err1, err2, diag1, diag2)
				}
				if fromCapture != fromNDJSON || fromCapture == "" {
					t.Errorf("report %v of the capture:\n%s\nof its NDJSON:\n%s", format, fromCapture, fromNDJSON)
				}
			}
		})
	}
}

// --json is the summary itself: it decodes into report.Summary and encodes back to the
// same text, and the text page shows the same figures.
func TestReportJSONRoundTrips(t *testing.T) {
	path := testCapture(t, "suites-devp2p.pcap")
	s, out := reportJSON(t, path, "--nodekey", testKeyA)
	again, err := json.MarshalIndent(&s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if string(again)+"\n" != out {
		t.Errorf("re-encoded summary differs:\n%s\nfrom:\n%s", again, out)
	}
	page, _, err := runReportCLI(t, path, "--nodekey", testKeyA)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(page, "\n")
	wantFirst := fmt.Sprintf("%d events from ", s.Events)
	if !strings.HasPrefix(lines[0], wantFirst) || lines[1] != "nothing lost: no lost or shed events" {
		t.Errorf("page starts %q / %q, want %q... and what was lost", lines[0], lines[1], wantFirst)
	}
	worst := s.Peers[0]
	if !strings.Contains(page, "\n"+worst.ID[:8]+"  "+worst.Endpoints[0]) {
		t.Errorf("the worst peer %s (first 8 hex) does not lead the table:\n%s", worst.ID[:8], page)
	}
	if want := fmt.Sprintf("exchanges   %d: ", s.Exchanges.Total); !strings.Contains(page, want) {
		t.Errorf("no %q in the page:\n%s", want, page)
	}
}

// A line that is not an event is named by its number in one line of error (exit status
// 1, as for other bad input), and skipped: the report counts every other event.
func TestReportOfMalformedNDJSON(t *testing.T) {
	c := reportCase{path: testCapture(t, "devp2p-discovery.pcap"), keys: []string{testKeyA}}
	clean, _ := decodedNDJSON(t, c)
	_, want := reportJSON(t, clean)
	data, err := os.ReadFile(clean)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	damaged := slices.Concat(lines[:2], []string{"this is not json\n"}, lines[2:5], []string{`{"foo":1}` + "\n"}, lines[5:])
	path := filepath.Join(t.TempDir(), "damaged.ndjson")
	if err := os.WriteFile(path, []byte(strings.Join(damaged, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, diag, err := runReportCLI(t, "--json", path)
	var ee *exitError
	if err == nil || errors.As(err, &ee) || diag != "" {
		t.Fatalf("report of a damaged stream: error %v (stderr %q), want a plain error (exit status 1)", err, diag)
	}
	msg := err.Error()
	if !strings.Contains(msg, "line 3 of "+path+" is not a discotrace event") || !strings.Contains(msg, "2 such lines skipped") ||
		!strings.Contains(msg, fmt.Sprintf("counts the %d events", len(lines)-1)) || strings.Contains(msg, "\n") {
		t.Errorf("error %q: want one line naming line 3, the 2 lines skipped and the events counted", msg)
	}
	if out != want {
		t.Errorf("the report of the damaged stream differs from the clean one:\n%s\nwant:\n%s", out, want)
	}
}

func TestReportCommandLine(t *testing.T) {
	path := testCapture(t, "devp2p-discovery.pcap")
	for _, args := range [][]string{{path, path}, {"--peers", "-1", path}, {"--nodekey", "12zz", path}} {
		_, _, err := runReportCLI(t, args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("report %v: %v, want a usage error (exit status 2)", args, err)
		}
	}
	_, _, err := runReportCLI(t, filepath.Join(t.TempDir(), "missing.ndjson"))
	if err == nil || !strings.Contains(err.Error(), "cannot open the input") {
		t.Errorf("a missing file: %v", err)
	}
	// Standard input, by "-" or no argument, reads a capture as a file does.
	fromFile, _, err := runReportCLI(t, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-"}, {}} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		stdin := os.Stdin
		os.Stdin = f
		out, _, err := runReportCLI(t, args...)
		os.Stdin = stdin
		f.Close()
		if err != nil || out != fromFile {
			t.Errorf("report %v from standard input: %v\n%s\nwant:\n%s", args, err, out, fromFile)
		}
	}
}
