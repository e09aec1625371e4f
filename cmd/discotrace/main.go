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

// usageError marks a mistake in the command line (an unknown flag, a missing or extra
// argument, a value that does not parse): exit status 2, as for a bad flag value.
func usageError(_ *cobra.Command, err error) error {
	return &exitError{code: 2, err: flagValueError(err)}
}

// usageArgs makes check's complaints usage errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError(cmd, err)
		}
		return nil
	}
}

// Subcommands inherit the root's flag error function.
func init() { rootCmd.SetFlagErrorFunc(usageError) }

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
