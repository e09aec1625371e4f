package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

func newDecodeCmd() *cobra.Command {
	var f decoderFlags
	cmd := &cobra.Command{
		Use:   "decode FILE",
		Short: "Decode a pcap or pcapng capture of discovery traffic into NDJSON events",
		Long: `Decode reads a capture file (pcap or pcapng: Ethernet, Linux cooked SLL/SLL2 or raw IP;
"-" reads standard input) and prints one NDJSON event per datagram, ICMP error and
fragment loss and, as they are decided, the discv5 handshakes, request/response exchanges
and anomalies they make up.

Give the local node's key (--nodekey, as geth keeps it in <datadir>/geth/nodekey) to
decrypt the discv5 sessions it answered; --node-id and --enr tell which side is local
and let its discv5 headers unmask without the key. Keys are never printed.

Capture the ICMP errors and the non-first fragments too (they carry no UDP header):

  tcpdump -i any -U -w - 'udp port 30303 or icmp or icmp6 or (ip[6:2] & 0x1fff != 0) or ip6[6] == 44' |
    discotrace decode --nodekey <datadir>/geth/nodekey -`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDecode(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], &f)
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func init() { rootCmd.AddCommand(newDecodeCmd()) }

func runDecode(out, diag io.Writer, path string, f *decoderFlags) error {
	cfg, err := f.config()
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

	dec := decode.NewDecoder(cfg)
	watch := newIdentityWatch(dec, cfg.Identity, diag, 0)
	enc := ndjson.NewEncoder(out)
	var writeErr error
	emit := func(ev result.Event) {
		watch.observe(ev)
		if writeErr == nil {
			writeErr = enc.Encode(ndjson.FromResult(ev, f.payload))
		}
	}
	stats, err := capture.ReadStats(in, func(r *record.Record) error {
		dec.Feed(r, emit)
		return writeErr
	})
	// Frames that give no event at all are said once, so that an empty output is not
	// read as an empty capture.
	if stats.Malformed > 0 || stats.UnsupportedLink > 0 {
		fmt.Fprintf(diag, "discotrace: %d of %d frames skipped: %d with invalid or cut-off headers (a snap length below the UDP header?), %d from interfaces without IP\n",
			stats.Malformed+stats.UnsupportedLink, stats.Frames, stats.Malformed, stats.UnsupportedLink)
	}
	if writeErr != nil {
		return fmt.Errorf("cannot write the events: %w", writeErr)
	}
	if err != nil {
		// Flush what was decoded before the damage, then say where it stopped.
		dec.Flush(emit)
		watch.finish("in the capture before the damage")
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
	watch.finish("in this capture")
	if writeErr != nil {
		return fmt.Errorf("cannot write the events: %w", writeErr)
	}
	if err := enc.Flush(); err != nil {
		return fmt.Errorf("cannot write the events: %w", err)
	}
	return nil
}
