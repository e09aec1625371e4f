// Package metrics counts the decoder's typed results (decode/result) as Prometheus
// metrics: datagrams, handshakes, exchanges and their round trips, kernel drops, ICMP
// errors, lost and shed events, decoder errors, anomalies, peers and the hooks attached.
// It reads the typed values only, never a rendered line, and labels them with few values
// each (never a node ID or an address), following Prometheus naming: base units,
// "_total" on counters.
package metrics

import (
	"container/list"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/p2p/discover/v5wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/discv4"
	"github.com/discotrace/discotrace/decode/discv5"
	"github.com/discotrace/discotrace/decode/live"
	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/tracer"
)

const namespace = "discotrace"

// Label values of what a datagram carried when it was not decoded as discovery.
const (
	// ProtoNone: not decoded at all (--raw, or shed when decoding fell behind).
	ProtoNone = "none"
	// KindNone: no packet kind (not decoded, or not a discovery packet).
	KindNone = "none"
	// Other stands for a value outside the known set, so that no input can grow a label.
	Other = "other"
)

// Where events were lost, the values of discotrace_lost_events_total{where}.
const (
	LostRingBuffer = "ring_buffer" // the kernel's ring buffer was full
	LostLiveQueue  = "live_queue"  // the live path's queue was full: dropped unseen
)

// Why a packet's decoding failed, the values of discotrace_decode_errors_total{reason}.
const (
	ReasonNoKey        = "no_key"        // discv5: no session key (unknown node key, session before the start, random packet)
	ReasonTruncated    = "truncated"     // the snap length cut the payload
	ReasonNotDiscovery = "not_discovery" // neither discv4 nor discv5
	ReasonInvalid      = "invalid"       // malformed, bad signature, bad handshake, ...
)

// PeerWindow is how long a remote endpoint counts in discotrace_peers after its last
// discovery datagram; MaxPeers bounds how many are kept (the oldest go first), so that a
// flood of spoofed sources cannot grow memory.
const (
	PeerWindow = 10 * time.Minute
	MaxPeers   = 65536
)

// durationBuckets (seconds) span a loopback round trip (0.1 ms) to the longest discovery
// timeout (1 s) and past it, for answers that came late.
var durationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// Exporter counts the results written to it (it is a live.Output) in its own registry,
// with the Go runtime's and the process's collectors. Write and the scrapes may run
// concurrently.
type Exporter struct {
	reg *prometheus.Registry

	events       *prometheus.CounterVec
	datagrams    *prometheus.CounterVec
	handshakes   *prometheus.CounterVec
	exchanges    *prometheus.CounterVec
	hsDuration   *prometheus.HistogramVec
	reqDuration  *prometheus.HistogramVec
	drops        *prometheus.CounterVec
	icmp         *prometheus.CounterVec
	lost         *prometheus.CounterVec
	undecoded    prometheus.Counter
	untracked    prometheus.Counter
	decodeErrors *prometheus.CounterVec
	anomalies    *prometheus.CounterVec
	revisions    *prometheus.CounterVec
	hooks        *prometheus.GaugeVec

	peers *peerSet
}

var _ live.Output = (*Exporter)(nil)

