package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// What trace says on stderr is what is wrong, not what is normal: the hooks chosen for each
// event class (and why better backends were not used) only with --verbose.
func TestTraceShowsThePlanOnlyWithVerbose(t *testing.T) {
	port := portWithNoListener(t)
	for _, verbose := range []bool{false, true} {
		f := traceWith(100*time.Millisecond, port)
		f.raw, f.verbose = true, verbose
		_, stderr, done := startTrace(t, f)
		if err := <-done; err != nil {
			t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
		}
		out := stderr.String()
		for _, class := range eventClasses {
			got := false // a line naming the class's hooks; a "without" line is a loss, always shown
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, fmt.Sprintf("discotrace: %-8s ", class)) && !strings.Contains(line, " without ") {
					got = true
				}
			}
			if got != verbose {
				t.Errorf("--verbose=%v: stderr shows the hooks of %s: %v, want %v:\n%s", verbose, class, got, verbose, out)
			}
		}
		if strings.Contains(out, "not used for") != verbose {
			t.Errorf("--verbose=%v: stderr says why better backends were not used: %v, want %v:\n%s", verbose, !verbose, verbose, out)
		}
	}
}
