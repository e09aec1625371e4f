package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/discotrace/discotrace/ndjson"
)

// Into a pipe or a file (a program reads it), decode writes NDJSON without being asked,
// the same bytes as with --format ndjson.
func TestFormatDefaultIsNDJSONIntoAPipeOrAFile(t *testing.T) {
	path := testCapture(t, "devp2p-discovery.pcap")
	explicit, err := runCLI(t, path, "--nodekey", testKeyA, "--format", "ndjson")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(explicit, `{"v":1,`) {
		t.Fatalf("--format ndjson wrote %.100q", explicit)
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	piped := make(chan string)
	go func() { b, _ := io.ReadAll(pr); piped <- string(b) }()
	err = decodeInto(pw, path)
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := <-piped; got != explicit {
		t.Errorf("into a pipe, decode wrote %.200q, want the NDJSON of --format ndjson", got)
	}

	file, err := os.Create(filepath.Join(t.TempDir(), "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if err := decodeInto(file, path); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(file.Name()); string(got) != explicit {
		t.Errorf("into a file, decode wrote %.200q, want the NDJSON of --format ndjson", got)
	}
}

// decodeInto runs `discotrace decode --nodekey A path` with stdout w and no --format.
func decodeInto(w *os.File, path string) error {
	cmd := newDecodeCmd()
	cmd.SetOut(w)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{path, "--nodekey", testKeyA})
	return cmd.Execute()
}

// On a terminal (a person reads it), decode writes the text view, coloured.
func TestFormatDefaultIsTextOnATerminal(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "xterm")
	master, slave := openPTY(t)
	got := make(chan string)
	go func() { b, _ := io.ReadAll(master); got <- string(b) }()
	err := decodeInto(slave, testCapture(t, "reject.pcap"))
	slave.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := <-got
	if !strings.HasPrefix(out, "TIME ") {
		t.Fatalf("on a terminal, decode wrote %.200q, want the text view's header first", out)
	}
	if !strings.Contains(out, "\x1b[1;31mFAILED icmp_unreachable\x1b[0m") {
		t.Errorf("on a terminal, failures are not coloured:\n%s", out)
	}
	if strings.Contains(out, `{"v":`) {
		t.Error("NDJSON on a terminal without --format ndjson")
	}
}

// openPTY opens a pseudo-terminal: what the program writes to slave, master reads.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pseudo-terminal number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pseudo-terminal's slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// --format text writes the view the textview package's golden files hold (their times
// are UTC, the command's local: the time column is left out of the comparison), a line
// per NDJSON event after the header, with no escape sequences off a terminal.
func TestFormatTextIsTheGoldenView(t *testing.T) {
	path := testCapture(t, "reject.pcap")
	const keyG, keyB = "2222222222222222222222222222222222222222222222222222222222222222", "3333333333333333333333333333333333333333333333333333333333333333"
	text, err := runCLI(t, path, "--nodekey", keyG, "--nodekey", keyB, "--format", "text")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join("..", "..", "textview", "testdata", "reject-keysGB.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := withoutTimes(text), withoutTimes(string(golden)); a != b {
		t.Errorf("--format text differs from textview/testdata/reject-keysGB.txt:\n%s", text)
	}
	if strings.Contains(text, "\x1b") {
		t.Error("escape sequences written for no terminal")
	}
	ndj, err := runCLI(t, path, "--nodekey", keyG, "--nodekey", keyB)
	if err != nil {
		t.Fatal(err)
	}
	if nt, nj := strings.Count(text, "\n"), strings.Count(ndj, "\n"); nt != nj+1 {
		t.Errorf("%d text lines for %d events: want one per event and the header", nt, nj)
	}
}

// withoutTimes drops the time column (the first 12 characters) of each line.
func withoutTimes(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if len(l) >= 12 {
			lines[i] = l[12:]
		}
	}
	return strings.Join(lines, "\n")
}

// A bad --format is a usage error: exit status 2 and one line naming the flag and the
// values it takes, for decode and for trace (before anything is attached). Through the
// root command, whose flag error function the subcommands inherit.
func TestFormatBadValueExits2(t *testing.T) {
	path := testCapture(t, "devp2p-discovery.pcap")
	for name, args := range map[string][]string{
		"decode": {"decode", path, "--format", "xml"},
		"trace":  {"trace", "--format", "xml"},
	} {
		out, err := runCommand(rootCmd, args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("%s --format xml: %v, want exit status 2", name, err)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.Contains(msg, "--format") || !strings.Contains(msg, `"text"`) || !strings.Contains(msg, `"ndjson"`) {
			t.Errorf("%s --format xml says %q: want one line naming --format, text and ndjson", name, msg)
		}
		if out != "" {
			t.Errorf("%s --format xml wrote %q", name, out)
		}
	}
}

// The shell completes the values of --format and --backend.
func TestFlagValuesComplete(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"decode", "--format", ""}, []string{"text", "ndjson"}},
		{[]string{"trace", "--format", ""}, []string{"text", "ndjson"}},
		{[]string{"trace", "--backend", ""}, []string{"auto", "fentry", "kprobe", "tracepoint"}},
	} {
		out, err := runCommand(rootCmd, append([]string{"__complete"}, c.args...)...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		var got []string
		for l := range strings.SplitSeq(out, "\n") {
			if v, _, ok := strings.Cut(l, "\t"); ok {
				got = append(got, v)
			}
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("completing %v offers %q, want %q (output %q)", c.args, got, c.want, out)
		}
	}
}

// --format ndjson is the schema's NDJSON, one valid object per line.
func TestFormatNDJSONIsTheSchema(t *testing.T) {
	out, err := runCLI(t, testCapture(t, "reject.pcap"), "--format", "ndjson")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(strings.TrimSuffix(out, "\n"), "\n") {
		var ev ndjson.Event
		if err := json.NewDecoder(bytes.NewReader([]byte(l))).Decode(&ev); err != nil || ev.V != ndjson.SchemaVersion {
			t.Fatalf("line %q: %v", l, err)
		}
	}
}
