package keylog_test

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"
	"github.com/gopacket/gopacket/layers"

	"github.com/discotrace/discotrace/decode"
	"github.com/discotrace/discotrace/decode/capture"
	"github.com/discotrace/discotrace/decode/internal/disctest"
	"github.com/discotrace/discotrace/decode/keylog"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// These tests run Debian's tshark with wireshark/discotrace.lua over the shared captures
// and compare what it shows with what the decoder (what `discotrace decode --keylog`
// runs) decoded, with the key log the decoder wrote. A missing tshark fails them: CI
// installs it (.ci/run).

// tshark returns tshark's path, failing the test when it is not installed.
func tshark(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatalf("tshark is needed to test wireshark/discotrace.lua: apt-get install -y tshark (%v)", err)
	}
	return p
}

// luaPath is wireshark/discotrace.lua in the module root above the test's directory.
func luaPath(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "wireshark", "discotrace.lua")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// runTshark runs tshark with the dissector and the key log over a capture and returns its
// standard output. A failing tshark or any Lua error it reports fails the test.
func runTshark(t *testing.T, pcap, keylogPath string, args ...string) string {
	t.Helper()
	full := append([]string{"-n", "-X", "lua_script:" + luaPath(t), "-o", "discv5.keylog:" + keylogPath, "-r", pcap}, args...)
	cmd := exec.Command(tshark(t), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(full, " "), err, stderr.String())
	}
	if s := stderr.String() + stdout.String(); strings.Contains(s, "Lua Error") || strings.Contains(s, "lua_script") && strings.Contains(s, "rror") {
		t.Fatalf("tshark reported a Lua error:\n%s", s)
	}
	return stdout.String()
}

