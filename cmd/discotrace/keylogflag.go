package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/keylog"
)

// keylogFlag is --keylog, shared by `decode` and `trace`: the discv5 key log that lets
// Wireshark (wireshark/discotrace.lua) unmask and decrypt what the decoder did.
type keylogFlag struct {
	path string
}

func (k *keylogFlag) register(fl *pflag.FlagSet) {
	fl.StringVar(&k.path, "keylog", "", "write the discv5 key log (local node IDs, session keys: SECRET, mode 0600) to this file, for Wireshark's discotrace.lua")
}

// open creates the key log, if asked for, and makes cfg's decoder write to it. The file
// is created (or truncated) with mode 0600, and an existing file is narrowed to 0600:
// its session keys decrypt the traffic. close flushes it and says whether every entry
// was written.
func (k *keylogFlag) open(cfg *decode.Config) (close func() error, err error) {
	if k.path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.OpenFile(k.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot create the key log: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot make the key log private (mode 0600): %w", err)
	}
	w := keylog.NewWriter(f)
	cfg.KeyObserver = w
	return func() error {
		werr := w.Err()
		cerr := f.Close()
		if werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("cannot write the key log %s: %w", k.path, werr)
		}
		return nil
	}, nil
}

// usableWith says why --keylog cannot be used in trace --raw mode, which decodes nothing.
func (k *keylogFlag) usableWith(raw bool) error {
	if raw && k.path != "" {
		return &exitError{code: 2, err: fmt.Errorf("--keylog needs the decoder: drop --raw")}
	}
	return nil
}
