package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/discotrace/discotrace/demo"
	"github.com/discotrace/discotrace/report"
	"github.com/discotrace/discotrace/tracer"
)

// demoFlags are the options of `discotrace demo`.
type demoFlags struct {
	payload bool
	format  formatFlag
}

func newDemoCmd() *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run go-ethereum discovery nodes in network namespaces, make discovery fail, and trace it",
		Long: `Demo shows what discotrace does without a node of your own. It starts real go-ethereum
discovery nodes (discv4 and discv5 on one socket, as geth runs them), each in a network
namespace of its own, traces them in the kernel as ` + "`discotrace trace`" + ` does, and makes
discovery succeed and fail: healthy pings and lookups, a peer that is down (the kernel
answers port unreachable), a peer that reads and never answers, a peer whose receive
buffer is full, and a peer whose clock is far behind. The events go to stdout as they
are decided (in the text view on a terminal, NDJSON otherwise: --format), what each step
does to stderr, then the report of what they add up to (after the events on a terminal,
on stderr when stdout is NDJSON).

It takes about 10 seconds, then removes its namespaces, nodes and BPF programs, also
when interrupted. Needs root.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), &f)
		},
	}
	cmd.Flags().BoolVar(&f.payload, "payload", false, "add each datagram's payload, hex, to its event (NDJSON)")
	f.format.register(cmd)
	return cmd
}

func init() { rootCmd.AddCommand(newDemoCmd()) }

func runDemo(ctx context.Context, stdout, stderr io.Writer, f *demoFlags) error {
	// The demo removes what it made however it is stopped: a closed stdout (`| head`)
	// ends it with a write error rather than killing it, a closed terminal like Ctrl-C.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stop()
	out := f.format.output(stdout, f.payload)
	out.summary = report.New(report.Options{})
	_, err := demo.Run(ctx, demo.Config{Output: out, Log: stderr})
	var perr *tracer.PrivilegeError
	if errors.Is(err, demo.ErrNotRoot) || errors.As(err, &perr) {
		return &exitError{code: 2, err: err}
	}
	// The report follows the events in the text view; NDJSON on stdout stays pure.
	page := stderr
	if f.format.resolve(stdout) == formatText {
		page = stdout
		fmt.Fprintln(page)
	}
	s := out.summary.Summary()
	if werr := report.WriteText(page, &s, 10); werr != nil && err == nil {
		err = werr
	}
	return err
}
