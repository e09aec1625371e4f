package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/discotrace/discotrace/decode"
)

// decoderFlags are the options that set up a decoder, shared by `decode` and `trace`.
type decoderFlags struct {
	nodeKeys, nodeIDs, enrs []string
	v4Timeout, v5Timeout    time.Duration
	handshakeTimeout        time.Duration
	v4ExpirationWindow      time.Duration
	payload                 bool
}

// defaultDecoderFlags are the flags' values when none is given: go-ethereum's.
func defaultDecoderFlags() decoderFlags {
	return decoderFlags{v4Timeout: decode.DefaultV4Timeout, v5Timeout: decode.DefaultV5Timeout,
		handshakeTimeout: decode.DefaultHandshakeTimeout, v4ExpirationWindow: decode.DefaultV4ExpirationWindow}
}

func (f *decoderFlags) register(fl *pflag.FlagSet) {
	*f = defaultDecoderFlags()
	fl.StringArrayVar(&f.nodeKeys, "nodekey", nil, "local node private key: 64 hex characters or a file holding them (repeatable)")
	fl.StringArrayVar(&f.nodeIDs, "node-id", nil, "local node ID: 64 hex characters or an enode:// URL (repeatable)")
	fl.StringArrayVar(&f.enrs, "enr", nil, `local node record, "enr:..." (repeatable)`)
	fl.Var(durationFlag{&f.v4Timeout, wantPositive}, "v4-timeout", "how long a discv4 request waits for its answer")
	fl.Var(durationFlag{&f.v5Timeout, wantPositive}, "v5-timeout", "how long a discv5 request or handshake step waits for its answer")
	fl.Var(durationFlag{&f.handshakeTimeout, wantPositive}, "handshake-timeout", "how long a discv5 challenge (WHOAREYOU) waits for the HANDSHAKE")
	fl.Var(durationFlag{&f.v4ExpirationWindow, wantPositive}, "v4-expiration-window", "how far ahead of their clocks the peers set discv4 expirations (geth, reth, Erigon 20s; Nethermind 30s; Besu 60s): the clock_skew estimate assumes it")
	fl.BoolVar(&f.payload, "payload", false, "add each datagram's payload, hex, to its event")
}

// config checks the flags and builds the decoder's configuration. Bad values are usage
// errors (exit 2); key material is never quoted.
func (f *decoderFlags) config() (decode.Config, error) {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"v4-timeout", f.v4Timeout}, {"v5-timeout", f.v5Timeout}, {"handshake-timeout", f.handshakeTimeout}, {"v4-expiration-window", f.v4ExpirationWindow}} {
		if d.v <= 0 {
			return decode.Config{}, badFlag(d.name, d.v.String(), wantPositive)
		}
	}
	id, err := f.identity()
	if err != nil {
		return decode.Config{}, err
	}
	return decode.Config{
		Identity:         id,
		V4Timeout:        f.v4Timeout,
		V5Timeout:        f.v5Timeout,
		HandshakeTimeout: f.handshakeTimeout,

		V4ExpirationWindow: f.v4ExpirationWindow,
	}, nil
}

// identity parses the identity flags.
func (f *decoderFlags) identity() (decode.Identity, error) {
	var id decode.Identity
	for i, s := range f.nodeKeys {
		k, err := decode.ParseNodeKey(s)
		if err != nil {
			return id, &exitError{code: 2, err: fmt.Errorf("--nodekey #%d: %w", i+1, err)}
		}
		id.Keys = append(id.Keys, k)
	}
	for _, s := range f.nodeIDs {
		n, err := decode.ParseNodeID(s)
		if err != nil {
			return id, &exitError{code: 2, err: fmt.Errorf("--node-id: %w", err)}
		}
		id.IDs = append(id.IDs, n)
	}
	for _, s := range f.enrs {
		n, err := decode.ParseENR(s)
		if err != nil {
			return id, &exitError{code: 2, err: fmt.Errorf("--enr: %w", err)}
		}
		id.Nodes = append(id.Nodes, n)
	}
	return id, nil
}
