package pcapout

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/internal/tsharktest"
)

// testKeys are the test-only node keys of ../shared/testdata/README.md (A, G, B, C).
var testKeys = []string{
	"1111111111111111111111111111111111111111111111111111111111111111",
	"2222222222222222222222222222222222222222222222222222222222222222",
	"3333333333333333333333333333333333333333333333333333333333333333",
	"4444444444444444444444444444444444444444444444444444444444444444",
}

// writeAll writes events as pcapng to a file in t's temporary directory and returns its
// path and the observations that must show as packets, in order.
func writeAll(t *testing.T, events []result.Event, hold time.Duration) (string, []*result.Observation) {
	t.Helper()
	var buf bytes.Buffer
	w, err := New(&buf, Options{Application: "discotrace test", Hold: hold})
	if err != nil {
		t.Fatal(err)
	}
	var want []*result.Observation
	for _, ev := range events {
		if err := w.Write(ev); err != nil {
			t.Fatal(err)
		}
		if o, ok := ev.(*result.Observation); ok && (o.Record.Kind == record.Datagram || o.Record.Kind == record.ICMP) {
			want = append(want, o)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "out.pcapng")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, want
}

// requireShown checks that tshark shows each observation as one packet, in order, with
// its comment, ports, original length and good checksums, none malformed.
func requireShown(t *testing.T, got []tsharktest.Packet, want []*result.Observation) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("tshark shows %d packets, want %d", len(got), len(want))
	}
	for i, o := range want {
		r, p := &o.Record, got[i]
		srcPort, dstPort := r.Src.Port(), r.Dst.Port()
		if r.Kind == record.ICMP {
			srcPort, dstPort = r.QuotedSrc.Port(), r.QuotedDst.Port()
			if p.ICMPType != strconv.Itoa(int(r.ICMPType)) {
				t.Errorf("packet %d: icmp type %q, want %d", i+1, p.ICMPType, r.ICMPType)
			}
		} else {
			hdr := 28
			if r.Src.Addr().Unmap().Is6() {
				hdr = 48
			}
			if p.Len != strconv.Itoa(hdr+r.Len) {
				t.Errorf("packet %d: frame length %s, want %d (headers and the datagram's %d bytes)", i+1, p.Len, hdr+r.Len, r.Len)
			}
			if p.Src != r.Src.Addr().Unmap().String() || p.Dst != r.Dst.Addr().Unmap().String() {
				t.Errorf("packet %d: %s > %s, want %s", i+1, p.Src, p.Dst, r.Src.String()+" > "+r.Dst.String())
			}
		}
		if p.SrcPort != strconv.Itoa(int(srcPort)) || p.DstPort != strconv.Itoa(int(dstPort)) {
			t.Errorf("packet %d: ports %s > %s, want %d > %d", i+1, p.SrcPort, p.DstPort, srcPort, dstPort)
		}
		if want := Comment(o); !strings.HasPrefix(p.Comment, want) {
			t.Errorf("packet %d: comment %q, want it to start with %q", i+1, p.Comment, want)
		}
		if o.Packet != nil && !strings.Contains(p.Comment, " "+o.Packet.Proto+" "+o.Packet.Kind) {
			t.Errorf("packet %d: comment %q does not name the decoded %s %s", i+1, p.Comment, o.Packet.Proto, o.Packet.Kind)
		}
		if p.Malformed || strings.Contains(p.Checksums, "0") {
			t.Errorf("packet %d: malformed %v, checksum verdicts %q (0: bad)", i+1, p.Malformed, p.Checksums)
		}
	}
}

