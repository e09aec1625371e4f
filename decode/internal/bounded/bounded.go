// Package bounded is the one eviction policy of the decoder's state keyed by what the
// network chooses (addresses, node IDs, hashes): a count bound, and past it the oldest
// insertion is forgotten first. It costs O(1) per operation, needs no clock, and a flood
// of new keys can only push out old ones, never grow memory.
package bounded

// Map is a map that forgets its oldest insertions beyond max entries. Updating a key
// keeps its place; deleting a key leaves its slot in the ring, so a key deleted and
// added again may be forgotten earlier than strictly necessary, never later.
type Map[K comparable, V any] struct {
	m     map[K]V
	order []K // insertion ring
	next  int // the slot the next insertion overwrites once the ring is full
	max   int
}

// New returns a Map of at most max entries (max >= 1).
func New[K comparable, V any](max int) *Map[K, V] {
	return &Map[K, V]{m: make(map[K]V), max: max}
}

// Get returns the value of k.
func (b *Map[K, V]) Get(k K) (V, bool) {
	v, ok := b.m[k]
	return v, ok
}

// Put sets k to v, forgetting the oldest insertion when the map is full.
func (b *Map[K, V]) Put(k K, v V) {
	if _, ok := b.m[k]; ok {
		b.m[k] = v
		return
	}
	if len(b.order) < b.max {
		b.order = append(b.order, k)
	} else {
		delete(b.m, b.order[b.next])
		b.order[b.next] = k
		b.next = (b.next + 1) % b.max
	}
	b.m[k] = v
	if b.next == 0 && len(b.order) == b.max {
		b.compact()
	}
}

// compact copies the map into a new one sized for what it holds, once per turn of the
// ring. Go maps never shrink, and under a steady churn of new keys the deletions leave
// tombstones that make the table grow: without this, a full map of small entries takes
// about twice the memory it needs. O(max) once per max insertions.
func (b *Map[K, V]) compact() {
	m := make(map[K]V, len(b.m))
	for k, v := range b.m {
		m[k] = v
	}
	b.m = m
}

// Delete forgets k.
func (b *Map[K, V]) Delete(k K) { delete(b.m, k) }

// Len is the number of entries.
func (b *Map[K, V]) Len() int { return len(b.m) }

// All calls fn for each entry, in no order, until fn returns false. Deleting the
// current entry from fn is allowed.
func (b *Map[K, V]) All(fn func(K, V) bool) {
	for k, v := range b.m {
		if !fn(k, v) {
			return
		}
	}
}
