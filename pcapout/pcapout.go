// Package pcapout writes what discotrace observed as pcapng, for Wireshark: every
// datagram (send, recv, or a capture's packet) and every ICMP error, each with a packet
// comment holding the decoded summary and the process that sent or received it.
//
// The tracer sees UDP payloads, not frames: the IP and UDP headers are rebuilt from the
// record's addresses and lengths (link type raw IP), with the datagram's original length
// as the packet's length, so a snap-length cut shows as a truncated packet.
package pcapout

import (
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/discotrace/discotrace/decode/packet"
	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/decode/result"
)

// Writer writes the observations among the events it is given (a live.Output) as pcapng.
type Writer struct {
	ng    *pcapgo.NgWriter
	frame []byte // reused per packet
}

// New writes the pcapng section and interface headers to w and returns the writer of
// the packets. application names the program in the section header.
func New(w io.Writer, application string) (*Writer, error) {
	intf := pcapgo.DefaultNgInterface
	intf.Name = "discotrace"
	intf.Description = "UDP datagrams and ICMP errors observed by discotrace, IP and UDP headers rebuilt"
	intf.LinkType = layers.LinkTypeRaw
	opts := pcapgo.DefaultNgWriterOptions
	opts.SectionInfo.Application = application
	ng, err := pcapgo.NewNgWriterInterface(w, intf, opts)
	if err != nil {
		return nil, err
	}
	return &Writer{ng: ng}, nil
}

// Write writes ev as a packet when it is a datagram or an ICMP error; other events
// (handshakes, drops, reads of a datagram already written) add no packet.
func (w *Writer) Write(ev result.Event) error {
	o, ok := ev.(*result.Observation)
	if !ok {
		return nil
	}
	r := &o.Record
	var origLen int
	switch r.Kind {
	case record.Datagram:
		if r.FailedUnseen() {
			return nil // a send that failed before any byte was seen: nothing went out
		}
		w.frame, origLen = appendDatagram(w.frame[:0], r)
	case record.ICMP:
		w.frame = appendICMPError(w.frame[:0], r)
		origLen = len(w.frame)
	default:
		return nil
	}
	ci := gopacket.CaptureInfo{Timestamp: r.Time, CaptureLength: len(w.frame), Length: origLen}
	flags := &pcapgo.NgEpbFlags{Direction: direction(r.Dir)}
	return w.ng.WritePacketWithOptions(ci, w.frame, pcapgo.NgPacketOptions{
		Comments: []string{Comment(o)},
		Flags:    flags,
	})
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error { return w.ng.Flush() }

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
