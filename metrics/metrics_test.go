package metrics

import (
	"fmt"
	"math"
	"net/http/httptest"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/discv4"
	"github.com/discotrace/discotrace/decode/discv5"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/tracer"
)

var (
	local  = netip.MustParseAddrPort("10.0.0.1:30303")
	remote = netip.MustParseAddrPort("10.0.0.2:30303")
	t0     = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
)

// Values reads every series of g as "name{label="value",...}" (labels sorted) -> value;
// a histogram gives name_count and name_sum.
func Values(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return FamilyValues(mfs)
}

// FamilyValues is Values of gathered or scraped metric families.
func FamilyValues(mfs []*dto.MetricFamily) map[string]float64 {
	v := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			series := "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				v[mf.GetName()+series] = m.Counter.GetValue()
			case m.Gauge != nil:
				v[mf.GetName()+series] = m.Gauge.GetValue()
			case m.Histogram != nil:
				v[mf.GetName()+"_count"+series] = float64(m.Histogram.GetSampleCount())
				v[mf.GetName()+"_sum"+series] = m.Histogram.GetSampleSum()
			case m.Untyped != nil:
				v[mf.GetName()+series] = m.Untyped.GetValue()
			}
		}
	}
	return v
}

func datagram(dir record.Direction, p *packet.Packet) *result.Observation {
	r := record.Record{Kind: record.Datagram, Dir: dir, Time: t0, Src: local, Dst: remote, Len: 100}
	if dir == record.DirIn {
		r.Src, r.Dst = remote, local
	}
	return &result.Observation{Record: r, Packet: p}
}