// New returns an Exporter with every metric registered. A labelled series appears at its
// first event, but for the two of lost_events_total, there from the start.
func New() *Exporter {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: durationBuckets}, labels)
	}
	e := &Exporter{
		reg: prometheus.NewRegistry(),
		events: counter("events_total",
			"Events written to the stream, by type (send, recv, read, icmp, drop, lost, shed, handshake, exchange, anomaly).", "type"),
		datagrams: counter("datagrams_total",
			"Datagrams of the watched ports, by discovery protocol (none: not decoded), packet kind and direction (send, recv, read by the application; packet in a capture).",
			"protocol", "kind", "direction"),
		handshakes: counter("handshakes_total",
			"discv5 handshakes decided, by outcome (established, failed, open) and cause of failure.", "outcome", "cause"),
		exchanges: counter("exchanges_total",
			"Requests and their responses decided, by protocol, request, outcome (answered, failed, open) and cause of failure.",
			"protocol", "request", "outcome", "cause"),
		hsDuration: histogram("handshake_duration_seconds",
			"discv5 handshakes, first message to the response after the handshake (when seen), by outcome.", "outcome"),
		reqDuration: histogram("request_duration_seconds",
			"Request to response round trips, by protocol, request and outcome.", "protocol", "request", "outcome"),
		drops: counter("kernel_drops_total",
			"Watched datagrams or fragments the kernel freed, by its drop reason (skb_drop_reason name).", "reason"),
		icmp: counter("icmp_errors_total",
			"ICMP and ICMPv6 errors quoting a watched datagram, by IP family, type, code and direction (in: received by this host, out: sent by it).",
			"family", "type", "code", "direction"),
		lost: counter("lost_events_total",
			"Events never delivered, by where they were lost: ring_buffer (the kernel's ring buffer was full), live_queue (the decoder fell behind and dropped them unseen).", "where"),
		undecoded: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "undecoded_datagrams_total",
			Help: "Datagrams reported without protocol decoding because decoding fell behind."}),
		untracked: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "untracked_requests_total",
			Help: "Requests and messages decoded but not followed into exchanges and handshakes: too many were already waiting for answers."}),
		decodeErrors: counter("decode_errors_total",
			"Datagrams whose decoding failed, by protocol and reason (no_key, truncated, not_discovery, invalid).", "protocol", "reason"),
		anomalies: counter("anomalies_total",
			"Anomalies found, by kind (clock_skew, enr_seq_regression, endpoint_mismatch, whoareyou_storm).", "kind"),
		revisions: counter("revisions_total",
			"Failures counted earlier whose cause later evidence revised (a fragment loss known after ipfrag_time), by what failed (handshake, exchange) and the new cause: the failures' own counters keep the first cause.", "of", "cause"),
		hooks: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "hook_attached",
			Help: "1 for the backend whose hooks capture each event class, 0 for the better backends this kernel refused (backend none: the class is not captured)."},
			[]string{"class", "backend"}),
		peers: newPeerSet(PeerWindow, MaxPeers, time.Now),
	}
	peers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "peers",
		Help: "Remote endpoints that sent or were sent a discovery datagram in the last 10 minutes (at most 65536 are kept)."},
		func() float64 { return float64(e.peers.count()) })
	e.reg.MustRegister(e.events, e.datagrams, e.handshakes, e.exchanges, e.hsDuration, e.reqDuration,
		e.drops, e.icmp, e.lost, e.undecoded, e.untracked, e.decodeErrors, e.anomalies, e.revisions, e.hooks, peers,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The labels with a known set of values start at zero, so that rate() sees the first
	// increase and a dashboard shows 0 rather than no data.
	e.lost.WithLabelValues(LostRingBuffer)
	e.lost.WithLabelValues(LostLiveQueue)
	return e
}

// Registry is the Exporter's own registry.
func (e *Exporter) Registry() *prometheus.Registry { return e.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (e *Exporter) Handler() http.Handler {
	return promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{Registry: e.reg})
}

// SetPlan records which backend captures each event class (tracer.Tracer.Plan).
func (e *Exporter) SetPlan(plan []tracer.HookChoice) {
	e.hooks.Reset()
	for _, h := range plan {
		if h.Backend == tracer.BackendNone {
			e.hooks.WithLabelValues(h.Class, tracer.BackendNone).Set(0)
		} else {
			e.hooks.WithLabelValues(h.Class, h.Backend).Set(1)
		}
		for _, r := range h.Rejected {
			e.hooks.WithLabelValues(h.Class, r.Backend).Set(0)
		}
	}
}

// Write counts one event. It never fails.
func (e *Exporter) Write(ev result.Event) error {
	switch ev := ev.(type) {
	case *result.Observation:
		e.observation(ev)
	case *result.Handshake:
		e.events.WithLabelValues(result.TypeHandshake).Inc()
		outcome := string(ev.Outcome)
		e.handshakes.WithLabelValues(outcome, string(ev.Cause)).Inc()
		if ev.Total != nil {
			e.hsDuration.WithLabelValues(outcome).Observe(ev.Total.Seconds())
		}
	case *result.Exchange:
		e.events.WithLabelValues(result.TypeExchange).Inc()
		proto, req := requestLabels(ev.Req)
		outcome := string(ev.Outcome)
		e.exchanges.WithLabelValues(proto, req, outcome, string(ev.Cause)).Inc()
		if ev.RTT != nil {
			e.reqDuration.WithLabelValues(proto, req, outcome).Observe(ev.RTT.Seconds())
		}
	case *result.Anomaly:
		e.events.WithLabelValues(result.TypeAnomaly).Inc()
		e.anomalies.WithLabelValues(string(ev.Kind)).Inc()
	case *result.Revision:
		e.events.WithLabelValues(result.TypeRevision).Inc()
		e.revisions.WithLabelValues(ev.Of, string(ev.Cause)).Inc()
	}
	return nil
}

