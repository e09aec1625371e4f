package decode

import (
	"encoding/hex"

	"github.com/discotrace/discotrace/decode/record"
	"github.com/discotrace/discotrace/ndjson"
)

// RecordEvent is the event a record shows as on its own, before any protocol decoding:
// what `discotrace trace --raw` prints, and the base the decoder adds "disc" to.
// withPayload adds the captured payload bytes, hex.
func RecordEvent(r *record.Record, withPayload bool) *ndjson.Event {
	ev := &ndjson.Event{Time: ndjson.Time(r.Time)}
	switch r.Kind {
	case record.Datagram:
		switch r.Dir {
		case record.DirOut:
			ev.Type = ndjson.TypeSend
		case record.DirIn:
			ev.Type = ndjson.TypeRecv
		default:
			ev.Type = ndjson.TypePacket
		}
	case record.Read:
		ev.Type = ndjson.TypeRead
		if r.HasQueueTime {
			ev.QueueNs = ndjson.Ptr(int64(r.QueueTime))
		}
	case record.ICMP:
		ev.Type = ndjson.TypeICMP
		ev.ICMPType, ev.ICMPCode = ndjson.Ptr(r.ICMPType), ndjson.Ptr(r.ICMPCode)
		ev.QuotedSrc, ev.QuotedDst = ndjson.Addr(r.QuotedSrc), ndjson.Addr(r.QuotedDst)
		switch r.Dir {
		case record.DirIn:
			ev.Dir = "in"
		case record.DirOut:
			ev.Dir = "out"
		}
		if r.HasNotified {
			ev.Notified = ndjson.Ptr(r.Notified)
		}
	case record.Drop:
		ev.Type = ndjson.TypeDrop
		ev.Reason, ev.Location = r.Reason, r.Location
	case record.Lost, record.Shed:
		ev.Type = ndjson.TypeLost
		ev.Count = ndjson.Ptr(r.Count)
		if !r.Since.IsZero() {
			ev.Since = ndjson.Time(r.Since)
		}
		if r.Kind == record.Shed {
			ev.Type = ndjson.TypeShed
			ev.Undecoded = ndjson.Ptr(r.Undecoded)
		}
		return ev
	}
	ev.Src, ev.Dst = ndjson.Addr(r.Src), ndjson.Addr(r.Dst)
	if r.Kind == record.Datagram || r.Kind == record.Read || r.Len > 0 {
		ev.Len = ndjson.Ptr(r.Len)
	}
	if r.HasProc {
		ev.PID, ev.TID, ev.Comm = ndjson.Ptr(r.PID), ndjson.Ptr(r.TID), r.Comm
	}
	ev.Cgroup, ev.NetNS, ev.Ifindex, ev.Cookie = r.Cgroup, r.NetNS, r.Ifindex, r.Cookie
	if r.HasSendRet {
		ev.Ret = ndjson.Ptr(r.SendRet)
	}
	if withPayload && len(r.Payload) > 0 {
		ev.Payload = hex.EncodeToString(r.Payload)
	}
	return ev
}
