package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
	"github.com/discotrace/discotrace/report"
)

// reportFlags are the options of `discotrace report`.
type reportFlags struct {
	decoderFlags
	json  bool
	peers int
}

func newReportCmd() *cobra.Command {
	var f reportFlags
	cmd := &cobra.Command{
		Use:   "report [FILE|-]",
		Short: "Sum up an event stream or a capture: outcomes, causes, losses, peers worst first",
		Long: `Report reads the NDJSON events of ` + "`discotrace trace`" + ` or ` + "`discotrace decode`" + ` (FILE, or standard
input when FILE is "-" or absent), or a pcap/pcapng capture, which it decodes as decode
does, and prints what they add up to: what the tracer lost, the handshakes and exchanges
by outcome and by cause with their round-trip times, the anomalies, and per peer (node
ID, addresses, datagrams in and out, handshakes and exchanges ok/failed, round-trip
p50/p90/p99, causes, anomalies), worst first. --json prints the same summary as data.

The local node is left out of the peers when it is known: from the sends of a live trace,
or from --nodekey, --node-id or --enr (which also decode a capture).`,
		Example: `  discotrace decode --nodekey ./nodekey disc.pcap > events.ndjson && discotrace report events.ndjson
  discotrace report --nodekey ./nodekey disc.pcap
  sudo discotrace trace --duration 1m | discotrace report --json`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "-"
			if len(args) == 1 {
				path = args[0]
			}
			return runReport(cmd.OutOrStdout(), cmd.ErrOrStderr(), path, &f)
		},
	}
	fl := cmd.Flags()
	f.decoderFlags.register(fl)
	// A summary has no payloads to add.
	_ = fl.MarkHidden("payload")
	fl.BoolVar(&f.json, "json", false, "print the summary as JSON")
	fl.IntVar(&f.peers, "peers", 20, "peers listed in the text, worst first (0: all; --json lists all)")
	return cmd
}

func init() { rootCmd.AddCommand(newReportCmd()) }

func runReport(out, diag io.Writer, path string, f *reportFlags) error {
	if f.peers < 0 {
		return &exitError{code: 2, err: fmt.Errorf("--peers %d is negative; 0 lists all", f.peers)}
	}
	cfg, err := f.decoderFlags.config()
	if err != nil {
		return err
	}
	var opt report.Options
	for _, id := range cfg.Identity.AllIDs() {
		opt.LocalIDs = append(opt.LocalIDs, id.String())
	}
	agg := report.New(opt)

	var in io.Reader = os.Stdin
	name := "standard input"
	if path != "-" {
		file, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("cannot open the input: %w", err)
		}
		defer file.Close()
		in, name = file, path
	}
	br := bufio.NewReaderSize(in, 1<<16)
	head, _ := br.Peek(4) // a read error shows again, and is reported, where the input is read
	if capture.IsCapture(head) {
		err = decodeCapture(br, path, cfg, diag, func(ev result.Event) error {
			agg.Add(ndjson.FromResult(ev, false))
			return nil
		})
	} else {
		err = readEvents(br, name, agg)
	}
	// What was read before a bad line or a damaged capture is reported too: the error
	// then says what the report is missing.
	s := agg.Summary()
	if werr := writeSummary(out, &s, f); werr != nil {
		return fmt.Errorf("cannot write the report: %w", werr)
	}
	return err
}

func writeSummary(out io.Writer, s *report.Summary, f *reportFlags) error {
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	return report.WriteText(out, s, f.peers)
}

// maxLineBytes bounds one NDJSON line; discotrace's longest (a datagram with its payload
// and a full evidence list) are a few kilobytes.
const maxLineBytes = 16 << 20

// readEvents counts each NDJSON line of r. Lines that are not events are skipped and
// counted, and the first one named in the error, so that one bad line loses nothing else.
func readEvents(r io.Reader, name string, agg *report.Aggregator) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	var (
		line, events, bad, firstBad int
		why                         error
	)
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var ev ndjson.Event
		err := json.Unmarshal(text, &ev)
		switch {
		case err != nil:
		case ev.V == 0 || ev.Type == "":
			err = errors.New(`it lacks "v" or "type"`)
		case ev.V != ndjson.SchemaVersion:
			err = fmt.Errorf("schema version %d; this discotrace reads version %d", ev.V, ndjson.SchemaVersion)
		}
		if err != nil {
			if bad == 0 {
				firstBad, why = line, err
			}
			bad++
			continue
		}
		agg.Add(&ev)
		events++
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("line %d of %s is longer than %d MiB: not discotrace's NDJSON; the report stops there", line+1, name, maxLineBytes>>20)
		}
		return fmt.Errorf("cannot read %s after line %d: %w", name, line, err)
	}
	if bad > 0 {
		skipped := "it was skipped"
		if bad > 1 {
			skipped = fmt.Sprintf("%d such lines skipped", bad)
		}
		return fmt.Errorf("line %d of %s is not a discotrace event (%v); %s, the report counts the %d events (report reads the NDJSON of trace or decode, or a pcap/pcapng capture)",
			firstBad, name, why, skipped, events)
	}
	return nil
}