// Flush does nothing: every Write is counted at once.
func (e *Exporter) Flush() error { return nil }

func (e *Exporter) observation(o *result.Observation) {
	r := &o.Record
	typ := result.TypeOf(r)
	if typ == "" {
		return
	}
	e.events.WithLabelValues(typ).Inc()
	switch r.Kind {
	case record.Datagram, record.Read:
		proto, kind := packetLabels(o.Packet)
		e.datagrams.WithLabelValues(proto, kind, typ).Inc()
		// A read carries the packet of the datagram it read: its failure is that
		// datagram's, counted once, at the datagram.
		if r.Kind == record.Datagram && o.Packet != nil && o.Packet.Err != nil {
			e.decodeErrors.WithLabelValues(proto, errorReason(o.Packet.Err)).Inc()
		}
		if r.Kind == record.Datagram && (proto == packet.ProtoV4 || proto == packet.ProtoV5) {
			switch r.Dir {
			case record.DirOut:
				e.peers.see(r.Dst, r.Time)
			case record.DirIn:
				e.peers.see(r.Src, r.Time)
			}
		}
	case record.ICMP:
		e.icmp.WithLabelValues(family(r), strconv.Itoa(int(r.ICMPType)), strconv.Itoa(int(r.ICMPCode)), direction(r.Dir)).Inc()
	case record.Drop:
		reason := r.Reason
		if reason == "" {
			reason = "unknown"
		}
		e.drops.WithLabelValues(reason).Inc()
	case record.Lost:
		e.lost.WithLabelValues(LostRingBuffer).Add(float64(r.Count))
	case record.Shed:
		e.lost.WithLabelValues(LostLiveQueue).Add(float64(r.Count))
		e.undecoded.Add(float64(r.Undecoded))
		e.untracked.Add(float64(r.Untracked))
	}
}

// packetLabels are a datagram's protocol and kind label values.
func packetLabels(p *packet.Packet) (proto, kind string) {
	if p == nil {
		return ProtoNone, KindNone
	}
	switch p.Proto {
	case packet.ProtoV4:
		return p.Proto, known(p.Kind, v4Kinds)
	case packet.ProtoV5:
		return p.Proto, known(p.Kind, v5Kinds)
	case packet.ProtoUnknown:
		return p.Proto, KindNone
	}
	return Other, KindNone
}

var (
	v4Kinds = set(discv4.KindPing, discv4.KindPong, discv4.KindFindnode, discv4.KindNeighbors,
		discv4.KindENRRequest, discv4.KindENRResponse)
	v5Kinds = set(discv5.KindMessage, discv5.KindWhoareyou, discv5.KindHandshake)
	// v5Requests are the discv5 requests an exchange can name: the message names of
	// go-ethereum's v5wire, and MESSAGE for one that was not decrypted.
	v5Requests = set(discv5.KindMessage, msgName(&v5wire.Ping{}), msgName(&v5wire.Findnode{}), msgName(&v5wire.TalkRequest{}))
)

