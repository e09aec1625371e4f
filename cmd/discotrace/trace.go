package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
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
	attachFlags
	pcapOut  pcapOutFlag
	otlp     otlpFlag
	format   formatFlag
	keylog   keylogFlag
	raw      bool
	verbose  bool
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

Without --port, trace attaches to the Ethereum nodes running on this host: it finds the
clients owning UDP sockets, their discovery ports and (unless --nodekey is given) their
node keys, and says on stderr what it found, never a key; with none found it watches 30303.

Each datagram's event carries the decoded discovery packet ("disc"), and the decoder adds
the discv5 handshakes, request/response exchanges and anomalies it reconstructs, with the
cause of each failure (as ` + "`discotrace decode`" + ` does for a capture file). Give the local
node's key (--nodekey) to decrypt the discv5 sessions it answers. --raw prints the kernel
events alone, without decoding. Stderr says when the hooks are attached and what is wrong:
no socket on a watched port, events this kernel cannot capture; --verbose adds the hooks
chosen for each event class.

--format text (the default on a terminal) prints one aligned line per event: time, type,
endpoints, node IDs as geth logs them (8 hex), the packet's kind, round trips in ms or µs,
and for a failed handshake or exchange its cause and best evidence; failures are marked
"!", and coloured on a terminal. --format ndjson (the default into a pipe or a file) prints
the complete events, one JSON object per line, for programs.

--output appends the events to a file instead, as NDJSON (reopened on SIGHUP, for
logrotate, or rotated by --output-max-size or --output-max-age), --listen serves them to
any number of readers on a unix socket; "--output -" keeps stdout as well. --otlp-endpoint
also sends each event as an OpenTelemetry log record, and the metrics, to a collector.

Needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN.`,
		Example: `  sudo discotrace trace
  sudo discotrace trace --port 30303 --nodekey /var/lib/geth/geth/nodekey
  sudo discotrace trace --raw --port 30303 --port 30304 --duration 1m --payload
  sudo discotrace trace --format ndjson | jq 'select(.outcome == "failed")'`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.autoAttach = !cmd.Flags().Changed("port")
			return runTrace(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), &f)
		},
	}
	fl := cmd.Flags()
	f.format.register(cmd)
	fl.BoolVar(&f.raw, "raw", false, "print the kernel events alone, without decoding")
	fl.BoolVar(&f.verbose, "verbose", false, "also show on stderr the hooks chosen for each event class, and why better ones were not used")
	f.decoderFlags.register(fl)
	f.hookFlags.register(fl)
	port := fl.Lookup("port") // trace finds the ports itself when none is given
	port.Usage = "UDP `PORT` to watch (repeatable; default: the discovery ports of the Ethereum nodes running here, else 30303)"
	port.DefValue = ""
	f.metricsFlags.register(fl)
	f.sinkFlags.register(fl)
	f.pcapOut.register(fl)
	f.otlp.register(fl)
	f.keylog.register(fl)
	f.snapLen, f.ringSize = tracer.MaxSnapLen, tracer.DefaultRingSize
	fl.Var(durationFlag{&f.duration, wantDuration}, "duration", "stop after this long (0: until interrupted)")
	fl.Var(intFlag{&f.snapLen, wantSnapLen}, "snaplen", fmt.Sprintf("payload `BYTES` captured per datagram (0-%d)", tracer.MaxSnapLen))
	fl.Var(intFlag{&f.ringSize, wantRingSize()}, "ringbuf-size", "ring buffer size in `BYTES`: a power of two, at least a page")
	fl.Var(uint32Flag{&f.netns, wantNetNS}, "netns", "only the network namespace with this `INODE` (as ls -Li /proc/PID/ns/net shows)")
	fl.Var(uint32Flag{&f.pid, wantPID}, "pid", "only sends and reads of process `PID` (and, unless --whole-host, receives by sockets of its cgroup)")
	fl.BoolVar(&f.wholeHost, "whole-host", false, "trace sends and receives of every process on the watched ports, not only those of the node's cgroup (--pid, or the nodes found running)")
	completeBackend(cmd)
	return cmd
}

func init() { rootCmd.AddCommand(newTraceCmd()) }

// config checks the flags and turns them into a tracer configuration; bad values are
// usage errors, found before the tracer is opened (which checks them again).
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
	switch {
	case f.snapLen < 0 || f.snapLen > tracer.MaxSnapLen:
		return cfg, badFlag("snaplen", fmt.Sprint(f.snapLen), wantSnapLen)
	case f.snapLen == 0:
		cfg.SnapLen = tracer.NoPayload
	}
	if page := os.Getpagesize(); f.ringSize < page || f.ringSize > maxRingSize || f.ringSize&(f.ringSize-1) != 0 {
		return cfg, badFlag("ringbuf-size", fmt.Sprint(f.ringSize), wantRingSize())
	}
	if f.pid > maxPID {
		return cfg, badFlag("pid", fmt.Sprint(f.pid), wantPID)
	}
	if f.duration < 0 {
		return cfg, badFlag("duration", f.duration.String(), wantDuration)
	}
	if f.otlp.given() {
		if _, err := f.otlp.check(); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

func runTrace(ctx context.Context, stdout, stderr io.Writer, f *traceFlags) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	dcfg, err := f.decoderFlags.config() // checked with --raw too: a bad value is never ignored
	if err != nil {
		return err
	}
	if err := f.keylog.usableWith(f.raw); err != nil {
		return err
	}
	var found decode.Identity // the keys of the nodes found running, without --port
	f.attachToNodes(stderr, &cfg, &found)
	f.scopeToNodes(stderr, &cfg)
	var dec *decode.Decoder
	var watch *identityWatch
	closeKeylog := func() error { return nil }
	if !f.raw {
		if closeKeylog, err = f.keylog.open(&dcfg); err != nil {
			return err
		}
		// A loss is reported at the next check of the counters, after the items it may
		// explain timed out: they wait for it.
		dcfg.LossReportDelay = tracer.DefaultLostInterval + tracer.MaxDeliveryDelay
		dcfg.FragmentTimeout = fragmentTimeout()
		flagged := dcfg.Identity // the watch names flags: a found key is said on stderr already
		dcfg.Identity.Keys = append(slices.Clip(dcfg.Identity.Keys), found.Keys...)
		dec = decode.NewDecoder(dcfg)
		watch = newIdentityWatch(dec, flagged, stderr, identityWatchAfter)
	}
	ms, err := f.metricsFlags.start(stderr, f.otlp.given())
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
	pcap, err := f.pcapOut.openForTrace(f)
	if err != nil {
		return err
	}
	defer func() {
		if err := pcap.close(); err != nil {
			fmt.Fprintf(stderr, "discotrace: %v\n", err)
		}
	}()
	var isLocal func(netip.AddrPort) bool
	if dec != nil {
		isLocal = dec.IsLocal
	}
	otlp, err := f.otlp.open(stderr, ms, isLocal)
	if err != nil {
		return err
	}
	defer otlp.close(stderr) // after the stream ended: every event was queued
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
	if len(cfg.Cgroups) > 0 {
		fmt.Fprintf(stderr, "discotrace: sends and receives traced in the node's cgroup only (%s): --whole-host for every process's\n", strings.Join(cfg.Cgroups, ", "))
	}
	printPlan(stderr, tr.Plan(), f.verbose)
	ms.setPlan(tr.Plan())
	if problem := findUDPBindings(cfg.Ports, cfg.NetNS).unbound(cfg.Ports, cfg.NetNS); problem != "" {
		fmt.Fprintln(stderr, "discotrace:", problem)
	}

	if f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	go func() {
		<-ctx.Done()
		tr.Close()
	}()
	err = stream(tr, out, pcap, otlp, stderr, dec, watch, ms)
	if kerr := closeKeylog(); kerr != nil && err == nil {
		err = kerr
	}
	return err
}

// stream prints events until the tracer is closed: the kernel events themselves when dec
// is nil (--raw), else what the decoder makes of them. The live path between the two
// (decode/live) never lets decoding hold up the ring buffer's reader, and reports what it
// could not keep up with as shed events. What the events add up to (outcomes, causes,
// losses) is summed up on stderr at the end; ms, when metrics are served, counts them too,
// pcap, with --pcap-out, gets the datagrams and ICMP errors as pcapng, and otlp, with
// --otlp-endpoint, every event as a log record. watch, when not nil, warns about local
// identities the decoded packets do not match. Every output is composed here.
func stream(tr *tracer.Tracer, out *renderedOutput, pcap *pcapOutput, otlp *otlpOutput, stderr io.Writer, dec *decode.Decoder, watch *identityWatch, ms *metricsServer) error {
	summary := report.New(report.Options{})
	out.summary = summary
	st, err := live.Run(livetrace.Source{Tracer: tr}, dec, watch.output(otlp.beside(pcap.beside(ms.outputs(out)))), live.Config{})
	s := summary.Summary()
	report.WriteClosing(stderr, &s, "discotrace: ")
	if err != nil {
		tr.Close()
		return err
	}
	watch.finish("while tracing")
	if st.Dropped+st.Undecoded > 0 {
		fmt.Fprintf(stderr, "discotrace: could not keep up with %d of %d kernel events: %d dropped, %d datagrams printed without decoding (shed events say when); --raw keeps up with more, --port or --netns narrows the input\n",
			st.Dropped+st.Undecoded, st.Read, st.Dropped, st.Undecoded)
	}
	return nil
}

// printPlan shows what the kernel cannot capture and, with all, each event class's hooks,
// then each distinct reason a better backend was not used, once, with the classes it
// applies to. Without all, a healthy plan prints nothing: the hooks are the normal case.
func printPlan(w io.Writer, plan []tracer.HookChoice, all bool) {
	var reasons []string
	classes := map[string][]string{}
	for _, h := range plan {
		if all {
			fmt.Fprintf(w, "discotrace: %-8s %s: %s\n", h.Class, h.Backend, strings.Join(h.Hooks, ", "))
		}
		for _, m := range h.Missing {
			fmt.Fprintf(w, "discotrace: %-8s without %s\n", h.Class, m)
		}
		if !all {
			continue
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
