package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/discotrace/discotrace/decode/live"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/metrics"
	"github.com/discotrace/discotrace/tracer"
)

// metricsFlags is trace's Prometheus endpoint.
type metricsFlags struct {
	metricsAddr string
}

func (f *metricsFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.metricsAddr, "metrics-addr", "",
		`serve Prometheus metrics at http://ADDR/metrics: "HOST:PORT", or a port alone for 127.0.0.1 (default: off)`)
}

// metricsListenAddr is where --metrics-addr listens: a port alone ("9431", ":9431") is on
// the loopback address, so that metrics are not exposed beyond the host unless asked.
func metricsListenAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = "", s // a port alone
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return "", fmt.Errorf("--metrics-addr %q: give HOST:PORT or a port from 1 to 65535", s)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// metricsServer serves an Exporter's metrics over HTTP while trace runs.
type metricsServer struct {
	*metrics.Exporter
	srv *http.Server
	url string
}

// start listens on --metrics-addr and serves /metrics; without the flag, it returns the
// metrics unserved when another output (the OTLP export) wants them, else nil. An
// address that cannot be listened on fails here, before any tracing.
func (f *metricsFlags) start(stderr io.Writer, wanted bool) (*metricsServer, error) {
	if f.metricsAddr == "" {
		if wanted {
			return &metricsServer{Exporter: metrics.New()}, nil
		}
		return nil, nil
	}
	addr, err := metricsListenAddr(f.metricsAddr)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w: choose another address or stop what listens there", addr, unwrapOpError(err))
	}
	s := &metricsServer{Exporter: metrics.New(), url: "http://" + ln.Addr().String() + "/metrics"}
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.Handler())
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	fmt.Fprintf(stderr, "discotrace: metrics at %s\n", s.url)
	return s, nil
}

// unwrapOpError drops net.OpError's "listen tcp ADDR:" prefix, which the caller's
// message already says.
func unwrapOpError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// close stops serving; a scrape under way gets a second to finish.
func (s *metricsServer) close() {
	if s == nil || s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		s.srv.Close()
	}
}

// outputs adds the metrics to trace's outputs, when they are served.
func (s *metricsServer) outputs(out live.Output) live.Output {
	if s == nil {
		return out
	}
	return fanOut{out, s.Exporter}
}

// fanOut writes each event to every output in turn; the first error is returned, after
// all were written to.
type fanOut []live.Output

func (f fanOut) Write(ev result.Event) error {
	var first error
	for _, o := range f {
		if err := o.Write(ev); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (f fanOut) Flush() error {
	var first error
	for _, o := range f {
		if err := o.Flush(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// setPlan publishes the tracer's hook plan, when metrics are served.
func (s *metricsServer) setPlan(plan []tracer.HookChoice) {
	if s != nil {
		s.SetPlan(plan)
	}
}
