package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/netip"
	"time"

	"github.com/spf13/pflag"

	"github.com/discotrace/discotrace/decode/live"
	"github.com/discotrace/discotrace/metrics"
	"github.com/discotrace/discotrace/otlpout"
)

// otlpFlag is trace's --otlp-endpoint: every event as an OpenTelemetry log record, and
// the metrics, to a collector.
type otlpFlag struct{ endpoint string }

const wantOTLPEndpoint = "give grpc://HOST:PORT (OTLP/gRPC; grpcs:// for TLS) or http://HOST:PORT (OTLP/HTTP; https:// for TLS)"

// otlpCloseDeadline bounds the last export at exit, so that a collector that is down
// keeps trace's shutdown well within a second.
const otlpCloseDeadline = 300 * time.Millisecond

func (f *otlpFlag) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.endpoint, "otlp-endpoint", "", "also export every event as an OpenTelemetry log record, and the metrics, to the collector at `URL`: grpc://HOST:PORT (OTLP/gRPC; grpcs:// for TLS) or http://HOST:PORT (OTLP/HTTP, /v1/logs and /v1/metrics; https:// for TLS) (default: off)")
}

// given reports whether the flag was given.
func (f *otlpFlag) given() bool { return f.endpoint != "" }

// check parses the endpoint: a bad one is a usage error naming the flag.
func (f *otlpFlag) check() (otlpout.Endpoint, error) {
	e, err := otlpout.ParseEndpoint(f.endpoint)
	if err != nil {
		return e, badFlag("otlp-endpoint", f.endpoint, fmt.Sprintf("%v: %s", err, wantOTLPEndpoint))
	}
	return e, nil
}

// otlpOutput is the OTLP export while trace runs.
type otlpOutput struct {
	*otlpout.Exporter
	endpoint string
}

// open starts the export of the events and of ms's metrics; nil when the flag is not
// given. isLocal tells the local side of an exchange (nil with --raw).
func (f *otlpFlag) open(stderr io.Writer, ms *metricsServer, isLocal func(netip.AddrPort) bool) (*otlpOutput, error) {
	if !f.given() {
		return nil, nil
	}
	ep, err := f.check()
	if err != nil {
		return nil, err
	}
	x, err := otlpout.New(otlpout.Config{
		Endpoint: ep,
		Metrics:  ms.Registry(),
		IsLocal:  isLocal,
		Version:  readVersion().Version,
		Log:      log.New(stderr, "discotrace: ", 0),
	})
	if err != nil {
		return nil, fmt.Errorf("--otlp-endpoint %s: %w", f.endpoint, err)
	}
	ms.WatchOTLP(func() metrics.OTLPStats {
		s := x.Stats()
		return metrics.OTLPStats{QueueFull: s.Dropped, ExportFailed: s.Failed,
			LogExportFailures: s.LogExportFailures, MetricExportFailures: s.MetricExportFailures}
	})
	return &otlpOutput{Exporter: x, endpoint: f.endpoint}, nil
}

// beside returns out with the OTLP export written after it, or out alone without one.
func (o *otlpOutput) beside(out live.Output) live.Output {
	if o == nil {
		return out
	}
	return fanOut{out, o}
}

// close exports what waits, for otlpCloseDeadline at most, and says on stderr what the
// collector did not get; nil does nothing.
func (o *otlpOutput) close(stderr io.Writer) {
	if o == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), otlpCloseDeadline)
	defer cancel()
	s := o.Close(ctx)
	lost := s.Dropped + s.Failed + s.Unsent
	if lost == 0 && s.MetricExportFailures == 0 {
		return
	}
	msg := fmt.Sprintf("discotrace: OTLP export to %s: %d of %d log records not delivered (%d dropped: the queue was full, %d in failed exports, %d unsent at exit), %d metric exports failed",
		o.endpoint, lost, s.Queued+s.Dropped, s.Dropped, s.Failed, s.Unsent, s.MetricExportFailures)
	if s.LastError != "" {
		msg += "; last error: " + s.LastError
	}
	fmt.Fprintln(stderr, msg)
}
