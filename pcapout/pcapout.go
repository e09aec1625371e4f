// Package pcapout writes what discotrace observed as pcapng, for Wireshark: every
// datagram (send, recv, or a capture's packet) and every ICMP error, each with a packet
// comment holding the decoded summary and the process that sent or received it.
//
// The tracer sees UDP payloads, not frames: the IP and UDP headers are rebuilt from the
// record's addresses and lengths (link type raw IP), with the datagram's original length
// as the packet's length, so a snap-length cut shows as a truncated packet.
package pcapout

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// Writer writes the observations among the events it is given (a live.Output) as pcapng.
//
// A failed handshake or exchange is decided after its packets were seen. With a hold
// time, packets wait that long (in the stream's own time) before they are written, and
// the failures decided meanwhile add their cause to the comments of the packets their
// evidence cites; a packet cited later keeps its comment as written.
type Writer struct {
	ng      *pcapgo.NgWriter
	hold    time.Duration
	pending []*heldPacket          // in stream order
	bySeq   map[uint64]*heldPacket // the pending packets of events with a seq
	now     time.Time              // the latest observation's time, or the clock's
	clock   func() time.Time       // live: moves now on at each flush, nil offline
	frame   []byte                 // reused per packet when nothing is held
}

// heldPacket is a packet waiting to be written.
type heldPacket struct {
	seq     uint64
	ci      gopacket.CaptureInfo
	frame   []byte
	dir     pcapgo.NgEpbFlag
	comment string
	cited   []string // the failures citing it
}

// maxHeld bounds the packets held: past it, the oldest is written at once.
const maxHeld = 1 << 16

// Options configure a Writer.
type Options struct {
	// Application names the program in the section header.
	Application string
	// Hold is how long packets wait for the failures that cite them (0: written at once,
	// without causes).
	Hold time.Duration
	// Clock, for a live stream, is the time a flush releases held packets at, so that
	// they do not wait for the next packet when traffic stops; nil for a capture file,
	// whose packets are released by the stream's own time.
	Clock func() time.Time
}

// New writes the pcapng section and interface headers to w and returns the writer of
// the packets.
func New(w io.Writer, o Options) (*Writer, error) {
	intf := pcapgo.DefaultNgInterface
	intf.Name = "discotrace"
	intf.Description = "UDP datagrams and ICMP errors observed by discotrace, IP and UDP headers rebuilt"
	intf.LinkType = layers.LinkTypeRaw
	opts := pcapgo.DefaultNgWriterOptions
	opts.SectionInfo.Application = o.Application
	ng, err := pcapgo.NewNgWriterInterface(w, intf, opts)
	if err != nil {
		return nil, err
	}
	return &Writer{ng: ng, hold: o.Hold, clock: o.Clock, bySeq: map[uint64]*heldPacket{}}, nil
}

// Write writes ev as a packet when it is a datagram or an ICMP error (after the hold
// time); a failed handshake or exchange, or a revision, adds its cause to the held
// packets it cites. Other events (drops, reads of a datagram already written, anomalies)
// add no packet.
func (w *Writer) Write(ev result.Event) error {
	switch x := ev.(type) {
	case *result.Observation:
		return w.observation(x)
	case *result.Exchange:
		if x.Cause != "" {
			w.cite(x.Evidence, fmt.Sprintf("%s #%d %s %s: %s", result.TypeExchange, x.Seq, x.Req, x.Outcome, x.Cause))
		}
	case *result.Handshake:
		if x.Cause != "" {
			w.cite(x.Evidence, fmt.Sprintf("%s #%d %s: %s", result.TypeHandshake, x.Seq, x.Outcome, x.Cause))
		}
	case *result.Revision:
		w.cite(x.Evidence, fmt.Sprintf("%s #%d of %s #%d: %s", result.TypeRevision, x.Seq, x.Of, x.Revises, x.Cause))
	}
	return nil
}