func msgName(p v5wire.Packet) string {
	name, _, _ := strings.Cut(p.Name(), "/")
	return name
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

func known(v string, values map[string]bool) string {
	switch {
	case v == "":
		return KindNone
	case values[v]:
		return v
	}
	return Other
}

// requestLabels splits an exchange's request name ("PING/v4", "FINDNODE/v5") into its
// protocol and request label values.
func requestLabels(req string) (proto, name string) {
	name, version, _ := strings.Cut(req, "/")
	switch version {
	case "v4":
		return packet.ProtoV4, known(name, v4Kinds)
	case "v5":
		return packet.ProtoV5, known(name, v5Requests)
	}
	return Other, Other
}

// errorReason classes a packet's decoding error into a few label values.
func errorReason(err error) string {
	switch {
	case errors.Is(err, discv5.ErrNoKey):
		return ReasonNoKey
	case errors.Is(err, discv5.ErrTruncated):
		return ReasonTruncated
	case errors.Is(err, decode.ErrNotDiscovery):
		return ReasonNotDiscovery
	}
	return ReasonInvalid
}

// family is the IP family of an ICMP error: which of ICMP or ICMPv6 its type and code
// number.
func family(r *record.Record) string {
	a := r.Src.Addr()
	if !a.IsValid() {
		a = r.QuotedSrc.Addr()
	}
	if a.Unmap().Is4() {
		return "ipv4"
	}
	return "ipv6"
}

func direction(d record.Direction) string {
	switch d {
	case record.DirIn:
		return "in"
	case record.DirOut:
		return "out"
	}
	return "unknown"
}

// peerSet is the remote endpoints seen within a window, at most max of them: past max,
// the least recently seen goes first.
type peerSet struct {
	mu     sync.Mutex
	window time.Duration
	max    int
	now    func() time.Time
	byAddr map[netip.AddrPort]*list.Element // of peerSeen
	order  *list.List                       // least recently seen first
}

type peerSeen struct {
	addr netip.AddrPort
	at   time.Time
}

func newPeerSet(window time.Duration, max int, now func() time.Time) *peerSet {
	return &peerSet{window: window, max: max, now: now, byAddr: make(map[netip.AddrPort]*list.Element), order: list.New()}
}

// see records a datagram to or from a at t.
func (s *peerSet) see(a netip.AddrPort, t time.Time) {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.byAddr[a]; ok {
		if p := el.Value.(*peerSeen); t.After(p.at) {
			p.at = t
			s.order.MoveToBack(el)
		}
		return
	}
	if s.order.Len() >= s.max {
		oldest := s.order.Front()
		delete(s.byAddr, oldest.Value.(*peerSeen).addr)
		s.order.Remove(oldest)
	}
	s.byAddr[a] = s.order.PushBack(&peerSeen{a, t})
}

// count forgets the peers not seen within the window and returns how many are left.
func (s *peerSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	horizon := s.now().Add(-s.window)
	for el := s.order.Front(); el != nil && !el.Value.(*peerSeen).at.After(horizon); el = s.order.Front() {
		delete(s.byAddr, el.Value.(*peerSeen).addr)
		s.order.Remove(el)
	}
	return s.order.Len()
}

// OTLPStats is what the OTLP export (trace --otlp-endpoint, package otlpout) lost.
type OTLPStats struct {
	// Log records dropped because the export queue was full, and lost in exports that
	// failed after the exporter's retries.
	QueueFull, ExportFailed uint64
	// Export requests that failed, by signal.
	LogExportFailures, MetricExportFailures uint64
}

// Label values of the OTLP export's counters.
const (
	SignalLogs       = "logs"
	SignalMetrics    = "metrics"
	LostQueueFull    = "queue_full"
	LostExportFailed = "export_failed"
)

// WatchOTLP adds the OTLP export's counters, read from stats at each collection.
func (e *Exporter) WatchOTLP(stats func() OTLPStats) {
	const (
		lost     = "otlp_log_records_lost_total"
		lostHelp = "Log records the OTLP export (--otlp-endpoint) lost, by reason: queue_full (not queued: the collector was down or too slow), export_failed (in exports that failed after the exporter's retries)."
		failed   = "otlp_export_failures_total"
		failHelp = "OTLP export requests (--otlp-endpoint) that failed after the exporter's retries, by signal (logs, metrics)."
	)
	counter := func(name, help, label, value string, get func(*OTLPStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help,
			ConstLabels: prometheus.Labels{label: value}}, func() float64 { s := stats(); return float64(get(&s)) })
	}
	e.reg.MustRegister(
		counter(lost, lostHelp, "reason", LostQueueFull, func(s *OTLPStats) uint64 { return s.QueueFull }),
		counter(lost, lostHelp, "reason", LostExportFailed, func(s *OTLPStats) uint64 { return s.ExportFailed }),
		counter(failed, failHelp, "signal", SignalLogs, func(s *OTLPStats) uint64 { return s.LogExportFailures }),
		counter(failed, failHelp, "signal", SignalMetrics, func(s *OTLPStats) uint64 { return s.MetricExportFailures }),
	)
}
