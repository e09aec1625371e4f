// Package bounded is the one eviction policy of the decoder's state keyed by what the
// network chooses (addresses, node IDs, hashes): a count bound, and past it the oldest
// insertion is forgotten first. It costs O(1) per operation, needs no clock, and a flood
// of new keys can only push out old ones, never grow memory.
package bounded

// Map is a map that forgets its oldest insertions beyond max entries. Updating a key
// keeps its place; deleting a key leaves its slot in the ring until its turn comes, and a
// key deleted and added again takes a new slot.
//
// The entries live in the insertion ring; the map only indexes them (key -> slot). A Go
// map full at a count bound such as 16,384 has twice as many slots as entries, and a
// slot of the index is the key and an int32, where a slot of a map[K]V would hold the
// value too.
type Map[K comparable, V any] struct {
	index map[K]int32
	ring  []entry[K, V] // insertion ring
	// dead marks the slots whose key was deleted: the index points to every other slot's
	// key, so forgetting it costs one map operation, not a lookup and a delete.
	dead []uint64
	next int // the slot the next insertion overwrites once the ring is full
	max  int
}

type entry[K comparable, V any] struct {
	k K
	v V
}

// New returns a Map of at most max entries (1 <= max <= 1<<31-1).
func New[K comparable, V any](max int) *Map[K, V] {
	return &Map[K, V]{index: make(map[K]int32), max: max}
}

// Get returns the value of k.
func (b *Map[K, V]) Get(k K) (V, bool) {
	if i, ok := b.index[k]; ok {
		return b.ring[i].v, true
	}
	var zero V
	return zero, false
}

// Put sets k to v, forgetting the oldest insertion when the map is full.
func (b *Map[K, V]) Put(k K, v V) { b.Swap(k, v) }

// Swap sets k to v as Put does, and returns k's value before and whether it had one:
// one lookup where Get and then Put take two.
func (b *Map[K, V]) Swap(k K, v V) (old V, had bool) {
	if i, ok := b.index[k]; ok {
		old, b.ring[i].v = b.ring[i].v, v
		return old, true
	}
	var i int
	if len(b.ring) < b.max {
		i = len(b.ring)
		b.ring = append(b.ring, entry[K, V]{})
		if i%64 == 0 {
			b.dead = append(b.dead, 0)
		}
	} else {
		i = b.next
		if b.isDead(i) {
			b.setDead(i, false)
		} else {
			delete(b.index, b.ring[i].k)
		}
		b.next = (b.next + 1) % b.max
	}
	b.ring[i] = entry[K, V]{k, v}
	b.index[k] = int32(i)
	if b.next == 0 && len(b.ring) == b.max {
		b.compact()
	}
	return old, false
}

func (b *Map[K, V]) isDead(i int) bool { return b.dead[i/64]&(1<<(i%64)) != 0 }

func (b *Map[K, V]) setDead(i int, dead bool) {
	if dead {
		b.dead[i/64] |= 1 << (i % 64)
	} else {
		b.dead[i/64] &^= 1 << (i % 64)
	}
}

// compact copies the index into a new map sized for what it holds, once per turn of the
// ring. Go maps never shrink, and under a steady churn of new keys the deletions leave
// tombstones that make the table grow: without this, a full map of small entries takes
// about twice the memory it needs. O(max) once per max insertions.
func (b *Map[K, V]) compact() {
	m := make(map[K]int32, len(b.index))
	for k, i := range b.index {
		m[k] = i
	}
	b.index = m
}

// Delete forgets k.
func (b *Map[K, V]) Delete(k K) {
	if i, ok := b.index[k]; ok {
		delete(b.index, k)
		b.ring[i] = entry[K, V]{} // nothing it points to is kept alive
		b.setDead(int(i), true)
	}
}

// Len is the number of entries.
func (b *Map[K, V]) Len() int { return len(b.index) }

// All calls fn for each entry, in no order, until fn returns false. Deleting the
// current entry from fn is allowed.
func (b *Map[K, V]) All(fn func(K, V) bool) {
	for k, i := range b.index {
		if !fn(k, b.ring[i].v) {
			return
		}
	}
}
