package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/discotrace/discotrace/internal/tsharktest"
	"github.com/discotrace/discotrace/ndjson"
)

// requirePcapMatchesStream checks the pcapng at path, as tshark reads it, against the
// NDJSON stream of the same run: each datagram (send, recv, packet) and ICMP error of the
// stream is one packet, in order, whose comment names the event, its decoded packet and
// its process, with the datagram's ports. It returns how many packets it checked.
func requirePcapMatchesStream(t *testing.T, path string, stream []byte) int {
	t.Helper()
	var want []ndjson.Event
	for _, line := range bytes.Split(bytes.TrimSpace(stream), []byte("\n")) {
		var ev ndjson.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("stream line %q: %v", line, err)
		}
		switch ev.Type {
		case ndjson.TypeSend, ndjson.TypeRecv, ndjson.TypePacket, ndjson.TypeICMP:
			if ev.Type == ndjson.TypeSend && ev.Len == nil {
				continue // a send that failed before any byte went out: no packet
			}
			want = append(want, ev)
		}
	}
	got := tsharktest.Read(t, path)
	if len(got) != len(want) {
		t.Fatalf("tshark shows %d packets in %s, the stream has %d datagrams and ICMP errors", len(got), path, len(want))
	}
	for i, ev := range want {
		p := got[i]
		src := ev.Src
		if ev.Type == ndjson.TypeICMP {
			src = ev.QuotedSrc
		}
		ap, err := netip.ParseAddrPort(src)
		if err != nil {
			t.Fatalf("event %d: source %q: %v", ev.Seq, src, err)
		}
		if p.SrcPort != fmt.Sprint(ap.Port()) {
			t.Errorf("packet %d: source port %s, want %d (event %d)", i+1, p.SrcPort, ap.Port(), ev.Seq)
		}
		if prefix := fmt.Sprintf("%s #%d", ev.Type, ev.Seq); !strings.HasPrefix(p.Comment, prefix) {
			t.Errorf("packet %d: comment %q, want it to start with %q", i+1, p.Comment, prefix)
		}
		if ev.Disc != nil && !strings.Contains(p.Comment, ev.Disc.Proto+" "+ev.Disc.Kind) {
			t.Errorf("packet %d: comment %q does not name the decoded %s %s", i+1, p.Comment, ev.Disc.Proto, ev.Disc.Kind)
		}
		if ev.Disc != nil && ev.Disc.Msg != "" && !strings.Contains(p.Comment, ev.Disc.Msg) {
			t.Errorf("packet %d: comment %q does not name the decrypted %s", i+1, p.Comment, ev.Disc.Msg)
		}
		if ev.PID != nil && !strings.Contains(p.Comment, fmt.Sprintf("; pid %d tid %d %s", *ev.PID, *ev.TID, ev.Comm)) {
			t.Errorf("packet %d: comment %q does not name the process %d (%s)", i+1, p.Comment, *ev.PID, ev.Comm)
		}
		if p.Malformed {
			t.Errorf("packet %d is malformed for tshark (event %d: %s %s -> %s; frame %s of %s bytes captured, comment %q)",
				i+1, ev.Seq, ev.Type, ev.Src, ev.Dst, p.CapLen, p.Len, p.Comment)
		}
	}
	return len(want)
}

// `discotrace decode --pcap-out` of each shared capture, with the test keys: every
// datagram and ICMP error it prints is in the pcapng, with its decoded summary.
func TestPcapOutDecode(t *testing.T) {
	for _, name := range []string{"devp2p-discovery.pcap", "reject.pcap", "suites-devp2p.pcap"} {
		t.Run(name, func(t *testing.T) {
			capture := testCapture(t, name)
			out := filepath.Join(t.TempDir(), "decoded.pcapng")
			f := defaultDecoderFlags()
			f.nodeKeys = []string{testKeyA,
				"2222222222222222222222222222222222222222222222222222222222222222",
				"3333333333333333333333333333333333333333333333333333333333333333"}
			var stdout, stderr bytes.Buffer
			if err := runDecode(&stdout, &stderr, capture, &f, &formatFlag{value: formatNDJSON}, &pcapOutFlag{path: out}, &keylogFlag{}); err != nil {
				t.Fatalf("decode: %v\n%s", err, stderr.String())
			}
			n := requirePcapMatchesStream(t, out, stdout.Bytes())
			cited := 0
			for _, p := range tsharktest.Read(t, out) {
				if strings.Contains(p.Comment, "; cited by exchange #") {
					cited++
				}
			}
			// geth behind a REJECT rule: the failed pings' cause is on the packets they cite.
			if name == "reject.pcap" && cited == 0 {
				t.Error("no packet of reject.pcap has the cause of a failed exchange citing it")
			}
			t.Logf("%d packets in the pcapng match the stream, %d cited by failed exchanges", n, cited)
		})
	}
}

