package textview

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

// The shared captures' test-only node keys (shared/testdata/README.md).
const (
	keyA = "1111111111111111111111111111111111111111111111111111111111111111" // devp2p listener
	keyG = "2222222222222222222222222222222222222222222222222222222222222222" // geth behind REJECT
	keyB = "3333333333333333333333333333333333333333333333333333333333333333" // devp2p clients
)

// capturePath finds a shared capture: under $DISCOTRACE_TESTDATA (the Makefile sets it),
// else in shared/testdata beside the checkout. It fails rather than skips: the golden
// files must be compared.
func capturePath(t *testing.T, name string) string {
	t.Helper()
	dirs := []string{os.Getenv("DISCOTRACE_TESTDATA"), filepath.Join("..", "..", "shared", "testdata")}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, "pcap", name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("capture %s not found in %q: set DISCOTRACE_TESTDATA to the folder holding pcap/%s", name, dirs, name)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// decodeText decodes a capture as `discotrace decode --format text` does, in UTC.
func decodeText(t *testing.T, name string, keys ...string) string {
	t.Helper()
	f, err := os.Open(capturePath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var id decode.Identity
	for _, k := range keys {
		key, err := decode.ParseNodeKey(k)
		if err != nil {
			t.Fatal(err)
		}
		id.Keys = append(id.Keys, key)
	}
	var buf bytes.Buffer
	out := NewWriter(&buf, Options{Location: time.UTC})
	dec := decode.NewDecoder(decode.Config{Identity: id})
	var werr error
	emit := func(ev result.Event) {
		if werr == nil {
			werr = out.Write(ndjson.FromResult(ev, false))
		}
	}
	if err := capture.Read(f, func(r *record.Record) error { dec.Feed(r, emit); return werr }); err != nil {
		t.Fatal(err)
	}
	dec.Flush(emit)
	if werr != nil {
		t.Fatal(werr)
	}
	if err := out.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./textview -update to write it)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs from line %d:\n got: %s\nwant: %s\n(go test ./textview -update rewrites it; check the diff)", path, i+1, g, w)
			}
		}
	}
}

// checkWidth fails on a line wider than width runes or holding an escape sequence.
func checkWidth(t *testing.T, text string, width int) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		if w := utf8.RuneCountInString(sc.Text()); w > width {
			t.Errorf("line %d is %d columns wide, more than %d: %s", n, w, width, sc.Text())
		}
		if strings.Contains(sc.Text(), "\x1b") {
			t.Errorf("line %d has an escape sequence, written for no terminal: %q", n, sc.Text())
		}
	}
}

func TestCapturesGolden(t *testing.T) {
	cases := []struct {
		golden, capture string
		keys            []string
	}{
		{"devp2p-discovery.txt", "devp2p-discovery.pcap", nil},
		{"devp2p-discovery-keyA.txt", "devp2p-discovery.pcap", []string{keyA}},
		{"reject.txt", "reject.pcap", nil},
		{"reject-keysGB.txt", "reject.pcap", []string{keyG, keyB}},
		{"suites-devp2p.txt", "suites-devp2p.pcap", nil},
		{"suites-devp2p-keyA.txt", "suites-devp2p.pcap", []string{keyA}},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			got := decodeText(t, c.capture, c.keys...)
			checkWidth(t, got, DefaultWidth)
			for _, k := range c.keys {
				if strings.Contains(got, k) {
					t.Fatal("the view shows a node key")
				}
			}
			golden(t, c.golden, got)
		})
	}
}

// The rendering of the failure that reject.pcap holds, read as an operator would: a
// discv4 PING to geth behind a REJECT rule, failed, with the ICMP error that says why on
// the same line, and the short IDs geth logs.
func TestFailedExchangeShowsCauseAndEvidence(t *testing.T) {
	got := decodeText(t, "reject.pcap", keyG, keyB)
	var line string
	for l := range strings.SplitSeq(got, "\n") {
		if strings.Contains(l, " exchange ") && strings.Contains(l, "10.99.0.2:30303 > 10.99.0.1:30303") && strings.Contains(l, "PING/v4") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no line for B's PING to G:\n%s", got)
	}
	for _, want := range []string{"! exchange", "ae6856aa > 85b1f044", "FAILED icmp_unreachable", "3 attempts | #7 (+5 more) icmp 3/3 port unreachable"} {
		if !strings.Contains(line, want) {
			t.Errorf("line lacks %q: %s", want, line)
		}
	}
	if strings.Contains(line, "ae6856aac") {
		t.Errorf("a node ID is not shortened to 8 hex: %s", line)
	}
}

