package textview

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/discotrace/discotrace/decode/result"
	"github.com/discotrace/discotrace/ndjson"
)

// Bounds of single fields, in runes, so that one long value (a decoder's detail, a
// location) cannot push the rest of its line off the width.
const (
	maxDetail   = 90
	maxError    = 90
	maxLocation = 40
)

// Widths of a datagram's size ("1280B") and packet kind ("HANDSHAKE FINDNODE").
const (
	lenWidth  = 5
	kindWidth = 18
)

// Markers in the column after the time: what a line says without colour.
const (
	markFailure = "!" // a failed handshake, exchange or send; an ICMP error; a drop; a loss
	markAnomaly = "~"
)

// render fills l with the line of ev.
func render(l *line, ev *ndjson.Event, loc *time.Location) {
	l.fixed(timeWidth, clock(ev.Time, loc))
	switch ev.Type {
	case ndjson.TypeSend, ndjson.TypeRecv, ndjson.TypeRead, ndjson.TypePacket:
		datagram(l, ev)
	case ndjson.TypeICMP:
		icmp(l, ev)
	case ndjson.TypeDrop:
		drop(l, ev)
	case ndjson.TypeLost, ndjson.TypeShed:
		lost(l, ev, loc)
	case ndjson.TypeHandshake:
		handshake(l, ev)
	case ndjson.TypeExchange:
		exchange(l, ev)
	case ndjson.TypeAnomaly:
		anomaly(l, ev)
	case ndjson.TypeRevision:
		revision(l, ev)
	default:
		// A type this view does not know yet (the schema only adds): say what there is.
		l.fixed(markWidth, "")
		l.fixed(typeWidth, ev.Type)
		l.fixed(endpointsWidth, endpoints(ev.Src, ev.Dst))
	}
}

// clock is an event's time of day, to the millisecond, in loc; the schema's text when it
// cannot be read.
func clock(s string, loc *time.Location) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.In(loc).Format("15:04:05.000")
}

// datagram is a send, recv, read or packet line: the datagram's endpoints, the node IDs
// and kind of the discovery packet it carried, and what the packet says.
func datagram(l *line, ev *ndjson.Event) {
	failed := ev.Ret != nil && *ev.Ret < 0
	mark(l, failed, markFailure, failure)
	l.fixed(typeWidth, ev.Type)
	l.fixed(endpointsWidth, endpoints(ev.Src, ev.Dst))
	d := ev.Disc
	if d != nil {
		l.fixed(idsWidth, ids(d.SrcID, d.DstID))
	} else {
		l.fixed(idsWidth, "")
	}
	size := ""
	if ev.Len != nil {
		size = strconv.Itoa(*ev.Len) + "B"
	}
	l.fixed(lenWidth, size)
	if d != nil {
		l.fixed(kindWidth, kind(d))
	} else if ev.Type != ndjson.TypeRead {
		l.fixed(kindWidth, "(not decoded)")
	}
	if failed {
		s := "send failed: " + strconv.FormatInt(*ev.Ret, 10)
		if name := unix.ErrnoName(syscall.Errno(-*ev.Ret)); name != "" {
			s += " " + name
		}
		l.styled(s, failure)
		l.text(" ")
	}
	var extra []string
	if ev.QueueNs != nil {
		extra = append(extra, "queued "+Duration(*ev.QueueNs))
	}
	if d != nil {
		extra = append(extra, discFields(d)...)
	}
	if ev.Comm != "" || ev.PID != nil {
		extra = append(extra, process(ev))
	}
	l.text(strings.Join(extra, " "))
	if failed {
		return
	}
	if d != nil && d.Error != "" {
		if len(extra) > 0 {
			l.text(" ")
		}
		l.styled("("+clip(d.Error, maxError)+")", faint)
	}
}

// kind names a discovery packet as operators know it: PING/v4; WHOAREYOU; MESSAGE
// FINDNODE (the decrypted message of a discv5 packet, "?" when it could not be decrypted).
func kind(d *ndjson.Disc) string {
	switch d.Proto {
	case "discv4":
		if d.Kind == "" {
			return "discv4 ?"
		}
		return d.Kind + "/v4"
	case "discv5":
		switch d.Kind {
		case "WHOAREYOU":
			return d.Kind
		case "":
			return "discv5 ?"
		}
		msg := strings.TrimSuffix(d.Msg, "/v5")
		if msg == "" {
			msg = "?"
		}
		return d.Kind + " " + msg
	}
	return d.Proto
}

