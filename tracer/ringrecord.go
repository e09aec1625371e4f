package tracer

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// headerSize is the size of the fixed part of a ring buffer record (struct dt_event in
// bpf/discotrace.h, through its bpf2go twin): the offset of its flexible payload array.
// (unsafe.Sizeof is larger: Go pads a struct that ends in a zero-size field.)
const headerSize = int(unsafe.Offsetof(discotraceDtEvent{}.Payload))

// recordBufferSize is the capacity of the reused record buffer: more than the largest
// record, so that viewing its start as a discotraceDtEvent (padded beyond headerSize)
// stays inside the allocation.
const recordBufferSize = 4096

// payloadChunkSize is the size of the blocks payload copies are cut from: one allocation
// serves many events (a kept event keeps at most one block alive).
const payloadChunkSize = 16 << 10

// recordParser is what parseRecord reuses from one record to the next. Only the goroutine that
// holds Tracer.readMu uses it.
type recordParser struct {
	payloads []byte // the unused rest of the current payload block

	// The comm of the last record and its string: events of one process come in runs.
	lastComm    [16]int8
	lastCommStr string
}

// payloadCopy returns a copy of p that the event owns: a slice of a shared block, its
// capacity cut to its length so that appending to it never reaches a neighbour.
func (d *recordParser) payloadCopy(p []byte) []byte {
	if len(p) > payloadChunkSize/4 {
		return bytes.Clone(p)
	}
	if len(p) > len(d.payloads) {
		d.payloads = make([]byte, payloadChunkSize)
	}
	c := d.payloads[:len(p):len(p)]
	copy(c, p)
	d.payloads = d.payloads[len(p):]
	return c
}

func (d *recordParser) comm(c *[16]int8) string {
	if *c != d.lastComm || d.lastCommStr == "" {
		d.lastComm, d.lastCommStr = *c, commString(c)
	}
	return d.lastCommStr
}

// parseRecord turns one ring buffer record into an Event. It reads the fixed layout in place
// (no reflection) and copies the payload, which the next record would overwrite.
func (t *Tracer) parseRecord(raw []byte) (Event, error) {
	if len(raw) < headerSize {
		return Event{}, fmt.Errorf("ring buffer record of %d bytes is shorter than the %d-byte event header", len(raw), headerSize)
	}
	h := (*discotraceDtEvent)(unsafe.Pointer(&raw[0]))
	if int(h.CapLen) > len(raw)-headerSize {
		return Event{}, fmt.Errorf("ring buffer record of %d bytes claims %d payload bytes", len(raw), h.CapLen)
	}
	ev := Event{
		Kind:     Kind(h.Kind),
		Time:     t.clock.wall(h.TimeNs),
		CgroupID: h.CgroupId,
		NetNS:    h.Netns,
		Ifindex:  h.Ifindex,
		Cookie:   h.Cookie,
		Src:      addrPort(h.Family, &h.Saddr, h.Sport),
		Dst:      addrPort(h.Family, &h.Daddr, h.Dport),
		Len:      int(h.Len),
	}
	flags := discotraceDtFlag(h.Flags)
	if flags&discotraceDtFlagDT_FLAG_PROC != 0 {
		ev.HasProc, ev.PID, ev.TID = true, h.Pid, h.Tid
		ev.Comm = t.parser.comm(&h.Comm)
	}
	if h.CapLen > 0 {
		ev.Payload = t.parser.payloadCopy(raw[headerSize : headerSize+int(h.CapLen)])
	}
	switch ev.Kind {
	case KindSend:
		if flags&discotraceDtFlagDT_FLAG_RET != 0 {
			ev.HasRet, ev.Ret = true, h.Ret
		}
	case KindRecv:
	case KindRead:
		if flags&discotraceDtFlagDT_FLAG_QUEUE_TIME != 0 {
			ev.HasQueueTime, ev.QueueTime = true, time.Duration(h.QueueNs)
		}
	case KindICMP:
		ev.ICMPType, ev.ICMPCode = h.IcmpType, h.IcmpCode
		switch discotraceDtIcmpDir(h.IcmpDir) {
		case discotraceDtIcmpDirDT_ICMP_IN:
			ev.ICMPDir = ICMPIn
		case discotraceDtIcmpDirDT_ICMP_OUT:
			ev.ICMPDir = ICMPOut
		}
		// The ICMP packet's own addresses carry no ports.
		ev.Src = netip.AddrPortFrom(ev.Src.Addr(), 0)
		ev.Dst = netip.AddrPortFrom(ev.Dst.Addr(), 0)
		ev.QuotedSrc = addrPort(h.QuotedFamily, &h.QuotedSaddr, h.QuotedSport)
		ev.QuotedDst = addrPort(h.QuotedFamily, &h.QuotedDaddr, h.QuotedDport)
		if flags&discotraceDtFlagDT_FLAG_NOTIFIED_KNOWN != 0 {
			ev.HasNotified = true
			ev.Notified = flags&discotraceDtFlagDT_FLAG_NOTIFIED != 0
		}
	case KindDrop:
		if flags&discotraceDtFlagDT_FLAG_REASON_INFERRED != 0 {
			ev.Reason, ev.ReasonInferred = inferredReason(h.Reason), true
		} else {
			ev.Reason = t.reasons.name(h.Reason)
		}
		ev.Location = t.symbols.name(h.Location)
	default:
		return Event{}, fmt.Errorf("ring buffer record of unknown kind %d", h.Kind)
	}
	return ev, nil
}

func addrPort(family uint8, a *[16]uint8, port uint16) netip.AddrPort {
	switch family {
	case 4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[:4])), port)
	case 6:
		return netip.AddrPortFrom(netip.AddrFrom16(*a), port)
	}
	return netip.AddrPort{}
}

func commString(c *[16]int8) string {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&c[0])), len(c))
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// monoClock converts the kernel's CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) to wall
// clock time, with the offset between the two clocks taken when the tracer opens.
type monoClock struct {
	wallAtZero time.Time
}

func newMonoClock() monoClock {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for CLOCK_MONOTONIC
	now := time.Now()
	return monoClock{wallAtZero: now.Add(-time.Duration(ts.Nano()))}
}

func (c monoClock) wall(mono uint64) time.Time {
	return c.wallAtZero.Add(time.Duration(mono))
}
