package main

import (
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"

	"github.com/discotrace/discotrace/internal/otlptest"
	"github.com/discotrace/discotrace/ndjson"
)

// `discotrace trace --otlp-endpoint --output FILE` beside real go-ethereum nodes on
// loopback (two discv4 nodes pinging each other, a discv5 handshake with the recipient's
// key given, a discv4 PING to a port where nothing listens), into a collector started
// here, over gRPC and over HTTP: the collector gets one log record per NDJSON line, in
// the same order, each saying what its line says, and the metrics count the same events.
func TestOTLPExportMatchesTheStream(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB) *otlptest.Receiver
	}{{"grpc", otlptest.StartGRPC}, {"http", otlptest.StartHTTP}} {
		t.Run(tc.name, func(t *testing.T) {
			gone := portWithNoListener(t)
			recv := tc.start(t)
			v4a, v4b := newDiscv4Socket(t), newDiscv4Socket(t)
			v5a, v5b := newDiscv4Socket(t), newDiscv4Socket(t)
			v5bKey, err := crypto.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "events.ndjson")
			f := traceWith(3*time.Second, udpPort(v4b), udpPort(v5b), gone)
			f.otlp.endpoint = recv.URL
			f.outputs = []string{out}
			f.nodeKeys = []string{hex.EncodeToString(crypto.FromECDSA(v5bKey))}
			_, stderr, done := startTrace(t, f)

			nodeA, nodeB := listenV4(t, v4a), listenV4(t, v4b)
			defer nodeA.Close()
			defer nodeB.Close()
			nodeC, nodeD := listenV5(t, v5a, nil), listenV5(t, v5b, v5bKey)
			defer nodeC.Close()
			defer nodeD.Close()
			for range 3 {
				nodeA.Ping(nodeB.Self())
				nodeC.Ping(nodeD.Self())
			}
			pingGonePeer(t, gone)
			if err := <-done; err != nil {
				t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
			}
			if strings.Contains(stderr.String(), "OTLP") {
				t.Errorf("stderr speaks of the OTLP export, which had nothing to report:\n%s", stderr)
			}

			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			recs := recv.Records()
			if len(recs) != len(lines) {
				t.Fatalf("%d log records for %d NDJSON lines", len(recs), len(lines))
			}
			types := map[string]int{}
			for i, line := range lines {
				var ev ndjson.Event
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("line %q: %v", line, err)
				}
				types[ev.Type]++
				if diff := compareRecord(&ev, recs[i]); diff != "" {
					t.Errorf("record %d of %s: %s", i, line, diff)
				}
			}
			for _, want := range []string{"send", "recv", "exchange", "handshake", "icmp"} {
				if types[want] == 0 {
					t.Errorf("no %s event: nothing to compare it on (%v)", want, types)
				}
			}
			// The last metrics export, at exit, counts every event.
			var counted float64
			for _, m := range recv.Metrics() {
				if m.GetName() == "discotrace_events_total" {
					counted = 0
					for _, dp := range m.GetSum().GetDataPoints() {
						counted += dp.GetAsDouble()
					}
				}
			}
			if counted != float64(len(lines)) {
				t.Errorf("exported discotrace_events_total %v, want the %d events", counted, len(lines))
			}
			t.Logf("%d events, each as an NDJSON line and a log record (%v)", len(lines), types)
		})
	}
}