// discFields are what a packet names, as key=value: the ENR sequence, the request ID
// (short), a PONG's view of our address, a FINDNODE's target or distances, a NODES' count.
func discFields(d *ndjson.Disc) []string {
	var f []string
	if d.ReqID != "" {
		f = append(f, "req="+short(d.ReqID))
	}
	if d.ENRSeq != nil {
		f = append(f, "enr="+strconv.FormatUint(*d.ENRSeq, 10))
	}
	if d.Nodes != nil {
		f = append(f, "nodes="+strconv.Itoa(*d.Nodes))
	}
	if d.Target != "" {
		f = append(f, "target="+short(d.Target))
	}
	if len(d.Distances) > 0 {
		f = append(f, "dist="+distances(d.Distances))
	}
	if d.TalkProtocol != "" {
		f = append(f, "talk="+clip(d.TalkProtocol, 20))
	}
	// A PONG's "to" is where the peer saw the request come from: behind a NAT, not the
	// address we sent from, which is worth seeing.
	if d.To != "" && (d.Kind == "PONG" || strings.HasPrefix(d.Msg, "PONG")) {
		f = append(f, "seen-as="+d.To)
	}
	return f
}

// distances lists a FINDNODE's distances, the first few of them.
func distances(ds []uint) string {
	const show = 4
	parts := make([]string, 0, show+1)
	for i, d := range ds {
		if i == show {
			parts = append(parts, fmt.Sprintf("+%d", len(ds)-show))
			break
		}
		parts = append(parts, strconv.FormatUint(uint64(d), 10))
	}
	return strings.Join(parts, ",")
}

// process names the sending or reading process: comm[pid].
func process(ev *ndjson.Event) string {
	s := ev.Comm
	if s == "" {
		s = "?"
	}
	if ev.PID != nil {
		s += "[" + strconv.FormatUint(uint64(*ev.PID), 10) + "]"
	}
	return s
}

// icmp is an ICMP error line: the datagram it quotes as the endpoints, then the error,
// who sent it and whether the socket was told.
func icmp(l *line, ev *ndjson.Event) {
	mark(l, true, markFailure, failure)
	l.fixed(typeWidth, ev.Type)
	l.fixed(endpointsWidth, endpoints(ev.QuotedSrc, ev.QuotedDst))
	l.fixed(idsWidth, "")
	var what string
	if ev.ICMPType != nil && ev.ICMPCode != nil {
		what = fmt.Sprintf("%d/%d", *ev.ICMPType, *ev.ICMPCode)
		if name := icmpName(ev); name != "" {
			what += " " + name
		}
	}
	l.styled(what, failure)
	if from := host(ev.Src); from != "" {
		l.text(" from " + from)
	}
	switch ev.Dir {
	case "in":
		l.text(" (received by this host)")
	case "out":
		l.text(" (sent by this host)")
	}
	if ev.Notified != nil {
		if *ev.Notified {
			l.text(", the socket was told")
		} else {
			l.text(", the socket was not told: the application sees a timeout")
		}
	}
}

// icmpName names the ICMP errors that quote UDP datagrams.
func icmpName(ev *ndjson.Event) string {
	v6 := strings.HasPrefix(ev.Src, "[") || strings.HasPrefix(ev.QuotedSrc, "[")
	return result.ICMPName(v6, *ev.ICMPType, *ev.ICMPCode)
}

// drop is a line for a datagram (or fragment) the kernel freed, with the kernel's reason.
func drop(l *line, ev *ndjson.Event) {
	mark(l, true, markFailure, failure)
	l.fixed(typeWidth, ev.Type)
	l.fixed(endpointsWidth, endpoints(ev.Src, ev.Dst))
	l.fixed(idsWidth, "")
	size := ""
	if ev.Len != nil {
		size = strconv.Itoa(*ev.Len) + "B"
	}
	l.fixed(lenWidth, size)
	l.styled(ev.Reason, failure)
	if ev.Location != "" {
		l.text(" in " + clip(ev.Location, maxLocation))
	}
}

// lost is a line for what was not seen: events the kernel could not deliver (lost), or
// records the decoder dropped, left undecoded or did not follow (shed). Such a line stands
// out whole: it says that other lines are missing.
func lost(l *line, ev *ndjson.Event, loc *time.Location) {
	l.whole = loss
	l.fixed(markWidth, markFailure)
	l.fixed(typeWidth, strings.ToUpper(ev.Type))
	var parts []string
	if ev.Type == ndjson.TypeLost {
		if ev.Count != nil {
			parts = append(parts, fmt.Sprintf("%d kernel events not seen (the ring buffer was full)", *ev.Count))
		}
	} else {
		if ev.Count != nil && *ev.Count > 0 {
			parts = append(parts, fmt.Sprintf("%d records dropped unseen", *ev.Count))
		}
		if ev.Undecoded != nil && *ev.Undecoded > 0 {
			parts = append(parts, fmt.Sprintf("%d datagrams shown undecoded", *ev.Undecoded))
		}
		if ev.Untracked != nil && *ev.Untracked > 0 {
			parts = append(parts, fmt.Sprintf("%d requests not followed into exchanges", *ev.Untracked))
		}
		if len(parts) == 0 {
			parts = append(parts, "nothing")
		}
		parts[0] = "decoding fell behind: " + parts[0]
	}
	s := strings.Join(parts, ", ")
	if ev.Since != "" {
		s += " since " + clock(ev.Since, loc)
	}
	l.text(s)
}

