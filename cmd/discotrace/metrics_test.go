package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/p2p/discover"
	"github.com/ethereum/go-ethereum/p2p/discover/v4wire"
	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/discotrace/discotrace/ndjson"
)

func TestMetricsListenAddr(t *testing.T) {
	for in, want := range map[string]string{
		"9431":              "127.0.0.1:9431",
		":9431":             "127.0.0.1:9431",
		"0":                 "127.0.0.1:0",
		"0.0.0.0:9431":      "0.0.0.0:9431",
		"[::1]:9431":        "[::1]:9431",
		"metrics.host:9431": "metrics.host:9431",
	} {
		if got, err := metricsListenAddr(in); err != nil || got != want {
			t.Errorf("metricsListenAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"localhost", "99999", ":http", "1.2.3.4:", "-1"} {
		if got, err := metricsListenAddr(bad); err == nil {
			t.Errorf("metricsListenAddr(%q) = %q, want an error", bad, got)
		}
	}
}

// A bad --metrics-addr is a usage error (status 2); an address another program holds
// fails at start (status 1) with one line naming the flag, before anything is traced:
// this needs no privileges.
func TestMetricsAddrThatCannotBeServed(t *testing.T) {
	out, err := runCommand(newTraceCmd(), "--metrics-addr", "localhost")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("--metrics-addr localhost: %v (output %q), want a usage error naming the flag", err, out)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := fmt.Sprint(taken.Addr().(*net.TCPAddr).Port)
	out, err = runCommand(newTraceCmd(), "--metrics-addr", port, "--duration", "1s")
	if err == nil {
		t.Fatalf("trace --metrics-addr %s (in use) succeeded; output %q", port, out)
	}
	if errors.As(err, &ee) {
		t.Errorf("exit status %d, want 1", ee.code)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "--metrics-addr 127.0.0.1:"+port) || !strings.Contains(msg, "address already in use") {
		t.Errorf("error %q: want one line naming --metrics-addr, the address and that it is in use", msg)
	}
	if strings.Contains(out, "hooks attached") {
		t.Errorf("trace attached before failing on its metrics address:\n%s", out)
	}
}

// `discotrace trace --metrics-addr` beside real go-ethereum nodes (p2p/discover, what geth
// runs) on loopback: two discv4 nodes ping each other, a discv5 node pings another whose
// key trace holds (handshakes, decrypted exchanges), and a discv4 PING goes to a port
// where nothing listens (ICMP errors, a drop, a failed exchange). Scraped while trace
// runs, /metrics must say what the NDJSON stream says: every series of every discotrace
// counter and histogram equals the count (or sum) of the stream's events it counts, and
// hook_attached is the plan trace printed (with --verbose).
//
// Both are written from the same results, the stream at each burst's flush: they agree
// whenever the stream is idle, so the test scrapes until a scrape finds the stream
// unchanged across it, and fails if that never happens while trace runs.
func TestMetricsEndpointCountsTheTracedEvents(t *testing.T) {
	gone := portWithNoListener(t)
	v4a, v4b := newDiscv4Socket(t), newDiscv4Socket(t)
	v5a, v5b := newDiscv4Socket(t), newDiscv4Socket(t)
	v5bKey, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}

	f := traceWith(0, udpPort(v4b), udpPort(v5b), gone)
	f.metricsAddr = "0" // a free port on 127.0.0.1
	f.verbose = true    // the plan on stderr, to compare hook_attached with
	f.nodeKeys = []string{hex.EncodeToString(crypto.FromECDSA(v5bKey))}
	stdout := new(syncBuffer)
	stderr := &statusWriter{attached: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runTrace(ctx, stdout, stderr, f) }()
	select {
	case <-stderr.attached:
	case err := <-done:
		t.Fatalf("trace ended before attaching: %v (stderr: %s)", err, stderr.String())
	}
	url := regexp.MustCompile(`metrics at (http://\S+)`).FindStringSubmatch(stderr.String())
	if url == nil {
		t.Fatalf("trace did not say where its metrics are:\n%s", stderr.String())
	}

	nodeA, nodeB := listenV4(t, v4a), listenV4(t, v4b)
	defer nodeA.Close()
	defer nodeB.Close()
	nodeC, nodeD := listenV5(t, v5a, nil), listenV5(t, v5b, v5bKey)
	defer nodeC.Close()
	defer nodeD.Close()
	var v4ok, v5ok int
	for range 5 {
		if _, err := nodeA.Ping(nodeB.Self()); err == nil {
			v4ok++
		}
		if _, err := nodeC.Ping(nodeD.Self()); err == nil {
			v5ok++
		}
	}
	if v4ok == 0 || v5ok == 0 {
		t.Fatalf("go-ethereum saw %d of 5 discv4 and %d of 5 discv5 pings answered: nothing to trace", v4ok, v5ok)
	}
	pingGonePeer(t, gone)

	// Scrape until the stream and the metrics agree on a settled run: the pings answered,
	// the handshake established and the gone peer's ping decided.
	var diff []string
	var want map[string]float64
	settled, scrapes := false, 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		before := stdout.String()
		scraped := scrape(t, url[1])
		scrapes++
		if stdout.String() != before {
			continue
		}
		var complete bool
		want, complete = countStream(t, before, stderr.String())
		diff = compareSeries(scraped, want)
		if complete && len(diff) == 0 {
			settled = true
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
	}
	if !settled {
		t.Fatalf("/metrics never matched the NDJSON stream (or the stream never showed every scenario):\n%s\nstream:\n%s",
			strings.Join(diff, "\n"), stdout.String())
	}
	t.Logf("after %d scrapes, %d series of the metrics match the %d stream lines", scrapes, len(want), strings.Count(stdout.String(), "\n"))
	if _, err := http.Get(url[1]); err == nil {
		t.Errorf("%s still served after trace ended", url[1])
	}
}

func udpPort(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

// listenV5 runs a go-ethereum discv5 node on socket c, with key (nil: a new one).
func listenV5(t *testing.T, c *net.UDPConn, k *ecdsa.PrivateKey) *discover.UDPv5 {
	t.Helper()
	if k == nil {
		var err error
		if k, err = crypto.GenerateKey(); err != nil {
			t.Fatal(err)
		}
	}
	db, err := enode.OpenDB("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	ln := enode.NewLocalNode(db, k)
	addr := c.LocalAddr().(*net.UDPAddr)
	ln.SetStaticIP(addr.IP)
	ln.SetFallbackUDP(addr.Port)
	udp, err := discover.ListenV5(c, ln, discover.Config{PrivateKey: k, NoFindnodeLivenessCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	return udp
}

// pingGonePeer sends a signed discv4 PING to a loopback port where nothing listens.
func pingGonePeer(t *testing.T, port int) {
	t.Helper()
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	from := c.LocalAddr().(*net.UDPAddr)
	p, _, err := v4wire.Encode(key, &v4wire.Ping{Version: 4,
		From:       v4wire.Endpoint{IP: from.IP, UDP: uint16(from.Port)},
		To:         v4wire.Endpoint{IP: net.IPv4(127, 0, 0, 1), UDP: uint16(port)},
		Expiration: uint64(time.Now().Add(20 * time.Second).Unix())})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(p); err != nil {
		t.Fatal(err)
	}
}

// scrape reads url's metrics as "name{label="value",...}" -> value (labels sorted; a
// histogram gives name_count and name_sum).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	v := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				v[series(name, labels)] = m.Counter.GetValue()
			case m.Gauge != nil:
				v[series(name, labels)] = m.Gauge.GetValue()
			case m.Histogram != nil:
				v[series(name+"_count", labels)] = float64(m.Histogram.GetSampleCount())
				v[series(name+"_sum", labels)] = m.Histogram.GetSampleSum()
			}
		}
	}
	return v
}

func series(name string, labels map[string]string) string {
	var l []string
	for k, v := range labels {
		if v != "" { // an empty label is no label, as Prometheus has it
			l = append(l, fmt.Sprintf("%s=%q", k, v))
		}
	}
	sort.Strings(l)
	return name + "{" + strings.Join(l, ",") + "}"
}

// countedFamilies are the metrics the stream's events determine: each series of them is
// compared. (The Go and process collectors' are not.)
var countedFamilies = []string{
	"discotrace_events_total", "discotrace_datagrams_total", "discotrace_handshakes_total",
	"discotrace_exchanges_total", "discotrace_handshake_duration_seconds_count",
	"discotrace_handshake_duration_seconds_sum", "discotrace_request_duration_seconds_count",
	"discotrace_request_duration_seconds_sum", "discotrace_kernel_drops_total",
	"discotrace_icmp_errors_total", "discotrace_lost_events_total", "discotrace_undecoded_datagrams_total",
	"discotrace_untracked_requests_total", "discotrace_decode_errors_total", "discotrace_anomalies_total",
	"discotrace_hook_attached", "discotrace_peers",
}

// countStream counts the NDJSON lines of out as the metrics should: it returns each
// series' expected value, and whether the stream shows every scenario of the test
// settled (pings answered both ways, a handshake established, the gone peer's ping
// failed on its ICMP error, a drop). Decode errors are compared per protocol, their
// reasons summed (the stream has only the error's text); hook_attached comes from the
// plan trace printed on stderr.
func countStream(t *testing.T, out, stderr string) (want map[string]float64, complete bool) {
	t.Helper()
	want = map[string]float64{}
	add := func(v float64, name string, kv ...string) {
		labels := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			labels[kv[i]] = kv[i+1]
		}
		want[series(name, labels)] += v
	}
	seen := map[string]bool{}
	peers := map[string]bool{} // the other end of each discovery datagram: all within the 10 minutes counted
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var ev ndjson.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		add(1, "discotrace_events_total", "type", ev.Type)
		switch ev.Type {
		case ndjson.TypeSend, ndjson.TypeRecv, ndjson.TypeRead:
			proto, kind := "none", "none"
			if ev.Disc != nil {
				proto = ev.Disc.Proto
				if ev.Disc.Kind != "" {
					kind = ev.Disc.Kind
				}
				if ev.Disc.Error != "" && ev.Type != ndjson.TypeRead {
					add(1, "discotrace_decode_errors_total", "protocol", proto)
				}
			}
			add(1, "discotrace_datagrams_total", "protocol", proto, "kind", kind, "direction", ev.Type)
			if proto == "discv4" || proto == "discv5" {
				switch ev.Type {
				case ndjson.TypeSend:
					peers[ev.Dst] = true
				case ndjson.TypeRecv:
					peers[ev.Src] = true
				}
			}
		case ndjson.TypeICMP:
			family := "ipv4"
			if strings.HasPrefix(ev.Src, "[") {
				family = "ipv6"
			}
			add(1, "discotrace_icmp_errors_total", "family", family, "type", fmt.Sprint(*ev.ICMPType), "code", fmt.Sprint(*ev.ICMPCode), "direction", ev.Dir)
		case ndjson.TypeDrop:
			add(1, "discotrace_kernel_drops_total", "reason", ev.Reason)
			seen["drop"] = true
		case ndjson.TypeLost:
			add(float64(*ev.Count), "discotrace_lost_events_total", "where", "ring_buffer")
		case ndjson.TypeShed:
			add(float64(deref(ev.Count)), "discotrace_lost_events_total", "where", "live_queue")
			add(float64(deref(ev.Undecoded)), "discotrace_undecoded_datagrams_total")
			add(float64(deref(ev.Untracked)), "discotrace_untracked_requests_total")
		case ndjson.TypeHandshake:
			add(1, "discotrace_handshakes_total", "outcome", ev.Outcome, "cause", ev.Cause)
			if ev.TotalNs != nil {
				add(1, "discotrace_handshake_duration_seconds_count", "outcome", ev.Outcome)
				add(float64(*ev.TotalNs)/1e9, "discotrace_handshake_duration_seconds_sum", "outcome", ev.Outcome)
			}
			seen["handshake "+ev.Outcome] = true
		case ndjson.TypeExchange:
			name, version, _ := strings.Cut(ev.Req, "/")
			proto := map[string]string{"v4": "discv4", "v5": "discv5"}[version]
			add(1, "discotrace_exchanges_total", "protocol", proto, "request", name, "outcome", ev.Outcome, "cause", ev.Cause)
			if ev.RTTNs != nil {
				add(1, "discotrace_request_duration_seconds_count", "protocol", proto, "request", name, "outcome", ev.Outcome)
				add(float64(*ev.RTTNs)/1e9, "discotrace_request_duration_seconds_sum", "protocol", proto, "request", name, "outcome", ev.Outcome)
			}
			seen[ev.Req+" "+ev.Outcome+" "+ev.Cause] = true
		case ndjson.TypeAnomaly:
			add(1, "discotrace_anomalies_total", "kind", ev.Anomaly)
		}
	}
	add(float64(len(peers)), "discotrace_peers")
	// The plan lines: "discotrace: CLASS    BACKEND: hooks".
	for _, m := range regexp.MustCompile(`(?m)^discotrace: (\S+) +(fentry|kprobe|tracepoint|none):`).FindAllStringSubmatch(stderr, -1) {
		add(1, "discotrace_hook_attached", "class", m[1], "backend", m[2])
		if m[2] == "none" {
			want[series("discotrace_hook_attached", map[string]string{"class": m[1], "backend": m[2]})] = 0
		}
	}
	complete = seen["PING/v4 answered "] && seen["PING/v5 answered "] && seen["handshake established"] &&
		seen["PING/v4 failed icmp_unreachable"] && seen["drop"]
	return want, complete
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// compareSeries lists how scraped differs from want in the counted families: a series
// with another value, one missing, or one not in want that is not 0. Decode errors are
// summed over their reasons; hook_attached's 0 series (backends refused) are not
// printed on stderr one per class and are checked only for being 0.
func compareSeries(scraped, want map[string]float64) []string {
	got := map[string]float64{}
	for s, v := range scraped {
		name, _, _ := strings.Cut(s, "{")
		if !exporterCounts(name) {
			continue
		}
		if name == "discotrace_decode_errors_total" {
			s = regexp.MustCompile(`,?reason="[^"]*"`).ReplaceAllString(s, "")
		}
		got[s] += v
	}
	var diff []string
	for s, w := range want {
		if g, ok := got[s]; !ok && w != 0 || math.Abs(g-w) > 1e-6 {
			diff = append(diff, fmt.Sprintf("%s: scraped %v, stream %v", s, g, w))
		}
	}
	for s, g := range got {
		if _, ok := want[s]; !ok && g != 0 {
			diff = append(diff, fmt.Sprintf("%s: scraped %v, not in the stream", s, g))
		}
	}
	sort.Strings(diff)
	return diff
}

func exporterCounts(name string) bool {
	for _, f := range countedFamilies {
		if f == name {
			return true
		}
	}
	return false
}

// syncBuffer is a buffer that trace writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
