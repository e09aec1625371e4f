package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/live"
	"github.com/discotrace/discotrace/internal/livetrace"
	"github.com/discotrace/discotrace/report"
	"github.com/discotrace/discotrace/tracer"
)

// traceFlags are the options of `discotrace trace`.
type traceFlags struct {
	decoderFlags
	hookFlags
	metricsFlags
	sinkFlags
	format   formatFlag
	keylog   keylogFlag
	raw      bool
	duration time.Duration
	snapLen  int
	ringSize int
	netns    uint32
	pid      uint32
}

func newTraceCmd() *cobra.Command {
	var f traceFlags
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Trace discovery traffic in the kernel and print its events",
		Long: `Trace attaches BPF programs to the running kernel and prints, one event per line on
stdout, every UDP datagram of the watched ports as the kernel sees it: send, recv (reaching
the socket), read (by the application, with the time it waited), icmp (errors quoting a
watched datagram, in and out), drop (with the kernel's reason) and lost (events the ring
buffer could not take). Traffic of every network namespace (containers) is seen.

Each datagram's event carries the decoded discovery packet ("disc"), and the decoder adds
the discv5 handshakes, request/response exchanges and anomalies it reconstructs, with the
cause of each failure (as ` + "`discotrace decode`" + ` does for a capture file). Give the local
node's key (--nodekey) to decrypt the discv5 sessions it answers. --raw prints the kernel
events alone, without decoding. The hooks chosen and the attach time go to stderr.

--format text (the default on a terminal) prints one aligned line per event: time, type,
endpoints, node IDs as geth logs them (8 hex), the packet's kind, round trips in ms or µs,
and for a failed handshake or exchange its cause and best evidence; failures are marked
"!", and coloured on a terminal. --format ndjson (the default into a pipe or a file) prints
the complete events, one JSON object per line, for programs.

--output appends the events to a file instead, as NDJSON (reopened on SIGHUP, for
logrotate, or rotated by --output-max-size), --listen serves them to any number of readers
on a unix socket; "--output -" keeps stdout as well.

Needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN.`,
		Example: `  sudo discotrace trace --nodekey /var/lib/geth/geth/nodekey
  sudo discotrace trace --raw --port 30303 --port 30304 --duration 1m --payload
  sudo discotrace trace --format ndjson | jq 'select(.outcome == "failed")'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTrace(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), &f)
		},
	}
	fl := cmd.Flags()
	f.format.register(cmd)
	fl.BoolVar(&f.raw, "raw", false, "print the kernel events alone, without decoding")
	f.decoderFlags.register(fl)
	f.hookFlags.register(fl)
	f.metricsFlags.register(fl)
	f.sinkFlags.register(fl)
	f.keylog.register(fl)
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (0: until interrupted)")
	fl.IntVar(&f.snapLen, "snaplen", tracer.MaxSnapLen, fmt.Sprintf("payload bytes captured per datagram (0-%d)", tracer.MaxSnapLen))
	fl.IntVar(&f.ringSize, "ringbuf-size", tracer.DefaultRingSize, "ring buffer size in bytes: a power of two, at least a page")
	fl.Uint32Var(&f.netns, "netns", 0, "only this network namespace (inode, as `ls -Li /proc/PID/ns/net` shows)")
	fl.Uint32Var(&f.pid, "pid", 0, "only sends and reads of this process")
	completeBackend(cmd)
	return cmd
}

func init() { rootCmd.AddCommand(newTraceCmd()) }

// config turns the flags into a tracer configuration; bad values are usage errors.
func (f *traceFlags) config() (tracer.Config, error) {
	cfg := tracer.Config{
		SnapLen:  f.snapLen,
		RingSize: f.ringSize,
		NetNS:    f.netns,
		PID:      f.pid,
	}
	if err := f.hookFlags.apply(&cfg); err != nil {
		return cfg, err
	}
	if f.snapLen == 0 {
		cfg.SnapLen = tracer.NoPayload
	}
	if f.duration < 0 {
		return cfg, &exitError{code: 2, err: fmt.Errorf("--duration %v is negative", f.duration)}
	}
	return cfg, nil
}

func runTrace(ctx context.Context, stdout, stderr io.Writer, f *traceFlags) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	if err := f.keylog.usableWith(f.raw); err != nil {
		return err
	}
	var dec *decode.Decoder
	closeKeylog := func() error { return nil }
	if !f.raw {
		dcfg, err := f.decoderFlags.config()
		if err != nil {
			return err
		}
		if closeKeylog, err = f.keylog.open(&dcfg); err != nil {
			return err
		}
		// A loss is reported at the next check of the counters, after the items it may
		// explain timed out: they wait for it.
		dcfg.LossReportDelay = tracer.DefaultLostInterval + tracer.MaxDeliveryDelay
		dcfg.FragmentTimeout = fragmentTimeout()
		dec = decode.NewDecoder(dcfg)
	}
	ms, err := f.metricsFlags.start(stderr)
	if err != nil {
		return err
	}
	defer ms.close()
	// The outputs open before the hooks attach, so that one that cannot be opened stops
	// trace at once; they close after the tracer stops, so every event reaches them.
	textOut := f.format.resolve(stdout) == formatText
	fan, toStdout, closeOutputs, err := f.sinkFlags.open(stdout, stderr, f.payload, textOut)
	if err != nil {
		return err
	}
	defer closeOutputs()
	out := &renderedOutput{withPayload: f.payload, writers: []eventWriter{fan}}
	if toStdout && textOut {
		out.writers = append(out.writers, f.format.textWriter(stdout))
	}
	start := time.Now()
	tr, err := tracer.Open(cfg)
	if err != nil {
		var perr *tracer.PrivilegeError // Open checks capabilities before loading anything
		if errors.As(err, &perr) {
			return &exitError{code: 2, err: err}
		}
		return fmt.Errorf("start tracing: %w", err)
	}
	defer tr.Close()
	fmt.Fprintf(stderr, "discotrace: watching UDP ports %s; hooks attached in %v\n", portList(cfg.Ports), time.Since(start).Round(time.Millisecond))
	printPlan(stderr, tr.Plan())
	ms.setPlan(tr.Plan())

	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	go func() {
		<-ctx.Done()
		tr.Close()
	}()
	err = stream(tr, out, stderr, dec, ms)
	if kerr := closeKeylog(); kerr != nil && err == nil {
		err = kerr
	}
	return err
}

// stream prints events until the tracer is closed: the kernel events themselves when dec
// is nil (--raw), else what the decoder makes of them. The live path between the two
// (decode/live) never lets decoding hold up the ring buffer's reader, and reports what it
// could not keep up with as shed events. What the events add up to (outcomes, causes,
// losses) is summed up on stderr at the end; ms, when metrics are served, counts them too.
func stream(tr *tracer.Tracer, out *renderedOutput, stderr io.Writer, dec *decode.Decoder, ms *metricsServer) error {
	summary := report.New(report.Options{})
	out.summary = summary
	st, err := live.Run(livetrace.Source{Tracer: tr}, dec, ms.outputs(out), live.Config{})
	s := summary.Summary()
	report.WriteClosing(stderr, &s, "discotrace: ")
	if err != nil {
		tr.Close()
		return err
	}
	if st.Dropped+st.Undecoded > 0 {
		fmt.Fprintf(stderr, "discotrace: could not keep up with %d of %d kernel events: %d dropped, %d datagrams printed without decoding (shed events say when); --raw keeps up with more, --port or --netns narrows the input\n",
			st.Dropped+st.Undecoded, st.Read, st.Dropped, st.Undecoded)
	}
	return nil
}

// printPlan shows each event class's hooks, then each distinct reason a better backend was
// not used, once, with the classes it applies to.
func printPlan(w io.Writer, plan []tracer.HookChoice) {
	var reasons []string
	classes := map[string][]string{}
	for _, h := range plan {
		fmt.Fprintf(w, "discotrace: %-8s %s: %s\n", h.Class, h.Backend, strings.Join(h.Hooks, ", "))
		for _, m := range h.Missing {
			fmt.Fprintf(w, "discotrace: %-8s without %s\n", h.Class, m)
		}
		for _, r := range h.Rejected {
			key := r.Backend + "\x00" + r.Reason
			if classes[key] == nil {
				reasons = append(reasons, key)
			}
			classes[key] = append(classes[key], h.Class)
		}
	}
	for _, key := range reasons {
		backend, reason, _ := strings.Cut(key, "\x00")
		fmt.Fprintf(w, "discotrace: %s not used for %s: %s\n", backend, strings.Join(classes[key], ", "), reason)
	}
}

func portList(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}

// fragmentTimeout is how long after a datagram the kernel may report its fragments lost,
// for the decoder to revise verdicts that long: net.ipv4.ipfrag_time of this namespace,
// at least the kernel's default (other namespaces keep their own, usually the default).
func fragmentTimeout() time.Duration {
	t := decode.DefaultFragmentTimeout
	b, err := os.ReadFile("/proc/sys/net/ipv4/ipfrag_time")
	if err != nil {
		return t
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		t = max(t, time.Duration(secs)*time.Second)
	}
	return t
}
