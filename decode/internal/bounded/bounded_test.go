package bounded

import "testing"

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

func TestMapStaysBoundedUnderAFloodOfNewKeys(t *testing.T) {
	m := New[uint64, struct{}](1000)
	for k := range uint64(1_000_000) {
		m.Put(k, struct{}{})
		if k%3 == 0 {
			m.Delete(k - 1)
		}
	}
	if m.Len() > 1000 || len(m.order) > 1000 {
		t.Fatalf("%d entries and a ring of %d after a flood, want at most 1000", m.Len(), len(m.order))
	}
}