// decodeCapture decodes a capture with the given node keys, writing the key log to a
// temporary file, and returns the decoded packets by "time-ns src dst" and the key log path.
func decodeCapture(t *testing.T, pcap string, keys ...string) (map[string]*ndjson.Disc, string) {
	t.Helper()
	klPath := filepath.Join(t.TempDir(), "keylog")
	kl, err := os.OpenFile(klPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer kl.Close()
	var id decode.Identity
	for _, k := range keys {
		id.Keys = append(id.Keys, disctest.Key(t, k))
	}
	w := keylog.NewWriter(kl)
	dec := decode.NewDecoder(decode.Config{Identity: id, KeyObserver: w})
	packets := make(map[string]*ndjson.Disc)
	emit := func(ev result.Event) {
		e := ndjson.FromResult(ev, false)
		if e.Type != "packet" || e.Disc == nil {
			return
		}
		ts, err := time.Parse(time.RFC3339Nano, e.Time)
		if err != nil {
			t.Fatalf("event time %q: %v", e.Time, err)
		}
		packets[fmt.Sprintf("%d %s %s", ts.UnixNano(), e.Src, e.Dst)] = e.Disc
	}
	f, err := os.Open(pcap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := capture.Read(f, func(r *record.Record) error {
		dec.Feed(r, emit)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dec.Flush(emit)
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	return packets, klPath
}

// tsharkFields are the fields the comparison reads, in this order.
var tsharkFields = []string{"frame.number", "frame.time_epoch", "ip.src", "udp.srcport", "ip.dst", "udp.dstport",
	"discv4.type", "discv5.kind", "discv5.flag", "discv5.nonce", "discv5.src_id", "discv5.msg", "discv5.req_id", "discv5.enr_seq",
	"discv4.error", "discv5.error", "ethdisc.error", "discv5.dissector_bug"}

type tsharkRow map[string]string

// tsharkRows runs tshark -T fields over a capture: one row per frame that is not ICMP
// (an ICMP error quotes a datagram, which the dissector shows too, but decode reports
// the ICMP error, not a packet).
func tsharkRows(t *testing.T, pcap, keylogPath string) []tsharkRow {
	t.Helper()
	args := []string{"-Y", "!icmp", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	out := runTshark(t, pcap, keylogPath, args...)
	var rows []tsharkRow
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != len(tsharkFields) {
			t.Fatalf("tshark row with %d fields, want %d: %q", len(cols), len(tsharkFields), sc.Text())
		}
		row := tsharkRow{}
		for i, f := range tsharkFields {
			row[f] = cols[i]
		}
		rows = append(rows, row)
	}
	return rows
}

// epochNanos turns tshark's frame.time_epoch ("1795463766.817726000") into nanoseconds.
func epochNanos(t *testing.T, s string) int64 {
	t.Helper()
	sec, frac, _ := strings.Cut(s, ".")
	secs, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		t.Fatalf("frame.time_epoch %q: %v", s, err)
	}
	frac = (frac + "000000000")[:9]
	ns, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		t.Fatalf("frame.time_epoch %q: %v", s, err)
	}
	return secs*1e9 + ns
}

// TestDissectorMatchesDecode: over each shared capture, every packet decode decoded is
// dissected the same way: the discv4 type; for discv5 headers decode unmasked, the kind,
// nonce and src-id; for messages decode decrypted, the message type and request ID.
func TestDissectorMatchesDecode(t *testing.T) {
	v4Types := map[string]bool{}
	var unmasked, decrypted int
	for _, c := range []struct {
		name string
		keys []string
	}{
		{"devp2p-discovery.pcap", []string{disctest.KeyA, disctest.KeyB}},
		{"reject.pcap", []string{disctest.KeyG, disctest.KeyB}},
		{"suites-devp2p.pcap", []string{disctest.KeyA}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pcap := disctest.CapturePath(t, c.name)
			packets, klPath := decodeCapture(t, pcap, c.keys...)
			rows := tsharkRows(t, pcap, klPath)
			matched := 0
			for _, row := range rows {
				if row["discv5.dissector_bug"] != "" {
					t.Errorf("frame %s: dissector bug: %s", row["frame.number"], row["discv5.dissector_bug"])
				}
				key := fmt.Sprintf("%d %s:%s %s:%s", epochNanos(t, row["frame.time_epoch"]), row["ip.src"], row["udp.srcport"], row["ip.dst"], row["udp.dstport"])
				d, ok := packets[key]
				if !ok {
					continue
				}
				matched++
				frame := row["frame.number"]
				switch d.Proto {
				case "discv4":
					if d.Kind == "" {
						// An unknown type: decode names none, the dissector marks it.
						if !strings.HasPrefix(row["discv4.type"], "unknown type") || row["discv4.error"] == "" {
							t.Errorf("frame %s: discv4 packet of unknown type shown as %q, error %q", frame, row["discv4.type"], row["discv4.error"])
						}
						continue
					}
					if row["discv4.type"] != d.Kind {
						t.Errorf("frame %s: discv4.type %q, decode says %q", frame, row["discv4.type"], d.Kind)
					}
					v4Types[d.Kind] = true
				case "discv5":
					if d.DstID == "" {
						continue // decode did not unmask it either
					}
					unmasked++
					if row["discv5.kind"] != d.Kind || row["discv5.nonce"] != d.Nonce {
						t.Errorf("frame %s: discv5 %s nonce %s, decode says %s nonce %s", frame, row["discv5.kind"], row["discv5.nonce"], d.Kind, d.Nonce)
					}
					if d.Kind != "WHOAREYOU" && row["discv5.src_id"] != d.SrcID {
						t.Errorf("frame %s: discv5.src_id %s, decode says %s", frame, row["discv5.src_id"], d.SrcID)
					}
					if d.Msg == "" {
						continue
					}
					decrypted++
					// tshark prints an empty bytes field (an empty request ID) as <MISSING>.
					req := strings.ReplaceAll(row["discv5.req_id"], "<MISSING>", "")
					if want := strings.TrimSuffix(d.Msg, "/v5"); row["discv5.msg"] != want || req != d.ReqID {
						t.Errorf("frame %s: discv5.msg %q req %q, decode decrypted %q req %q", frame, row["discv5.msg"], row["discv5.req_id"], want, d.ReqID)
					}
				}
			}
			if matched != len(packets) {
				t.Errorf("%d of decode's %d packets found in tshark's %d frames", matched, len(packets), len(rows))
			}
		})
	}
	if len(v4Types) != 6 {
		t.Errorf("discv4 types compared: %v, want all six", v4Types)
	}
	if unmasked == 0 || decrypted == 0 {
		t.Errorf("%d discv5 headers unmasked and %d messages decrypted compared: the captures have both", unmasked, decrypted)
	}
	t.Logf("compared all six discv4 types, %d unmasked discv5 headers, %d decrypted messages", unmasked, decrypted)
}

// maskXor applies the discv5 header mask of dest (AES-CTR, key dest[:16], IV the
// masking-iv) to pkt[16:end] in place.
func maskXor(pkt []byte, dest enode.ID, end int) {
	block, _ := aes.NewCipher(dest[:16])
	cipher.NewCTR(block, pkt[:16]).XORKeyStream(pkt[16:end], pkt[16:end])
}

// unmask returns pkt's plain header (the whole packet, header unmasked) when dest
// unmasks it, and the authdata size.
func unmask(pkt []byte, dest enode.ID) ([]byte, int, bool) {
	if len(pkt) < 63 {
		return nil, 0, false
	}
	p := bytes.Clone(pkt)
	maskXor(p, dest, 39)
	if string(p[16:22]) != "discv5" {
		return nil, 0, false
	}
	asize := int(binary.BigEndian.Uint16(p[37:39]))
	p = bytes.Clone(pkt)
	maskXor(p, dest, min(39+asize, len(p)))
	return p, asize, true
}

// mask masks a plain packet for dest, with the authdata size its header declares.
func mask(plain []byte, dest enode.ID) []byte {
	p := bytes.Clone(plain)
	asize := int(binary.BigEndian.Uint16(p[37:39]))
	maskXor(p, dest, min(39+asize, len(p)))
	return p
}

type fuzzCase struct {
	payload []byte
	// mustMark: the dissector must mark it malformed (its structure is broken where
	// the dissector can see it).
	mustMark bool
	what     string
	cut      int // the length it was cut to, 0 when not cut
}

// malformedCases derives damaged packets from valid ones: cut short, with header fields
// out of range, with bytes flipped.
func malformedCases(t *testing.T, valid [][]byte, dests []enode.ID) []fuzzCase {
	var out []fuzzCase
	for i, pkt := range valid {
		first := len(out) // this packet's cuts are out[first:cuts]
		for n := 1; n < len(pkt); n += 7 {
			out = append(out, fuzzCase{payload: pkt[:n], cut: n, what: fmt.Sprintf("packet %d cut to %d", i, n)})
		}
		cuts := len(out)
		for j := 0; j < len(pkt); j += 11 {
			p := bytes.Clone(pkt)
			p[j] ^= 0xff
			out = append(out, fuzzCase{payload: p, what: fmt.Sprintf("packet %d byte %d flipped", i, j)})
		}
		var plain []byte
		var asize int
		var dest enode.ID
		for _, d := range dests {
			if p, a, ok := unmask(pkt, d); ok {
				plain, asize, dest = p, a, d
				break
			}
		}
		if plain == nil {
			// discv4 (or discv5 to an unknown node): any cut breaks the RLP list of
			// a discv4 packet, and any type byte but 1-6 is unknown.
			if len(pkt) > 98 && pkt[97] >= 1 && pkt[97] <= 6 {
				// Cut to 63-98 bytes, it cannot be told from a discv5 packet to a node
				// the key log does not name.
				for k := first; k < cuts; k++ {
					out[k].mustMark = out[k].cut < 63 || out[k].cut > 97
				}
				for _, typ := range []byte{0, 7, 255} {
					p := bytes.Clone(pkt)
					p[97] = typ
					out = append(out, fuzzCase{payload: p, mustMark: true, what: fmt.Sprintf("discv4 packet %d with type %d", i, typ)})
				}
			}
			continue
		}
		// discv5 whose header the key log unmasks: cuts into the header or the tag, and
		// header fields out of range.
		// A cut inside the header, or (but for a WHOAREYOU, which has no message)
		// inside the message's GCM tag, is visible.
		for k := first; k < cuts; k++ {
			if n := out[k].cut; n < 39+asize || (plain[24] != 1 && n < 39+asize+16) {
				out[k].mustMark = true
			}
		}
		edit := func(what string, f func(p []byte)) {
			p := bytes.Clone(plain)
			f(p)
			out = append(out, fuzzCase{payload: mask(p, dest), mustMark: true, what: fmt.Sprintf("discv5 packet %d: %s", i, what)})
		}
		edit("flag 3", func(p []byte) { p[24] = 3 })
		edit("flag 255", func(p []byte) { p[24] = 255 })
		edit("authdata-size 0", func(p []byte) { binary.BigEndian.PutUint16(p[37:39], 0) })
		edit("authdata-size 65535", func(p []byte) { binary.BigEndian.PutUint16(p[37:39], 65535) })
		edit("authdata-size past the end", func(p []byte) { binary.BigEndian.PutUint16(p[37:39], uint16(len(p)-39+1)) })
		if plain[24] == 2 {
			edit("signature and key sizes 255", func(p []byte) { p[39+32], p[39+33] = 255, 255 })
		}
	}
	return out
}

// capturePayloads returns the UDP payloads of a capture's datagrams.
func capturePayloads(t *testing.T, name string) [][]byte {
	f, err := os.Open(disctest.CapturePath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	if err := capture.Read(f, func(r *record.Record) error {
		if r.Kind == record.Datagram && len(r.Payload) == r.Len {
			out = append(out, bytes.Clone(r.Payload))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// vectorPacket reads the packet of one of decode/discv5's spec test vectors, and its
// destination node ID.
func vectorPacket(t *testing.T, name string) ([]byte, enode.ID) {
	raw, err := os.ReadFile(filepath.Join("..", "discv5", "testdata", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	var hexText strings.Builder
	var dest enode.ID
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "# dest-node-id = 0x"); ok {
			dest = enode.HexID(v)
		}
		if !strings.HasPrefix(line, "#") {
			hexText.WriteString(line)
		}
	}
	b, err := hex.DecodeString(hexText.String())
	if err != nil {
		t.Fatal(err)
	}
	return b, dest
}

// TestDissectorMarksMalformed: damaged packets (cut short, header fields out of range,
// bytes flipped; from the shared captures and the discv5 spec vectors) never make the
// dissector fail with a Lua error, and those whose damage it can see are marked malformed.
func TestDissectorMarksMalformed(t *testing.T) {
	var valid [][]byte
	for _, name := range []string{"devp2p-discovery.pcap", "suites-devp2p.pcap"} {
		valid = append(valid, capturePayloads(t, name)...)
	}
	dests := []enode.ID{disctest.ID(t, disctest.KeyA), disctest.ID(t, disctest.KeyB)}
	for _, v := range []string{"v5.1-whoareyou", "v5.1-ping-message", "v5.1-ping-handshake", "v5.1-ping-handshake-enr"} {
		pkt, dest := vectorPacket(t, v)
		valid = append(valid, pkt)
		dests = append(dests, dest)
	}
	cases := malformedCases(t, valid, dests)

	dir := t.TempDir()
	klPath := filepath.Join(dir, "keylog")
	var kl strings.Builder
	for _, id := range dests {
		fmt.Fprintf(&kl, "DISCV5_LOCAL_ID %x\n", id[:])
	}
	if err := os.WriteFile(klPath, []byte(kl.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddrPort("10.99.0.2:30303"), netip.MustParseAddrPort("10.99.0.1:30303")
	frames := make([]disctest.Frame, len(cases))
	for i, c := range cases {
		pkt := disctest.UDPPacket(t, src, dst, c.payload)
		frames[i] = disctest.Frame{TS: disctest.T0.Add(time.Duration(i) * time.Millisecond), Data: disctest.Ethernet(layers.EthernetTypeIPv4, pkt)}
	}
	pcap := filepath.Join(dir, "malformed.pcap")
	if err := os.WriteFile(pcap, disctest.WritePcap(t, layers.LinkTypeEthernet, frames...), 0o644); err != nil {
		t.Fatal(err)
	}

	rows := tsharkRows(t, pcap, klPath)
	if len(rows) != len(cases) {
		t.Fatalf("tshark shows %d frames, want %d", len(rows), len(cases))
	}
	marked, mustMark := 0, 0
	for i, row := range rows {
		c := cases[i]
		if row["discv5.dissector_bug"] != "" {
			t.Errorf("%s: dissector failed: %s", c.what, row["discv5.dissector_bug"])
		}
		isMarked := row["discv4.error"] != "" || row["discv5.error"] != "" || row["ethdisc.error"] != ""
		if isMarked {
			marked++
		}
		if c.mustMark {
			mustMark++
			if !isMarked {
				t.Errorf("%s (frame %s): not marked malformed; tshark shows discv4.type=%q discv5.kind=%q", c.what, row["frame.number"], row["discv4.type"], row["discv5.kind"])
			}
		}
	}
	// The Lua engine's own error report is only in the tree: check it is nowhere.
	verbose := runTshark(t, pcap, klPath, "-V")
	if strings.Contains(verbose, "Lua Error") || strings.Contains(verbose, "Dissector bug") {
		t.Error("tshark -V shows a Lua error or a dissector bug")
	}
	if mustMark == 0 {
		t.Fatal("no case the dissector must mark: the corpus is wrong")
	}
	t.Logf("%d damaged packets: %d marked malformed, all %d with visible damage among them", len(cases), marked, mustMark)
}

// vectorFields reads the "# key = value" lines of a spec test vector.
func vectorFields(t *testing.T, name string) map[string]string {
	raw, err := os.ReadFile(filepath.Join("..", "discv5", "testdata", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "#"), "="); ok && strings.HasPrefix(strings.TrimSpace(line), "#") {
			out[strings.TrimSpace(k)] = strings.TrimPrefix(strings.TrimSpace(v), "0x")
		}
	}
	return out
}

// TestDissectorSpecVectors checks the dissector's own AES (header masking and the
// message's AES-GCM key stream) against the discv5 spec's test vectors, independently
// of the decoder: each vector's header unmasks with its destination ID and its message
// decrypts with its read-key, to the PING the spec states. They are sent between ports
// other than 30303 and 9000, for the heuristic dissector.
func TestDissectorSpecVectors(t *testing.T) {
	for _, c := range []struct {
		name, flag, enrSeq string
		msg                bool
	}{
		{"v5.1-whoareyou", "1", "0", false},
		{"v5.1-ping-message", "0", "2", true},
		{"v5.1-ping-handshake", "2", "1", true},
		{"v5.1-ping-handshake-enr", "2", "1", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			pkt, dest := vectorPacket(t, c.name)
			v := vectorFields(t, c.name)
			dir := t.TempDir()
			klPath := filepath.Join(dir, "keylog")
			kl := fmt.Sprintf("DISCV5_LOCAL_ID %x\n", dest[:])
			nonce := v["nonce"]
			if !c.msg {
				nonce = v["whoareyou.request-nonce"]
			} else {
				// The read-key is what the source (the initiator) encrypts with; the
				// recipient-key is not in the vector and is not used here.
				kl += fmt.Sprintf("DISCV5_SESSION %s %s %s %s %s\n", v["nonce"], v["src-node-id"], v["dest-node-id"], v["read-key"], strings.Repeat("ee", 16))
			}
			if err := os.WriteFile(klPath, []byte(kl), 0o600); err != nil {
				t.Fatal(err)
			}
			// Ports the dissector is not registered on: the heuristic must take it.
			src, dst := netip.MustParseAddrPort("10.99.0.2:40404"), netip.MustParseAddrPort("10.99.0.1:40405")
			frame := disctest.Frame{TS: disctest.T0, Data: disctest.Ethernet(layers.EthernetTypeIPv4, disctest.UDPPacket(t, src, dst, pkt))}
			pcap := filepath.Join(dir, "vector.pcap")
			if err := os.WriteFile(pcap, disctest.WritePcap(t, layers.LinkTypeEthernet, frame), 0o644); err != nil {
				t.Fatal(err)
			}
			rows := tsharkRows(t, pcap, klPath)
			if len(rows) != 1 {
				t.Fatalf("%d frames, want 1", len(rows))
			}
			row := rows[0]
			if row["discv5.flag"] != c.flag || row["discv5.nonce"] != nonce {
				t.Errorf("flag %q nonce %q, want %s and %s", row["discv5.flag"], row["discv5.nonce"], c.flag, nonce)
			}
			if row["discv5.enr_seq"] != c.enrSeq {
				t.Errorf("enr-seq %q, want %s", row["discv5.enr_seq"], c.enrSeq)
			}
			if row["discv5.error"] != "" || row["discv5.dissector_bug"] != "" {
				t.Errorf("error %q, bug %q", row["discv5.error"], row["discv5.dissector_bug"])
			}
			if !c.msg {
				return
			}
			if row["discv5.src_id"] != v["src-node-id"] {
				t.Errorf("src-id %q, want %s", row["discv5.src_id"], v["src-node-id"])
			}
			if row["discv5.msg"] != "PING" || row["discv5.req_id"] != v["ping.req-id"] {
				t.Errorf("message %q req %q, want PING %s", row["discv5.msg"], row["discv5.req_id"], v["ping.req-id"])
			}
		})
	}
}
