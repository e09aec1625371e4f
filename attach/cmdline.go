package attach

import (
	"fmt"
	"strconv"
	"strings"
)

// flagValue returns the value the command line args gives the flag name (without
// dashes): "--name value", "--name=value", or the same with one dash, as Go's flag
// package, urfave/cli and clap accept them; the last one wins, as in those parsers.
func flagValue(args []string, name string) (string, bool) {
	var value string
	found := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break // the rest are positional arguments
		}
		rest, ok := strings.CutPrefix(a, "--")
		if !ok {
			rest, ok = strings.CutPrefix(a, "-")
		}
		if !ok {
			continue
		}
		if v, isValue := strings.CutPrefix(rest, name+"="); isValue {
			value, found = v, true
		} else if rest == name && i+1 < len(args) {
			value, found = args[i+1], true
			i++
		}
	}
	return value, found
}

// flagSet tells whether args turn the boolean flag name on: "--name" or "--name=true".
func flagSet(args []string, name string) bool {
	on := false
	for _, a := range args {
		if a == "--" {
			break
		}
		rest := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if rest == a {
			continue
		}
		if rest == name {
			on = true
		} else if v, ok := strings.CutPrefix(rest, name+"="); ok {
			on, _ = strconv.ParseBool(v)
		}
	}
	return on
}

// parsePort reads a port flag's value.
func parsePort(flag, v string) (uint16, error) {
	p, err := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("its %s %q is not a UDP port", flag, v)
	}
	return uint16(p), nil
}
