package otlpout

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// retry is the exporters' retry of a failed export, within the export's timeout.
func retry(timeout time.Duration) (enabled bool, initial, maxInterval, maxElapsed time.Duration) {
	return true, min(500*time.Millisecond, timeout/4), min(2*time.Second, timeout/2), timeout
}

// reconnect makes gRPC try a collector that was down again within seconds, not the
// two minutes its default backoff reaches.
var reconnect = grpc.WithConnectParams(grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
	MinConnectTimeout: 5 * time.Second,
})

func newLogExporter(e Endpoint, timeout time.Duration) (sdklog.Exporter, error) {
	on, initial, maxInterval, maxElapsed := retry(timeout)
	ctx := context.Background()
	if e.Transport == GRPC {
		opts := []otlploggrpc.Option{otlploggrpc.WithEndpoint(e.HostPort), otlploggrpc.WithTimeout(timeout),
			otlploggrpc.WithDialOption(reconnect),
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: on, InitialInterval: initial, MaxInterval: maxInterval, MaxElapsedTime: maxElapsed})}
		if !e.TLS {
			opts = append(opts, otlploggrpc.WithInsecure())
		}
		return otlploggrpc.New(ctx, opts...)
	}
	opts := []otlploghttp.Option{otlploghttp.WithEndpoint(e.HostPort), otlploghttp.WithURLPath(e.Path + "/v1/logs"),
		otlploghttp.WithTimeout(timeout),
		otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: on, InitialInterval: initial, MaxInterval: maxInterval, MaxElapsedTime: maxElapsed})}
	if !e.TLS {
		opts = append(opts, otlploghttp.WithInsecure())
	}
	return otlploghttp.New(ctx, opts...)
}

func newMetricExporter(e Endpoint, timeout time.Duration) (sdkmetric.Exporter, error) {
	on, initial, maxInterval, maxElapsed := retry(timeout)
	ctx := context.Background()
	if e.Transport == GRPC {
		opts := []otlpmetricgrpc.Option{otlpmetricgrpc.WithEndpoint(e.HostPort), otlpmetricgrpc.WithTimeout(timeout),
			otlpmetricgrpc.WithDialOption(reconnect),
			otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: on, InitialInterval: initial, MaxInterval: maxInterval, MaxElapsedTime: maxElapsed})}
		if !e.TLS {
			opts = append(opts, otlpmetricgrpc.WithInsecure())
		}
		return otlpmetricgrpc.New(ctx, opts...)
	}
	opts := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpoint(e.HostPort), otlpmetrichttp.WithURLPath(e.Path + "/v1/metrics"),
		otlpmetrichttp.WithTimeout(timeout),
		otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: on, InitialInterval: initial, MaxInterval: maxInterval, MaxElapsedTime: maxElapsed})}
	if !e.TLS {
		opts = append(opts, otlpmetrichttp.WithInsecure())
	}
	return otlpmetrichttp.New(ctx, opts...)
}
