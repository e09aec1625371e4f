package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/discotrace/discotrace/tracer"
)

// hookFlags are the options every command that opens the tracer shares: what to watch
// and with which hooks.
type hookFlags struct {
	ports   []uint
	backend string
}

func (f *hookFlags) register(fl *pflag.FlagSet) {
	fl.UintSliceVar(&f.ports, "port", []uint{30303}, "UDP port to watch (repeatable)")
	fl.StringVar(&f.backend, "backend", tracer.BackendAuto,
		`hooks to use: "auto" (per event class the best the kernel offers: fentry, then kprobe, then tracepoint), or "fentry", "kprobe" or "tracepoint" to force one`)
}

// apply sets the watched ports and the backend of cfg; a port out of range is a usage error.
func (f *hookFlags) apply(cfg *tracer.Config) error {
	cfg.Backend = f.backend
	for _, p := range f.ports {
		if p == 0 || p > 65535 {
			return &exitError{code: 2, err: fmt.Errorf("--port %d: give a UDP port from 1 to 65535", p)}
		}
		cfg.Ports = append(cfg.Ports, uint16(p))
	}
	return nil
}
