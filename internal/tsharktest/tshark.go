// Package tsharktest reads pcapng files back with Wireshark's tshark, for the tests of
// what discotrace writes for Wireshark: what tshark shows is what an operator sees.
package tsharktest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Packet is what tshark shows of one packet.
type Packet struct {
	Comment          string
	Src, Dst         string // the outer IP addresses
	SrcPort, DstPort string // UDP ports, of the quoted datagram for an ICMP error
	ICMPType         string // empty for a datagram
	Len              string // frame.len: the packet's original length
	CapLen           string // frame.cap_len
	Malformed        bool   // tshark found the packet malformed
	// Checksums are tshark's verdicts on every IP, UDP and ICMP checksum in the packet
	// (checked: 1 good, 0 bad, 2 not verified), e.g. "1,1" for IPv4 and UDP.
	Checksums string
}

// Read runs tshark on the file at path. A missing tshark fails the test: the check is
// the point of the test (Debian's tshark package; .ci/run installs it).
func Read(t *testing.T, path string) []Packet {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatalf("tshark is needed to read the pcapng back: apt-get install tshark (%v)", err)
	}
	fields := []string{"frame.comment", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "udp.srcport", "udp.dstport", "icmp.type", "icmpv6.type", "frame.len", "frame.cap_len", "_ws.malformed",
		"ip.checksum.status", "udp.checksum.status", "icmp.checksum.status", "icmpv6.checksum.status"}
	args := []string{"-r", path, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
		"-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command("tshark", args...)
	cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+onlyOwnLayers(t))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v\n%s", path, err, stderr.String())
	}
	var pkts []Packet
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != len(fields) {
			t.Fatalf("tshark printed %d fields, want %d: %q", len(f), len(fields), line)
		}
		// An ICMP error holds two IP headers: the first is its own.
		first := func(s string) string { s, _, _ = strings.Cut(s, ","); return s }
		var sums []string
		for _, s := range f[12:] {
			if s != "" {
				sums = append(sums, s)
			}
		}
		pkts = append(pkts, Packet{
			Comment: f[0], Src: first(f[1] + f[2]), Dst: first(f[3] + f[4]), SrcPort: f[5], DstPort: f[6],
			ICMPType: f[7] + f[8], Len: f[9], CapLen: f[10], Malformed: f[11] != "",
			Checksums: strings.Join(sums, ","),
		})
	}
	return pkts
}

// ownLayers are the protocols a pcapng writer is answerable for. A discovery datagram on
// an ephemeral port that another protocol registered, or whose bytes another protocol's
// heuristic takes, is not that protocol, and its dissector would call it malformed.
// Wireshark's own pseudo-protocols (_ws.*, which include the malformed flag read here)
// are left on too.
var ownLayers = map[string]bool{"frame": true, "raw": true, "eth": true, "ethertype": true,
	"sll": true, "ip": true, "ipv6": true, "udp": true, "icmp": true, "icmpv6": true, "data": true}

var otherLayers = sync.OnceValues(func() ([]byte, error) {
	out, err := exec.Command("tshark", "-G", "protocols").Output()
	if err != nil {
		return nil, err
	}
	var list bytes.Buffer
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 3 || ownLayers[f[2]] || strings.HasPrefix(f[2], "_ws.") {
			continue
		}
		list.WriteString(f[2] + "\n")
	}
	return list.Bytes(), nil
})

// onlyOwnLayers returns a Wireshark configuration directory that disables every other
// protocol. It is a disabled_protos file because tshark 4.0 (Debian 12) takes neither
// "--disable-protocol ALL" nor a list of names on the command line.
func onlyOwnLayers(t *testing.T) string {
	t.Helper()
	list, err := otherLayers()
	if err != nil {
		t.Fatalf("tshark -G protocols: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "disabled_protos"), list, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
