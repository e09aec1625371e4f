package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/discotrace/discotrace/sink"
)

// sinkFlags say where `trace` writes its events: stdout unless a file or socket is given.
type sinkFlags struct {
	outputs      []string
	maxSize      string
	maxAge       time.Duration
	keep         int
	listens      []string
	readerBuffer string
}

// defaultKeep is how many rotated files are kept.
const defaultKeep = 5

const wantMaxAge = "give a positive duration, such as 1h or 24h"

func (f *sinkFlags) register(fl *pflag.FlagSet) {
	fl.StringArrayVar(&f.outputs, "output", nil, `append the events to `+"`FILE`"+` (created 0600; reopened on SIGHUP), "-" for stdout; repeatable`)
	fl.StringVar(&f.maxSize, "output-max-size", "", "rotate an --output file before it grows past `SIZE` (e.g. 100MiB; default: never, leave it to logrotate)")
	fl.Var(durationFlag{&f.maxAge, wantMaxAge}, "output-max-age", "rotate an --output file at the first event once it has been written to for `DURATION` (e.g. 24h; default: never)")
	fl.IntVar(&f.keep, "output-keep", defaultKeep, "rotated files kept by --output-max-size and --output-max-age: FILE.1 (newest) to FILE.`N`")
	fl.StringArrayVar(&f.listens, "listen", nil, "serve the live stream to any number of readers on a unix socket, `unix:PATH` (created 0600); repeatable")
	fl.StringVar(&f.readerBuffer, "listen-buffer", "4MiB", "`SIZE` of the events queued per --listen reader before they are dropped for it (a slow reader is told what it lost)")
}

// open opens every sink, or fails naming the first that cannot be opened: bad values
// are usage errors (exit 2), a sink the system refuses is exit 1. Failures after this
// are reported on stderr. SIGHUP reopens the files until the fan-out is closed.
// toStdout says the events go to stdout too: as an NDJSON sink of the fan-out, unless
// textStdout (the text view, which the caller writes).
func (f *sinkFlags) open(stdout, stderr io.Writer, withPayload, textStdout bool) (out *sink.Fanout, toStdout bool, closeAll func(), err error) {
	maxSize, keep, readerBuffer, err := f.check()
	if err != nil {
		return nil, false, nil, err
	}
	logger := log.New(stderr, "discotrace: ", 0)
	var sinks []sink.Sink
	defer func() {
		if err != nil {
			for _, s := range sinks {
				s.Close()
			}
		}
	}()
	toStdout = len(f.outputs) == 0 && len(f.listens) == 0 || slices.Contains(f.outputs, "-")
	if toStdout && !textStdout {
		sinks = append(sinks, sink.NewWriter("stdout", stdout))
	}
	files := 0
	for _, o := range f.outputs {
		if o == "-" {
			continue
		}
		s, err := sink.OpenFile(sink.FileConfig{Path: o, MaxSize: maxSize, MaxAge: f.maxAge, Keep: keep, Log: logger})
		if err != nil {
			return nil, false, nil, fmt.Errorf("--output %s: %w", o, err)
		}
		sinks = append(sinks, s)
		files++
	}
	for _, l := range f.listens {
		path, _ := strings.CutPrefix(l, "unix:")
		s, err := sink.Listen(sink.ListenConfig{Path: path, ReaderBuffer: readerBuffer, Log: logger})
		if err != nil {
			return nil, false, nil, fmt.Errorf("--listen %s: %w", l, err)
		}
		sinks = append(sinks, s)
	}
	out = sink.NewFanout(logger, withPayload, sinks...)
	if files == 0 {
		return out, toStdout, func() { closeSinks(out, logger) }, nil
	}
	// logrotate's postrotate sends SIGHUP once it has moved the file away. Reopen runs
	// beside the live path's writes: each file sink locks around both.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for range hup {
			out.Reopen()
		}
	}()
	return out, toStdout, func() {
		signal.Stop(hup)
		close(hup)
		<-stopped
		closeSinks(out, logger)
	}, nil
}

func closeSinks(out *sink.Fanout, logger *log.Logger) {
	if err := out.Close(); err != nil {
		logger.Print(err)
	}
}

// check validates the values, without opening anything.
func (f *sinkFlags) check() (maxSize int64, keep, readerBuffer int, err error) {
	usage := func(format string, a ...any) error { return &exitError{code: 2, err: fmt.Errorf(format, a...)} }
	seen := map[string]bool{}
	for _, o := range f.outputs {
		if o == "" {
			return 0, 0, 0, usage(`--output needs a file name ("-" for stdout)`)
		}
		if seen[o] {
			return 0, 0, 0, usage("--output %s is given twice", o)
		}
		seen[o] = true
	}
	for _, l := range f.listens {
		path, ok := strings.CutPrefix(l, "unix:")
		if !ok || path == "" {
			return 0, 0, 0, usage("--listen %q: want unix:PATH (only unix sockets are served)", l)
		}
		if seen["unix:"+path] {
			return 0, 0, 0, usage("--listen %s is given twice", l)
		}
		seen["unix:"+path] = true
	}
	if f.maxSize != "" {
		if !slices.ContainsFunc(f.outputs, func(o string) bool { return o != "-" }) {
			return 0, 0, 0, usage("--output-max-size rotates an --output file: give one")
		}
		if maxSize, err = parseSize(f.maxSize); err != nil || maxSize <= 0 {
			return 0, 0, 0, usage("--output-max-size %q: want a positive size such as 100MiB", f.maxSize)
		}
	}
	if f.maxAge != 0 {
		if !slices.ContainsFunc(f.outputs, func(o string) bool { return o != "-" }) {
			return 0, 0, 0, usage("--output-max-age rotates an --output file: give one")
		}
		if f.maxAge < 0 {
			return 0, 0, 0, badFlag("output-max-age", f.maxAge.String(), wantMaxAge)
		}
	}
	if f.keep < 0 {
		return 0, 0, 0, usage("--output-keep %d is negative", f.keep)
	}
	rb, err := int64(sink.DefaultReaderBuffer), error(nil)
	if f.readerBuffer != "" { // unset in tests that build the flags themselves
		rb, err = parseSize(f.readerBuffer)
	}
	if err != nil || rb <= 0 || rb > 1<<30 {
		return 0, 0, 0, usage("--listen-buffer %q: want a size from 1 byte to 1GiB, such as 4MiB", f.readerBuffer)
	}
	return maxSize, f.keep, int(rb), nil
}

// sizeUnits are the suffixes parseSize takes: binary (KiB) and decimal (kB).
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// parseSize parses a byte count with an optional unit: 100MiB, 1GB, 65536.
func parseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, err
	}
	if n < 0 || (n > 0 && mult > (1<<62)/n) {
		return 0, errors.New("out of range")
	}
	return n * mult, nil
}
