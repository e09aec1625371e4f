package ndjson

import (
	"strconv"
	"unicode/utf8"
)

// This file writes an Event as JSON by hand: encoding/json walks the struct by reflection
// and costs microseconds and several allocations per line, and the live tracer writes
// hundreds of thousands of lines a second. The output is byte for byte what
// encoding/json (SetEscapeHTML(false)) writes for the same Event: keys in field order,
// omitempty as it defines it. TestEncoderMatchesEncodingJSON checks every field, so a
// field added to event.go and not here fails it.

// appendEvent appends ev as one JSON object, without the newline.
func appendEvent(b []byte, ev *Event) []byte {
	// "v", "type" and "time" are never omitted, so every later key can lead with its comma.
	b = strconv.AppendInt(append(b, `{"v":`...), int64(ev.V), 10)
	b = appendString(append(b, `,"type":`...), ev.Type)
	b = appendString(append(b, `,"time":`...), ev.Time)
	b = appendUint(b, `,"seq":`, ev.Seq)

	b = appendStr(b, `,"src":`, ev.Src)
	b = appendStr(b, `,"dst":`, ev.Dst)
	b = appendIntPtr(b, `,"len":`, ev.Len)
	b = appendUintPtr(b, `,"pid":`, ev.PID)
	b = appendUintPtr(b, `,"tid":`, ev.TID)
	b = appendStr(b, `,"comm":`, ev.Comm)
	b = appendUint(b, `,"cgroup":`, ev.Cgroup)
	b = appendUint(b, `,"netns":`, ev.NetNS)
	b = appendUint(b, `,"ifindex":`, ev.Ifindex)
	b = appendUint(b, `,"cookie":`, ev.Cookie)
	b = appendIntPtr(b, `,"ret":`, ev.Ret)
	b = appendIntPtr(b, `,"queue_ns":`, ev.QueueNs)
	b = appendStr(b, `,"payload":`, ev.Payload)

	b = appendStr(b, `,"dir":`, ev.Dir)
	b = appendUintPtr(b, `,"icmp_type":`, ev.ICMPType)
	b = appendUintPtr(b, `,"icmp_code":`, ev.ICMPCode)
	b = appendStr(b, `,"quoted_src":`, ev.QuotedSrc)
	b = appendStr(b, `,"quoted_dst":`, ev.QuotedDst)
	if ev.Notified != nil {
		b = strconv.AppendBool(append(b, `,"notified":`...), *ev.Notified)
	}

	b = appendStr(b, `,"reason":`, ev.Reason)
	if ev.ReasonInferred != nil {
		b = strconv.AppendBool(append(b, `,"reason_inferred":`...), *ev.ReasonInferred)
	}
	b = appendStr(b, `,"location":`, ev.Location)

	b = appendUintPtr(b, `,"count":`, ev.Count)
	b = appendStr(b, `,"since":`, ev.Since)
	b = appendUintPtr(b, `,"undecoded":`, ev.Undecoded)
	b = appendUintPtr(b, `,"untracked":`, ev.Untracked)
	b = appendStr(b, `,"where":`, ev.Where)

	if ev.Disc != nil {
		b = appendDisc(append(b, `,"disc":`...), ev.Disc)
	}

	b = appendStr(b, `,"initiator":`, ev.Initiator)
	b = appendStr(b, `,"recipient":`, ev.Recipient)
	b = appendStr(b, `,"initiator_id":`, ev.InitiatorID)
	b = appendStr(b, `,"recipient_id":`, ev.RecipientID)
	b = appendStr(b, `,"req":`, ev.Req)
	b = appendStr(b, `,"resp":`, ev.Resp)
	b = appendStr(b, `,"outcome":`, ev.Outcome)
	b = appendStr(b, `,"cause":`, ev.Cause)
	b = appendInt(b, `,"attempts":`, ev.Attempts)
	b = appendIntPtr(b, `,"whoareyou_rtt_ns":`, ev.WhoareyouRTTNs)
	b = appendIntPtr(b, `,"handshake_rtt_ns":`, ev.HandshakeRTTNs)
	b = appendIntPtr(b, `,"total_ns":`, ev.TotalNs)
	b = appendIntPtr(b, `,"rtt_ns":`, ev.RTTNs)

	b = appendUint(b, `,"revises":`, ev.Revises)
	b = appendStr(b, `,"revises_type":`, ev.RevisesType)

	b = appendStr(b, `,"anomaly":`, ev.Anomaly)
	b = appendStr(b, `,"peer":`, ev.Peer)
	b = appendStr(b, `,"peer_id":`, ev.PeerID)
	b = appendIntPtr(b, `,"offset_ns":`, ev.OffsetNs)
	b = appendStr(b, `,"detail":`, ev.Detail)

	// omitempty leaves out an empty slice as well as a nil one.
	if len(ev.Evidence) > 0 {
		b = append(b, `,"evidence":[`...)
		for i := range ev.Evidence {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendEvidence(b, &ev.Evidence[i])
		}
		b = append(b, ']')
	}
	b = appendInt(b, `,"evidence_more":`, ev.EvidenceMore)
	return append(b, '}')
}

