// Package queue is the ordered slice the in-process traffic indexes keep
// their entries in (memstore's items, the bolt store's segment index):
// sorted by an int64 key, appended at the end and removed mostly from the
// front, as traffic is captured and evicted.
package queue

import (
	"cmp"
	"slices"
)

// Queue is a slice of entries whose live part is buf[off:]. Removing the
// first entry (the common case: eviction of the oldest) only advances off;
// the dead prefix is compacted away once it is as long as the live part,
// and the backing array is reallocated when it is mostly empty, so the
// slots held stay within a small factor of the live entries. The zero
// value is an empty queue.
type Queue[E any] struct {
	buf []E
	off int
}

// minCap is the capacity below which a queue is never shrunk.
const minCap = 64

// Live returns the entries, in order; the slice is valid until the next
// change.
func (q *Queue[E]) Live() []E { return q.buf[q.off:] }

// Len returns the number of entries.
func (q *Queue[E]) Len() int { return len(q.buf) - q.off }

// At returns the entry at position i.
func (q *Queue[E]) At(i int) E { return q.buf[q.off+i] }

// Search finds the position of key in a queue sorted by key(entry), as
// slices.BinarySearch does.
func (q *Queue[E]) Search(k int64, key func(E) int64) (int, bool) {
	l := q.Live()
	// The usual cases first: appending the newest, evicting the oldest.
	if n := len(l); n == 0 || key(l[n-1]) < k {
		return n, false
	}
	if key(l[0]) == k {
		return 0, true
	}
	return slices.BinarySearchFunc(l, k, func(e E, k int64) int {
		return cmp.Compare(key(e), k)
	})
}

// Insert puts e at position i; appending (i == Len) is the fast path.
func (q *Queue[E]) Insert(i int, e E) {
	if i == q.Len() {
		q.buf = append(q.buf, e)
		return
	}
	q.buf = slices.Insert(q.buf, q.off+i, e)
}

// Remove drops the entry at position i.
func (q *Queue[E]) Remove(i int) {
	if i == 0 {
		var zero E
		q.buf[q.off] = zero
		q.off++
	} else {
		q.buf = slices.Delete(q.buf, q.off+i, q.off+i+1) // zeroes the freed slot
	}
	n := q.Len()
	switch {
	case n == 0:
		q.buf, q.off = nil, 0
	case cap(q.buf) > minCap && n < cap(q.buf)/4:
		nb := make([]E, n, 2*n)
		copy(nb, q.Live())
		q.buf, q.off = nb, 0
	case q.off >= n:
		copy(q.buf, q.Live())
		clear(q.buf[n:])
		q.buf, q.off = q.buf[:n], 0
	}
}

// Cap returns the number of slots held, for tests of the bound above.
func (q *Queue[E]) Cap() int { return cap(q.buf) }
