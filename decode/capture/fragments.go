package capture

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/discotrace/discotrace/decode/record"
)

// Where a pcap's fragment reassembly gave up, the Location of its Drop records. The
// Reason is always the kernel's FRAG_REASM_TIMEOUT, the name consumers look for; the
// Location tells the three cases apart.
const (
	// FragTimeout: the reassembly timeout (Linux's: 30 s for IPv4, 60 s for IPv6)
	// passed in capture time without the missing fragments; the record's Time is when it
	// expired.
	FragTimeout = "pcap: reassembly timed out"
	// FragEndOfCapture: the capture ended with the datagram still incomplete (it may
	// have been completed after the capture stopped); Time is the capture's last packet.
	FragEndOfCapture = "pcap: capture ended before the datagram was complete"
	// FragEvicted: too many incomplete datagrams were pending (maxPendingFrags);
	// the oldest was given up, as the kernel does under fragment memory pressure.
	FragEvicted = "pcap: too many incomplete datagrams, oldest given up"
	// FragStalled: the datagram's other fragments did not follow its first one within
	// fragGap. A sender writes a datagram's fragments back to back, so they are
	// lost: the kernel gives up only at its timeout, long after the request waiting for
	// the datagram timed out, and this early report is what lets the decoder name the
	// loss as its cause. Time is the first fragment's plus the gap. If the rest does come
	// later, the datagram is still reassembled and reported.
	FragStalled = "pcap: the other fragments did not follow within 100ms (the kernel gives up at its reassembly timeout)"
)

// fragGap is how long after a datagram's first fragment its others may still come
// before the reader reports it lost: far above the back-to-back spacing of fragments on
// any link, and below the shortest discovery timeout (500 ms) minus a round trip.
const fragGap = 100 * time.Millisecond

// Reassembly limits: Linux's default timeouts, and a bound on the memory held.
const (
	fragTimeoutV4   = 30 * time.Second // net.ipv4.ipfrag_time
	fragTimeoutV6   = 60 * time.Second // net.ipv6.ip6frag_time
	maxPendingFrags = 256              // at most 256×64 KiB of fragments held
	maxIPPayload    = 65535
)

// IP fragment reassembly. The kernel's rules, simplified where a capture cannot know
// better: fragments are grouped by (src, dst, id, protocol); the timer starts with the
// first fragment and is not restarted; a repeated or overlapping fragment is ignored (the
// first copy wins); a fragment that contradicts the datagram's end, is not a multiple of
// 8 bytes while more follow, or reaches past 64 KiB is malformed and ignored.

// fragKey identifies the datagram a fragment belongs to.
type fragKey struct {
	src, dst netip.Addr
	id       uint32
	proto    uint8 // IPv4 protocol; IPv6: the fragment header's next header
	v6       bool
}

// fragment is one fragment: it covers [off, end) of the datagram's IP payload, of which
// data holds what was captured (shorter than end-off when the capture snapped it).
type fragment struct {
	off, end int
	data     []byte
}

// fragQueue is one datagram being reassembled.
type fragQueue struct {
	key      fragKey
	first    time.Time  // capture time of its first fragment: the kernel's timer starts there
	deadline time.Time  // first + the reassembly timeout
	frags    []fragment // sorted by off, never overlapping
	total    int        // the datagram's IP payload length, -1 until the last fragment arrives
	closed   bool       // completed or given up; fragOrder drops it lazily
	reported bool       // reported lost as stalled: kept only for a late completion
}

// addFragment adds a fragment; when it completes its datagram it returns the datagram's
// IP payload (what was captured of it: the prefix up to the first snapped fragment) and
// the length the fragments declare.
func (p *parser) addFragment(key fragKey, f fragment, more bool, ts time.Time) (whole []byte, total int, done bool, err error) {
	size := f.end - f.off
	if size < 0 || f.end > maxIPPayload || (more && (size == 0 || size%8 != 0)) {
		p.stats.Malformed++
		return nil, 0, false, nil
	}
	q := p.frags[key]
	if q == nil {
		if len(p.frags) >= maxPendingFrags {
			if err := p.evictOldestFragments(ts); err != nil {
				return nil, 0, false, err
			}
		}
		timeout := fragTimeoutV4
		if key.v6 {
			timeout = fragTimeoutV6
		}
		q = &fragQueue{key: key, first: ts, deadline: ts.Add(timeout), total: -1}
		p.frags[key] = q
		p.fragOrder = append(p.fragOrder, q)
	}
	if !more {
		if (q.total >= 0 && q.total != f.end) || (len(q.frags) > 0 && q.frags[len(q.frags)-1].end > f.end) {
			p.stats.Malformed++ // a second, different end, or data already past this end
			return nil, 0, false, nil
		}
	} else if q.total >= 0 && f.end > q.total {
		p.stats.Malformed++
		return nil, 0, false, nil
	}
	// Insert sorted by offset, refusing overlaps.
	i := 0
	for i < len(q.frags) && q.frags[i].off < f.off {
		i++
	}
	if (i > 0 && q.frags[i-1].end > f.off) || (i < len(q.frags) && q.frags[i].off < f.end) ||
		(i < len(q.frags) && q.frags[i].off == f.off) {
		p.stats.Fragments++
		p.stats.DuplicateFragments++
		return nil, 0, false, nil
	}
	if len(f.data) > size {
		f.data = f.data[:size]
	}
	f.data = bytes.Clone(f.data) // the frame buffer is reused for the next packet
	q.frags = append(q.frags, fragment{})
	copy(q.frags[i+1:], q.frags[i:])
	q.frags[i] = f
	p.stats.Fragments++
	if !more {
		q.total = f.end
	}
	if q.total < 0 || q.frags[0].off != 0 {
		return nil, 0, false, nil
	}
	for j := 1; j < len(q.frags); j++ {
		if q.frags[j].off != q.frags[j-1].end {
			return nil, 0, false, nil
		}
	}
	if q.frags[len(q.frags)-1].end != q.total {
		return nil, 0, false, nil
	}
	p.closeFragments(q)
	p.stats.Reassembled++
	return q.capturedPrefix(), q.total, true, nil
}

