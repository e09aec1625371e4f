package otlpout

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Transport is how the records travel: OTLP over gRPC or over HTTP (protobuf).
type Transport string

const (
	GRPC Transport = "grpc"
	HTTP Transport = "http"
)

// Endpoint is where the records and metrics go, as --otlp-endpoint gives it.
type Endpoint struct {
	Transport Transport
	TLS       bool
	// HostPort is the collector's address; a port left out is the OTLP default (4317 for
	// gRPC, 4318 for HTTP).
	HostPort string
	// Path, for HTTP, is prefixed to the standard /v1/logs and /v1/metrics.
	Path string
	raw  string
}

// String is the endpoint as given.
func (e Endpoint) String() string { return e.raw }

// ParseEndpoint reads grpc://HOST:PORT, grpcs://HOST:PORT (TLS), http://HOST:PORT[/PATH]
// or https://HOST:PORT[/PATH].
func ParseEndpoint(s string) (Endpoint, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Endpoint{}, errors.New("not a URL")
	}
	e := Endpoint{raw: s}
	port := "4318"
	switch u.Scheme {
	case "grpc", "grpcs":
		e.Transport, e.TLS, port = GRPC, u.Scheme == "grpcs", "4317"
	case "http", "https":
		e.Transport, e.TLS = HTTP, u.Scheme == "https"
	default:
		return Endpoint{}, fmt.Errorf("unknown scheme %q", u.Scheme)
	}
	switch {
	case u.Hostname() == "":
		return Endpoint{}, errors.New("no host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return Endpoint{}, errors.New("a user, query or fragment is not taken")
	case e.Transport == GRPC && strings.Trim(u.Path, "/") != "":
		return Endpoint{}, errors.New("a gRPC endpoint has no path")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return Endpoint{}, fmt.Errorf("port %q is not 1-65535", p)
		}
		port = p
	}
	e.HostPort = net.JoinHostPort(u.Hostname(), port)
	e.Path = strings.TrimRight(u.Path, "/")
	return e, nil
}
