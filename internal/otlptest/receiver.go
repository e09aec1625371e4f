// Package otlptest is an OTLP receiver for tests: the collector's LogsService and
// MetricsService over gRPC, or /v1/logs and /v1/metrics over HTTP (protobuf), keeping
// what arrives.
package otlptest

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Receiver keeps the log records and metrics it was sent.
type Receiver struct {
	// URL is the endpoint to give --otlp-endpoint.
	URL string
	// Refuse makes every export fail with an error the exporters do not retry (HTTP 400,
	// gRPC InvalidArgument), as a collector rejecting them.
	Refuse atomic.Bool
	// Discard counts the log records without keeping them (benchmarks).
	Discard bool
	count   atomic.Uint64

	mu      sync.Mutex
	records []*logspb.LogRecord
	service []string // each record's resource service.name
	metrics []*metricspb.Metric
}

// Records returns the log records received so far, in order.
func (r *Receiver) Records() []*logspb.LogRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*logspb.LogRecord(nil), r.records...)
}

// Count returns how many log records were received.
func (r *Receiver) Count() uint64 { return r.count.Load() }

// Services returns the service.name of each record's resource.
func (r *Receiver) Services() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.service...)
}

// Metrics returns the metrics received so far, every export's in order.
func (r *Receiver) Metrics() []*metricspb.Metric {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*metricspb.Metric(nil), r.metrics...)
}

func (r *Receiver) takeLogs(req *collogs.ExportLogsServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rl := range req.GetResourceLogs() {
		name := Attr(rl.GetResource().GetAttributes(), "service.name").GetStringValue()
		for _, sl := range rl.GetScopeLogs() {
			r.count.Add(uint64(len(sl.GetLogRecords())))
			if r.Discard {
				continue
			}
			for _, lr := range sl.GetLogRecords() {
				r.records = append(r.records, lr)
				r.service = append(r.service, name)
			}
		}
	}
}

func (r *Receiver) takeMetrics(req *colmetrics.ExportMetricsServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			r.metrics = append(r.metrics, sm.GetMetrics()...)
		}
	}
}

// Attr returns the value of the attribute key, nil when there is none.
func Attr(attrs []*commonpb.KeyValue, key string) *commonpb.AnyValue {
	for _, kv := range attrs {
		if kv.GetKey() == key {
			return kv.GetValue()
		}
	}
	return nil
}

type logsService struct {
	collogs.UnimplementedLogsServiceServer
	r *Receiver
}

func (s logsService) Export(_ context.Context, req *collogs.ExportLogsServiceRequest) (*collogs.ExportLogsServiceResponse, error) {
	if s.r.Refuse.Load() {
		return nil, status.Error(codes.InvalidArgument, "refused by the test")
	}
	s.r.takeLogs(req)
	return &collogs.ExportLogsServiceResponse{}, nil
}

type metricsService struct {
	colmetrics.UnimplementedMetricsServiceServer
	r *Receiver
}

func (s metricsService) Export(_ context.Context, req *colmetrics.ExportMetricsServiceRequest) (*colmetrics.ExportMetricsServiceResponse, error) {
	if s.r.Refuse.Load() {
		return nil, status.Error(codes.InvalidArgument, "refused by the test")
	}
	s.r.takeMetrics(req)
	return &colmetrics.ExportMetricsServiceResponse{}, nil
}

// StartGRPC serves OTLP/gRPC on a loopback port until the test ends.
func StartGRPC(t testing.TB) *Receiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{URL: "grpc://" + ln.Addr().String()}
	srv := grpc.NewServer()
	collogs.RegisterLogsServiceServer(srv, logsService{r: r})
	colmetrics.RegisterMetricsServiceServer(srv, metricsService{r: r})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return r
}

// StartHTTP serves OTLP/HTTP (protobuf) on a loopback port until the test ends.
func StartHTTP(t testing.TB) *Receiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{URL: "http://" + ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/logs", func(w http.ResponseWriter, req *http.Request) {
		var m collogs.ExportLogsServiceRequest
		if !r.readProto(w, req, &m) {
			return
		}
		r.takeLogs(&m)
		writeProto(w, &collogs.ExportLogsServiceResponse{})
	})
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, req *http.Request) {
		var m colmetrics.ExportMetricsServiceRequest
		if !r.readProto(w, req, &m) {
			return
		}
		r.takeMetrics(&m)
		writeProto(w, &colmetrics.ExportMetricsServiceResponse{})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *Receiver) readProto(w http.ResponseWriter, req *http.Request, m proto.Message) bool {
	if r.Refuse.Load() {
		http.Error(w, "refused by the test", http.StatusBadRequest)
		return false
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "want application/x-protobuf, not "+ct, http.StatusUnsupportedMediaType)
		return false
	}
	b, err := io.ReadAll(req.Body)
	if err == nil {
		err = proto.Unmarshal(b, m)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func writeProto(w http.ResponseWriter, m proto.Message) {
	b, _ := proto.Marshal(m)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(b)
}
