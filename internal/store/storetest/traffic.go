package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
)

// TestTraffic runs the store.Traffic contract against a fresh store made by
// newStore for each subtest. newStore registers its own cleanup (the suite
// does not call Close). The suite stores at most a few thousand small items
// per store, so a bounded backend must keep at least that many.
func TestTraffic(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"AppendList", testTrafficAppendList},
		{"AfterExclusive", testTrafficAfter},
		{"Limit", testTrafficLimit},
		{"Pagination", testTrafficPagination},
		{"SameSessionDistinctTimestamps", testTrafficDistinctTimestamps},
		{"Overwrite", testTrafficOverwrite},
		{"SessionsIsolated", testTrafficSessionsIsolated},
		{"Get", testTrafficGet},
		{"UnknownSession", testTrafficUnknownSession},
		{"Bodies", testTrafficBodies},
		{"CopyIsolation", testTrafficCopyIsolation},
		{"ConcurrentAppend", testTrafficConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// baseMicros is baseTime in unix microseconds, the unit of Item.Timestamp.
const baseMicros = baseUnix * 1_000_000

// newItem returns a complete HTTP item of session at baseMicros+n µs, with
// id "<session>-<n>".
func newItem(session string, n int64) *capture.Item {
	return &capture.Item{
		SessionID:       session,
		Timestamp:       baseMicros + n,
		ID:              fmt.Sprintf("%s-%d", session, n),
		Kind:            capture.KindHTTP,
		Method:          "POST",
		Path:            fmt.Sprintf("/things/%d?q=1&r=%%20x", n),
		Status:          201,
		RequestHeaders:  map[string][]string{"Content-Type": {"application/json"}, "Accept": {"a", "b"}},
		ResponseHeaders: map[string][]string{"Content-Type": {"application/json"}},
		RequestBody:     capture.NewBody(fmt.Appendf(nil, `{"n":%d}`, n)),
		ResponseBody:    capture.NewBody([]byte(`{"ok":true}`)),
		DurationMs:      12.5,
	}
}

func mustAppend(t *testing.T, st store.Store, items ...*capture.Item) {
	t.Helper()
	Append(t, st, items...)
}

// Append stores items in st and fails the test if that fails: for the
// stores' own tests too.
func Append(t testing.TB, st store.Traffic, items ...*capture.Item) {
	t.Helper()
	if err := st.AppendTraffic(t.Context(), items); err != nil {
		t.Fatalf("AppendTraffic(%d items): %v", len(items), err)
	}
}

// Timestamps returns the timestamps of session's items after after in st,
// oldest first (up to store.MaxLimit; nil for none), and fails the test if
// listing fails.
func Timestamps(t testing.TB, st store.Traffic, session string, after int64) []int64 {
	t.Helper()
	items, err := st.ListTraffic(t.Context(), session, after, store.MaxLimit)
	if err != nil {
		t.Fatalf("ListTraffic(%q): %v", session, err)
	}
	var out []int64
	for _, it := range items {
		out = append(out, it.Timestamp)
	}
	return out
}

func mustList(t *testing.T, st store.Store, session string, after int64, limit int) []capture.Item {
	t.Helper()
	items, err := st.ListTraffic(t.Context(), session, after, limit)
	if err != nil {
		t.Fatalf("ListTraffic(%q, %d, %d): %v", session, after, limit, err)
	}
	return items
}

// stamps returns the items' timestamps as offsets from baseMicros.
func stamps(items []capture.Item) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.Timestamp - baseMicros
	}
	return out
}

func sameBody(a, b capture.Body) bool {
	return bytes.Equal(a.Data, b.Data) && a.Size == b.Size && a.SHA256 == b.SHA256 && a.Truncated == b.Truncated
}

func sameHeader(a, b map[string][]string) bool {
	return maps.EqualFunc(a, b, slices.Equal)
}

func sameItem(t *testing.T, got capture.Item, want *capture.Item) {
	t.Helper()
	if got.SessionID != want.SessionID || got.Timestamp != want.Timestamp || got.ID != want.ID ||
		got.Kind != want.Kind || got.Method != want.Method || got.Path != want.Path ||
		got.Status != want.Status || got.Direction != want.Direction ||
		got.Stubbed != want.Stubbed || got.DurationMs != want.DurationMs || got.Error != want.Error ||
		!sameHeader(got.RequestHeaders, want.RequestHeaders) || !sameHeader(got.ResponseHeaders, want.ResponseHeaders) ||
		!sameBody(got.RequestBody, want.RequestBody) || !sameBody(got.ResponseBody, want.ResponseBody) {
		t.Errorf("item:\n got %+v\nwant %+v", got, *want)
	}
}

