// Package otlpout exports the decoder's typed results (decode/result) as OpenTelemetry
// log records, one per event, and the Prometheus registry of package metrics as OTLP
// metrics, to a collector over OTLP/gRPC or OTLP/HTTP. It uses the OpenTelemetry SDK's
// batch processor and periodic reader; a collector that is down never holds up Write:
// what the queue cannot take is dropped and counted, export failures are reported once
// per failure streak and counted, and the exporters retry.
package otlpout

import (
	"context"
	"io"
	stdlog "log"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	promotel "go.opentelemetry.io/contrib/bridges/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/discotrace/discotrace/decode/live"
	"github.com/discotrace/discotrace/decode/result"
)

// Defaults of Config.
const (
	// DefaultQueueSize is how many log records wait for export at most: a few seconds
	// of a busy node's events. More are dropped, and counted, until the queue drains.
	DefaultQueueSize = 8192
	// DefaultBatchSize is the most records in one export request.
	DefaultBatchSize = 512
	// DefaultBatchInterval is the longest a record waits for its batch to fill.
	DefaultBatchInterval = time.Second
	// DefaultExportTimeout bounds one export, the exporter's retries included: the
	// longest a collector that is down holds a batch before it is counted failed.
	DefaultExportTimeout = 5 * time.Second
	// DefaultMetricInterval is how often the metrics are exported.
	DefaultMetricInterval = 15 * time.Second
)

// Signals, the values of the export failure counters' "signal" label.
const (
	SignalLogs    = "logs"
	SignalMetrics = "metrics"
)

// Config configures an Exporter. Zero values take the defaults.
type Config struct {
	Endpoint Endpoint
	// Metrics, when not nil, are exported every MetricInterval and at Close.
	Metrics promclient.Gatherer
	// IsLocal tells the local side of a handshake or an exchange from its peer (the
	// decoder's Decoder.IsLocal); nil: not known.
	IsLocal func(netip.AddrPort) bool
	// Version is the service.version of the records' resource.
	Version string
	// Log reports export failures and recoveries (nil: not reported).
	Log *stdlog.Logger

	QueueSize      int
	BatchSize      int
	BatchInterval  time.Duration
	ExportTimeout  time.Duration
	MetricInterval time.Duration
}

func (c *Config) setDefaults() {
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	c.BatchSize = min(c.BatchSize, c.QueueSize)
	if c.BatchInterval <= 0 {
		c.BatchInterval = DefaultBatchInterval
	}
	if c.ExportTimeout <= 0 {
		c.ExportTimeout = DefaultExportTimeout
	}
	if c.MetricInterval <= 0 {
		c.MetricInterval = DefaultMetricInterval
	}
	if c.Log == nil {
		c.Log = stdlog.New(io.Discard, "", 0)
	}
}

// Stats counts what an Exporter did with the log records, and its failed exports.
// After Close, Queued = Exported + Failed + Unsent.
type Stats struct {
	Queued   uint64 // log records queued for export
	Dropped  uint64 // not queued: the queue was full (a collector down or too slow)
	Exported uint64 // taken by the collector
	Failed   uint64 // lost in exports that failed after the exporter's retries
	// Unsent is what was still queued when Close's deadline passed.
	Unsent uint64
	// LogExportFailures and MetricExportFailures count the export requests that failed.
	LogExportFailures, MetricExportFailures uint64
	// LastError is the last export's error, "" when it succeeded.
	LastError string
}

// Exporter writes each result as a log record (it is a live.Output). Write and Stats may
// run concurrently with the export; Write is called from one goroutine.
type Exporter struct {
	cfg    Config
	logs   *sdklog.LoggerProvider
	logger log.Logger
	meters *sdkmetric.MeterProvider
	logExp *logExporter
	health *health
	b      builder

	queued, dropped, unsent atomic.Uint64
	closeOnce               sync.Once
}

var _ live.Output = (*Exporter)(nil)

// The SDK hands every export error to the global error handler, which prints it: the
// Exporter sees each itself, and reports them once per failure streak instead.
var quietErrors sync.Once

// New starts the export. It connects lazily: a collector that is not there yet is a
// failure reported later, not an error here.
func New(cfg Config) (*Exporter, error) {
	cfg.setDefaults()
	quietErrors.Do(func() { otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {})) })
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName("discotrace"), attribute.String(string(semconv.ServiceVersionKey), cfg.Version)))
	if err != nil {
		return nil, err
	}
	h := newHealth(cfg.Endpoint.String(), cfg.Log)
	le, err := newLogExporter(cfg.Endpoint, cfg.ExportTimeout)
	if err != nil {
		return nil, err
	}
	e := &Exporter{cfg: cfg, health: h, b: builder{isLocal: cfg.IsLocal}}
	e.logExp = &logExporter{Exporter: le, health: h}
	// The builder adds each key once: the SDK's deduplication, a map per record, is
	// most of the cost of a record.
	e.logs = sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithAllowKeyDuplication(), sdklog.WithProcessor(sdklog.NewBatchProcessor(e.logExp,
		sdklog.WithMaxQueueSize(cfg.QueueSize), sdklog.WithExportMaxBatchSize(cfg.BatchSize),
		sdklog.WithExportInterval(cfg.BatchInterval), sdklog.WithExportTimeout(cfg.ExportTimeout))))
	e.logger = e.logs.Logger("github.com/discotrace/discotrace/otlpout", log.WithInstrumentationVersion(cfg.Version))
	if cfg.Metrics != nil {
		me, err := newMetricExporter(cfg.Endpoint, cfg.ExportTimeout)
		if err != nil {
			e.logs.Shutdown(context.Background())
			return nil, err
		}
		reader := sdkmetric.NewPeriodicReader(&metricExporter{Exporter: me, health: h},
			sdkmetric.WithInterval(cfg.MetricInterval), sdkmetric.WithTimeout(cfg.ExportTimeout),
			sdkmetric.WithProducer(promotel.NewMetricProducer(promotel.WithGatherer(cfg.Metrics))))
		e.meters = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(reader))
	}
	return e, nil
}

