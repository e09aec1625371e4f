// Package tsharktest reads pcapng files back with Wireshark's tshark, for the tests of
// what discotrace writes for Wireshark: what tshark shows is what an operator sees.
package tsharktest

import (
	"bytes"
	"os/exec"
	"strings"
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
	// Only the layers a pcapng writer is answerable for are dissected: a discovery
	// datagram on an ephemeral port that another protocol registered is not that
	// protocol, and its dissector would call it malformed.
	args := []string{"-r", path, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
		"--disable-protocol", "ALL", "--enable-protocol", "frame,raw,eth,ethertype,sll,ip,ipv6,udp,icmp,icmpv6,data",
		"-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command("tshark", args...)
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