func testTrafficAppendList(t *testing.T, st store.Store) {
	// Out of order within a batch and across batches: listing is by
	// timestamp, not by insertion.
	want := []*capture.Item{newItem("s", 1), newItem("s", 2), newItem("s", 3), newItem("s", 4), newItem("s", 5)}
	mustAppend(t, st, want[2], want[0])
	mustAppend(t, st, want[4])
	mustAppend(t, st, want[1], want[3])
	got := mustList(t, st, "s", 0, 0)
	if len(got) != len(want) {
		t.Fatalf("listed timestamps %v, want 1..5", stamps(got))
	}
	for i := range want {
		sameItem(t, got[i], want[i])
	}
	if err := st.AppendTraffic(t.Context(), nil); err != nil {
		t.Errorf("AppendTraffic(nil): %v", err)
	}
}

func testTrafficAfter(t *testing.T, st store.Store) {
	for n := int64(1); n <= 5; n++ {
		mustAppend(t, st, newItem("s", n*10))
	}
	tests := []struct {
		after int64
		want  []int64
	}{
		{0, []int64{10, 20, 30, 40, 50}},
		{baseMicros, []int64{10, 20, 30, 40, 50}},
		{baseMicros + 9, []int64{10, 20, 30, 40, 50}},
		{baseMicros + 10, []int64{20, 30, 40, 50}}, // exclusive
		{baseMicros + 11, []int64{20, 30, 40, 50}},
		{baseMicros + 49, []int64{50}},
		{baseMicros + 50, []int64{}},
		{baseMicros + 1_000_000, []int64{}},
	}
	for _, tt := range tests {
		if got := stamps(mustList(t, st, "s", tt.after, 0)); !slices.Equal(got, tt.want) {
			t.Errorf("after base+%d: got %v, want %v", tt.after-baseMicros, got, tt.want)
		}
	}
}

func testTrafficLimit(t *testing.T, st store.Store) {
	n := store.MaxLimit + 5
	batch := make([]*capture.Item, 0, 100)
	for i := range n {
		batch = append(batch, newItem("s", int64(i+1)))
		if len(batch) == cap(batch) || i == n-1 {
			mustAppend(t, st, batch...)
			batch = batch[:0]
		}
	}
	tests := []struct {
		limit, want int
	}{
		{1, 1},
		{2, 2},
		{7, 7},
		{0, store.DefaultLimit},
		{-1, store.DefaultLimit},
		{store.MaxLimit, store.MaxLimit},
		{store.MaxLimit * 10, store.MaxLimit},
	}
	for _, tt := range tests {
		got := mustList(t, st, "s", 0, tt.limit)
		if len(got) != tt.want {
			t.Errorf("limit %d: got %d items, want %d", tt.limit, len(got), tt.want)
			continue
		}
		if got[0].Timestamp != baseMicros+1 || !slices.IsSorted(stamps(got)) {
			t.Errorf("limit %d: not the oldest first: %v...", tt.limit, stamps(got[:min(len(got), 5)]))
		}
	}
	rest := mustList(t, st, "s", baseMicros+store.MaxLimit, store.MaxLimit)
	if got := stamps(rest); !slices.Equal(got, []int64{1001, 1002, 1003, 1004, 1005}) {
		t.Errorf("after the first %d: got %v", store.MaxLimit, got)
	}
}

// listAllTraffic pages through a session passing the last timestamp as the
// next after, and checks that no page is larger than limit.
func listAllTraffic(t *testing.T, st store.Store, session string, limit int) []int64 {
	t.Helper()
	var out []int64
	after := int64(0)
	for pages := 0; ; pages++ {
		if pages > 100000 {
			t.Fatalf("limit %d: pagination does not end", limit)
		}
		items := mustList(t, st, session, after, limit)
		if len(items) > limit {
			t.Fatalf("limit %d: page of %d items", limit, len(items))
		}
		if len(items) == 0 {
			return out
		}
		out = append(out, stamps(items)...)
		after = items[len(items)-1].Timestamp
	}
}

func testTrafficPagination(t *testing.T, st store.Store) {
	var want []int64
	var batch []*capture.Item
	for i := range 23 {
		n := int64(i*3 + 1)
		want = append(want, n)
		batch = append(batch, newItem("p", n))
	}
	// Insert in reverse so that ordering must come from the timestamps.
	slices.Reverse(batch)
	mustAppend(t, st, batch...)
	for _, limit := range []int{1, 2, 7, 23, 1000} {
		if got := listAllTraffic(t, st, "p", limit); !slices.Equal(got, want) {
			t.Errorf("limit %d: timestamps\n got %v\nwant %v", limit, got, want)
		}
	}
}