// synthetic are the events no shared capture holds: what the kernel side adds (sends with
// their process, failed sends, reads, drops, ICMP errors it was told of, losses), sheds
// and anomalies, and values at the limits (IPv6 endpoints, long details).
func synthetic() []*ndjson.Event {
	p := ndjson.Ptr[int]
	u32 := ndjson.Ptr[uint32]
	i64 := ndjson.Ptr[int64]
	u64 := ndjson.Ptr[uint64]
	t0 := "2026-11-23T19:56:06.817726000Z"
	idA := "969b0a11b8a56bacf1ac18f219e7e376e7c213b7e7e7e46cc70a5dd086daff2a"
	idB := "ae6856aac48989adf1e084945cbdd86a2fa8dc4bddd8a8f69dba48572eec07fb"
	long := strings.Repeat("a detail the decoder wrote at length ", 30)
	return []*ndjson.Event{
		{Type: "send", Time: t0, Seq: 1, Src: "10.0.0.1:30303", Dst: "10.0.0.2:30303", Len: p(132), PID: u32(4242), TID: u32(4243), Comm: "geth",
			Disc: &ndjson.Disc{Proto: "discv4", Kind: "PING", SrcID: idA, ENRSeq: u64(7), From: "10.0.0.1:30303", To: "10.0.0.2:30303"}},
		{Type: "send", Time: t0, Seq: 2, Src: "10.0.0.1:30303", Dst: "10.0.0.3:30303", Len: p(132), PID: u32(4242), Comm: "geth", Ret: i64(-11),
			Disc: &ndjson.Disc{Proto: "discv4", Kind: "PING", SrcID: idA}},
		{Type: "recv", Time: t0, Seq: 3, Src: "10.0.0.2:30303", Dst: "10.0.0.1:30303", Len: p(154),
			Disc: &ndjson.Disc{Proto: "discv4", Kind: "PONG", SrcID: idB, To: "203.0.113.9:40404"}},
		{Type: "read", Time: t0, Seq: 4, Src: "10.0.0.2:30303", Dst: "10.0.0.1:30303", Len: p(154), PID: u32(4242), Comm: "geth", QueueNs: i64(38_500),
			Disc: &ndjson.Disc{Proto: "discv4", Kind: "PONG", SrcID: idB}},
		{Type: "recv", Time: t0, Seq: 5, Src: "[2001:db8::1]:30303", Dst: "[2001:db8:ffff:ffff:ffff:ffff:ffff:2]:30303", Len: p(1280),
			Disc: &ndjson.Disc{Proto: "discv5", Kind: "MESSAGE", Msg: "FINDNODE/v5", ReqID: "0102030405060708", SrcID: idB, DstID: idA,
				Distances: []uint{256, 255, 254, 253, 252, 251}}},
		{Type: "recv", Time: t0, Seq: 6, Src: "10.0.0.2:30303", Dst: "10.0.0.1:30303", Len: p(90),
			Disc: &ndjson.Disc{Proto: "unknown", Error: long}},
		{Type: "recv", Time: t0, Seq: 7, Src: "10.0.0.2:30303", Dst: "10.0.0.1:30303", Len: p(200)},
		{Type: "icmp", Time: t0, Seq: 8, Dir: "in", Src: "10.0.0.2:0", Dst: "10.0.0.1:0", Len: p(160), ICMPType: ndjson.Ptr[uint8](3), ICMPCode: ndjson.Ptr[uint8](3),
			QuotedSrc: "10.0.0.1:30303", QuotedDst: "10.0.0.2:30303", Notified: ndjson.Ptr(false)},
		{Type: "icmp", Time: t0, Seq: 9, Dir: "out", Src: "[2001:db8::1]:0", Dst: "[2001:db8::2]:0", ICMPType: ndjson.Ptr[uint8](2), ICMPCode: ndjson.Ptr[uint8](0),
			QuotedSrc: "[2001:db8::2]:30303", QuotedDst: "[2001:db8::1]:30303"},
		{Type: "drop", Time: t0, Seq: 10, Src: "10.0.0.2:30303", Dst: "10.0.0.1:30303", Len: p(154), Reason: "SOCKET_RCVBUFF", Location: "__udp_enqueue_schedule_skb"},
		{Type: "drop", Time: t0, Seq: 11, Src: "10.0.0.2:30303", Dst: "10.0.0.1:30303", Reason: "FRAG_REASM_TIMEOUT", Location: "pcap: " + long},
		{Type: "lost", Time: "2026-11-23T19:56:07.000000000Z", Seq: 12, Count: u64(1234), Since: t0},
		{Type: "shed", Time: "2026-11-23T19:56:08.000000000Z", Seq: 13, Count: u64(10), Undecoded: u64(250), Untracked: u64(3), Since: t0},
		{Type: "shed", Time: "2026-11-23T19:56:09.000000000Z", Seq: 14, Count: u64(0), Undecoded: u64(40), Since: t0},
		{Type: "exchange", Time: t0, Seq: 15, Initiator: "10.0.0.1:30303", Recipient: "10.0.0.2:30303", InitiatorID: idA, RecipientID: idB,
			Req: "FINDNODE/v4", Resp: "NEIGHBORS/v4", Outcome: "failed", Cause: "kernel_drop", RTTNs: i64(1_250_000),
			Evidence: []ndjson.Evidence{
				{Seq: 1, Time: t0, Type: "send", Detail: "FINDNODE/v4 to 10.0.0.2:30303"},
				{Seq: 10, Time: t0, Type: "drop", Detail: "SOCKET_RCVBUFF in __udp_enqueue_schedule_skb: the receive buffer was full"},
			}, EvidenceMore: 4},
		{Type: "exchange", Time: t0, Seq: 16, Initiator: "10.0.0.1:30303", Recipient: "10.0.0.2:30303", InitiatorID: idA, RecipientID: idB,
			Req: "PING/v4", Outcome: "failed", Cause: "no_response",
			Evidence: []ndjson.Evidence{
				{Seq: 1, Time: t0, Type: "send", Detail: "PING/v4 to 10.0.0.2:30303"},
				{Seq: 12, Time: t0, Type: "lost", Detail: "1234 events lost meanwhile: the answer may be among them"},
			}},
		{Type: "exchange", Time: t0, Seq: 17, Initiator: "10.0.0.2:30303", Recipient: "10.0.0.1:30303", InitiatorID: idB, RecipientID: idA,
			Req: "PING/v4", Outcome: "failed", Cause: "app_drop",
			Evidence: []ndjson.Evidence{
				{Seq: 3, Time: t0, Type: "recv", Detail: "PING/v4 to 10.0.0.1:30303"},
				{Seq: 4, Time: t0, Type: "read", Detail: "read by geth[4242] after 38µs in the queue"},
				{Seq: 3, Time: t0, Type: "recv", Detail: long},
			}},
		{Type: "exchange", Time: t0, Seq: 18, Initiator: "10.0.0.1:30303", Recipient: "10.0.0.2:30303", Req: "TALKREQ/v5", Outcome: "open"},
		{Type: "handshake", Time: t0, Seq: 19, Initiator: "10.0.0.1:30303", Recipient: "10.0.0.2:30303", InitiatorID: idA, RecipientID: idB,
			Outcome: "failed", Cause: "rejected", Attempts: 2, WhoareyouRTTNs: i64(412_000),
			Evidence: []ndjson.Evidence{
				{Seq: 5, Time: t0, Type: "recv", Detail: "MESSAGE to 10.0.0.2:30303"},
				{Seq: 6, Time: t0, Type: "recv", Detail: "WHOAREYOU again after the HANDSHAKE: the recipient could not verify it"},
			}},
		{Type: "anomaly", Time: t0, Seq: 20, Anomaly: "clock_skew", Peer: "10.0.0.2:30303", PeerID: idB, OffsetNs: i64(-25_300_000_000),
			Detail: "PING/v4 expiration 2026-11-23T19:56:01Z", Evidence: []ndjson.Evidence{{Seq: 3, Time: t0, Type: "recv"}}},
		{Type: "anomaly", Time: t0, Seq: 21, Anomaly: "whoareyou_storm", Peer: "10.0.0.2:30303", Detail: long},
		{Type: "revision", Time: t0, Seq: 22, Revises: 4, RevisesType: "exchange", Initiator: "10.0.0.1:30303", Recipient: "10.0.0.2:30303",
			Cause: "fragment_loss", Evidence: []ndjson.Evidence{{Seq: 22, Time: t0, Type: "drop", Detail: "FRAG_REASM_TIMEOUT: 10.0.0.1:30303 > 10.0.0.2:30303"}}},
	}
}