func write(t *testing.T, e *Exporter, events ...result.Event) {
	t.Helper()
	for _, ev := range events {
		if err := e.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
}

// checkValues compares the series named in want with the registry's; absent means 0.
func checkValues(t *testing.T, e *Exporter, want map[string]float64) {
	t.Helper()
	got := Values(t, e.Registry())
	for series, w := range want {
		if g := got[series]; math.Abs(g-w) > 1e-9 {
			t.Errorf("%s = %v, want %v", series, g, w)
		}
	}
}

// What a node's traffic looks like to the tracer: pings out and pongs in, a read of each,
// a discv5 message it holds no key for, a datagram not decoded under load, a datagram that
// is no discovery at all. Each is counted once by its protocol, kind and direction; the
// decode failures once, at the datagram (not again at its read).
func TestDatagramsAndDecodeErrors(t *testing.T) {
	e := New()
	ping := &packet.Packet{Proto: packet.ProtoV4, Kind: discv4.KindPing}
	pong := &packet.Packet{Proto: packet.ProtoV4, Kind: discv4.KindPong}
	noKey := &packet.Packet{Proto: packet.ProtoV5, Kind: discv5.KindMessage, Err: discv5.ErrRandomPacket}
	badSig := &packet.Packet{Proto: packet.ProtoV4, Kind: "", Err: fmt.Errorf("%w: short", discv4.ErrBadSignature)}
	notDisc := &packet.Packet{Proto: packet.ProtoUnknown, Err: decode.ErrNotDiscovery}
	truncated := &packet.Packet{Proto: packet.ProtoV5, Kind: discv5.KindHandshake, Err: discv5.ErrTruncated}
	read := func(p *packet.Packet) *result.Observation {
		return &result.Observation{Record: record.Record{Kind: record.Read, Time: t0, Src: remote, Dst: local}, Packet: p}
	}
	write(t, e,
		datagram(record.DirOut, ping), datagram(record.DirOut, ping), datagram(record.DirIn, pong),
		read(pong), datagram(record.DirIn, noKey), read(noKey), datagram(record.DirIn, nil),
		datagram(record.DirIn, notDisc), datagram(record.DirIn, badSig), datagram(record.DirIn, truncated),
		&result.Observation{Record: record.Record{Kind: record.Datagram, Time: t0, Src: remote, Dst: local}, Packet: ping}, // a capture
	)
	checkValues(t, e, map[string]float64{
		`discotrace_datagrams_total{direction="send",kind="PING",protocol="discv4"}`:      2,
		`discotrace_datagrams_total{direction="recv",kind="PONG",protocol="discv4"}`:      1,
		`discotrace_datagrams_total{direction="read",kind="PONG",protocol="discv4"}`:      1,
		`discotrace_datagrams_total{direction="recv",kind="MESSAGE",protocol="discv5"}`:   1,
		`discotrace_datagrams_total{direction="read",kind="MESSAGE",protocol="discv5"}`:   1,
		`discotrace_datagrams_total{direction="recv",kind="none",protocol="none"}`:        1,
		`discotrace_datagrams_total{direction="recv",kind="none",protocol="unknown"}`:     1,
		`discotrace_datagrams_total{direction="recv",kind="none",protocol="discv4"}`:      1,
		`discotrace_datagrams_total{direction="recv",kind="HANDSHAKE",protocol="discv5"}`: 1,
		`discotrace_datagrams_total{direction="packet",kind="PING",protocol="discv4"}`:    1,
		`discotrace_decode_errors_total{protocol="discv5",reason="no_key"}`:               1,
		`discotrace_decode_errors_total{protocol="discv5",reason="truncated"}`:            1,
		`discotrace_decode_errors_total{protocol="unknown",reason="not_discovery"}`:       1,
		`discotrace_decode_errors_total{protocol="discv4",reason="invalid"}`:              1,
		`discotrace_events_total{type="send"}`:                                            2,
		`discotrace_events_total{type="recv"}`:                                            6,
		`discotrace_events_total{type="read"}`:                                            2,
		`discotrace_events_total{type="packet"}`:                                          1,
		`discotrace_peers{}`:                                                              0, // time t0 is long past: see TestPeers
	})
}

// The kernel's own observations: ICMP errors of either family, both ways; drops with
// and without a reason; events the ring buffer lost and the live path shed.
func TestKernelObservations(t *testing.T) {
	e := New()
	icmp := func(src string, typ, code uint8, dir record.Direction) *result.Observation {
		return &result.Observation{Record: record.Record{Kind: record.ICMP, Time: t0, Dir: dir,
			Src: netip.MustParseAddrPort(src), ICMPType: typ, ICMPCode: code}}
	}
	drop := func(reason string) *result.Observation {
		return &result.Observation{Record: record.Record{Kind: record.Drop, Time: t0, Reason: reason}}
	}
	write(t, e,
		icmp("10.0.0.2:0", 3, 3, record.DirIn), icmp("10.0.0.2:0", 3, 3, record.DirIn), icmp("10.0.0.1:0", 3, 3, record.DirOut),
		icmp("[fd00::2]:0", 1, 4, record.DirIn), icmp("[fd00::2]:0", 3, 0, record.DirIn),
		drop("SOCKET_RCVBUFF"), drop("SOCKET_RCVBUFF"), drop("NO_SOCKET"), drop(""),
		&result.Observation{Record: record.Record{Kind: record.Lost, Time: t0, Count: 17}},
		&result.Observation{Record: record.Record{Kind: record.Lost, Time: t0, Count: 3}},
		&result.Observation{Record: record.Record{Kind: record.Shed, Time: t0, Count: 5, Undecoded: 40, Untracked: 2}},
		&result.Observation{Record: record.Record{Kind: record.Shed, Time: t0, Undecoded: 1}},
	)
	checkValues(t, e, map[string]float64{
		`discotrace_icmp_errors_total{code="3",direction="in",family="ipv4",type="3"}`:  2,
		`discotrace_icmp_errors_total{code="3",direction="out",family="ipv4",type="3"}`: 1,
		`discotrace_icmp_errors_total{code="4",direction="in",family="ipv6",type="1"}`:  1,
		// ICMPv6 type 3 is "time exceeded", not ICMP's "unreachable": the family tells.
		`discotrace_icmp_errors_total{code="0",direction="in",family="ipv6",type="3"}`: 1,
		`discotrace_kernel_drops_total{reason="SOCKET_RCVBUFF"}`:                       2,
		`discotrace_kernel_drops_total{reason="NO_SOCKET"}`:                            1,
		`discotrace_kernel_drops_total{reason="unknown"}`:                              1,
		`discotrace_lost_events_total{where="ring_buffer"}`:                            20,
		`discotrace_lost_events_total{where="live_queue"}`:                             5,
		`discotrace_undecoded_datagrams_total{}`:                                       41,
		`discotrace_untracked_requests_total{}`:                                        2,
		`discotrace_events_total{type="icmp"}`:                                         5,
		`discotrace_events_total{type="drop"}`:                                         4,
		`discotrace_events_total{type="lost"}`:                                         2,
		`discotrace_events_total{type="shed"}`:                                         2,
	})
}

// Handshakes and exchanges are counted by outcome and cause, and their round trips go
// into the histograms in seconds; one without a round trip (failed) is counted but not
// observed.
func TestHandshakesExchangesAndRoundTrips(t *testing.T) {
	e := New()
	d := func(v time.Duration) *time.Duration { return &v }
	write(t, e,
		&result.Handshake{Outcome: result.Established, Total: d(3 * time.Millisecond)},
		&result.Handshake{Outcome: result.Established, Total: d(7 * time.Millisecond)},
		&result.Handshake{Outcome: result.Failed, Cause: result.Rejected, Total: nil},
		&result.Handshake{Outcome: result.Failed, Cause: result.NoResponse},
		&result.Handshake{Outcome: result.Open},
		&result.Exchange{Req: "PING/v4", Resp: "PONG/v4", Outcome: result.Answered, RTT: d(250 * time.Microsecond)},
		&result.Exchange{Req: "PING/v4", Resp: "PONG/v4", Outcome: result.Answered, RTT: d(750 * time.Microsecond)},
		&result.Exchange{Req: "PING/v4", Outcome: result.Failed, Cause: result.ICMPUnreachable},
		&result.Exchange{Req: "FINDNODE/v5", Resp: "NODES/v5", Outcome: result.Answered, RTT: d(2 * time.Millisecond)},
		&result.Exchange{Req: "TALKREQ/v5", Outcome: result.Failed, Cause: result.KernelDrop},
		&result.Exchange{Req: "MESSAGE/v5", Outcome: result.Open},
		&result.Anomaly{Kind: result.ClockSkew}, &result.Anomaly{Kind: result.WhoareyouStorm}, &result.Anomaly{Kind: result.ClockSkew},
	)
	checkValues(t, e, map[string]float64{
		`discotrace_handshakes_total{cause="",outcome="established"}`:                                            2,
		`discotrace_handshakes_total{cause="rejected",outcome="failed"}`:                                         1,
		`discotrace_handshakes_total{cause="no_response",outcome="failed"}`:                                      1,
		`discotrace_handshakes_total{cause="",outcome="open"}`:                                                   1,
		`discotrace_handshake_duration_seconds_count{outcome="established"}`:                                     2,
		`discotrace_handshake_duration_seconds_sum{outcome="established"}`:                                       0.010,
		`discotrace_handshake_duration_seconds_count{outcome="failed"}`:                                          0,
		`discotrace_exchanges_total{cause="",outcome="answered",protocol="discv4",request="PING"}`:               2,
		`discotrace_exchanges_total{cause="icmp_unreachable",outcome="failed",protocol="discv4",request="PING"}`: 1,
		`discotrace_exchanges_total{cause="",outcome="answered",protocol="discv5",request="FINDNODE"}`:           1,
		`discotrace_exchanges_total{cause="kernel_drop",outcome="failed",protocol="discv5",request="TALKREQ"}`:   1,
		`discotrace_exchanges_total{cause="",outcome="open",protocol="discv5",request="MESSAGE"}`:                1,
		`discotrace_request_duration_seconds_count{outcome="answered",protocol="discv4",request="PING"}`:         2,
		`discotrace_request_duration_seconds_sum{outcome="answered",protocol="discv4",request="PING"}`:           0.001,
		`discotrace_request_duration_seconds_count{outcome="answered",protocol="discv5",request="FINDNODE"}`:     1,
		`discotrace_request_duration_seconds_sum{outcome="answered",protocol="discv5",request="FINDNODE"}`:       0.002,
		`discotrace_anomalies_total{kind="clock_skew"}`:                                                          2,
		`discotrace_anomalies_total{kind="whoareyou_storm"}`:                                                     1,
		`discotrace_events_total{type="handshake"}`:                                                              5,
		`discotrace_events_total{type="exchange"}`:                                                               6,
		`discotrace_events_total{type="anomaly"}`:                                                                3,
	})
}

// No input grows a label beyond its known values: a request name or packet kind the
// decoder does not make is "other", never itself.
func TestLabelsStayBounded(t *testing.T) {
	e := New()
	write(t, e,
		&result.Exchange{Req: "0xdeadbeef/v5", Outcome: result.Answered},
		&result.Exchange{Req: "PING/v9", Outcome: result.Answered},
		datagram(record.DirIn, &packet.Packet{Proto: packet.ProtoV4, Kind: "0xdeadbeef"}),
		datagram(record.DirIn, &packet.Packet{Proto: "discv9", Kind: "PING"}),
	)
	checkValues(t, e, map[string]float64{
		`discotrace_exchanges_total{cause="",outcome="answered",protocol="discv5",request="other"}`: 1,
		`discotrace_exchanges_total{cause="",outcome="answered",protocol="other",request="other"}`:  1,
		`discotrace_datagrams_total{direction="recv",kind="other",protocol="discv4"}`:               1,
		`discotrace_datagrams_total{direction="recv",kind="none",protocol="other"}`:                 1,
	})
	for series := range Values(t, e.Registry()) {
		if strings.Contains(series, "deadbeef") || strings.Contains(series, "discv9") || strings.Contains(series, "10.0.0.") {
			t.Errorf("series %s carries a value from the input", series)
		}
	}
}

// discotrace_peers counts the remote endpoints of discovery datagrams seen within the
// window, each once (an IPv4-mapped address is its IPv4 address), and never more than the
// bound: a flood of new sources pushes out the least recently seen.
func TestPeers(t *testing.T) {
	now := t0
	s := newPeerSet(time.Minute, 3, func() time.Time { return now })
	a := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 30303)
	}
	s.see(a(1), t0.Add(-50*time.Second))
	s.see(a(2), t0.Add(-40*time.Second))
	s.see(netip.MustParseAddrPort("[::ffff:10.0.0.2]:30303"), t0.Add(-30*time.Second))
	if n := s.count(); n != 2 {
		t.Fatalf("2 peers seen, count %d", n)
	}
	now = t0.Add(15 * time.Second) // a(1) last seen 65 s ago, a(2) 45 s ago
	if n := s.count(); n != 1 {
		t.Errorf("after a(1) left the window: count %d, want 1", n)
	}
	for i := 3; i < 10; i++ {
		s.see(a(i), now)
	}
	if n := s.count(); n != 3 {
		t.Errorf("8 peers seen with a bound of 3: count %d, want 3", n)
	}
	if _, ok := s.byAddr[a(9)]; !ok {
		t.Errorf("the latest peer was pushed out instead of the oldest")
	}

	// Through the Exporter: the endpoint at the other end of each discovery datagram.
	e := New()
	ping := &packet.Packet{Proto: packet.ProtoV4, Kind: discv4.KindPing}
	recent := time.Now()
	out, in, other := datagram(record.DirOut, ping), datagram(record.DirIn, ping), datagram(record.DirOut, ping)
	other.Record.Dst = netip.MustParseAddrPort("10.0.0.3:30303")
	undecoded := datagram(record.DirOut, nil)
	undecoded.Record.Dst = netip.MustParseAddrPort("10.0.0.4:30303")
	for _, o := range []*result.Observation{out, in, other, undecoded} {
		o.Record.Time = recent
	}
	write(t, e, out, in, other, undecoded)
	checkValues(t, e, map[string]float64{`discotrace_peers{}`: 2})
}