// compareRecord says how r differs from the NDJSON event it was made from.
func compareRecord(ev *ndjson.Event, r *logspb.LogRecord) string {
	attr := func(key string) string {
		v := otlptest.Attr(r.GetAttributes(), key)
		if v == nil {
			return ""
		}
		if s, ok := v.GetValue().(interface{ GetStringValue() string }); ok {
			return s.GetStringValue()
		}
		if v.GetStringValue() != "" {
			return v.GetStringValue()
		}
		return strconv.FormatInt(v.GetIntValue(), 10)
	}
	endpoint := func(side string) string {
		a, p := attr("network."+side+".address"), attr("network."+side+".port")
		if a == "" {
			return ""
		}
		return net.JoinHostPort(a, p)
	}
	var diffs []string
	check := func(what, got, want string) {
		if got != want {
			diffs = append(diffs, what+" "+strconv.Quote(got)+", want "+strconv.Quote(want))
		}
	}
	seen := map[string]bool{} // the exporter leaves deduplication to the record's builder
	for _, kv := range r.GetAttributes() {
		if seen[kv.GetKey()] {
			diffs = append(diffs, "attribute "+kv.GetKey()+" twice")
		}
		seen[kv.GetKey()] = true
	}
	check("body", r.GetBody().GetStringValue(), ev.Type)
	check("seq", attr("discotrace.seq"), strconv.FormatUint(ev.Seq, 10))
	check("time", ndjson.Time(time.Unix(0, int64(r.GetTimeUnixNano()))), ev.Time)
	warn := ev.Outcome == "failed" || ev.Type == ndjson.TypeICMP || ev.Type == ndjson.TypeDrop || ev.Ret != nil && *ev.Ret < 0
	check("severity", r.GetSeverityText(), map[bool]string{true: "WARN", false: "INFO"}[warn])
	switch ev.Type {
	case ndjson.TypeSend:
		check("peer", endpoint("peer"), ev.Dst)
		check("local", endpoint("local"), ev.Src)
	case ndjson.TypeRecv, ndjson.TypeRead:
		check("peer", endpoint("peer"), ev.Src)
		check("local", endpoint("local"), ev.Dst)
	case ndjson.TypeICMP: // the peer is the other end of the datagram it quotes
		switch ev.Dir {
		case "in":
			check("peer", endpoint("peer"), ev.QuotedDst)
		case "out":
			check("peer", endpoint("peer"), ev.QuotedSrc)
		}
	case ndjson.TypeHandshake, ndjson.TypeExchange:
		check("outcome", attr("discotrace.outcome"), ev.Outcome)
		check("error.type", attr("error.type"), ev.Cause)
		// Every node here is local: the recipient is the peer.
		check("peer", endpoint("peer"), ev.Recipient)
		if ev.RTTNs != nil {
			check("rtt", attr("discotrace.rtt_ns"), strconv.FormatInt(*ev.RTTNs, 10))
		}
	}
	if ev.Disc != nil && ev.Disc.Proto != "unknown" {
		check("protocol", attr("network.protocol.name"), ev.Disc.Proto)
		check("kind", attr("discotrace.kind"), ev.Disc.Kind)
	}
	if ev.Type != ndjson.TypeLost && ev.Type != ndjson.TypeShed {
		check("transport", attr("network.transport"), "udp")
	}
	return strings.Join(diffs, "; ")
}

// With the collector down, trace goes on writing its events, says once on stderr that the
// export fails (in a short run, at exit, with how many records the collector did not get),
// and exits 0.
func TestOTLPEndpointDown(t *testing.T) {
	gone := portWithNoListener(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	f := traceWith(2*time.Second, gone)
	f.otlp.endpoint = "grpc://" + down
	stdout, stderr, done := startTrace(t, f)
	for range 3 {
		pingGonePeer(t, gone)
	}
	if err := <-done; err != nil {
		t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
	}
	if n := strings.Count(stdout.String(), "\n"); n < 6 {
		t.Errorf("%d events written with the collector down, want the pings' sends, ICMP errors and drops:\n%s", n, stdout)
	}
	var said []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "OTLP") {
			said = append(said, line)
		}
	}
	if len(said) != 1 || !strings.Contains(said[0], "OTLP export to grpc://"+down+": ") ||
		!strings.Contains(said[0], "log records not delivered") || !strings.Contains(said[0], "connection refused") {
		t.Errorf("stderr: want one line saying what the collector did not get and why, got\n%s", stderr)
	}
}
