package memstore

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/queue"
	"github.com/proxyctl/proxyctl/internal/store/storetest"
)

func item(session string, ts int64, body int) *capture.Item {
	return &capture.Item{
		SessionID:    session,
		Timestamp:    ts,
		ID:           fmt.Sprintf("%s-%d", session, ts),
		Kind:         capture.KindHTTP,
		Method:       "GET",
		Path:         "/",
		ResponseBody: capture.NewBody(make([]byte, body)),
	}
}

var appendAll = storetest.Append

// listed is the timestamps of session's items in s.
func listed(t *testing.T, s *Store, session string) []int64 {
	t.Helper()
	return storetest.Timestamps(t, s, session, 0)
}

// checkInvariants verifies that order, the session indexes and byID hold
// the same entries, that the indexes are sorted, that the byte total is
// right, that the bounds hold and that no queue holds many more slots than
// entries.
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	tr := &s.traffic
	tr.mu.RLock()
	defer tr.mu.RUnlock()
	if n := tr.order.Len(); n > tr.maxItems {
		t.Errorf("%d items stored, bound %d", n, tr.maxItems)
	}
	if tr.bytes > tr.maxBytes {
		t.Errorf("%d bytes stored, bound %d", tr.bytes, tr.maxBytes)
	}
	checkQueue(t, "order", &tr.order)
	var sum int64
	inOrder := make(map[*entry]bool, tr.order.Len())
	for _, e := range tr.order.Live() {
		if e == nil || inOrder[e] {
			t.Fatalf("order holds a nil or repeated entry")
		}
		inOrder[e] = true
		sum += e.size
		if e.size != itemSize(&e.item) {
			t.Errorf("entry %s: size %d, want %d", e.item.ID, e.size, itemSize(&e.item))
		}
	}
	if sum != tr.bytes {
		t.Errorf("byte total %d, entries sum to %d", tr.bytes, sum)
	}
	indexed := 0
	for session, q := range tr.bySession {
		checkQueue(t, "session "+session, q)
		if q.Len() == 0 {
			t.Errorf("session %s: empty index kept", session)
		}
		for i, e := range q.Live() {
			if !inOrder[e] || e.item.SessionID != session {
				t.Fatalf("session %s: entry %s not in order or in the wrong session", session, e.item.ID)
			}
			if i > 0 && q.At(i-1).item.Timestamp >= e.item.Timestamp {
				t.Fatalf("session %s: index not strictly sorted at %d", session, i)
			}
		}
		indexed += q.Len()
	}
	if indexed != tr.order.Len() {
		t.Errorf("session indexes hold %d entries, order %d", indexed, tr.order.Len())
	}
	if len(tr.byID) != tr.order.Len() {
		t.Errorf("byID holds %d entries, order %d", len(tr.byID), tr.order.Len())
	}
	for k, e := range tr.byID {
		if !inOrder[e] || k.session != e.item.SessionID || k.id != e.item.ID {
			t.Fatalf("byID[%v] is stale", k)
		}
	}
}

func checkQueue(t *testing.T, name string, q *queue.Queue[*entry]) {
	t.Helper()
	// Growth by append may round up past 4x; 5x is the test's margin.
	if limit := 64 + 5*q.Len(); q.Cap() > limit {
		t.Errorf("%s: %d slots for %d entries", name, q.Cap(), q.Len())
	}
}

func TestTrafficEvictsOldestByCount(t *testing.T) {
	s := NewWithOptions(Options{MaxTrafficItems: 3})
	// Global insertion order across sessions decides, not timestamps: a-100
	// goes first although a-50 is older.
	appendAll(t, s, item("a", 100, 0), item("b", 1, 0), item("a", 50, 0))
	checkInvariants(t, s)
	appendAll(t, s, item("b", 2, 0))
	if got := listed(t, s, "a"); !slices.Equal(got, []int64{50}) {
		t.Errorf("session a: %v, want [50]", got)
	}
	if _, err := s.GetTraffic(t.Context(), "a", "a-100"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("evicted item: got %v, want ErrNotFound", err)
	}
	checkInvariants(t, s)
	// Overwriting keeps the item's place: b-1 is still the oldest.
	appendAll(t, s, item("b", 1, 0))
	appendAll(t, s, item("c", 1, 0))
	if got := listed(t, s, "b"); !slices.Equal(got, []int64{2}) {
		t.Errorf("session b: %v, want [2]", got)
	}
	appendAll(t, s, item("c", 2, 0), item("c", 3, 0))
	if got := listed(t, s, "a"); got != nil {
		t.Errorf("session a: %v, want evicted", got)
	}
	if _, ok := s.traffic.bySession["a"]; ok {
		t.Errorf("emptied session a still indexed")
	}
	checkInvariants(t, s)
}

