package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/discotrace/discotrace/tracer"
)

// hookFlags are the options every command that opens the tracer shares: what to watch
// and with which hooks.
type hookFlags struct {
	ports   []uint
	backend string
}

// backends are the values --backend accepts.
var backends = []string{tracer.BackendAuto, tracer.BackendFentry, tracer.BackendKprobe, tracer.BackendTracepoint}

func (f *hookFlags) register(fl *pflag.FlagSet) {
	f.ports = []uint{30303}
	fl.Var(&portsFlag{p: &f.ports}, "port", "UDP `PORT` to watch (repeatable)")
	fl.StringVar(&f.backend, "backend", tracer.BackendAuto,
		`hooks to use: "auto" (per event class the best the kernel offers: fentry, then kprobe, then tracepoint), or "fentry", "kprobe" or "tracepoint" to force one`)
}

// apply checks the watched ports and the backend and sets them in cfg; bad values are
// usage errors.
func (f *hookFlags) apply(cfg *tracer.Config) error {
	if !slices.Contains(backends, f.backend) {
		return badFlag("backend", f.backend, "give "+strings.Join(backends[:len(backends)-1], ", ")+" or "+backends[len(backends)-1])
	}
	cfg.Backend = f.backend
	for _, p := range f.ports {
		if p == 0 || p > 65535 {
			return badFlag("port", fmt.Sprint(p), wantPort)
		}
		cfg.Ports = append(cfg.Ports, uint16(p))
	}
	return nil
}
