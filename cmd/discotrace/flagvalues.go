package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/discotrace/discotrace/tracer"
)

// A bad flag value, whether it does not parse or is out of range, is reported the same
// way: one line naming the flag, the value and what it accepts, and exit status 2.

// badFlag is the usage error for value given to --flag, which accepts want
// ("give ...").
func badFlag(flag, value, want string) error {
	if value == "" || strings.ContainsAny(value, " \t") {
		value = strconv.Quote(value)
	}
	return &exitError{code: 2, err: fmt.Errorf("--%s %s: %s", flag, value, want)}
}

// flagValueError turns pflag's complaint about a value that does not parse into badFlag's
// line: the flag's own Set says what it accepts, where pflag would quote strconv.
func flagValueError(err error) error {
	var ive *pflag.InvalidValueError
	if !errors.As(err, &ive) {
		return err
	}
	want := errors.Unwrap(ive).Error()
	if ive.GetFlag().Value.Type() == "bool" {
		want = "give true or false"
	}
	return badFlag(ive.GetFlag().Name, ive.GetValue(), want)
}

// What each kind of flag accepts, as the error of a value out of range says it.
const (
	wantPort            = "give a UDP port from 1 to 65535"
	wantPositive        = "give a positive duration, such as 500ms or 2s"
	wantDuration        = "give 0 (until interrupted) or a positive duration, such as 30s or 1h"
	wantPID             = "give a process ID, 1-4194303 (0: every process)"
	wantNetNS           = "give a network namespace inode, 1-4294967295, as ls -Li /proc/PID/ns/net shows (0: every namespace)"
	maxPID       uint32 = 4194303 // PID_MAX_LIMIT - 1 on 64-bit Linux
	maxRingSize         = 1 << 30 // the largest ring buffer the tracer takes
)

var wantSnapLen = fmt.Sprintf("give the payload bytes to capture per datagram, 0-%d", tracer.MaxSnapLen)

func wantRingSize() string {
	return fmt.Sprintf("give a power of two from the page size to 1 GiB, %d-%d bytes, such as %d (8 MiB)", os.Getpagesize(), maxRingSize, tracer.DefaultRingSize)
}

// intFlag is an int flag whose parse error says what it accepts; the range itself is
// checked with the other flags, before anything is opened.
type intFlag struct {
	p    *int
	want string
}

func (f intFlag) String() string { return strconv.Itoa(*f.p) }
func (f intFlag) Type() string   { return "int" }
func (f intFlag) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, strconv.IntSize)
	if err != nil {
		return errors.New(f.want)
	}
	*f.p = int(n)
	return nil
}

// uint32Flag is intFlag for a uint32.
type uint32Flag struct {
	p    *uint32
	want string
}

func (f uint32Flag) String() string { return strconv.FormatUint(uint64(*f.p), 10) }
func (f uint32Flag) Type() string   { return "uint32" }
func (f uint32Flag) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return errors.New(f.want)
	}
	*f.p = uint32(n)
	return nil
}

// durationFlag is intFlag for a duration.
type durationFlag struct {
	p    *time.Duration
	want string
}

func (f durationFlag) String() string {
	if *f.p == 0 {
		return "0" // as pflag's own, so that help leaves out a zero default
	}
	return f.p.String()
}
func (f durationFlag) Type() string { return "duration" }
func (f durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New(f.want)
	}
	*f.p = d
	return nil
}

// portsFlag is a repeatable list of UDP ports, also comma-separated, as pflag's
// uintSlice: the first value given replaces the default.
type portsFlag struct {
	p       *[]uint
	changed bool
}

func (f *portsFlag) String() string {
	s := make([]string, len(*f.p))
	for i, p := range *f.p {
		s[i] = strconv.FormatUint(uint64(p), 10)
	}
	return "[" + strings.Join(s, ",") + "]"
}
func (f *portsFlag) Type() string { return "uintSlice" }
func (f *portsFlag) Set(s string) error {
	var ports []uint
	for _, field := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(field), 10, 16)
		if err != nil || n == 0 {
			return errors.New(wantPort)
		}
		ports = append(ports, uint(n))
	}
	if !f.changed {
		*f.p = nil
		f.changed = true
	}
	*f.p = append(*f.p, ports...)
	return nil
}
