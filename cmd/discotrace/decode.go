package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func newDecodeCmd() *cobra.Command {
	var f decoderFlags
	var format formatFlag
	var pcap pcapOutFlag
	var kl keylogFlag
	cmd := &cobra.Command{
		Use:   "decode FILE",
		Short: "Decode a pcap or pcapng capture of discovery traffic into events",
		Long: `Decode reads a capture file (pcap or pcapng: Ethernet, Linux cooked SLL/SLL2 or raw IP;
"-" reads standard input) and prints one event per datagram, ICMP error and fragment loss
and, as they are decided, the discv5 handshakes, request/response exchanges and anomalies
they make up.

--format text (the default on a terminal) prints one aligned line per event, with node IDs
as geth logs them (8 hex), round trips in ms or µs, and each failure's cause and best
evidence, marked "!"; --format ndjson (the default into a pipe or a file) prints the
complete events, one JSON object per line, for programs.

Give the local node's key (--nodekey, as geth keeps it in <datadir>/geth/nodekey) to
decrypt the discv5 sessions it answered; --node-id and --enr tell which side is local
and let its discv5 headers unmask without the key. Keys are never printed.

The decoder's memory is bounded; decode keeps the Go runtime under a soft limit of 40 MiB
(GOMEMLIMIT, if set, replaces it; GOMEMLIMIT=off lifts it) for some CPU.

Capture the ICMP errors and the non-first fragments too (they carry no UDP header):

  tcpdump -i any -U -w - 'udp port 30303 or icmp or icmp6 or (ip[6:2] & 0x1fff != 0) or ip6[6] == 44' |
    discotrace decode --nodekey <datadir>/geth/nodekey -`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDecode(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], &f, &format, &pcap, &kl)
		},
	}
	f.register(cmd.Flags())
	format.register(cmd)
	pcap.register(cmd.Flags())
	kl.register(cmd.Flags())
	return cmd
}

func init() { rootCmd.AddCommand(newDecodeCmd()) }

func runDecode(stdout, diag io.Writer, path string, f *decoderFlags, format *formatFlag, pcapFlag *pcapOutFlag, kl *keylogFlag) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	closeKeylog, err := kl.open(&cfg)
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

	pcap, err := pcapFlag.openForDecode(f)
	if err != nil {
		return err
	}
	defer limitDecodeMemory()()
	out := format.output(stdout, f.payload)
	err = decodeCapture(in, path, cfg, diag, pcap.beside(out).Write)
	// What was decoded before a damaged part is written too.
	if ferr := out.Flush(); ferr != nil && err == nil {
		err = fmt.Errorf("cannot write the events: %w", ferr)
	}
	if perr := pcap.close(); perr != nil && err == nil {
		err = perr
	}
	if kerr := closeKeylog(); kerr != nil && err == nil {
		err = kerr
	}
	return err
}