func testTrafficDistinctTimestamps(t *testing.T, st store.Store) {
	// Two exchanges a microsecond apart (as capture.Stamper separates
	// exchanges of the same instant) are both kept.
	a, b := newItem("s", 1), newItem("s", 2)
	b.Path = "/other"
	mustAppend(t, st, a)
	mustAppend(t, st, b)
	got := mustList(t, st, "s", 0, 0)
	if len(got) != 2 {
		t.Fatalf("got %d items (%v), want 2", len(got), stamps(got))
	}
	sameItem(t, got[0], a)
	sameItem(t, got[1], b)
}

func testTrafficOverwrite(t *testing.T, st store.Store) {
	ctx := t.Context()
	first := newItem("s", 1)
	other := newItem("s", 2)
	mustAppend(t, st, first, other)
	// Redelivery of the same batch is idempotent.
	mustAppend(t, st, first, other)
	if got := stamps(mustList(t, st, "s", 0, 0)); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("after redelivery: %v, want [1 2]", got)
	}
	// A different item at the same (session, timestamp) replaces it.
	repl := newItem("s", 1)
	repl.ID = "replacement"
	repl.Status = 500
	repl.ResponseBody = capture.NewBody([]byte("boom"))
	mustAppend(t, st, repl)
	got := mustList(t, st, "s", 0, 0)
	if len(got) != 2 {
		t.Fatalf("after overwrite: %v, want 2 items", stamps(got))
	}
	sameItem(t, got[0], repl)
	sameItem(t, got[1], other)
	g, err := st.GetTraffic(ctx, "s", "replacement")
	if err != nil {
		t.Fatalf("GetTraffic(replacement): %v", err)
	}
	sameItem(t, g, repl)
	if _, err := st.GetTraffic(ctx, "s", first.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTraffic(overwritten id): got %v, want ErrNotFound", err)
	}
	// The same key twice in one batch: the later one wins.
	x, y := newItem("s", 3), newItem("s", 3)
	y.Method = "DELETE"
	mustAppend(t, st, x, y)
	got = mustList(t, st, "s", baseMicros+2, 0)
	if len(got) != 1 || got[0].Method != "DELETE" {
		t.Errorf("same key twice in a batch: got %v, want one DELETE item", got)
	}
}

func testTrafficSessionsIsolated(t *testing.T, st store.Store) {
	ctx := t.Context()
	// The same timestamps in two sessions are distinct items.
	a1, a2 := newItem("a", 1), newItem("a", 2)
	b1, b3 := newItem("b", 1), newItem("b", 3)
	mustAppend(t, st, a1, b1, a2, b3)
	if got := stamps(mustList(t, st, "a", 0, 0)); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("session a: %v, want [1 2]", got)
	}
	got := mustList(t, st, "b", 0, 0)
	if len(got) != 2 {
		t.Fatalf("session b: %v, want [1 3]", stamps(got))
	}
	sameItem(t, got[0], b1)
	sameItem(t, got[1], b3)
	if _, err := st.GetTraffic(ctx, "b", a1.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTraffic(b, id of an item of a): got %v, want ErrNotFound", err)
	}
	// A session whose id is a prefix of another's does not see its items.
	ab := newItem("a-b", 5)
	mustAppend(t, st, ab)
	if got := stamps(mustList(t, st, "a", 0, 0)); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("session a after a-b: %v, want [1 2]", got)
	}
}

func testTrafficGet(t *testing.T, st store.Store) {
	ctx := t.Context()
	a, b := newItem("s", 1), newItem("s", 2)
	mustAppend(t, st, a, b)
	for _, want := range []*capture.Item{a, b} {
		got, err := st.GetTraffic(ctx, "s", want.ID)
		if err != nil {
			t.Fatalf("GetTraffic(%q): %v", want.ID, err)
		}
		sameItem(t, got, want)
	}
	for _, k := range [][2]string{{"s", "nope"}, {"nope", a.ID}, {"s", ""}, {"", ""}} {
		if _, err := st.GetTraffic(ctx, k[0], k[1]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetTraffic(%q, %q): got %v, want ErrNotFound", k[0], k[1], err)
		}
	}
}