func renderAll(t *testing.T, evs []*ndjson.Event, opts Options) string {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, opts)
	for _, ev := range evs {
		if err := w.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestSyntheticGolden(t *testing.T) {
	got := renderAll(t, synthetic(), Options{Location: time.UTC})
	checkWidth(t, got, DefaultWidth)
	golden(t, "synthetic.txt", got)
}

// What was not seen must stand out: a lost or shed line is marked and named in capitals,
// and on a terminal coloured whole.
func TestLossesStandOut(t *testing.T) {
	for _, ev := range synthetic() {
		if ev.Type != ndjson.TypeLost && ev.Type != ndjson.TypeShed {
			continue
		}
		plain := renderAll(t, []*ndjson.Event{ev}, Options{Location: time.UTC, NoHeader: true})
		if !strings.HasPrefix(plain, "19:5") || !strings.Contains(plain, " ! "+strings.ToUpper(ev.Type)+" ") {
			t.Errorf("%s line not marked: %q", ev.Type, plain)
		}
		colored := renderAll(t, []*ndjson.Event{ev}, Options{Location: time.UTC, NoHeader: true, Color: true})
		if !strings.HasPrefix(colored, ansi[loss]) {
			t.Errorf("%s line not coloured from its start: %q", ev.Type, colored)
		}
		if stripANSI(colored) != plain {
			t.Errorf("colour changes the text:\n%q\n%q", stripANSI(colored), plain)
		}
	}
}

// Colour is only added, never a replacement for the marker, and only when asked.
func TestColourOnlyWhenAsked(t *testing.T) {
	evs := synthetic()
	plain := renderAll(t, evs, Options{Location: time.UTC})
	colored := renderAll(t, evs, Options{Location: time.UTC, Color: true})
	if strings.Contains(plain, "\x1b") {
		t.Fatal("escape sequences without Color")
	}
	if !strings.Contains(colored, ansi[failure]+"FAILED kernel_drop"+ansiReset) {
		t.Fatal("a failure is not highlighted with Color")
	}
	if stripANSI(colored) != plain {
		t.Fatal("the coloured text differs from the plain text")
	}
	// A test's stdout is a pipe or a file, never a terminal.
	var buf bytes.Buffer
	if IsTerminal(&buf) || ColorFor(&buf) {
		t.Fatal("a buffer taken for a terminal")
	}
}

func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b {
			for i < len(s) && s[i] != 'm' {
				i++
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Every line stays within the width asked for, however long its fields.
func TestWidthBound(t *testing.T) {
	evs := synthetic()
	for _, ev := range evs {
		ev.Src = "[2001:db8:ffff:ffff:ffff:ffff:ffff:1]:30303"
		ev.Dst = "[2001:db8:ffff:ffff:ffff:ffff:ffff:2]:30303"
		ev.Initiator, ev.Recipient = ev.Src, ev.Dst
		ev.Detail = strings.Repeat("x", 2000)
		ev.Location = strings.Repeat("y", 2000)
		for i := range ev.Evidence {
			ev.Evidence[i].Detail = strings.Repeat("z", 2000)
		}
	}
	for _, width := range []int{0, 100, 120, 300} {
		want := width
		if width == 0 {
			want = DefaultWidth
		}
		got := renderAll(t, evs, Options{Location: time.UTC, Width: width})
		checkWidth(t, got, want)
		if !strings.Contains(got, "…") {
			t.Errorf("width %d: nothing was cut", width)
		}
	}
}

func TestDuration(t *testing.T) {
	for ns, want := range map[int64]string{
		400:             "0.4µs",
		9_940:           "9.9µs",
		262_000:         "262µs",
		5_262_000:       "5.26ms",
		312_400_000:     "312ms",
		1_250_000_000:   "1.25s",
		125_000_000_000: "2m5s",
		-3_000_000:      "-3.00ms",
		999_700:         "1.00ms",
		999_400:         "999µs",
		9_996_000:       "10ms",
		999_700_000:     "1.00s",
		59_996_000_000:  "1m0s",
	} {
		if got := Duration(ns); got != want {
			t.Errorf("Duration(%d) = %q, want %q", ns, got, want)
		}
	}
}

// The view names discovery packets as operators know them.
func TestKind(t *testing.T) {
	for _, c := range []struct {
		d    ndjson.Disc
		want string
	}{
		{ndjson.Disc{Proto: "discv4", Kind: "PING"}, "PING/v4"},
		{ndjson.Disc{Proto: "discv5", Kind: "WHOAREYOU"}, "WHOAREYOU"},
		{ndjson.Disc{Proto: "discv5", Kind: "MESSAGE", Msg: "FINDNODE/v5"}, "MESSAGE FINDNODE"},
		{ndjson.Disc{Proto: "discv5", Kind: "MESSAGE"}, "MESSAGE ?"},
		{ndjson.Disc{Proto: "discv5", Kind: "HANDSHAKE", Msg: "PING/v5"}, "HANDSHAKE PING"},
		{ndjson.Disc{Proto: "unknown"}, "unknown"},
	} {
		if got := kind(&c.d); got != c.want {
			t.Errorf("kind(%+v) = %q, want %q", c.d, got, c.want)
		}
	}
}
