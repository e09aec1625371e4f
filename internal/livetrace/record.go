package livetrace

import (
	"net/netip"

	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/tracer"
)

// RecordOf turns a kernel event into the decoder's observation, the same shape a pcap
// gives, so that `trace` and `decode` print and decode alike.
func RecordOf(ev *tracer.Event) record.Record {
	r := record.Record{
		Time:    ev.Time,
		Src:     ev.Src,
		Dst:     ev.Dst,
		Len:     ev.Len,
		Payload: ev.Payload,
		HasProc: ev.HasProc,
		PID:     ev.PID,
		TID:     ev.TID,
		Comm:    ev.Comm,
		Cgroup:  ev.CgroupID,
		NetNS:   ev.NetNS,
		Ifindex: ev.Ifindex,
		Cookie:  ev.Cookie,
	}
	switch ev.Kind {
	case tracer.KindSend:
		r.Kind, r.Dir = record.Datagram, record.DirOut
		r.HasSendRet, r.SendRet = ev.HasRet, ev.Ret
		if r.FailedUnseen() && r.Dst.Addr().IsUnspecified() && r.Dst.Port() == 0 {
			r.Dst = netip.AddrPort{} // an unconnected socket's: the hook did not see it
		}
	case tracer.KindRecv:
		r.Kind, r.Dir = record.Datagram, record.DirIn
	case tracer.KindRead:
		r.Kind = record.Read
		r.HasQueueTime, r.QueueTime = ev.HasQueueTime, ev.QueueTime
	case tracer.KindICMP:
		r.Kind = record.ICMP
		switch ev.ICMPDir {
		case tracer.ICMPIn:
			r.Dir = record.DirIn
		case tracer.ICMPOut:
			r.Dir = record.DirOut
		}
		r.ICMPType, r.ICMPCode = ev.ICMPType, ev.ICMPCode
		r.QuotedSrc, r.QuotedDst = ev.QuotedSrc, ev.QuotedDst
		r.HasNotified, r.Notified = ev.HasNotified, ev.Notified
	case tracer.KindDrop:
		r.Kind = record.Drop
		r.Reason, r.ReasonInferred, r.Location = ev.Reason, ev.ReasonInferred, ev.Location
	case tracer.KindLost:
		r.Kind = record.Lost
		r.Count, r.Since = ev.Lost, ev.LostSince
	}
	return r
}
