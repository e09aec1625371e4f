// Package textview renders discotrace's events for people: one aligned line per event, in
// the manner of Inspektor Gadget's columns and pwru's output. A line shows the clock time,
// the event type, the endpoints, the node IDs shortened as geth logs them (first 8 hex),
// the discovery packet's kind, durations in ms or µs, and for a failed handshake or
// exchange its cause with the best evidence for it.
//
// It renders the schema value (ndjson.Event), the same value the NDJSON lines are encoded
// from, so both formats always say the same thing; NDJSON stays the complete, machine
// format (a line here is cut at a bounded width, payloads are not shown).
package textview

import (
	"bufio"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/discotrace/discotrace/ndjson"
)

// DefaultWidth is the most columns a line takes unless Options.Width says otherwise: room
// for the aligned columns (about 115 on an exchange's line), a cause and its evidence.
const DefaultWidth = 240

// minWidth keeps the fixed columns whole whatever Options.Width asks for.
const minWidth = 100

// Options configure a Writer. The zero value writes plain lines in local time.
type Options struct {
	// Color highlights failures (red), losses (bold yellow) and anomalies (yellow) with
	// ANSI escapes: set it only when the output is a terminal (ColorFor decides). Without
	// it, the marker column alone ("!" for failures and losses, "~" for anomalies) says so.
	Color bool
	// Location is the time zone of the clock time (time.Local when nil).
	Location *time.Location
	// Width bounds a line in columns (DefaultWidth when 0, at least 100): longer lines are
	// cut, ending in "…".
	Width int
	// NoHeader leaves out the column titles written before the first line.
	NoHeader bool
}

// Writer writes events as lines. It buffers; call Flush when a batch is done. It is not
// safe for concurrent use.
type Writer struct {
	w      *bufio.Writer
	opts   Options
	header bool // written
	line   line // reused for every event
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer, opts Options) *Writer {
	if opts.Location == nil {
		opts.Location = time.Local
	}
	if opts.Width == 0 {
		opts.Width = DefaultWidth
	}
	opts.Width = max(opts.Width, minWidth)
	return &Writer{w: bufio.NewWriterSize(w, 64<<10), opts: opts, header: opts.NoHeader}
}

// Write writes one event as one line (after the column titles, before the first).
func (w *Writer) Write(ev *ndjson.Event) error {
	if !w.header {
		w.header = true
		if _, err := w.w.WriteString(header() + "\n"); err != nil {
			return err
		}
	}
	w.line.reset()
	render(&w.line, ev, w.opts.Location)
	_, err := w.w.WriteString(w.line.String(w.opts.Width, w.opts.Color) + "\n")
	return err
}

// Flush writes buffered lines to the underlying writer.
func (w *Writer) Flush() error { return w.w.Flush() }

// header is the line of column titles.
func header() string {
	var l line
	l.fixed(timeWidth, "TIME")
	l.fixed(markWidth, "")
	l.fixed(typeWidth, "TYPE")
	l.fixed(endpointsWidth, "ENDPOINTS")
	l.fixed(idsWidth, "NODE IDS")
	l.text("WHAT")
	return strings.TrimRight(l.String(DefaultWidth, false), " ")
}

// IsTerminal reports whether w is a terminal (a character device that answers terminal
// requests), as ls and git decide whether they write for a person.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// ColorFor reports whether lines written to w should be coloured: w is a terminal, and
// neither NO_COLOR (no-color.org) nor TERM=dumb says otherwise.
func ColorFor(w io.Writer) bool {
	return IsTerminal(w) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}

// Column widths, in runes. Endpoints fit two IPv4 addresses with ports; longer (IPv6)
// ones push the rest of their line right rather than being cut.
const (
	timeWidth      = 12 // 15:04:05.000
	markWidth      = 1
	typeWidth      = 9 // handshake
	endpointsWidth = 43
	idsWidth       = 19 // 0123abcd > 4567ef01
	colGap         = 1
)

// style is how a segment of a line is highlighted on a terminal.
type style uint8

const (
	plain style = iota
	failure
	loss
	warning
	good
	faint
)

var ansi = [...]string{
	plain:   "",
	failure: "\x1b[1;31m",
	loss:    "\x1b[1;33m",
	warning: "\x1b[33m",
	good:    "\x1b[32m",
	faint:   "\x1b[2m",
}

const ansiReset = "\x1b[0m"

// segment is a piece of a line with its style.
type segment struct {
	s     string
	style style
}

// line collects a line's segments: columns padded to their width, then free text.
type line struct {
	segs []segment
	// whole, when set, styles the whole line (losses), over the segments' own styles.
	whole style
	sb    strings.Builder
}

func (l *line) reset() {
	l.segs = l.segs[:0]
	l.whole = plain
}

// fixed adds a column: s padded to width runes (never cut), then the gap.
func (l *line) fixed(width int, s string) { l.fixedStyled(width, s, plain) }

func (l *line) fixedStyled(width int, s string, st style) {
	l.segs = append(l.segs, segment{s, st})
	if pad := width - utf8.RuneCountInString(s); pad > 0 {
		l.segs = append(l.segs, segment{strings.Repeat(" ", pad), plain})
	}
	l.segs = append(l.segs, segment{" ", plain})
}

// text adds free text.
func (l *line) text(s string) { l.segs = append(l.segs, segment{s, plain}) }

func (l *line) styled(s string, st style) { l.segs = append(l.segs, segment{s, st}) }

// String is the line cut to width runes (ending in "…" when cut), coloured when asked.
func (l *line) String(width int, color bool) string {
	l.sb.Reset()
	left := width
	cut := false
	for _, seg := range l.segs {
		s := seg.s
		n := utf8.RuneCountInString(s)
		if n > left {
			s = truncateRunes(s, left-1) + "…"
			cut = true
		}
		st := seg.style
		if l.whole != plain {
			st = l.whole
		}
		if color && st != plain {
			l.sb.WriteString(ansi[st])
			l.sb.WriteString(s)
			l.sb.WriteString(ansiReset)
		} else {
			l.sb.WriteString(s)
		}
		left -= n
		if cut {
			break
		}
	}
	return strings.TrimRight(l.sb.String(), " ")
}

// truncateRunes returns the first n runes of s.
func truncateRunes(s string, n int) string {
	if n <= 0 {
		return ""
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

// clip bounds one field of free text (a decoder's detail, an error) to n runes, so that
// one long field leaves room for the rest of the line.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return truncateRunes(s, n-1) + "…"
}