func (w *Writer) observation(o *result.Observation) error {
	r := &o.Record
	var frame []byte
	var origLen int
	switch r.Kind {
	case record.Datagram:
		if r.FailedUnseen() {
			return nil // a send that failed before any byte was seen: nothing went out
		}
		frame, origLen = appendDatagram(w.frame[:0], r)
	case record.ICMP:
		frame = appendICMPError(w.frame[:0], r)
		origLen = len(frame)
	default:
		return nil
	}
	p := &heldPacket{
		seq: o.Seq, frame: frame, dir: direction(r.Dir), comment: Comment(o),
		ci: gopacket.CaptureInfo{Timestamp: r.Time, CaptureLength: len(frame), Length: origLen},
	}
	if w.hold <= 0 {
		w.frame = frame
		return w.writePacket(p)
	}
	p.frame = bytes.Clone(frame)
	w.frame = frame
	if r.Time.After(w.now) {
		w.now = r.Time
	}
	w.pending = append(w.pending, p)
	if p.seq > 0 {
		w.bySeq[p.seq] = p
	}
	return w.release(false)
}

// cite adds a failure to the comments of the held packets its evidence cites.
func (w *Writer) cite(evidence []result.Evidence, note string) {
	for _, e := range evidence {
		if p := w.bySeq[e.Seq]; p != nil && e.Seq > 0 {
			p.cited = append(p.cited, note)
		}
	}
}

// release writes the held packets older than the hold time, or all of them.
func (w *Writer) release(all bool) error {
	n := 0
	for ; n < len(w.pending); n++ {
		p := w.pending[n]
		if !all && len(w.pending)-n <= maxHeld && w.now.Sub(p.ci.Timestamp) < w.hold {
			break
		}
		if err := w.writePacket(p); err != nil {
			w.pending = w.pending[n+1:]
			return err
		}
		delete(w.bySeq, p.seq)
	}
	clear(w.pending[:n])
	w.pending = w.pending[n:]
	return nil
}

func (w *Writer) writePacket(p *heldPacket) error {
	comment := p.comment
	if len(p.cited) > 0 {
		comment += "; cited by " + strings.Join(p.cited, ", ")
	}
	return w.ng.WritePacketWithOptions(p.ci, p.frame, pcapgo.NgPacketOptions{
		Comments: []string{comment},
		Flags:    &pcapgo.NgEpbFlags{Direction: p.dir},
	})
}

// Flush writes the packets whose hold time is over, and what is buffered.
func (w *Writer) Flush() error {
	if w.clock != nil {
		if t := w.clock(); t.After(w.now) {
			w.now = t
		}
	}
	if err := w.release(false); err != nil {
		return err
	}
	return w.ng.Flush()
}

// Close writes every packet still held, then what is buffered: the end of the stream.
func (w *Writer) Close() error {
	if err := w.release(true); err != nil {
		return err
	}
	return w.ng.Flush()
}

func direction(d record.Direction) pcapgo.NgEpbFlag {
	switch d {
	case record.DirOut:
		return pcapgo.NgEpbFlagDirectionOutbound
	case record.DirIn:
		return pcapgo.NgEpbFlagDirectionInbound
	}
	return pcapgo.NgEpbFlagDirectionUnknown
}

// Comment is the packet comment of an observation: its event type and seq (as in the
// NDJSON stream), the decoded packet, and the process, e.g.
// "send #12 discv5 MESSAGE PING/v5 req 8f3a11c2; pid 4242 tid 4243 geth".
func Comment(o *result.Observation) string {
	r := &o.Record
	var b strings.Builder
	b.WriteString(result.TypeOf(r))
	if o.Seq > 0 {
		fmt.Fprintf(&b, " #%d", o.Seq)
	}
	if r.Kind == record.ICMP {
		fmt.Fprintf(&b, " icmp %d/%d quoting %s > %s", r.ICMPType, r.ICMPCode, r.QuotedSrc, r.QuotedDst)
	}
	if p := o.Packet; p != nil {
		b.WriteString(" ")
		b.WriteString(discSummary(p))
	}
	if r.HasSendRet && r.SendRet < 0 {
		fmt.Fprintf(&b, "; send failed: %d", r.SendRet)
	}
	if r.HasProc {
		fmt.Fprintf(&b, "; pid %d tid %d %s", r.PID, r.TID, r.Comm)
	}
	return b.String()
}

// discSummary is a decoded packet in a few words: protocol, kind, message, request id,
// and why decoding stopped.
func discSummary(p *packet.Packet) string {
	s := p.Proto
	if p.Kind != "" {
		s += " " + p.Kind
	}
	if p.Msg != nil {
		s += " " + p.Msg.Name()
		if id := p.Msg.RequestID(); len(id) > 0 {
			s += " req " + hex.EncodeToString(id)
		}
	}
	if p.Err != nil {
		s += " (" + p.Err.Error() + ")"
	}
	return s
}
