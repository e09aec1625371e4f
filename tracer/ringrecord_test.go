package tracer

import (
	"bytes"
	"net/netip"
	"testing"
	"unsafe"
)

// record builds a ring buffer record: a header of kind from pid/comm with payload after it.
func record(kind discotraceDtKind, comm string, payload []byte) []byte {
	var h discotraceDtEvent
	h.Kind = uint8(kind)
	h.Family = 4
	copy(h.Saddr[:], []byte{127, 0, 0, 1})
	copy(h.Daddr[:], []byte{127, 0, 0, 2})
	h.Sport, h.Dport = 40000, 30303
	h.Len = uint16(len(payload))
	h.CapLen = uint16(len(payload))
	h.Pid, h.Tid = 42, 43
	h.Flags = uint8(discotraceDtFlagDT_FLAG_PROC)
	for i := range min(len(comm), len(h.Comm)-1) {
		h.Comm[i] = int8(comm[i])
	}
	raw := make([]byte, recordBufferSize)
	copy(raw, unsafe.Slice((*byte)(unsafe.Pointer(&h)), headerSize))
	copy(raw[headerSize:], payload)
	return raw[:headerSize+len(payload)]
}

// The parser reuses buffers across records: every event must still own its payload and
// comm, whatever later records and the consumer do.
func TestParsedEventOwnsPayloadAndComm(t *testing.T) {
	tr := &Tracer{clock: newMonoClock()}
	var evs []Event
	var want [][]byte
	for i := range 2000 { // more than one payload block
		p := bytes.Repeat([]byte{byte(i)}, 1+i%300)
		comm := "a"
		if i%3 == 0 {
			comm = "bb"
		}
		raw := record(discotraceDtKindDT_KIND_SEND, comm, p)
		ev, err := tr.parseRecord(raw)
		if err != nil {
			t.Fatal(err)
		}
		clear(raw) // the ring reader reuses its buffer
		if ev.Comm != comm || ev.PID != 42 || ev.Len != len(p) {
			t.Fatalf("event %d: comm %q pid %d len %d, want %q 42 %d", i, ev.Comm, ev.PID, ev.Len, comm, len(p))
		}
		if ev.Src != netip.MustParseAddrPort("127.0.0.1:40000") || ev.Dst != netip.MustParseAddrPort("127.0.0.2:30303") {
			t.Fatalf("event %d: %v -> %v", i, ev.Src, ev.Dst)
		}
		// A consumer appending to one payload must not change another's.
		_ = append(ev.Payload, 0xff, 0xff)
		evs = append(evs, ev)
		want = append(want, p)
	}
	for i, ev := range evs {
		if !bytes.Equal(ev.Payload, want[i]) {
			t.Fatalf("event %d: payload changed after later records: got % x, want % x", i, ev.Payload[:min(8, len(ev.Payload))], want[i][:min(8, len(want[i]))])
		}
	}
	big := bytes.Repeat([]byte{7}, MaxSnapLen)
	ev, err := tr.parseRecord(record(discotraceDtKindDT_KIND_RECV, "c", big))
	if err != nil || !bytes.Equal(ev.Payload, big) {
		t.Fatalf("snap-length payload: %v, %d bytes", err, len(ev.Payload))
	}
}

// BenchmarkParseRecord is what user space spends per event of a loopback exchange (a send,
// a recv and a read record).
func BenchmarkParseRecord(b *testing.B) {
	tr := &Tracer{clock: newMonoClock()}
	p := make([]byte, 256)
	raws := [][]byte{
		record(discotraceDtKindDT_KIND_SEND, "loopback", p),
		record(discotraceDtKindDT_KIND_RECV, "loopback", p),
		record(discotraceDtKindDT_KIND_READ, "loopback", nil),
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := tr.parseRecord(raws[i%3]); err != nil {
			b.Fatal(err)
		}
	}
}