// Write queues ev as a log record; one the queue cannot take is dropped and counted. It
// never fails and never waits for the collector.
func (e *Exporter) Write(ev result.Event) error {
	// Records handed to the exporter and not done with count as queued, so that the
	// SDK's queue, which would silently overwrite its oldest, is never full.
	if e.queued.Load()-e.logExp.done() >= uint64(e.cfg.QueueSize) {
		e.dropped.Add(1)
		return nil
	}
	var r log.Record
	e.b.build(&r, ev)
	e.queued.Add(1) // before the exporter can count it done
	e.logger.Emit(context.Background(), r)
	return nil
}

// Flush does nothing: the batch processor exports on its own schedule.
func (e *Exporter) Flush() error { return nil }

// Stats returns the counts so far.
func (e *Exporter) Stats() Stats {
	s := Stats{
		Queued:   e.queued.Load(),
		Dropped:  e.dropped.Load(),
		Exported: e.logExp.exported.Load(),
		Failed:   e.logExp.failed.Load(),
		Unsent:   e.unsent.Load(),
	}
	s.LogExportFailures, s.MetricExportFailures, s.LastError = e.health.failures()
	return s
}

// Close exports what is queued and the metrics a last time, giving up when ctx is done,
// and stops the exporters. It returns the final counts, for the caller to report: the
// failures of these last exports are not reported on their own.
func (e *Exporter) Close(ctx context.Context) Stats {
	e.closeOnce.Do(func() {
		e.health.close()
		var wg sync.WaitGroup
		wg.Go(func() { e.logs.Shutdown(ctx) })
		if e.meters != nil {
			wg.Go(func() { e.meters.Shutdown(ctx) })
		}
		wg.Wait()
		// Shutdown returns at the deadline, the export it waited for still under way:
		// what it has not finished is unsent.
		if q, d := e.queued.Load(), e.logExp.done(); q > d {
			e.unsent.Store(q - d)
		}
	})
	return e.Stats()
}

// health reports export failures once per streak: the endpoint is failing from the
// first failed export of any signal until every signal's last export succeeded.
type health struct {
	endpoint string
	log      *stdlog.Logger

	mu      sync.Mutex
	failing map[string]bool
	count   map[string]uint64
	last    error
	closing bool // Close reports what the last exports cost
}

func newHealth(endpoint string, l *stdlog.Logger) *health {
	return &health{endpoint: endpoint, log: l, failing: map[string]bool{}, count: map[string]uint64{}}
}

func (h *health) note(signal string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	wasDown := h.down()
	h.last = err
	if err != nil {
		h.count[signal]++
		h.failing[signal] = true
		if !wasDown && !h.closing {
			h.log.Printf("OTLP export to %s failed (%s): %v; tracing goes on, the export is retried, and what cannot wait is dropped and counted", h.endpoint, signal, err)
		}
		return
	}
	delete(h.failing, signal)
	if wasDown && !h.down() && !h.closing {
		h.log.Printf("OTLP export to %s works again", h.endpoint)
	}
}

func (h *health) down() bool { return len(h.failing) > 0 }

func (h *health) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closing = true
}

func (h *health) failures() (logs, metrics uint64, last string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last != nil {
		last = h.last.Error()
	}
	return h.count[SignalLogs], h.count[SignalMetrics], last
}

// logExporter counts the records of every export, and notes its outcome.
type logExporter struct {
	sdklog.Exporter
	health           *health
	exported, failed atomic.Uint64
}

func (x *logExporter) Export(ctx context.Context, records []sdklog.Record) error {
	if len(records) == 0 {
		return nil
	}
	err := x.Exporter.Export(ctx, records)
	if err != nil {
		x.failed.Add(uint64(len(records)))
	} else {
		x.exported.Add(uint64(len(records)))
	}
	x.health.note(SignalLogs, err)
	return err
}

func (x *logExporter) done() uint64 { return x.exported.Load() + x.failed.Load() }

// metricExporter notes the outcome of every metrics export.
type metricExporter struct {
	sdkmetric.Exporter
	health *health
}

func (x *metricExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	err := x.Exporter.Export(ctx, rm)
	x.health.note(SignalMetrics, err)
	return err
}