// Every datagram and ICMP error of the shared captures, decoded with the test keys, is
// in the pcapng as Wireshark reads it, each with its decoded summary as the comment.
func TestSharedCapturesReadBackByTshark(t *testing.T) {
	// The shared captures: under $DISCOTRACE_TESTDATA (the Makefile sets it), else beside
	// the checkout. Missing, the test fails: it is this check's input.
	dir := os.Getenv("DISCOTRACE_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "testdata")
	}
	paths, err := filepath.Glob(filepath.Join(dir, "pcap", "*.pcap*"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no captures in %s/pcap (%v): set DISCOTRACE_TESTDATA to the shared testdata folder", dir, err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			var cfg decode.Config
			for _, s := range testKeys {
				k, err := decode.ParseNodeKey(s)
				if err != nil {
					t.Fatal(err)
				}
				cfg.Identity.Keys = append(cfg.Identity.Keys, k)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var events []result.Event
			dec := decode.NewDecoder(cfg)
			emit := func(ev result.Event) { events = append(events, result.Keep(ev)) }
			if _, err := capture.ReadStats(f, func(r *record.Record) error { dec.Feed(r, emit); return nil }); err != nil {
				t.Fatal(err)
			}
			dec.Flush(emit)
			out, want := writeAll(t, events, 5*time.Second)
			got := tsharktest.Read(t, out)
			requireShown(t, got, want)
			var decoded int
			for _, o := range want {
				if o.Packet != nil && o.Packet.Err == nil {
					decoded++
				}
			}
			if decoded == 0 {
				t.Fatal("no packet of the capture was decoded: the comments were not put to the test")
			}
			// Every failure's cause is in the comments of the packets it cites: its
			// evidence comes from within the decoder's timeouts, inside the hold time.
			index := map[uint64]int{}
			for i, o := range want {
				index[o.Seq] = i
			}
			cited := 0
			for _, ev := range events {
				var evidence []result.Evidence
				var note string
				switch x := ev.(type) {
				case *result.Exchange:
					if x.Cause != "" {
						evidence, note = x.Evidence, fmt.Sprintf("exchange #%d %s %s: %s", x.Seq, x.Req, x.Outcome, x.Cause)
					}
				case *result.Handshake:
					if x.Cause != "" {
						evidence, note = x.Evidence, fmt.Sprintf("handshake #%d %s: %s", x.Seq, x.Outcome, x.Cause)
					}
				}
				for _, e := range evidence {
					if i, ok := index[e.Seq]; ok && e.Seq > 0 {
						cited++
						if !strings.Contains(got[i].Comment, note) {
							t.Errorf("packet %d: comment %q does not say it is cited by %q", i+1, got[i].Comment, note)
						}
					}
				}
			}
			if filepath.Base(path) == "reject.pcap" && cited == 0 {
				t.Error("no failure of reject.pcap cites a packet: the causes in comments were not put to the test")
			}
			t.Logf("%d packets read back, %d decoded, %d cited by failures; first comment: %q", len(got), decoded, cited, got[0].Comment)
		})
	}
}

