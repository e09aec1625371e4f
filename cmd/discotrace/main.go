// Command discotrace traces and decodes Ethereum node discovery traffic (discv4, discv5).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// rootCmd is the top command; each subcommand's file adds itself in its init.
var rootCmd = &cobra.Command{
	Use:           "discotrace",
	Short:         "Trace and decode Ethereum discovery traffic (discv4, discv5)",
	SilenceUsage:  true,
	SilenceErrors: true,
}

// exitError carries the exit code an error should end the process with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := rootCmd.ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "discotrace:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(1)
}