// handshake is a discv5 handshake's line: outcome and round trips, or the cause of its
// failure and its best evidence.
func handshake(l *line, ev *ndjson.Event) {
	failed := ev.Outcome == "failed"
	mark(l, failed, markFailure, failure)
	l.fixed(typeWidth, ev.Type)
	l.fixed(endpointsWidth, endpoints(ev.Initiator, ev.Recipient))
	l.fixed(idsWidth, ids(ev.InitiatorID, ev.RecipientID))
	outcome(l, ev, ev.TotalNs)
	var steps []string
	if ev.WhoareyouRTTNs != nil {
		steps = append(steps, "WHOAREYOU "+Duration(*ev.WhoareyouRTTNs))
	}
	if ev.HandshakeRTTNs != nil {
		steps = append(steps, "HANDSHAKE "+Duration(*ev.HandshakeRTTNs))
	}
	if len(steps) > 0 {
		l.text(" (" + strings.Join(steps, ", ") + ")")
	}
	if ev.Attempts > 1 {
		l.text(fmt.Sprintf(" %d challenges", ev.Attempts))
	}
	bestEvidence(l, ev)
}

// exchange is a request's line: request > response, outcome and round trip, or the cause
// of its failure and its best evidence.
func exchange(l *line, ev *ndjson.Event) {
	failed := ev.Outcome == "failed"
	mark(l, failed, markFailure, failure)
	l.fixed(typeWidth, ev.Type)
	l.fixed(endpointsWidth, endpoints(ev.Initiator, ev.Recipient))
	l.fixed(idsWidth, ids(ev.InitiatorID, ev.RecipientID))
	pair := ev.Req
	if ev.Resp != "" {
		pair += " > " + ev.Resp
	}
	l.fixed(pairWidth, pair)
	outcome(l, ev, ev.RTTNs)
	if ev.Attempts > 1 {
		l.text(fmt.Sprintf(" %d attempts", ev.Attempts))
	}
	bestEvidence(l, ev)
}

// pairWidth fits the longest pair, "ENRREQUEST/v4 > ENRRESPONSE/v4".
const pairWidth = 30

// outcome writes a handshake's or exchange's outcome: "answered 262µs", "FAILED
// icmp_unreachable", "open" (the input ended first).
func outcome(l *line, ev *ndjson.Event, d *int64) {
	switch ev.Outcome {
	case "failed":
		s := "FAILED"
		if ev.Cause != "" {
			s += " " + ev.Cause
		}
		l.styled(s, failure)
		if d != nil {
			l.text(" after " + Duration(*d))
		}
	default:
		st := plain
		if ev.Outcome == "answered" || ev.Outcome == "established" {
			st = good
		}
		l.styled(ev.Outcome, st)
		if d != nil {
			l.text(" " + Duration(*d))
		}
	}
}

// bestEvidence adds, to a failed handshake or exchange, the observation that best
// supports its cause ("#10 icmp 3/3 port unreachable ..."), and how many more there are.
func bestEvidence(l *line, ev *ndjson.Event) {
	if ev.Outcome != "failed" || len(ev.Evidence) == 0 {
		return
	}
	l.text(evidenceText(ev.Evidence[best(ev.Cause, ev.Evidence)], len(ev.Evidence)-1+ev.EvidenceMore))
}

// evidenceText shows one evidence item, " | #seq (+more) detail": the cited event, how
// many other items there are, and the detail last, as it is what the width cuts.
func evidenceText(e ndjson.Evidence, more int) string {
	s := " |"
	if e.Seq > 0 {
		s += " #" + strconv.FormatUint(e.Seq, 10)
	}
	if more > 0 {
		s += fmt.Sprintf(" (+%d more)", more)
	}
	detail := e.Detail
	if detail == "" {
		detail = e.Type
	}
	return s + " " + clip(detail, maxDetail)
}

