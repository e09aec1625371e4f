// Command decodeload measures `discotrace decode` at scale. It writes a capture of many
// discv5 peers each sending a few MESSAGE packets to the local node, then a flood from one
// peer (by default 100,000 peers × 3 packets, then 300,000 from one: 600,000 packets), runs
// the discotrace binary built from this tree on it with the local node's ID, and prints
// packets/s, the decoder's CPU seconds and its peak RSS (getrusage of the child).
//
// -hostile writes the shape an attacker can send instead: every packet from one address,
// each with a fresh random node ID.
//
// It asserts no timing; it fails only if decode fails or its output does not have one
// packet event per packet of the capture. Run from the repository root:
//
//	go run ./bench/decodeload
//	go run ./bench/decodeload -hostile -runs 3
//	go run ./bench/decodeload -baseline /tmp/old/discotrace -runs 3     # old and new side by side
//	go run ./bench/decodeload -hostile -peers 0 -flood 6000000 -rss-every 5s  # RSS over a long flood
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/p2p/enode"

	"github.com/discotrace/discotrace/bench/internal/childproc"
	"github.com/discotrace/discotrace/internal/v5message"
)

var (
	baseline string
	rssEvery time.Duration
)

type options struct {
	peers, messages, flood, size int
	peerRate, floodRate          float64
	hostile                      bool
	seed                         uint64
}

func main() {
	var o options
	flag.IntVar(&o.peers, "peers", 100000, "peers, each with its own address and node ID")
	flag.IntVar(&o.messages, "messages", 3, "MESSAGE packets each peer sends")
	flag.IntVar(&o.flood, "flood", 300000, "packets of the one-peer flood that follows")
	flag.IntVar(&o.size, "size", 256, "UDP payload bytes per packet")
	flag.Float64Var(&o.peerRate, "peer-rate", 20000, "capture timestamps: packets/s of the many peers")
	flag.Float64Var(&o.floodRate, "flood-rate", 100000, "capture timestamps: packets/s of the flood")
	flag.BoolVar(&o.hostile, "hostile", false, "every packet from one address with a random node ID")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the IDs, nonces and bodies")
	runs := flag.Int("runs", 2, "times to decode the capture")
	bin := flag.String("discotrace", "", "discotrace binary to measure (default: build ./cmd/discotrace)")
	flag.StringVar(&baseline, "baseline", "", "a second discotrace binary (another commit's), run before the first in every run, so that both meet the same machine load")
	flag.DurationVar(&rssEvery, "rss-every", 0, "print each decode's RSS at this interval while it runs (0: only the peak)")
	capture := flag.String("capture", "", "write the capture here and keep it (default: a temporary file)")
	flag.Parse()
	if err := run(o, *runs, *bin, *capture); err != nil {
		fmt.Fprintln(os.Stderr, "decodeload:", err)
		os.Exit(1)
	}
}

func run(o options, runs int, bin, capture string) error {
	dir, err := os.MkdirTemp("", "decodeload")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		if bin, err = childproc.Build(dir); err != nil {
			return err
		}
	}
	if capture == "" {
		capture = filepath.Join(dir, "load.pcap")
	}
	start := time.Now()
	local, packets, err := writeCapture(capture, o)
	if err != nil {
		return err
	}
	shape := fmt.Sprintf("%d peers × %d MESSAGE packets, then %d from one peer", o.peers, o.messages, o.flood)
	if o.hostile {
		shape = "hostile: every packet from one address, each with a random node ID"
	}
	fmt.Printf("capture %s: %d packets of %d bytes (%s), written in %.1f s\n",
		capture, packets, o.size, shape, time.Since(start).Seconds())
	fmt.Printf("command: %s decode --node-id %s %s\n", bin, local, capture)
	bins := []string{bin}
	if baseline != "" {
		bins = []string{baseline, bin}
		fmt.Printf("baseline: %s\n", baseline)
	}
	for r := range runs {
		for _, b := range bins {
			u, out, series, err := decode(b, local, capture)
			if err != nil {
				return err
			}
			name := ""
			if baseline != "" {
				name = map[bool]string{true: " baseline", false: " measured"}[b == baseline]
			}
			fmt.Printf("run %d%s: %.0f packets/s; %s; %d events %v\n",
				r+1, name, float64(packets)/u.Wall.Seconds(), u, out.lines, out.types)
			if len(series) > 0 {
				fmt.Printf("  RSS MiB (anon+file) every %s: %s\n", rssEvery, series)
			}
			if out.types["packet"] != packets {
				return fmt.Errorf("decode reported %d packet events for %d packets in the capture", out.types["packet"], packets)
			}
		}
	}
	return nil
}

// outputCount tallies decode's NDJSON output by event type without keeping it.
type outputCount struct {
	lines   int
	types   map[string]int
	partial []byte
}

// typeKey starts every line's second key: "v" comes first (ndjson.Event's field order).
var typeKey = []byte(`"type":"`)