func TestTrafficEvictsOldestByBytes(t *testing.T) {
	one := itemSize(item("s", 1, 1000))
	s := NewWithOptions(Options{MaxTrafficBytes: 3 * one})
	appendAll(t, s, item("s", 1, 1000), item("t", 2, 1000), item("s", 3, 1000))
	if s.traffic.bytes != 3*one {
		t.Fatalf("bytes %d, want %d", s.traffic.bytes, 3*one)
	}
	appendAll(t, s, item("s", 4, 1000))
	if got := listed(t, s, "s"); !slices.Equal(got, []int64{3, 4}) {
		t.Errorf("session s: %v, want [3 4]", got)
	}
	checkInvariants(t, s)
	// A larger overwrite of t-2 (the oldest now) pushes the total over:
	// eviction starts with t-2 itself.
	appendAll(t, s, item("t", 2, 1500))
	if got := listed(t, s, "t"); got != nil {
		t.Errorf("session t: %v, want evicted", got)
	}
	checkInvariants(t, s)
	// A small item frees no one; one that needs two slots evicts two.
	appendAll(t, s, item("u", 1, 0))
	if got := listed(t, s, "s"); !slices.Equal(got, []int64{3, 4}) {
		t.Errorf("session s after a small item: %v, want [3 4]", got)
	}
	appendAll(t, s, item("u", 2, 2001))
	if got := listed(t, s, "s"); got != nil {
		t.Errorf("session s after a large item: %v, want evicted", got)
	}
	checkInvariants(t, s)
	// An item larger than the whole bound is not kept, and takes the rest.
	appendAll(t, s, item("v", 1, int(4*one)))
	if s.traffic.order.Len() != 0 || s.traffic.bytes != 0 || len(s.traffic.bySession) != 0 || len(s.traffic.byID) != 0 {
		t.Errorf("after an oversized item: %d items, %d bytes, %d sessions, %d ids",
			s.traffic.order.Len(), s.traffic.bytes, len(s.traffic.bySession), len(s.traffic.byID))
	}
	checkInvariants(t, s)
}

func TestTrafficMemoryBounded(t *testing.T) {
	const (
		capItems = 1000
		total    = 200_000
	)
	s := NewWithOptions(Options{MaxTrafficItems: capItems})
	batch := make([]*capture.Item, 0, 25)
	for i := range total {
		// A few long-lived busy sessions plus a churn of short ones, with
		// some timestamps arriving out of order.
		var it *capture.Item
		switch i % 4 {
		case 0, 1:
			ts := int64(i)
			if i%20 == 0 {
				ts -= 10
			}
			it = item(fmt.Sprintf("busy-%d", i%7), ts, 10)
		default:
			it = item(fmt.Sprintf("short-%d", i/40), int64(i), 10)
		}
		batch = append(batch, it)
		if len(batch) == cap(batch) {
			appendAll(t, s, batch...)
			batch = batch[:0]
		}
		if i%50_000 == 0 {
			checkInvariants(t, s)
		}
	}
	appendAll(t, s, batch...)
	checkInvariants(t, s)
	tr := &s.traffic
	if tr.order.Len() != capItems || len(tr.byID) != capItems {
		t.Errorf("%d items, %d ids, want %d", tr.order.Len(), len(tr.byID), capItems)
	}
	// The busy sessions and the short ones of the last ~1000 inserts.
	if n := len(tr.bySession); n > 7+capItems/20+2 {
		t.Errorf("%d sessions indexed", n)
	}
	if c := tr.order.Cap(); c > 4*capItems {
		t.Errorf("order holds %d slots for %d items", c, capItems)
	}
}

func TestTrafficDefaults(t *testing.T) {
	s := New()
	if s.traffic.maxItems != DefaultMaxTrafficItems || s.traffic.maxBytes != DefaultMaxTrafficBytes {
		t.Errorf("bounds %d items, %d bytes; want %d, %d", s.traffic.maxItems, s.traffic.maxBytes, DefaultMaxTrafficItems, DefaultMaxTrafficBytes)
	}
	s = NewWithOptions(Options{MaxTrafficItems: -1, MaxTrafficBytes: -1})
	if s.traffic.maxItems != DefaultMaxTrafficItems || s.traffic.maxBytes != DefaultMaxTrafficBytes {
		t.Errorf("negative options: bounds %d items, %d bytes", s.traffic.maxItems, s.traffic.maxBytes)
	}
}

func TestTrafficAppendRejectsBadItems(t *testing.T) {
	s := New()
	for name, batch := range map[string][]*capture.Item{
		"nil":        {item("s", 1, 0), nil},
		"no session": {item("s", 1, 0), item("", 2, 0)},
	} {
		if err := s.AppendTraffic(t.Context(), batch); err == nil {
			t.Errorf("%s: AppendTraffic succeeded", name)
		}
		if got := listed(t, s, "s"); got != nil {
			t.Errorf("%s: a rejected batch stored %v", name, got)
		}
	}
}

func TestItemSize(t *testing.T) {
	it := &capture.Item{
		SessionID:       "sess",
		ID:              "id",
		Path:            "/p",
		RequestHeaders:  map[string][]string{"K": {"vv", "w"}},
		ResponseHeaders: map[string][]string{"Content-Type": {"x"}},
		RequestBody:     capture.NewBody(make([]byte, 100)),
		ResponseBody:    capture.Body{Data: make([]byte, 10, 1<<20)},
	}
	want := int64(itemOverhead + 4 + 2 + 2 + 100 + 10 +
		headerKeyOverhead + 1 + 2*headerValueOverhead + 3 +
		headerKeyOverhead + 12 + headerValueOverhead + 1)
	if got := itemSize(it); got != want {
		t.Errorf("itemSize %d, want %d", got, want)
	}
}
