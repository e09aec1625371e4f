package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Every bad flag value of every command exits with status 2 and one line naming the
// flag, the value and what it accepts, as main prints it. Values are checked before
// anything is opened (tracer, capture), so this needs no root. Each trace starts with
// --duration 1ms: should a bad value get through, trace stops at once (and the test fails
// on its output) instead of tracing until killed.
func TestBadFlagValuesExit2WithOneLine(t *testing.T) {
	ringSize := fmt.Sprintf("give a power of two from the page size to 1 GiB, %d-1073741824 bytes, such as 8388608 (8 MiB)", os.Getpagesize())
	const (
		port     = "give a UDP port from 1 to 65535"
		snapLen  = "give the payload bytes to capture per datagram, 0-1280"
		backend  = "give auto, fentry, kprobe or tracepoint"
		netns    = "give a network namespace inode, 1-4294967295, as ls -Li /proc/PID/ns/net shows (0: every namespace)"
		pid      = "give a process ID, 1-4194303 (0: every process)"
		duration = "give 0 (until interrupted) or a positive duration, such as 30s or 1h"
		positive = "give a positive duration, such as 500ms or 2s"
		boolean  = "give true or false"
		nodeKey  = "node key: want 64 hex characters (32 bytes), got 3"
		nodeID   = "node ID: want 64 hex characters or an enode:// URL, got 3 characters"
		enr      = `ENR: want the text form "enr:..."`
		otlp     = "give grpc://HOST:PORT (OTLP/gRPC; grpcs:// for TLS) or http://HOST:PORT (OTLP/HTTP; https:// for TLS)"
	)
	trace := []string{"trace", "--duration", "1ms"}
	decode := []string{"decode", "no-such-capture.pcap"}
	cases := []struct {
		args []string
		line string // after "discotrace: "
	}{
		{append(trace, "--snaplen", "5000"), "--snaplen 5000: " + snapLen},
		{append(trace, "--snaplen", "-1"), "--snaplen -1: " + snapLen},
		{append(trace, "--snaplen", "all"), "--snaplen all: " + snapLen},
		{append(trace, "--ringbuf-size", "3"), "--ringbuf-size 3: " + ringSize},
		{append(trace, "--ringbuf-size", "0"), "--ringbuf-size 0: " + ringSize},
		{append(trace, "--ringbuf-size", "12288"), "--ringbuf-size 12288: " + ringSize},
		{append(trace, "--ringbuf-size", "2147483648"), "--ringbuf-size 2147483648: " + ringSize},
		{append(trace, "--ringbuf-size", "8M"), "--ringbuf-size 8M: " + ringSize},
		{append(trace, "--backend", "foo"), "--backend foo: " + backend},
		{append(trace, "--backend", ""), `--backend "": ` + backend},
		{append(trace, "--port", "abc"), "--port abc: " + port},
		{append(trace, "--port", "0"), "--port 0: " + port},
		{append(trace, "--port", "70000"), "--port 70000: " + port},
		{append(trace, "--port", "-1"), "--port -1: " + port},
		{append(trace, "--port", "30303,x"), "--port 30303,x: " + port},
		{append(trace, "--netns", "abc"), "--netns abc: " + netns},
		{append(trace, "--netns", "-1"), "--netns -1: " + netns},
		{append(trace, "--netns", "4294967296"), "--netns 4294967296: " + netns},
		{append(trace, "--pid", "abc"), "--pid abc: " + pid},
		{append(trace, "--pid", "4194304"), "--pid 4194304: " + pid},
		{[]string{"trace", "--duration", "-1s"}, "--duration -1s: " + duration},
		{[]string{"trace", "--duration", "soon"}, "--duration soon: " + duration},
		{append(trace, "--v4-timeout", "0"), "--v4-timeout 0s: " + positive},
		{append(trace, "--v5-timeout", "-1s"), "--v5-timeout -1s: " + positive},
		{append(trace, "--handshake-timeout", "1"), "--handshake-timeout 1: " + positive},
		{append(trace, "--raw=maybe"), "--raw maybe: " + boolean},
		{append(trace, "--payload=2"), "--payload 2: " + boolean},
		{append(trace, "--raw", "--nodekey", "abc"), "--nodekey #1: " + nodeKey},
		{append(trace, "--node-id", "abc"), "--node-id: " + nodeID},
		{append(trace, "--enr", "abc"), "--enr: " + enr},
		{append(trace, "--otlp-endpoint", "localhost:4317"), `--otlp-endpoint localhost:4317: unknown scheme "localhost": ` + otlp},
		{append(trace, "--otlp-endpoint", "grpc://collector:0"), `--otlp-endpoint grpc://collector:0: port "0" is not 1-65535: ` + otlp},
		{append(trace, "--otlp-endpoint", "grpc://collector:4317/v1"), "--otlp-endpoint grpc://collector:4317/v1: a gRPC endpoint has no path: " + otlp},
		{append(trace, "--otlp-endpoint", "https://"), "--otlp-endpoint https://: no host: " + otlp},
		{append(trace, "--output-max-age", "daily"), "--output-max-age daily: give a positive duration, such as 1h or 24h"},
		{append(decode, "--v4-timeout", "abc"), "--v4-timeout abc: " + positive},
		{append(decode, "--v5-timeout", "0s"), "--v5-timeout 0s: " + positive},
		{append(decode, "--handshake-timeout", "-1ms"), "--handshake-timeout -1ms: " + positive},
		{append(decode, "--v4-expiration-window", "0"), "--v4-expiration-window 0s: " + positive},
		{append(decode, "--payload=yes"), "--payload yes: " + boolean},
		{append(decode, "--nodekey", "abc"), "--nodekey #1: " + nodeKey},
		{append(decode, "--node-id", "abc"), "--node-id: " + nodeID},
		{append(decode, "--enr", "abc"), "--enr: " + enr},
		{[]string{"doctor", "--backend", "foo"}, "--backend foo: " + backend},
		{[]string{"doctor", "--port", "0"}, "--port 0: " + port},
		{[]string{"doctor", "--port", "x"}, "--port x: " + port},
		{[]string{"doctor", "--json=x"}, "--json x: " + boolean},
	}
	for _, c := range cases {
		// A fresh command tree per case (flags start from their defaults), wired as main's.
		root := &cobra.Command{Use: "discotrace"}
		root.SetFlagErrorFunc(rootCmd.FlagErrorFunc())
		root.AddCommand(newTraceCmd(), newDecodeCmd(), newDoctorCmd())
		out, err := runCommand(root, c.args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("discotrace %s: %v, want exit status 2\n%s", strings.Join(c.args, " "), err, out)
			continue
		}
		if got := err.Error(); got != c.line {
			t.Errorf("discotrace %s: says\n\t%q, want\n\t%q", strings.Join(c.args, " "), got, c.line)
		}
	}
}

// `trace --help` shows a placeholder that says what each numeric flag takes.
func TestTraceHelpNamesPlaceholders(t *testing.T) {
	out, err := runCommand(newTraceCmd(), "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--netns INODE ", "--pid PID ", "--port PORT ", "--snaplen BYTES ", "--ringbuf-size BYTES "} {
		if !strings.Contains(out, want) {
			t.Errorf("help has no %q:\n%s", want, out)
		}
	}
}