func (c *outputCount) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.partial = append(c.partial, p...)
			break
		}
		line := p[:i]
		if len(c.partial) > 0 {
			line = append(c.partial, line...)
			c.partial = c.partial[:0]
		}
		c.lines++
		if i := bytes.Index(line, typeKey); i >= 0 {
			t := line[i+len(typeKey):]
			if j := bytes.IndexByte(t, '"'); j >= 0 {
				c.types[string(t[:j])]++
			}
		}
		p = p[i+1:]
	}
	return n, nil
}

// decode runs bin's decode on the capture, and with -rss-every samples its RSS meanwhile.
func decode(bin string, local enode.ID, capture string) (childproc.Usage, *outputCount, string, error) {
	out := &outputCount{types: map[string]int{}}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "decode", "--node-id", local.String(), capture)
	cmd.Stdout, cmd.Stderr = out, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return childproc.Usage{}, nil, "", fmt.Errorf("%s: %v", cmd, err)
	}
	var series strings.Builder
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var tick <-chan time.Time
	if rssEvery > 0 {
		t := time.NewTicker(rssEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-done:
			wall := time.Since(start)
			if err != nil {
				return childproc.Usage{}, nil, "", fmt.Errorf("%s: %v\n%s", cmd, err, stderr.String())
			}
			return childproc.UsageOf(cmd.ProcessState, wall), out, strings.TrimSpace(series.String()), nil
		case <-tick:
			if m, err := childproc.MemoryOf(cmd.Process.Pid); err == nil {
				fmt.Fprintf(&series, "%.0f(%.0f+%.0f) ", float64(m.RSS)/(1<<20), float64(m.Anon)/(1<<20), float64(m.File)/(1<<20))
			}
		}
	}
}

// writeCapture writes the load as a pcap file of raw IPv4 packets and returns the local
// node's ID and the number of packets.
func writeCapture(path string, o options) (enode.ID, int, error) {
	f, err := os.Create(path)
	if err != nil {
		return enode.ID{}, 0, err
	}
	defer f.Close()
	w := &pcapWriter{w: bufio.NewWriterSize(f, 1<<20), t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	if err := w.header(); err != nil {
		return enode.ID{}, 0, err
	}
	b := v5message.NewBuilder(o.seed)
	local := b.NodeID()
	localAddr := netip.MustParseAddrPort("172.16.0.1:30303")
	floodAddr := netip.MustParseAddrPort("10.200.0.1:30303")
	floodID := b.NodeID()
	packets := 0
	send := func(src netip.AddrPort, id enode.ID, gap time.Duration) error {
		if o.hostile {
			src, id = floodAddr, b.NodeID()
		}
		p, err := b.Message(local, id, o.size)
		if err != nil {
			return err
		}
		packets++
		w.t = w.t.Add(gap)
		return w.udp4(src, localAddr, p)
	}
	peerGap := time.Duration(float64(time.Second) / o.peerRate)
	for i := range o.peers {
		// 10.0.0.1 onwards; 10.200.0.1 (the flood) is past 13 million peers.
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte((i + 1) >> 16), byte((i + 1) >> 8), byte(i + 1)}), 30303)
		id := b.NodeID()
		for range o.messages {
			if err := send(src, id, peerGap); err != nil {
				return local, packets, err
			}
		}
	}
	floodGap := time.Duration(float64(time.Second) / o.floodRate)
	for range o.flood {
		if err := send(floodAddr, floodID, floodGap); err != nil {
			return local, packets, err
		}
	}
	if err := w.w.Flush(); err != nil {
		return local, packets, err
	}
	return local, packets, f.Close()
}

// pcapWriter writes a classic pcap file with link type LINKTYPE_RAW (IPv4 packets).
type pcapWriter struct {
	w   *bufio.Writer
	t   time.Time // the next packet's timestamp
	buf []byte
}

const linktypeRaw = 101

func (p *pcapWriter) header() error {
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4) // microsecond timestamps
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 65535) // snap length
	binary.LittleEndian.PutUint32(h[20:], linktypeRaw)
	_, err := p.w.Write(h[:])
	return err
}

// udp4 writes one IPv4 UDP datagram. Its UDP checksum is 0 (none), which IPv4 allows.
func (p *pcapWriter) udp4(src, dst netip.AddrPort, payload []byte) error {
	n := 20 + 8 + len(payload)
	if n > 0xffff || !src.Addr().Is4() || !dst.Addr().Is4() {
		return errors.New("not an IPv4 UDP datagram that fits one packet")
	}
	p.buf = append(p.buf[:0], make([]byte, 16+28)...)
	rec, ip := p.buf[:16], p.buf[16:]
	binary.LittleEndian.PutUint32(rec[0:], uint32(p.t.Unix()))
	binary.LittleEndian.PutUint32(rec[4:], uint32(p.t.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(rec[8:], uint32(n))
	binary.LittleEndian.PutUint32(rec[12:], uint32(n))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(n))
	ip[8], ip[9] = 64, 17 // TTL, UDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip[:20]))
	binary.BigEndian.PutUint16(ip[20:], src.Port())
	binary.BigEndian.PutUint16(ip[22:], dst.Port())
	binary.BigEndian.PutUint16(ip[24:], uint16(8+len(payload)))
	if _, err := p.w.Write(p.buf); err != nil {
		return err
	}
	_, err := p.w.Write(payload)
	return err
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
