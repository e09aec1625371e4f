package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
	"github.com/discotrace/discotrace/report"
	"github.com/discotrace/discotrace/textview"
	"github.com/discotrace/discotrace/tracer"
)

// Output formats of the commands that print events.
const (
	formatText   = "text"   // one aligned line per event, for people (package textview)
	formatNDJSON = "ndjson" // one JSON object per line, the machine format (package ndjson)
)

// formatFlag is --format: its value is checked as the flag is parsed, so a bad one is a
// usage error (exit 2) before anything starts. Empty means: decide by the output.
type formatFlag struct{ value string }

func (f *formatFlag) String() string { return f.value }
func (f *formatFlag) Type() string   { return formatText + "|" + formatNDJSON }

func (f *formatFlag) Set(s string) error {
	if s != formatText && s != formatNDJSON {
		return fmt.Errorf("use %q or %q", formatText, formatNDJSON)
	}
	f.value = s
	return nil
}

// register adds --format to cmd, with its values offered by shell completion.
func (f *formatFlag) register(cmd *cobra.Command) {
	cmd.Flags().Var(f, "format", `"text": one aligned line per event, for people; "ndjson": one JSON object per line, for programs (default: text when standard output is a terminal, else ndjson)`)
	completeValues(cmd, "format",
		formatText+"\tone aligned line per event, for people",
		formatNDJSON+"\tone JSON object per line, for programs")
}

// resolve is the format to write to w: the one asked for, else text for a terminal and
// NDJSON for a pipe or a file, as ls and git decide.
func (f *formatFlag) resolve(w io.Writer) string {
	if f.value != "" {
		return f.value
	}
	if textview.IsTerminal(w) {
		return formatText
	}
	return formatNDJSON
}

// output returns where the events written to w go, in the format of f. withPayload adds
// each datagram's bytes to NDJSON; the text view, bounded in width, leaves them out.
func (f *formatFlag) output(w io.Writer, withPayload bool) *renderedOutput {
	if f.resolve(w) == formatText {
		return &renderedOutput{writers: []eventWriter{f.textWriter(w)}}
	}
	return &renderedOutput{writers: []eventWriter{ndjsonWriter{ndjson.NewEncoder(w)}}, withPayload: withPayload}
}

// textWriter is the text view on w.
func (f *formatFlag) textWriter(w io.Writer) eventWriter {
	return textWriter{textview.NewWriter(w, textview.Options{Color: textview.ColorFor(w)})}
}

// eventWriter takes the schema's values: the NDJSON encoder, the text view, trace's sinks.
type eventWriter interface {
	WriteEvent(*ndjson.Event) error
	Flush() error
}

type ndjsonWriter struct{ *ndjson.Encoder }

func (w ndjsonWriter) WriteEvent(ev *ndjson.Event) error { return w.Encode(ev) }

type textWriter struct{ *textview.Writer }

func (w textWriter) WriteEvent(ev *ndjson.Event) error { return w.Write(ev) }

// renderedOutput is the live path's output (live.Output): each result is rendered once
// to the schema value (ndjson.Renderer), written to every writer and, when summary is
// set, counted for trace's closing summary: rendering is most of an output's cost. No
// writer keeps the value: the next result is rendered into it.
type renderedOutput struct {
	writers     []eventWriter
	withPayload bool
	summary     *report.Aggregator
	render      ndjson.Renderer
}

// Write writes ev to every writer; the first error is returned, after all were tried.
func (o *renderedOutput) Write(ev result.Event) error {
	line := o.render.Render(ev, o.withPayload)
	if o.summary != nil {
		o.summary.Add(line)
	}
	var first error
	for _, w := range o.writers {
		if err := w.WriteEvent(line); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (o *renderedOutput) Flush() error {
	var first error
	for _, w := range o.writers {
		if err := w.Flush(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// completeValues makes the shell offer values (each "value\tdescription") for flag.
func completeValues(cmd *cobra.Command, flag string, values ...string) {
	if err := cmd.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp)); err != nil {
		panic(err) // a programming error: no such flag, or registered twice
	}
}

// completeBackend makes the shell offer the values of --backend.
func completeBackend(cmd *cobra.Command) {
	completeValues(cmd, "backend",
		tracer.BackendAuto+"\tper event class the best the kernel offers",
		tracer.BackendFentry+"\tfentry/fexit on UDP's and ICMP's functions",
		tracer.BackendKprobe+"\tkprobes on the same functions",
		tracer.BackendTracepoint+"\tstable tracepoints and cgroup hooks")
}
