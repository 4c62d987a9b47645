package queue

import (
	"math/rand/v2"
	"slices"
	"testing"
)

type entry struct{ k int64 }

func key(e *entry) int64 { return e.k }

// check compares q with the model and verifies that no dead or spare slot
// keeps an entry alive and that the slots stay within a small factor of
// the entries.
func check(t *testing.T, q *Queue[*entry], model []int64) {
	t.Helper()
	got := make([]int64, 0, q.Len())
	for _, e := range q.Live() {
		got = append(got, e.k)
	}
	if !slices.Equal(got, model) {
		t.Fatalf("queue %v, want %v", got, model)
	}
	for i, e := range q.buf[:q.off] {
		if e != nil {
			t.Fatalf("dead slot %d still holds an entry", i)
		}
	}
	for i, e := range q.buf[len(q.buf):cap(q.buf)] {
		if e != nil {
			t.Fatalf("spare slot %d still holds an entry", i)
		}
	}
	// Growth by append may round up past 4x; 5x is the test's margin.
	if limit := minCap + 5*q.Len(); q.Cap() > limit {
		t.Fatalf("%d slots for %d entries", q.Cap(), q.Len())
	}
}

func TestQueueAgainstSortedSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var q Queue[*entry]
	var model []int64
	for step := range 20000 {
		switch r := rng.IntN(10); {
		case r < 5: // insert a key, mostly the newest
			k := int64(step)
			if r == 0 {
				k = rng.Int64N(int64(step) + 1)
			}
			i, found := q.Search(k, key)
			j, mfound := slices.BinarySearch(model, k)
			if i != j || found != mfound {
				t.Fatalf("Search(%d) = %d %v, want %d %v", k, i, found, j, mfound)
			}
			if !found {
				q.Insert(i, &entry{k})
				model = slices.Insert(model, i, k)
			}
		case r < 9 && q.Len() > 0: // remove, mostly the oldest
			i := 0
			if r == 8 {
				i = rng.IntN(q.Len())
			}
			if q.At(i).k != model[i] {
				t.Fatalf("At(%d) = %d, want %d", i, q.At(i).k, model[i])
			}
			q.Remove(i)
			model = slices.Delete(model, i, i+1)
		}
		if step%97 == 0 {
			check(t, &q, model)
		}
	}
	for q.Len() > 0 {
		q.Remove(0)
		model = model[1:]
	}
	check(t, &q, model)
}
