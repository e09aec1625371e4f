package bounded

import (
	"encoding/binary"
	"runtime"
	"testing"
)

func TestMapForgetsOldestInsertionFirst(t *testing.T) {
	m := New[int, string](3)
	m.Put(1, "a")
	m.Put(2, "b")
	m.Put(3, "c")
	m.Put(2, "B") // an update keeps its place
	m.Put(4, "d") // forgets 1, the oldest insertion
	if _, ok := m.Get(1); ok {
		t.Error("1 is still there after a fourth insertion into a map of 3")
	}
	for k, want := range map[int]string{2: "B", 3: "c", 4: "d"} {
		if v, ok := m.Get(k); !ok || v != want {
			t.Errorf("Get(%d) = %q, %v; want %q", k, v, ok, want)
		}
	}
	m.Delete(3)
	m.Put(5, "e") // the ring slot of 2 goes next
	m.Put(6, "f")
	if m.Len() > 3 {
		t.Errorf("Len %d after deletions and insertions, want at most 3", m.Len())
	}
	if _, ok := m.Get(2); ok {
		t.Error("2 survived two insertions after it became the oldest")
	}
}

func TestMapKeyAddedAgainLivesItsTurn(t *testing.T) {
	m := New[int, string](3)
	m.Put(1, "a")
	m.Put(2, "b")
	m.Delete(1)
	m.Put(1, "A") // a new slot, the newest
	m.Put(3, "c") // takes the deleted slot: the 1 added again stays
	if old, had := m.Swap(1, "A2"); !had || old != "A" {
		t.Errorf("Swap(1) = %q, %v; want \"A\", true", old, had)
	}
	if old, had := m.Swap(4, "d"); had || old != "" { // forgets 2, the oldest
		t.Errorf("Swap of a new key = %q, %v; want \"\", false", old, had)
	}
	if _, ok := m.Get(2); ok {
		t.Error("2 is still there")
	}
	for k, want := range map[int]string{1: "A2", 3: "c", 4: "d"} {
		if v, ok := m.Get(k); !ok || v != want {
			t.Errorf("Get(%d) = %q, %v; want %q", k, v, ok, want)
		}
	}
}

func TestMapStaysBoundedUnderAFloodOfNewKeys(t *testing.T) {
	m := New[uint64, struct{}](1000)
	for k := range uint64(1_000_000) {
		m.Put(k, struct{}{})
		if k%3 == 0 {
			m.Delete(k - 1)
		}
	}
	if m.Len() > 1000 || len(m.ring) > 1000 {
		t.Fatalf("%d entries and a ring of %d after a flood, want at most 1000", m.Len(), len(m.ring))
	}
}

func TestMapMemoryStaysFlatUnderChurn(t *testing.T) {
	// A flood of new keys (nonces, spoofed addresses) through a full map.
	type value struct{ a, b [32]byte }
	const max = 16384
	m := New[[12]byte, value](max)
	key := func(i uint32) (k [12]byte) {
		binary.LittleEndian.PutUint32(k[:], i)
		return k
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for i := range uint32(max) {
		m.Put(key(i), value{})
	}
	full := heap()
	for i := uint32(max); i < 120*max; i++ {
		m.Put(key(i), value{})
	}
	after := heap()
	// Grown by deletions' tombstones, the table doubles: over 2 MiB more here.
	if after > full+max*32 {
		t.Errorf("heap grew from %d to %d bytes over 119 turns of a full map of %d entries", full, after, max)
	}
	runtime.KeepAlive(m)
}