// appendDisc appends d as JSON: from what its Renderer kept when d was written before.
func appendDisc(b []byte, d *Disc) []byte {
	if c := d.encoded; c != nil {
		if c.valid {
			return append(b, c.json...)
		}
		start := len(b)
		b = appendDiscFields(b, d)
		c.json, c.valid = append(c.json[:0], b[start:]...), true
		return b
	}
	return appendDiscFields(b, d)
}

func appendDiscFields(b []byte, d *Disc) []byte {
	b = appendString(append(b, `{"proto":`...), d.Proto)
	b = appendStr(b, `,"kind":`, d.Kind)
	b = appendStr(b, `,"msg":`, d.Msg)
	b = appendStr(b, `,"req_id":`, d.ReqID)
	b = appendStr(b, `,"nonce":`, d.Nonce)
	b = appendStr(b, `,"src_id":`, d.SrcID)
	b = appendStr(b, `,"dst_id":`, d.DstID)
	b = appendUintPtr(b, `,"enr_seq":`, d.ENRSeq)
	b = appendIntPtr(b, `,"nodes":`, d.Nodes)
	b = appendStr(b, `,"from":`, d.From)
	b = appendStr(b, `,"to":`, d.To)
	b = appendStr(b, `,"expiration":`, d.Expiration)
	b = appendStr(b, `,"target":`, d.Target)
	if len(d.Distances) > 0 {
		b = append(b, `,"distances":[`...)
		for i, dist := range d.Distances {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(dist), 10)
		}
		b = append(b, ']')
	}
	b = appendStr(b, `,"talk_protocol":`, d.TalkProtocol)
	b = appendStr(b, `,"error":`, d.Error)
	return append(b, '}')
}

func appendEvidence(b []byte, e *Evidence) []byte {
	// Seq is the one key that can be omitted before the first always-present one.
	b = append(b, '{')
	if e.Seq != 0 {
		b = strconv.AppendUint(append(b, `"seq":`...), e.Seq, 10)
		b = append(b, ',')
	}
	b = appendString(append(b, `"time":`...), e.Time)
	b = appendString(append(b, `,"type":`...), e.Type)
	b = appendStr(b, `,"detail":`, e.Detail)
	return append(b, '}')
}

// The helpers below append key (",\"name\":") and the value, or nothing for what omitempty
// leaves out: "", 0 and nil.

func appendStr(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendString(append(b, key...), v)
}

func appendInt[T int | int64](b []byte, key string, v T) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), int64(v), 10)
}

func appendUint[T uint8 | uint32 | uint64](b []byte, key string, v T) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(append(b, key...), uint64(v), 10)
}

// A non-nil pointer is written even when it points to zero: that is what the pointer is for.
func appendIntPtr[T int | int64](b []byte, key string, p *T) []byte {
	if p == nil {
		return b
	}
	return strconv.AppendInt(append(b, key...), int64(*p), 10)
}

func appendUintPtr[T uint8 | uint32 | uint64](b []byte, key string, p *T) []byte {
	if p == nil {
		return b
	}
	return strconv.AppendUint(append(b, key...), uint64(*p), 10)
}

// appendString appends s as a JSON string exactly as encoding/json does without HTML
// escaping: '"' and '\\' escaped; control characters as \b \f \n \r \t where those
// exist, else \u00XX; invalid UTF-8 bytes as \ufffd each; U+2028 and U+2029 escaped
// (JavaScript reads them as line ends). Everything else, DEL included, is copied as is.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0 // s[start:i] is pending, to be copied in one append
	for i := 0; i < len(s); {
		if i+8 <= len(s) && plain8(s[i:i+8]) {
			i += 8
			continue
		}
		c := s[i]
		if copiedAsIs[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// plain8 reports whether appendString copies all 8 bytes of s unchanged, eight at a time
// (SWAR): no byte is 0x80 or above, below 0x20, '"' or '\\'. A byte that is zero after
// subtracting 1 (or 0x20) from each sets its top bit in (x - k) &^ x; as a test of any byte
// the borrow between bytes does not matter.
func plain8(s string) bool {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	quote, backslash := x^('"'*ones), x^('\\'*ones)
	ctl := (x - 0x20*ones) &^ x
	q := (quote - ones) &^ quote
	bs := (backslash - ones) &^ backslash
	return (x|ctl|q|bs)&tops == 0
}

// copiedAsIs tells, for each byte, if appendString copies it unchanged: printable ASCII
// but '"' and '\\'. One table load per byte is what makes the common case (hex, addresses) fast.
var copiedAsIs = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()