// The hook plan: 1 for each class's backend, 0 for the better ones the kernel refused;
// a class no backend serves reads backend "none", 0.
func TestHookAttached(t *testing.T) {
	e := New()
	e.SetPlan([]tracer.HookChoice{
		{Class: "send", Backend: tracer.BackendTracepoint, Rejected: []tracer.Rejection{{Backend: tracer.BackendFentry}, {Backend: tracer.BackendKprobe}}},
		{Class: "drop", Backend: tracer.BackendTracepoint},
		{Class: "read", Backend: tracer.BackendNone, Rejected: []tracer.Rejection{{Backend: tracer.BackendFentry}}},
	})
	checkValues(t, e, map[string]float64{
		`discotrace_hook_attached{backend="tracepoint",class="send"}`: 1,
		`discotrace_hook_attached{backend="fentry",class="send"}`:     0,
		`discotrace_hook_attached{backend="kprobe",class="send"}`:     0,
		`discotrace_hook_attached{backend="tracepoint",class="drop"}`: 1,
		`discotrace_hook_attached{backend="none",class="read"}`:       0,
		`discotrace_hook_attached{backend="fentry",class="read"}`:     0,
	})
	got := Values(t, e.Registry())
	if _, ok := got[`discotrace_hook_attached{backend="none",class="read"}`]; !ok {
		t.Errorf("a class without hooks has no series")
	}
	if n := len(seriesOf(got, "discotrace_hook_attached{")); n != 6 {
		t.Errorf("%d hook_attached series, want 6", n)
	}
}

