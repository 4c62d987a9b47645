package capture

import (
	"testing"
	"time"
)

// Ids sort by the millisecond they were made in, and do not repeat.
func TestNewIDOrderedAndUnique(t *testing.T) {
	seen := make(map[string]bool)
	prev := NewID()
	if len(prev) != 28 {
		t.Fatalf("NewID() = %q: want 28 hex digits", prev)
	}
	for i := range 100_000 {
		if i%20_000 == 0 {
			time.Sleep(2 * time.Millisecond) // a later millisecond sorts later
			id := NewID()
			if id <= prev {
				t.Fatalf("%q made after %q sorts before it", id, prev)
			}
			prev = id
		}
		id := NewID()
		if seen[id] {
			t.Fatalf("id %q repeated", id)
		}
		seen[id] = true
	}
}
