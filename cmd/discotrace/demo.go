package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"sort"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/discotrace/discotrace/decode/live"
	"github.com/discotrace/discotrace/demo"
	"github.com/discotrace/discotrace/ndjson"
	"github.com/discotrace/discotrace/tracer"
)

// demoFlags are the options of `discotrace demo`.
type demoFlags struct {
	payload bool
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
are decided, what each step does to stderr, then a count of outcomes and causes.

It takes about 10 seconds, then removes its namespaces, nodes and BPF programs, also
when interrupted. Needs root.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), &f)
		},
	}
	cmd.Flags().BoolVar(&f.payload, "payload", false, "add each datagram's payload, hex, to its event")
	return cmd
}

func init() { rootCmd.AddCommand(newDemoCmd()) }

func runDemo(ctx context.Context, stdout, stderr io.Writer, f *demoFlags) error {
	// The demo removes what it made however it is stopped: a closed stdout (`| head`)
	// ends it with a write error rather than killing it, a closed terminal like Ctrl-C.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stop()
	counts, err := demo.Run(ctx, demo.Config{Output: demoOutput(stdout, f), Log: stderr})
	var perr *tracer.PrivilegeError
	if errors.Is(err, demo.ErrNotRoot) || errors.As(err, &perr) {
		return &exitError{code: 2, err: err}
	}
	printDemoCounts(stderr, counts)
	return err
}

// demoOutput is where the demo's events go.
func demoOutput(stdout io.Writer, f *demoFlags) live.Output {
	return ndjsonOutput{ndjson.NewEncoder(stdout), f.payload}
}

// printDemoCounts ends the demo with what its events add up to.
func printDemoCounts(w io.Writer, c *demo.Counts) {
	line := func(what string, m map[string]int) {
		if len(m) == 0 {
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(w, "demo: %-11s", what)
		for _, k := range keys {
			fmt.Fprintf(w, " %s %d", k, m[k])
		}
		fmt.Fprintln(w)
	}
	line("handshakes", stringKeys(c.Handshakes))
	line("exchanges", stringKeys(c.Exchanges))
	line("causes", stringKeys(c.Causes))
	line("drops", c.Drops)
	line("anomalies", stringKeys(c.Anomalies))
	if c.Lost+c.Shed > 0 {
		fmt.Fprintf(w, "demo: the tracer lost %d events and the decoder shed %d\n", c.Lost, c.Shed)
	}
}

func stringKeys[K ~string](m map[K]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, n := range m {
		out[string(k)] = n
	}
	return out
}
