package otlpout_test

import (
	"bytes"
	"context"
	stdlog "log"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"

	"github.com/discotrace/discotrace/decode/discv4"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/internal/otlptest"
	"github.com/discotrace/discotrace/metrics"
	"github.com/discotrace/discotrace/otlpout"
)

var (
	local  = netip.MustParseAddrPort("10.0.0.1:30303")
	remote = netip.MustParseAddrPort("10.0.0.2:30304")
	t0     = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	peerID = enode.HexID("a448f24c6d18e575453db13171562b71999873db5b286df957af199ec94617f7")
)

// events is a small stream: a PING sent and its PONG, the exchange they make, a PING
// from the peer this host never answered, a kernel drop and events lost.
func events() []result.Event {
	rtt := 2 * time.Millisecond
	ping := &packet.Packet{Proto: packet.ProtoV4, Kind: discv4.KindPing, HasDstID: true, DstID: peerID}
	pong := &packet.Packet{Proto: packet.ProtoV4, Kind: discv4.KindPong, HasSrcID: true, SrcID: peerID}
	evs := []result.Event{
		&result.Observation{Record: record.Record{Kind: record.Datagram, Dir: record.DirOut, Time: t0, Src: local, Dst: remote, Len: 98,
			HasProc: true, PID: 42, TID: 43, Comm: "geth"}, Packet: ping},
		&result.Observation{Record: record.Record{Kind: record.Datagram, Dir: record.DirIn, Time: t0.Add(rtt), Src: remote, Dst: local, Len: 90}, Packet: pong},
		&result.Exchange{Head: result.Head{Time: t0}, Initiator: local, Recipient: remote, RecipientID: &peerID,
			Req: "PING/v4", Resp: "PONG/v4", Outcome: result.Answered, RTT: &rtt},
		&result.Exchange{Head: result.Head{Time: t0.Add(time.Second)}, Initiator: remote, Recipient: local, InitiatorID: &peerID,
			Req: "PING/v4", Outcome: result.Failed, Cause: result.AppDrop,
			Evidence: []result.Evidence{{Seq: 2, Time: t0, Observed: result.TypeRecv}}},
		&result.Observation{Record: record.Record{Kind: record.Drop, Dir: record.DirIn, Time: t0.Add(2 * time.Second), Src: remote, Dst: local, Reason: "SOCKET_RCVBUFF"}},
		&result.Observation{Record: record.Record{Kind: record.Lost, Time: t0.Add(3 * time.Second), Count: 7}},
		// A router's port unreachable about the PING this host sent.
		&result.Observation{Record: record.Record{Kind: record.ICMP, Dir: record.DirIn, Time: t0.Add(4 * time.Second),
			Src: netip.MustParseAddrPort("192.0.2.1:0"), Dst: netip.AddrPortFrom(local.Addr(), 0), ICMPType: 3, ICMPCode: 3,
			QuotedSrc: local, QuotedDst: remote}},
	}
	for i, ev := range evs {
		ev.EventHead().Seq = uint64(i + 1)
		if o, ok := ev.(*result.Observation); ok {
			o.Time = o.Record.Time
		}
	}
	return evs
}

// syncBuffer is stderr for a logger the exporter's goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func open(t *testing.T, url string, cfg otlpout.Config) (*otlpout.Exporter, *syncBuffer) {
	t.Helper()
	ep, err := otlpout.ParseEndpoint(url)
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cfg.Endpoint, cfg.Log = ep, stdlog.New(&stderr, "", 0)
	x, err := otlpout.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return x, &stderr
}

func str(r *logspb.LogRecord, key string) string {
	return otlptest.Attr(r.GetAttributes(), key).GetStringValue()
}
func num(r *logspb.LogRecord, key string) int64 {
	return otlptest.Attr(r.GetAttributes(), key).GetIntValue()
}