func seriesOf(v map[string]float64, prefix string) []string {
	var s []string
	for k := range v {
		if strings.HasPrefix(k, prefix) {
			s = append(s, k)
		}
	}
	return s
}

// The handler serves the registry in the text format, with the Go and process
// collectors beside discotrace's own.
func TestHandlerServesTheRegistry(t *testing.T) {
	e := New()
	write(t, e, &result.Anomaly{Kind: result.EndpointMismatch})
	rec := httptest.NewRecorder()
	e.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`discotrace_anomalies_total{kind="endpoint_mismatch"} 1`, "go_goroutines ", "process_cpu_seconds_total ", `discotrace_lost_events_total{where="ring_buffer"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if rec.Code != 200 {
		t.Errorf("status %d", rec.Code)
	}
}

// Every metric follows Prometheus naming: the namespace, counters end in _total,
// durations in _seconds, and help text on each.
func TestNaming(t *testing.T) {
	e := New()
	allSeries(t, e)
	mfs, err := e.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "discotrace_") {
			continue
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s does not end in _total", name)
			}
		case dto.MetricType_HISTOGRAM:
			if !strings.HasSuffix(name, "_seconds") {
				t.Errorf("histogram %s is not in seconds", name)
			}
		}
	}
}

// allSeries writes one event of every kind, so that every metric has a series.
func allSeries(t *testing.T, e *Exporter) {
	t.Helper()
	d := 5 * time.Millisecond
	write(t, e,
		datagram(record.DirOut, &packet.Packet{Proto: packet.ProtoV5, Kind: discv5.KindMessage, Err: discv5.ErrNoKey}),
		&result.Observation{Record: record.Record{Kind: record.ICMP, Dir: record.DirIn, Time: t0, Src: remote, ICMPType: 3, ICMPCode: 3}},
		&result.Observation{Record: record.Record{Kind: record.Drop, Time: t0, Reason: "NO_SOCKET"}},
		&result.Observation{Record: record.Record{Kind: record.Lost, Time: t0, Count: 1}},
		&result.Observation{Record: record.Record{Kind: record.Shed, Time: t0, Count: 1, Undecoded: 1, Untracked: 1}},
		&result.Handshake{Outcome: result.Established, Total: &d},
		&result.Exchange{Req: "PING/v5", Outcome: result.Answered, RTT: &d},
		&result.Anomaly{Kind: result.ClockSkew},
	)
	e.SetPlan([]tracer.HookChoice{{Class: "send", Backend: tracer.BackendTracepoint}})
}

// The OTLP export's counters read what the export reports at each collection.
func TestOTLPCounters(t *testing.T) {
	e := New()
	st := OTLPStats{QueueFull: 3, ExportFailed: 5, LogExportFailures: 2}
	e.WatchOTLP(func() OTLPStats { return st })
	st.MetricExportFailures = 1 // read at collection, not at WatchOTLP
	v := Values(t, e.Registry())
	for series, want := range map[string]float64{
		`discotrace_otlp_log_records_lost_total{reason="queue_full"}`:    3,
		`discotrace_otlp_log_records_lost_total{reason="export_failed"}`: 5,
		`discotrace_otlp_export_failures_total{signal="logs"}`:           2,
		`discotrace_otlp_export_failures_total{signal="metrics"}`:        1,
	} {
		if got, ok := v[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
}