func testTrafficUnknownSession(t *testing.T, st store.Store) {
	if got := mustList(t, st, "nope", 0, 0); len(got) != 0 {
		t.Errorf("empty store: %d items", len(got))
	}
	mustAppend(t, st, newItem("s", 1))
	if got := mustList(t, st, "nope", 0, 0); len(got) != 0 {
		t.Errorf("unknown session: %d items", len(got))
	}
}

func testTrafficBodies(t *testing.T, st store.Store) {
	ctx := t.Context()
	binary := []byte{0xff, 0xfe, 0x00, 0x80, 'a', 0xc3, 0x28, 0x00}
	original := bytes.Repeat([]byte{0x00, 0x9f, 0x92, 0x96}, 1000)

	bin := newItem("s", 1)
	bin.RequestBody = capture.NewBody(binary)
	bin.ResponseBody = capture.Body{ // truncated: Size and SHA256 of the original
		Data:      original[:100],
		Size:      int64(len(original)),
		SHA256:    sha256.Sum256(original),
		Truncated: true,
	}
	empty := newItem("s", 2)
	empty.RequestBody = capture.Body{}
	empty.ResponseBody = capture.Body{}
	empty.RequestHeaders, empty.ResponseHeaders = nil, nil
	stdio := &capture.Item{
		SessionID:    "s",
		Timestamp:    baseMicros + 3,
		ID:           "s-3",
		Kind:         capture.KindStdio,
		Method:       "tools/call",
		Direction:    capture.DirClientToServer,
		RequestBody:  capture.NewBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ü"}}`)),
		Stubbed:      true,
		DurationMs:   0.001,
		Error:        "upstream closed",
		ResponseBody: capture.Body{Size: 12, SHA256: sha256.Sum256([]byte("hello world!")), Truncated: true},
	}
	mustAppend(t, st, bin, empty, stdio)
	got := mustList(t, st, "s", 0, 0)
	if len(got) != 3 {
		t.Fatalf("got %v, want 3 items", stamps(got))
	}
	for i, want := range []*capture.Item{bin, empty, stdio} {
		sameItem(t, got[i], want)
		g, err := st.GetTraffic(ctx, "s", want.ID)
		if err != nil {
			t.Fatalf("GetTraffic(%q): %v", want.ID, err)
		}
		sameItem(t, g, want)
	}
}

func testTrafficCopyIsolation(t *testing.T, st store.Store) {
	ctx := t.Context()
	in := newItem("s", 1)
	want := newItem("s", 1)
	batch := []*capture.Item{in}
	mustAppend(t, st, batch...)
	// The batch slice is not retained (the items are immutable: see
	// store.Traffic).
	batch[0] = newItem("s", 99)

	got := mustList(t, st, "s", 0, 0)
	if len(got) != 1 {
		t.Fatalf("got %v, want [1]", stamps(got))
	}
	sameItem(t, got[0], want)
	// Nor does the store share what it returns.
	got[0].ResponseHeaders["Content-Type"][0] = "changed"
	got[0].ResponseBody.Data[0] = 'X'
	g, err := st.GetTraffic(ctx, "s", want.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameItem(t, g, want)
	g.RequestHeaders["Accept"] = nil
	g.RequestBody.Data[0] = 'X'
	sameItem(t, mustList(t, st, "s", 0, 0)[0], want)
}

func testTrafficConcurrent(t *testing.T, st store.Store) {
	ctx := context.WithoutCancel(t.Context())
	const (
		workers = 8
		per     = 40
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			session := fmt.Sprintf("w%d", w)
			for i := range per {
				// Every worker also writes to a shared session, with
				// timestamps of its own.
				shared := newItem("shared", int64(i*workers+w+1))
				if err := st.AppendTraffic(ctx, []*capture.Item{newItem(session, int64(i+1)), shared}); err != nil {
					t.Errorf("AppendTraffic: %v", err)
					return
				}
				if _, err := st.ListTraffic(ctx, session, 0, 5); err != nil {
					t.Errorf("ListTraffic: %v", err)
				}
				if _, err := st.GetTraffic(ctx, "shared", shared.ID); err != nil {
					t.Errorf("GetTraffic(shared, %q): %v", shared.ID, err)
				}
			}
		})
	}
	wg.Wait()
	for w := range workers {
		if got := listAllTraffic(t, st, fmt.Sprintf("w%d", w), 7); len(got) != per {
			t.Errorf("session w%d: %d items, want %d", w, len(got), per)
		}
	}
	got := listAllTraffic(t, st, "shared", store.MaxLimit)
	if len(got) != workers*per || !slices.IsSorted(got) {
		t.Errorf("shared session: %d items (sorted %v), want %d", len(got), slices.IsSorted(got), workers*per)
	}
}
