package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/ndjson"
)

// decodeFlags are the options of `discotrace decode`.
type decodeFlags struct {
	nodeKeys, nodeIDs, enrs []string
	v4Timeout, v5Timeout    time.Duration
	handshakeTimeout        time.Duration
	payload                 bool
}

func newDecodeCmd() *cobra.Command {
	var f decodeFlags
	cmd := &cobra.Command{
		Use:   "decode FILE",
		Short: "Decode a pcap or pcapng capture of discovery traffic into NDJSON events",
		Long: `Decode reads a capture file (pcap or pcapng: Ethernet, Linux cooked SLL/SLL2 or raw IP;
"-" reads standard input, e.g. tcpdump -w - udp port 30303 | discotrace decode -) and
prints one NDJSON event per datagram, ICMP error and fragment loss and, as they are
decided, the discv5 handshakes, request/response exchanges and anomalies they make up.

Give the local node's key (--nodekey, as geth keeps it in <datadir>/geth/nodekey) to
decrypt the discv5 sessions it answered; --node-id and --enr tell which side is local
and let its discv5 headers unmask without the key. Keys are never printed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDecode(cmd.OutOrStdout(), args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.nodeKeys, "nodekey", nil, "local node private key: 64 hex characters or a file holding them (repeatable)")
	fl.StringArrayVar(&f.nodeIDs, "node-id", nil, "local node ID: 64 hex characters or an enode:// URL (repeatable)")
	fl.StringArrayVar(&f.enrs, "enr", nil, `local node record, "enr:..." (repeatable)`)
	fl.DurationVar(&f.v4Timeout, "v4-timeout", decode.DefaultV4Timeout, "how long a discv4 request waits for its answer")
	fl.DurationVar(&f.v5Timeout, "v5-timeout", decode.DefaultV5Timeout, "how long a discv5 request or handshake step waits for its answer")
	fl.DurationVar(&f.handshakeTimeout, "handshake-timeout", decode.DefaultHandshakeTimeout, "how long a discv5 challenge (WHOAREYOU) waits for the HANDSHAKE")
	fl.BoolVar(&f.payload, "payload", false, "add each datagram's payload, hex, to its event")
	return cmd
}

func init() { rootCmd.AddCommand(newDecodeCmd()) }

// identity parses the identity flags. A bad flag is a usage error (exit 2).
func (f *decodeFlags) identity() (decode.Identity, error) {
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

func runDecode(out io.Writer, path string, f *decodeFlags) error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--v4-timeout", f.v4Timeout}, {"--v5-timeout", f.v5Timeout}, {"--handshake-timeout", f.handshakeTimeout}} {
		if d.v <= 0 {
			return &exitError{code: 2, err: fmt.Errorf("%s must be positive, got %s", d.name, d.v)}
		}
	}
	id, err := f.identity()
	if err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	if path != "-" {
		file, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("cannot open the capture: %w", err)
		}
		defer file.Close()
		in = file
	}

	dec := decode.NewDecoder(decode.Config{
		Identity:         id,
		V4Timeout:        f.v4Timeout,
		V5Timeout:        f.v5Timeout,
		HandshakeTimeout: f.handshakeTimeout,
		WithPayload:      f.payload,
	})
	enc := ndjson.NewEncoder(out)
	var writeErr error
	emit := func(ev *ndjson.Event) {
		if writeErr == nil {
			writeErr = enc.Encode(ev)
		}
	}
	err = decode.ReadCapture(in, func(r *decode.Record) error {
		dec.Feed(r, emit)
		return writeErr
	})
	if writeErr != nil {
		return fmt.Errorf("cannot write the events: %w", writeErr)
	}
	if err != nil {
		// Flush what was decoded before the damage, then say where it stopped.
		dec.Flush(emit)
		if ferr := enc.Flush(); ferr != nil {
			return fmt.Errorf("cannot write the events: %w", ferr)
		}
		var pe *os.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("cannot read the capture: %w", err)
		}
		if path == "-" {
			path = "from standard input"
		}
		return fmt.Errorf("cannot read the capture %s: %w", path, err)
	}
	dec.Flush(emit)
	if writeErr != nil {
		return fmt.Errorf("cannot write the events: %w", writeErr)
	}
	if err := enc.Flush(); err != nil {
		return fmt.Errorf("cannot write the events: %w", err)
	}
	return nil
}
