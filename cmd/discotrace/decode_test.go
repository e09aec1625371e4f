package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/spf13/cobra"

	"github.com/discotrace/discotrace/ndjson"
)

const testKeyA = "1111111111111111111111111111111111111111111111111111111111111111"

func testCapture(t testing.TB, name string) string {
	t.Helper()
	for _, dir := range []string{os.Getenv("DISCOTRACE_TESTDATA"), "../../../shared/testdata", "/work/shared/testdata"} {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, "pcap", name); fileExists(p) {
			return p
		}
	}
	t.Skipf("capture %s not found: set DISCOTRACE_TESTDATA to the shared testdata folder", name)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// runCLI runs a fresh decode command (flags start from their defaults) with args,
// returning its stdout and the error main would print.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCommand(newDecodeCmd(), args...)
}

// runCommand runs cmd with args, returning what it wrote (stdout and stderr) and the
// error main would print.
func runCommand(cmd *cobra.Command, args ...string) (string, error) {
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

// runCommandSplit is runCommand with stdout and stderr apart.
func runCommandSplit(cmd *cobra.Command, args ...string) (stdout, stderr string, err error) {
	var out, diag bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&diag)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.Execute()
	return out.String(), diag.String(), err
}

func TestDecodeCommandIsDeterministic(t *testing.T) {
	path := testCapture(t, "devp2p-discovery.pcap")
	first, err := runCLI(t, path, "--nodekey", testKeyA)
	if err != nil {
		t.Fatal(err)
	}
	second, err := runCLI(t, path, "--nodekey", testKeyA)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatal("two runs of the same capture differ")
	}
	counts := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(first))
	for sc.Scan() {
		var ev ndjson.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("not NDJSON: %q: %v", sc.Text(), err)
		}
		if ev.V != ndjson.SchemaVersion {
			t.Fatalf("schema version %d", ev.V)
		}
		counts[ev.Type]++
	}
	if counts["packet"] != 20 || counts["exchange"] != 8 || counts["handshake"] != 2 || len(counts) != 3 {
		t.Fatalf("event counts %v", counts)
	}
	if strings.Contains(first, testKeyA) {
		t.Fatal("the output contains the node key")
	}
}

func TestDecodeCommandFlags(t *testing.T) {
	path := testCapture(t, "devp2p-discovery.pcap")
	out, err := runCLI(t, path, "--v4-timeout", "100us", "--payload", "--nodekey", testKeyA)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, `"payload":"`); n != 20 {
		t.Errorf("--payload: %d datagrams with a payload, want 20", n)
	}
	// The six discv4 answers take 262µs to 5.3ms: a 100µs timeout fails them all.
	if n := strings.Count(out, `/v4","outcome":"failed","cause":"no_response"`); n != 6 {
		t.Errorf("%d failed discv4 exchanges with a 100µs timeout, want 6", n)
	}
	if n := strings.Count(out, `"outcome":"answered"`); n != 2 {
		t.Errorf("%d answered exchanges, want the 2 discv5 ones", n)
	}
	// geth's peers set expirations 20 s ahead: assuming Besu's 60 s makes their clocks
	// read 40 s behind.
	out, err = runCLI(t, path, "--v4-expiration-window", "60s")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, `"anomaly":"clock_skew","peer":`); n != 2 || !strings.Contains(out, "about 40s behind the capture's") {
		t.Errorf("--v4-expiration-window 60s: %d clock_skew anomalies, want 2 saying 40s behind:\n%s", n, out)
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pcap")
	if err := os.WriteFile(garbage, []byte("this is not a capture file at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := "1111111111111111111111111111111111111111111111111111111111111z" // a mistyped key
	cases := []struct {
		args []string
		want string
		code int
	}{
		{[]string{filepath.Join(dir, "missing.pcap")}, "cannot open the capture", 1},
		{[]string{garbage}, "cannot read the capture", 1},
		{[]string{dir}, "is a directory", 1}, // not "the file is empty"
		{[]string{}, "accepts 1 arg", 2},
		{[]string{garbage, garbage}, "accepts 1 arg", 2},
		{[]string{garbage, "--nodekey", secret[:61] + "11."}, "no file <hex>.", 2},
		{[]string{garbage, "--nodekey", secret}, "--nodekey #1: node key", 2},
		{[]string{garbage, "--node-id", "abc"}, "--node-id: node ID", 2},
		{[]string{garbage, "--enr", "enode://x"}, "--enr: ENR", 2},
		{[]string{garbage, "--v5-timeout", "0s"}, "--v5-timeout 0s: give a positive duration", 2},
	}
	for _, c := range cases {
		_, err := runCLI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), secret[:20]) {
			t.Errorf("%v: error %q is not one clean line", c.args, err)
		}
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if code != c.code {
			t.Errorf("%v: exit code %d, want %d", c.args, code, c.code)
		}
	}
}

func TestDecodeCommandReadsStandardInput(t *testing.T) {
	path := testCapture(t, "devp2p-discovery.pcap")
	fromFile, err := runCLI(t, path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stdin := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = stdin }()
	fromStdin, err := runCLI(t, "-")
	if err != nil {
		t.Fatal(err)
	}
	if fromStdin != fromFile || fromFile == "" {
		t.Fatal("standard input and the file decode differently")
	}
}

// A well-formed capture of broken packets (the conformance suites send malformed ones on
// purpose) decodes without error: the damage is in the events, not the exit code.
func TestDecodeCommandBrokenPacketsAreNotErrors(t *testing.T) {
	out, err := runCLI(t, testCapture(t, "suites-devp2p.pcap"), "--nodekey", testKeyA)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"error":"discv4: unknown packet type 66"`, `"error":"malformed discv5 message`, `"proto":"unknown"`} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s in the output", want)
		}
	}
	// 62 exchanges: one is the suite's HANDSHAKE whose message (a 9-byte request ID) A
	// refuses, a MESSAGE/v5 failed rejected.
	if n := strings.Count(out, "\n"); n != 152+2+19+62 {
		t.Errorf("%d lines, want 152 packets, 2 icmp, 19 handshakes and 62 exchanges", n)
	}
}

// A capture taken with a snap length that cuts the UDP header gives no event; the
// command says why on stderr instead of printing nothing at all.
func TestDecodeCommandSaysWhatItSkipped(t *testing.T) {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	udp := &layers.UDP{SrcPort: 30303, DstPort: 30303}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(bytes.Repeat([]byte{1}, 100))); err != nil {
		t.Fatal(err)
	}
	frame := buf.Bytes()
	var capture bytes.Buffer
	w := pcapgo.NewWriter(&capture)
	if err := w.WriteFileHeader(40, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(1795463766, 0), CaptureLength: 40, Length: len(frame)}
	if err := w.WritePacket(ci, frame[:40]); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "snap40.pcap")
	if err := os.WriteFile(path, capture.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "1 of 1 frames skipped: 1 with invalid or cut-off headers") {
		t.Fatalf("output %q", out)
	}
}