// best picks the evidence item that shows the cause: the network observation (ICMP
// error, drop) behind a network cause, the application's read behind app_drop, a loss
// report behind no_response (the tracer may have missed the answer), else the last item:
// the decoder lists what was sent first and what decided the cause after it.
func best(cause string, list []ndjson.Evidence) int {
	var want []string
	switch cause {
	case "icmp_unreachable":
		want = []string{ndjson.TypeICMP}
	case "kernel_drop":
		want = []string{ndjson.TypeDrop}
	case "fragment_loss":
		want = []string{ndjson.TypeDrop, ndjson.TypeICMP}
	case "app_drop":
		want = []string{ndjson.TypeRead}
	case "no_response":
		want = []string{ndjson.TypeLost, ndjson.TypeShed, ndjson.TypeHandshake}
	}
	for _, w := range want {
		for i, e := range list {
			if e.Type == w {
				return i
			}
		}
	}
	return len(list) - 1
}

// anomaly is a line for something wrong that is not one failure: what, the peer, the
// decoder's detail.
func anomaly(l *line, ev *ndjson.Event) {
	mark(l, true, markAnomaly, warning)
	l.fixed(typeWidth, ev.Type)
	l.fixed(endpointsWidth, ev.Peer)
	l.fixed(idsWidth, short(ev.PeerID))
	s := ev.Anomaly
	if ev.OffsetNs != nil {
		s += " " + signedDuration(*ev.OffsetNs)
	}
	l.styled(s, warning)
	if ev.Detail != "" {
		l.text(": " + clip(ev.Detail, maxDetail))
	}
	if n := len(ev.Evidence); n > 0 {
		l.text(evidenceText(ev.Evidence[0], n-1))
	}
}

// revision writes a revised cause: "#12 exchange now FAILED fragment_loss | evidence".
func revision(l *line, ev *ndjson.Event) {
	mark(l, true, markFailure, failure)
	l.fixed(typeWidth, ev.Type)
	l.fixed(endpointsWidth, endpoints(ev.Initiator, ev.Recipient))
	l.fixed(idsWidth, "")
	l.text(fmt.Sprintf("#%d %s now ", ev.Revises, ev.RevisesType))
	l.styled("FAILED "+ev.Cause, failure)
	if n := len(ev.Evidence); n > 0 {
		l.text(evidenceText(ev.Evidence[0], n-1))
	}
}

// mark writes the marker column: marker (styled st) when on, else blank.
func mark(l *line, on bool, marker string, st style) {
	if on {
		l.fixedStyled(markWidth, marker, st)
	} else {
		l.fixed(markWidth, "")
	}
}

// endpoints is "src > dst", or the one that is known.
func endpoints(src, dst string) string {
	switch {
	case src == "" && dst == "":
		return ""
	case src == "":
		return "? > " + dst
	case dst == "":
		return src + " > ?"
	}
	return src + " > " + dst
}

// ids is "src > dst" with each node ID shortened, or the one that is known.
func ids(src, dst string) string {
	switch {
	case src == "" && dst == "":
		return ""
	case dst == "":
		return short(src)
	case src == "":
		return "? > " + short(dst)
	}
	return short(src) + " > " + short(dst)
}

// short is a node ID (or any hex) as geth logs it: its first 8 hex characters.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// host is an address without its port (the sender of an ICMP error has none that matters).
func host(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		return strings.TrimSuffix(strings.TrimPrefix(addr[:i], "["), "]")
	}
	return addr
}

// Duration formats a span given in nanoseconds for people, with three significant digits
// or so, never in ns: "0.4µs", "262µs", "5.26ms", "312ms", "1.25s", "2m5s". Each range
// ends half a unit of its rounding early, so that 999.7µs reads 1.00ms, not 1000µs.
func Duration(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < 0:
		return "-" + Duration(-ns)
	case d < 10*time.Microsecond-50:
		return decimal(float64(d)/1e3, 1) + "µs"
	case d < time.Millisecond-500:
		return decimal(float64(d)/1e3, 0) + "µs"
	case d < 10*time.Millisecond-5*time.Microsecond:
		return decimal(float64(d)/1e6, 2) + "ms"
	case d < time.Second-500*time.Microsecond:
		return decimal(float64(d)/1e6, 0) + "ms"
	case d < time.Minute-5*time.Millisecond:
		return decimal(float64(d)/1e9, 2) + "s"
	}
	return d.Round(time.Second).String()
}

// decimal writes v with prec decimals, halves rounded away from zero (as
// time.Duration.Round does; strconv would round 38.5 to even, 38).
func decimal(v float64, prec int) string {
	scale := math.Pow10(prec)
	return strconv.FormatFloat(math.Round(v*scale)/scale, 'f', prec, 64)
}

// signedDuration is Duration with its sign always shown (a clock offset).
func signedDuration(ns int64) string {
	if ns >= 0 {
		return "+" + Duration(ns)
	}
	return Duration(ns)
}