// --pcap-out where no file can be made stops decode at once, naming the flag.
func TestPcapOutCannotCreate(t *testing.T) {
	out, err := runCLI(t, testCapture(t, "reject.pcap"), "--pcap-out", filepath.Join(t.TempDir(), "no-such-dir", "x.pcapng"))
	if err == nil || !strings.Contains(err.Error(), "--pcap-out") || out != "" {
		t.Fatalf("decode --pcap-out into a missing directory: %v, output %q; want an error naming --pcap-out and no events", err, out)
	}
}

// `discotrace trace --pcap-out` beside real go-ethereum nodes on loopback: discv4 nodes
// pinging each other, a discv5 node pinging one whose key trace holds (its messages
// decrypted), and a discv4 PING to a port where nothing listens (ICMP errors). Every
// datagram and ICMP error of the NDJSON stream is in the pcapng, as tshark reads it,
// with the decoded packet and the process in its comment, and the gone peer's packets
// with the failed ping's cause.
func TestPcapOutTrace(t *testing.T) {
	gone := portWithNoListener(t)
	v4a, v4b := newDiscv4Socket(t), newDiscv4Socket(t)
	v5a, v5b := newDiscv4Socket(t), newDiscv4Socket(t)
	v5bKey, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f := traceWith(4*time.Second, udpPort(v4b), udpPort(v5b), gone)
	f.nodeKeys = []string{hex.EncodeToString(crypto.FromECDSA(v5bKey))}
	f.pcapOut.path = filepath.Join(t.TempDir(), "trace.pcapng")
	stdout, stderr, done := startTrace(t, f)

	nodeA, nodeB := listenV4(t, v4a), listenV4(t, v4b)
	defer nodeA.Close()
	defer nodeB.Close()
	nodeC, nodeD := listenV5(t, v5a, nil), listenV5(t, v5b, v5bKey)
	defer nodeC.Close()
	defer nodeD.Close()
	if _, err := nodeA.Ping(nodeB.Self()); err != nil {
		t.Fatalf("discv4 ping: %v", err)
	}
	if _, err := nodeC.Ping(nodeD.Self()); err != nil {
		t.Fatalf("discv5 ping: %v", err)
	}
	pingGonePeer(t, gone)
	if err := <-done; err != nil {
		t.Fatalf("trace: %v (stderr: %s)", err, stderr.String())
	}
	n := requirePcapMatchesStream(t, f.pcapOut.path, stdout.Bytes())
	got := tsharktest.Read(t, f.pcapOut.path)
	var icmp, decrypted, cited int
	for _, p := range got {
		if strings.Contains(p.Comment, "cited by exchange #") && strings.Contains(p.Comment, "PING/v4 failed: icmp_unreachable") {
			cited++
		}
		if p.ICMPType != "" {
			icmp++
		}
		if strings.Contains(p.Comment, "PONG/v5") {
			decrypted++
		}
	}
	if icmp == 0 || decrypted == 0 || cited == 0 {
		t.Errorf("%d ICMP errors, %d decrypted discv5 PONGs and %d packets cited by a failed ping in the pcapng: want the gone peer's ICMP error, the discv5 ping's answer, and the gone peer's ping failure on its packets", icmp, decrypted, cited)
	}
	t.Logf("%d packets in the pcapng match the stream: %d ICMP errors, %d decrypted PONG/v5, %d cited by the failed ping", n, icmp, decrypted, cited)
}