// capturedPrefix is the datagram's IP payload from offset 0 up to the first byte the
// capture does not have.
func (q *fragQueue) capturedPrefix() []byte {
	var buf []byte
	at := 0
	for _, f := range q.frags {
		if f.off != at {
			break
		}
		buf = append(buf, f.data...)
		if len(f.data) < f.end-f.off {
			break
		}
		at = f.end
	}
	return buf
}

func (p *parser) closeFragments(q *fragQueue) {
	q.closed = true
	delete(p.frags, q.key)
}

// expireFragments gives up the datagrams whose reassembly timeout passed by the latest
// capture time, oldest first.
func (p *parser) expireFragments() error {
	if len(p.frags) == 0 {
		p.fragOrder = p.fragOrder[:0]
		return nil
	}
	kept := p.fragOrder[:0]
	for _, q := range p.fragOrder {
		if q.closed {
			continue
		}
		if p.lastTime.After(q.deadline) {
			if err := p.giveUpFragments(q, q.deadline, FragTimeout); err != nil {
				return err
			}
			continue
		}
		if !q.reported && p.lastTime.Sub(q.first) > fragGap {
			q.reported = true
			if err := p.reportFragments(q, q.first.Add(fragGap), FragStalled); err != nil {
				return err
			}
		}
		kept = append(kept, q)
	}
	clear(p.fragOrder[len(kept):])
	p.fragOrder = kept
	return nil
}

// evictOldestFragments gives up the oldest pending datagram to make room.
func (p *parser) evictOldestFragments(ts time.Time) error {
	for _, q := range p.fragOrder {
		if !q.closed {
			return p.giveUpFragments(q, ts, FragEvicted)
		}
	}
	return nil
}

// flushFragments reports the datagrams still incomplete at the end of the capture.
func (p *parser) flushFragments() error {
	for _, q := range p.fragOrder {
		if q.closed {
			continue
		}
		if err := p.giveUpFragments(q, p.lastTime, FragEndOfCapture); err != nil {
			return err
		}
	}
	p.fragOrder = p.fragOrder[:0]
	return nil
}

// giveUpFragments stops reassembling q, reporting it lost unless that was done when it
// stalled.
func (p *parser) giveUpFragments(q *fragQueue, at time.Time, where string) error {
	p.closeFragments(q)
	if q.reported {
		return nil
	}
	return p.reportFragments(q, at, where)
}

// reportFragments emits a Drop record for an incomplete datagram. When its first
// fragment was captured, the record has the UDP ports, length and payload prefix, so that
// the decoder can tell which discovery packet was lost.
func (p *parser) reportFragments(q *fragQueue, at time.Time, where string) error {
	p.stats.FragmentDrops++
	rec := &record.Record{
		Kind:     record.Drop,
		Time:     at,
		Src:      netip.AddrPortFrom(q.key.src, 0),
		Dst:      netip.AddrPortFrom(q.key.dst, 0),
		Reason:   record.ReasonFragReasmTimeout,
		Location: where,
	}
	prefix := q.capturedPrefix()
	proto, upper := layers.IPProtocol(q.key.proto), prefix
	if q.key.v6 {
		var ok bool
		if proto, upper, _, _, ok = walkIPv6(proto, prefix); !ok {
			proto = 0
		}
	}
	if proto == layers.IPProtocolUDP && len(upper) >= 8 {
		sport, dport := binary.BigEndian.Uint16(upper[0:2]), binary.BigEndian.Uint16(upper[2:4])
		rec.Src = netip.AddrPortFrom(q.key.src, sport)
		rec.Dst = netip.AddrPortFrom(q.key.dst, dport)
		if n := int(binary.BigEndian.Uint16(upper[4:6])); n >= 8 {
			rec.Len = n - 8
			rec.Payload = upper[8:min(len(upper), n)]
		}
	}
	return p.emit(rec)
}
