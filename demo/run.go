// Package demo is `discotrace demo`: it starts real go-ethereum discovery nodes (discv4
// and discv5 on one socket, as geth runs them) in network namespaces of its own, traces
// them with the kernel tracer and the live decoder, as `discotrace trace` does, and makes
// the failures discotrace explains happen: a peer that is down, one that reads and never
// answers, one whose receive buffer is full, one whose clock is far off. Then it removes
// everything it made: namespaces, sockets, BPF programs.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/live"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/internal/livetrace"
	"github.com/discotrace/discotrace/internal/netlab"
	"github.com/discotrace/discotrace/tracer"
)

// ErrNotRoot says the demo cannot run: it needs root.
var ErrNotRoot = errors.New("the demo needs root: it creates network namespaces and loads BPF programs; run it as root")

// Config says where the demo's events and progress go.
type Config struct {
	// Output takes the events as they are decided, as in `discotrace trace`.
	Output live.Output
	// Log takes a line per scenario and what geth itself saw (stderr); nil: none.
	Log io.Writer
	// Backend is the tracer's backend ("" or "auto": the best the kernel offers).
	Backend string
}

// lossReportDelay is how long after they happen the tracer reports lost events at the
// latest: the decoder waits that long before it calls a request unanswered.
const lossReportDelay = tracer.DefaultLostInterval + tracer.MaxDeliveryDelay

// settleTime is how long the decoder needs, after the last scenario, to decide
// everything it started: a discv5 handshake step waits its timeout and one more, then
// the loss report that covers the wait.
const settleTime = decode.DefaultHandshakeTimeout + 2*decode.DefaultV5Timeout + lossReportDelay

// Run plays every scenario while tracing it, writes the decoded events to cfg.Output and
// returns their counts. It removes everything it made before it returns, on error and
// when ctx is cancelled too (the counts are then of what was seen until then).
func Run(ctx context.Context, cfg Config) (_ *Counts, err error) {
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}
	counts := newCounts()
	if os.Geteuid() != 0 {
		return counts, ErrNotRoot
	}
	if err := tracer.CheckPrivileges(); err != nil {
		return counts, err
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return counts, errors.New("the demo needs iproute2's ip to build its network namespaces: install iproute2")
	}
	if err := netlab.RemoveStale(); err != nil { // left by a run that was killed
		fmt.Fprintf(log, "demo: could not remove the namespaces of an earlier run: %v\n", err)
	}
	c, err := newCast()
	if err != nil {
		return counts, err
	}
	port := netlab.RandomHighPort()
	start := time.Now()
	tr, err := tracer.Open(tracer.Config{Ports: []uint16{port}, Backend: cfg.Backend})
	if err != nil {
		var perr *tracer.PrivilegeError
		if errors.As(err, &perr) {
			return counts, err
		}
		return counts, fmt.Errorf("start tracing (`discotrace doctor` says what this kernel lacks): %w", err)
	}
	defer tr.Close()
	fmt.Fprintf(log, "demo: tracing UDP port %d in every network namespace; hooks attached in %v\n", port, time.Since(start).Round(time.Millisecond))

	dec := decode.NewDecoder(decode.Config{Identity: decode.Identity{Keys: c.keys()}, LossReportDelay: lossReportDelay})
	// A failed write (stdout closed) ends the stream, and with it the run.
	ctx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	streamed := make(chan error, 1)
	go func() {
		_, err := live.Run(livetrace.Source{Tracer: tr}, dec, countingOutput{cfg.Output, counts}, live.Config{})
		if err != nil {
			stopRun(err)
		}
		streamed <- err
	}()
	// The stream ends when the tracer is closed.
	stopStream := func() error {
		tr.Close()
		return <-streamed
	}

	l, err := newLab(port)
	if err != nil {
		return counts, errors.Join(err, stopStream())
	}
	defer func() { // after the stage's sockets are closed: they keep a namespace alive
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("remove the demo's network namespaces (`ip netns list` shows what is left): %w", cerr))
		}
	}()
	s, err := setUp(l, c, log)
	if err != nil {
		return counts, errors.Join(fmt.Errorf("start the demo's nodes: %w", err), stopStream())
	}
	defer s.Close()
	fmt.Fprintf(log, "demo: local node %v in namespace %s; %d peers, each in a namespace of its own\n", s.local.addr, l.hub.Name, len(l.namespaces)-1)

	for _, sc := range s.scenarios() {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(log, "demo: ▸ %s\ndemo:   expect %s\n", sc.title, sc.expect)
		if err := sc.run(ctx); err != nil {
			return counts, errors.Join(err, stopStream())
		}
	}
	if ctx.Err() == nil {
		fmt.Fprintf(log, "demo: waiting %v for the last verdicts\n", settleTime)
		select {
		case <-ctx.Done():
		case <-time.After(settleTime):
		}
	}
	if err := stopStream(); err != nil {
		return counts, err
	}
	if err := ctx.Err(); err != nil {
		return counts, fmt.Errorf("demo interrupted; what it made is removed: %w", context.Cause(ctx))
	}
	return counts, nil
}

// countingOutput counts the events on their way to the output.
type countingOutput struct {
	out    live.Output
	counts *Counts
}

func (o countingOutput) Write(ev result.Event) error {
	o.counts.add(ev)
	return o.out.Write(ev)
}

func (o countingOutput) Flush() error { return o.out.Flush() }