// The headers are rebuilt for each family and shape the tracer reports: IPv6, a payload
// cut by the snap length (the packet's length is still the datagram's), ICMP errors whose
// own addresses are unknown, and the sending process in the comment.
func TestRebuiltPackets(t *testing.T) {
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	v6a, v6b := netip.MustParseAddrPort("[2001:db8::1]:30303"), netip.MustParseAddrPort("[2001:db8::2]:30304")
	v4a, v4b := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:40000")
	obs := func(seq uint64, r record.Record) *result.Observation {
		r.Time = at.Add(time.Duration(seq) * time.Millisecond)
		return &result.Observation{Head: result.Head{Seq: seq, Time: r.Time}, Record: r}
	}
	events := []result.Event{
		obs(1, record.Record{Kind: record.Datagram, Dir: record.DirOut, Src: v6a, Dst: v6b, Len: 5, Payload: []byte("hello"),
			HasProc: true, PID: 4242, TID: 4243, Comm: "geth"}),
		obs(2, record.Record{Kind: record.Datagram, Dir: record.DirIn, Src: v4b, Dst: v4a, Len: 1200, Payload: bytes.Repeat([]byte{7}, 100)}),
		obs(3, record.Record{Kind: record.Datagram, Dir: record.DirIn, Src: v4b, Dst: v4a, Len: 3, Payload: []byte("odd")}),
		obs(4, record.Record{Kind: record.ICMP, Dir: record.DirIn, ICMPType: 1, ICMPCode: 4, QuotedSrc: v6a, QuotedDst: v6b,
			Src: netip.AddrPortFrom(v6b.Addr(), 0), Dst: netip.AddrPortFrom(v6a.Addr(), 0), Len: 5, Payload: []byte("hello")}),
		obs(5, record.Record{Kind: record.ICMP, Dir: record.DirOut, ICMPType: 3, ICMPCode: 3, QuotedSrc: v4b, QuotedDst: v4a, Len: 1200, Payload: []byte("cut")}),
		&result.Exchange{Head: result.Head{Seq: 6, Time: at}, Req: "PING/v4", Outcome: result.Failed},                         // no packet
		obs(7, record.Record{Kind: record.Datagram, Dir: record.DirOut, Src: v4a, Dst: v4b, HasSendRet: true, SendRet: -111}), // nothing left
	}
	out, want := writeAll(t, events, 0)
	want = want[:len(want)-1] // the failed send is no packet
	got := tsharktest.Read(t, out)
	requireShown(t, got, want)
	if got[0].Comment != "send #1; pid 4242 tid 4243 geth" {
		t.Errorf("comment %q, want the event and the process", got[0].Comment)
	}
	if got[1].CapLen != "128" || got[1].Len != "1228" {
		t.Errorf("a cut datagram: captured %s of %s bytes, want 128 of 1228", got[1].CapLen, got[1].Len)
	}
	if got[4].Src != "10.0.0.1" || got[4].Dst != "10.0.0.2" {
		t.Errorf("an ICMP error of unknown addresses: %s > %s, want it from the quoted destination 10.0.0.1 to 10.0.0.2", got[4].Src, got[4].Dst)
	}
	t.Logf("checksum verdicts: %q", []string{got[0].Checksums, got[1].Checksums, got[2].Checksums, got[3].Checksums, got[4].Checksums})
}

// A failure decided within the hold time adds its cause to the packets it cites; one
// decided after they were written leaves them as they are.
func TestFailureCauseInComments(t *testing.T) {
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	a, b := netip.MustParseAddrPort("10.0.0.1:30303"), netip.MustParseAddrPort("10.0.0.2:30303")
	send := func(seq uint64, after time.Duration) *result.Observation {
		r := record.Record{Kind: record.Datagram, Dir: record.DirOut, Time: at.Add(after), Src: a, Dst: b, Len: 1, Payload: []byte{1}}
		return &result.Observation{Head: result.Head{Seq: seq, Time: r.Time}, Record: r}
	}
	failed := func(seq, cites uint64) *result.Exchange {
		return &result.Exchange{Head: result.Head{Seq: seq, Time: at}, Req: "PING/v4", Outcome: result.Failed,
			Cause: result.ICMPUnreachable, Evidence: []result.Evidence{{Seq: cites, Time: at, Observed: result.TypeSend}}}
	}
	events := []result.Event{
		send(1, 0), send(2, time.Second), failed(3, 1),
		send(4, 10*time.Second), failed(5, 2), // 2 was written when 4 came, 9 s after it
	}
	out, want := writeAll(t, events, 5*time.Second)
	got := tsharktest.Read(t, out)
	requireShown(t, got, want)
	if got[0].Comment != "send #1; cited by exchange #3 PING/v4 failed: icmp_unreachable" {
		t.Errorf("comment %q: want the cause of the failure citing it", got[0].Comment)
	}
	if got[1].Comment != "send #2" || got[2].Comment != "send #4" {
		t.Errorf("comments %q, %q: want no cause on a packet written before the failure citing it", got[1].Comment, got[2].Comment)
	}
}