// A collector over gRPC and over HTTP gets one record per event, with the semantic
// conventions' attributes, and the metrics counted from the same events.
func TestExportToCollector(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB) *otlptest.Receiver
	}{{"grpc", otlptest.StartGRPC}, {"http", otlptest.StartHTTP}} {
		t.Run(tc.name, func(t *testing.T) {
			recv := tc.start(t)
			m := metrics.New()
			x, stderr := open(t, recv.URL, otlpout.Config{Metrics: m.Registry(), IsLocal: func(a netip.AddrPort) bool { return a == local }, Version: "test"})
			evs := events()
			for _, ev := range evs {
				if err := x.Write(ev); err != nil {
					t.Fatal(err)
				}
				m.Write(ev)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st := x.Close(ctx)
			if want := (otlpout.Stats{Queued: uint64(len(evs)), Exported: uint64(len(evs))}); st != want {
				t.Errorf("stats %+v, want %+v", st, want)
			}
			if s := stderr.String(); s != "" {
				t.Errorf("stderr: %s", s)
			}
			recs := recv.Records()
			if len(recs) != len(evs) {
				t.Fatalf("%d records for %d events", len(recs), len(evs))
			}
			for i, r := range recs {
				if got := num(r, "discotrace.seq"); got != int64(i+1) {
					t.Errorf("record %d: seq %d", i, got)
				}
				seen := map[string]bool{}
				for _, kv := range r.GetAttributes() {
					if seen[kv.GetKey()] {
						t.Errorf("record %d: attribute %s twice", i, kv.GetKey())
					}
					seen[kv.GetKey()] = true
				}
				if got, want := time.Unix(0, int64(r.GetTimeUnixNano())), evs[i].EventHead().Time; !got.Equal(want) {
					t.Errorf("record %d: time %v, want %v", i, got, want)
				}
			}
			if s := recv.Services(); s[0] != "discotrace" {
				t.Errorf("service.name %q", s[0])
			}
			send, exch, unanswered, drop, lost, icmp := recs[0], recs[2], recs[3], recs[4], recs[5], recs[6]
			for _, c := range []struct{ got, want any }{
				{send.GetBody().GetStringValue(), "send"},
				{send.GetSeverityNumber(), logspb.SeverityNumber_SEVERITY_NUMBER_INFO},
				{str(send, "network.peer.address"), "10.0.0.2"},
				{num(send, "network.peer.port"), int64(30304)},
				{str(send, "network.local.address"), "10.0.0.1"},
				{num(send, "network.local.port"), int64(30303)},
				{str(send, "network.transport"), "udp"},
				{str(send, "network.protocol.name"), "discv4"},
				{str(send, "discotrace.kind"), "PING"},
				{str(send, "discotrace.peer.node_id"), peerID.String()},
				{num(send, "process.pid"), int64(42)},
				{str(send, "thread.name"), "geth"},
				{exch.GetBody().GetStringValue(), "exchange"},
				{str(exch, "discotrace.outcome"), "answered"},
				{num(exch, "discotrace.rtt_ns"), int64(2 * time.Millisecond)},
				{str(exch, "discotrace.initiator"), "local"},
				{str(exch, "network.peer.address"), "10.0.0.2"},
				{otlptest.Attr(exch.GetAttributes(), "error.type") == nil, true},
				// The peer's PING: the peer is its initiator.
				{unanswered.GetSeverityNumber(), logspb.SeverityNumber_SEVERITY_NUMBER_WARN},
				{str(unanswered, "error.type"), "app_drop"},
				{str(unanswered, "discotrace.initiator"), "peer"},
				{num(unanswered, "network.peer.port"), int64(30304)},
				{str(unanswered, "discotrace.peer.node_id"), peerID.String()},
				{otlptest.Attr(unanswered.GetAttributes(), "discotrace.evidence").GetArrayValue().GetValues()[0].GetIntValue(), int64(2)},
				{str(drop, "error.type"), "SOCKET_RCVBUFF"},
				{drop.GetSeverityNumber(), logspb.SeverityNumber_SEVERITY_NUMBER_WARN},
				{num(lost, "discotrace.count"), int64(7)},
				{lost.GetSeverityNumber(), logspb.SeverityNumber_SEVERITY_NUMBER_WARN},
				{str(icmp, "network.peer.address"), "10.0.0.2"},
				{num(icmp, "network.peer.port"), int64(30304)},
				{str(icmp, "network.local.address"), "10.0.0.1"},
				{str(icmp, "discotrace.icmp.from"), "192.0.2.1"},
				{num(icmp, "discotrace.icmp.code"), int64(3)},
			} {
				if c.got != c.want {
					t.Errorf("got %v, want %v", c.got, c.want)
				}
			}
			// The final export at Close carries the metrics of the same events.
			var events float64
			for _, mt := range recv.Metrics() {
				if mt.GetName() == "discotrace_events_total" {
					events = 0 // each export holds the cumulative total
					for _, dp := range mt.GetSum().GetDataPoints() {
						events += dp.GetAsDouble()
					}
				}
			}
			if events != float64(len(evs)) {
				t.Errorf("discotrace_events_total %v, want %d", events, len(evs))
			}
		})
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A collector that is down: Write never waits, what the queue cannot take is dropped and
// counted, stderr says so once, and Close keeps to its deadline.
func TestCollectorDown(t *testing.T) {
	const queue = 4
	x, stderr := open(t, "grpc://"+closedPort(t), otlpout.Config{QueueSize: queue, BatchInterval: 10 * time.Millisecond, ExportTimeout: 200 * time.Millisecond})
	const n = 50
	for i := range n {
		x.Write(&result.Observation{Head: result.Head{Seq: uint64(i + 1), Time: t0}, Record: record.Record{Kind: record.Lost, Time: t0, Count: 1}})
	}
	// Wait for a failed export: the records it held are counted failed.
	for x.Stats().LogExportFailures == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	st := x.Close(ctx)
	if st.Dropped < n-queue || st.Exported != 0 || st.Queued+st.Dropped != n || st.Queued != st.Failed+st.Unsent {
		t.Errorf("stats %+v: want at least %d dropped, %d in all, none exported", st, n-queue, n)
	}
	if got := strings.Count(stderr.String(), "failed"); got != 1 {
		t.Errorf("stderr says it failed %d times, want once:\n%s", got, stderr)
	}
}

// A collector that refuses exports, then takes them again: stderr says so once each way.
func TestCollectorRecovers(t *testing.T) {
	recv := otlptest.StartHTTP(t)
	recv.Refuse.Store(true)
	x, stderr := open(t, recv.URL, otlpout.Config{BatchInterval: 10 * time.Millisecond})
	write := func(seq uint64) {
		x.Write(&result.Observation{Head: result.Head{Seq: seq, Time: t0}, Record: record.Record{Kind: record.Lost, Time: t0, Count: 1}})
	}
	for i := range 3 {
		write(uint64(i + 1))
		for x.Stats().LogExportFailures <= uint64(i) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	recv.Refuse.Store(false)
	write(4)
	for x.Stats().Exported == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	st := x.Close(context.Background())
	if st.Failed != 3 || st.Exported != 1 || st.LogExportFailures != 3 {
		t.Errorf("stats %+v: want 3 records failed in 3 exports, 1 exported", st)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "failed (logs)") || !strings.Contains(lines[1], "works again") {
		t.Errorf("stderr: want one failure and one recovery line, got\n%s", stderr)
	}
}

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in, hostPort, path string
		transport          otlpout.Transport
		tls                bool
	}{
		{"grpc://127.0.0.1:4317", "127.0.0.1:4317", "", otlpout.GRPC, false},
		{"grpcs://collector.example", "collector.example:4317", "", otlpout.GRPC, true},
		{"http://[::1]:4318/", "[::1]:4318", "", otlpout.HTTP, false},
		{"https://otel.example/prefix", "otel.example:4318", "/prefix", otlpout.HTTP, true},
	} {
		e, err := otlpout.ParseEndpoint(tc.in)
		if err != nil || e.HostPort != tc.hostPort || e.Path != tc.path || e.Transport != tc.transport || e.TLS != tc.tls {
			t.Errorf("%s: %+v, %v", tc.in, e, err)
		}
	}
	for _, bad := range []string{"", "localhost:4317", "tcp://h:1", "grpc://", "grpc://h:0", "grpc://h:70000", "grpc://h:1/path", "http://u@h:1", "http://h:1/?q"} {
		if _, err := otlpout.ParseEndpoint(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
