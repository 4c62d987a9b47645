// Package storetest is the behavioural test suite that every store backend
// (memory, bolt, DynamoDB) runs, so that all of them honour the same
// contract.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/store"
)

// TestSessions runs the store.Sessions contract against a fresh store made
// by newStore for each subtest. newStore registers its own cleanup (the
// suite does not call Close).
func TestSessions(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"CreateGet", testCreateGet},
		{"CreateDuplicate", testCreateDuplicate},
		{"NotFound", testNotFound},
		{"EndConditional", testEndConditional},
		{"Touch", testTouch},
		{"Labels", testLabels},
		{"CopyIsolation", testCopyIsolation},
		{"Pagination", testPagination},
		{"PaginationClamp", testPaginationClamp},
		{"BadCursor", testBadCursor},
		{"ConcurrentCreate", testConcurrentCreate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// base is a fixed instant with no monotonic reading, on a whole second so
// that backends that store milliseconds compare equal.
const baseUnix = 1767323045 // 2026-01-02T03:04:05Z

func baseTime() time.Time { return time.Unix(baseUnix, 0).UTC() }

func newSession(id string) store.Session {
	base := baseTime()
	return store.Session{
		ID:         id,
		State:      store.StateActive,
		Kind:       "http",
		Labels:     map[string]string{"team": "a"},
		CreatedAt:  base,
		LastSeenAt: base,
		ExpiresAt:  base.Add(time.Hour),
	}
}

func mustCreate(t *testing.T, st store.Store, s store.Session) {
	t.Helper()
	if err := st.CreateSession(t.Context(), s); err != nil {
		t.Fatalf("CreateSession(%q): %v", s.ID, err)
	}
}

func mustGet(t *testing.T, st store.Store, id string) store.Session {
	t.Helper()
	s, err := st.GetSession(t.Context(), id)
	if err != nil {
		t.Fatalf("GetSession(%q): %v", id, err)
	}
	return s
}

func sameSession(t *testing.T, got, want store.Session) {
	t.Helper()
	if got.ID != want.ID || got.State != want.State || got.Kind != want.Kind ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.LastSeenAt.Equal(want.LastSeenAt) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !got.EndedAt.Equal(want.EndedAt) ||
		!maps.Equal(got.Labels, want.Labels) {
		t.Errorf("session:\n got %+v\nwant %+v", got, want)
	}
}

func testCreateGet(t *testing.T, st store.Store) {
	base := baseTime()
	want := newSession("s1")
	mustCreate(t, st, want)
	sameSession(t, mustGet(t, st, "s1"), want)

	bare := store.Session{ID: "s2", State: store.StateActive, CreatedAt: base, LastSeenAt: base}
	mustCreate(t, st, bare)
	got := mustGet(t, st, "s2")
	sameSession(t, got, bare)
	if !got.ExpiresAt.IsZero() || !got.EndedAt.IsZero() {
		t.Errorf("zero times not kept: ExpiresAt %v, EndedAt %v", got.ExpiresAt, got.EndedAt)
	}
}

func testCreateDuplicate(t *testing.T, st store.Store) {
	mustCreate(t, st, newSession("dup"))
	other := newSession("dup")
	other.Kind = "stdio"
	if err := st.CreateSession(t.Context(), other); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second CreateSession: got %v, want ErrExists", err)
	}
	if got := mustGet(t, st, "dup"); got.Kind != "http" {
		t.Errorf("duplicate create overwrote the session: kind %q", got.Kind)
	}
}

func testNotFound(t *testing.T, st store.Store) {
	base := baseTime()
	ctx := t.Context()
	if _, err := st.GetSession(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSession: got %v, want ErrNotFound", err)
	}
	if _, err := st.EndSession(ctx, "nope", store.StateClosed, base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EndSession: got %v, want ErrNotFound", err)
	}
	if err := st.TouchSession(ctx, "nope", base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TouchSession: got %v, want ErrNotFound", err)
	}
	if err := st.LabelSession(ctx, "nope", map[string]string{"a": "b"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LabelSession: got %v, want ErrNotFound", err)
	}
	items, next, err := st.ListSessions(ctx, store.Page{})
	if err != nil || len(items) != 0 || next != "" {
		t.Errorf("ListSessions on empty store: got %d items, next %q, err %v", len(items), next, err)
	}
}

func testEndConditional(t *testing.T, st store.Store) {
	base := baseTime()
	ctx := t.Context()
	at := base.Add(time.Minute)
	for _, to := range []store.SessionState{store.StateClosed, store.StateExpired} {
		t.Run(string(to), func(t *testing.T) {
			id := "end-" + string(to)
			mustCreate(t, st, newSession(id))
			got, err := st.EndSession(ctx, id, to, at)
			if err != nil {
				t.Fatalf("EndSession: %v", err)
			}
			if got.State != to || !got.EndedAt.Equal(at) {
				t.Errorf("EndSession returned state %s endedAt %v, want %s %v", got.State, got.EndedAt, to, at)
			}
			stored := mustGet(t, st, id)
			if stored.State != to || !stored.EndedAt.Equal(at) {
				t.Errorf("stored state %s endedAt %v, want %s %v", stored.State, stored.EndedAt, to, at)
			}
			// Neither a second close nor a stale expiry changes it.
			for _, again := range []store.SessionState{store.StateClosed, store.StateExpired} {
				got, err := st.EndSession(ctx, id, again, at.Add(time.Hour))
				if !errors.Is(err, store.ErrConflict) {
					t.Errorf("EndSession(%s) on %s session: got %v, want ErrConflict", again, to, err)
				}
				if got.ID != id || got.State != to || !got.EndedAt.Equal(at) {
					t.Errorf("EndSession(%s) conflict returned %+v, want the stored %s session", again, got, to)
				}
			}
			// It cannot be reopened.
			if _, err := st.EndSession(ctx, id, store.StateActive, at); err == nil {
				t.Errorf("EndSession(ACTIVE) succeeded")
			}
			if err := st.CreateSession(ctx, newSession(id)); !errors.Is(err, store.ErrExists) {
				t.Errorf("re-create of an ended session: got %v, want ErrExists", err)
			}
			if s := mustGet(t, st, id); s.State != to {
				t.Errorf("state after reopen attempts: %s, want %s", s.State, to)
			}
		})
	}
	t.Run("ActiveTargetRejected", func(t *testing.T) {
		mustCreate(t, st, newSession("end-active"))
		if _, err := st.EndSession(ctx, "end-active", store.StateActive, at); err == nil {
			t.Errorf("EndSession(ACTIVE) on an active session succeeded")
		}
	})
}

func testTouch(t *testing.T, st store.Store) {
	base := baseTime()
	ctx := t.Context()
	mustCreate(t, st, newSession("t"))
	later := base.Add(5 * time.Minute)
	if err := st.TouchSession(ctx, "t", later); err != nil {
		t.Fatalf("TouchSession: %v", err)
	}
	if got := mustGet(t, st, "t").LastSeenAt; !got.Equal(later) {
		t.Errorf("LastSeenAt %v, want %v", got, later)
	}
	// An older touch (a slow writer) does not move it backwards.
	if err := st.TouchSession(ctx, "t", base.Add(time.Minute)); err != nil {
		t.Fatalf("older TouchSession: %v", err)
	}
	if got := mustGet(t, st, "t").LastSeenAt; !got.Equal(later) {
		t.Errorf("LastSeenAt after older touch %v, want %v", got, later)
	}
	if _, err := st.EndSession(ctx, "t", store.StateClosed, later); err != nil {
		t.Fatalf("EndSession: %v", err)
	}
	if err := st.TouchSession(ctx, "t", later.Add(time.Minute)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("TouchSession on a closed session: got %v, want ErrConflict", err)
	}
	if got := mustGet(t, st, "t"); got.State != store.StateClosed || !got.LastSeenAt.Equal(later) {
		t.Errorf("closed session after touch: state %s LastSeenAt %v", got.State, got.LastSeenAt)
	}
}

func testLabels(t *testing.T, st store.Store) {
	base := baseTime()
	ctx := t.Context()
	s := newSession("l")
	s.Labels = nil
	mustCreate(t, st, s)
	if err := st.LabelSession(ctx, "l", map[string]string{"a": "1", "b": "2"}); err != nil {
		t.Fatalf("LabelSession: %v", err)
	}
	if err := st.LabelSession(ctx, "l", map[string]string{"b": "3", "c": "4"}); err != nil {
		t.Fatalf("LabelSession: %v", err)
	}
	want := map[string]string{"a": "1", "b": "3", "c": "4"}
	if got := mustGet(t, st, "l").Labels; !maps.Equal(got, want) {
		t.Errorf("labels %v, want %v", got, want)
	}
	if err := st.LabelSession(ctx, "l", nil); err != nil {
		t.Errorf("LabelSession(nil): %v", err)
	}
	if got := mustGet(t, st, "l").Labels; !maps.Equal(got, want) {
		t.Errorf("labels after empty merge %v, want %v", got, want)
	}
	// Ended sessions can still be labelled (for example "result=failed").
	if _, err := st.EndSession(ctx, "l", store.StateClosed, base); err != nil {
		t.Fatal(err)
	}
	if err := st.LabelSession(ctx, "l", map[string]string{"result": "ok"}); err != nil {
		t.Errorf("LabelSession on a closed session: %v", err)
	}
	if got := mustGet(t, st, "l").Labels["result"]; got != "ok" {
		t.Errorf("label on closed session %q, want %q", got, "ok")
	}
}

func testCopyIsolation(t *testing.T, st store.Store) {
	base := baseTime()
	ctx := t.Context()
	in := newSession("c")
	mustCreate(t, st, in)
	in.Labels["team"] = "changed-after-create"
	in.Labels["new"] = "x"

	out := mustGet(t, st, "c")
	if want := map[string]string{"team": "a"}; !maps.Equal(out.Labels, want) {
		t.Fatalf("caller's map shared on create: labels %v, want %v", out.Labels, want)
	}
	out.Labels["team"] = "changed-after-get"
	if got := mustGet(t, st, "c").Labels["team"]; got != "a" {
		t.Errorf("map shared on get: team %q", got)
	}

	lbl := map[string]string{"k": "v"}
	if err := st.LabelSession(ctx, "c", lbl); err != nil {
		t.Fatal(err)
	}
	lbl["k"] = "changed-after-label"
	if got := mustGet(t, st, "c").Labels["k"]; got != "v" {
		t.Errorf("map shared on label: k %q", got)
	}

	items, _, err := st.ListSessions(ctx, store.Page{})
	if err != nil || len(items) != 1 {
		t.Fatalf("ListSessions: %d items, %v", len(items), err)
	}
	items[0].Labels["team"] = "changed-after-list"
	if got := mustGet(t, st, "c").Labels["team"]; got != "a" {
		t.Errorf("map shared on list: team %q", got)
	}

	ended, err := st.EndSession(ctx, "c", store.StateClosed, base)
	if err != nil {
		t.Fatal(err)
	}
	ended.Labels["team"] = "changed-after-end"
	if got := mustGet(t, st, "c").Labels["team"]; got != "a" {
		t.Errorf("map shared on end: team %q", got)
	}
}

// listAll follows cursors and returns the ids in order; it checks that no
// page is larger than limit and that only the last page may be short.
func listAll(t *testing.T, st store.Store, limit int) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 100000 {
			t.Fatalf("limit %d: pagination does not end", limit)
		}
		items, next, err := st.ListSessions(t.Context(), store.Page{Cursor: cursor, Limit: limit})
		if err != nil {
			t.Fatalf("limit %d: ListSessions(cursor %q): %v", limit, cursor, err)
		}
		want := store.Page{Limit: limit}.EffectiveLimit()
		if len(items) > want {
			t.Fatalf("limit %d: page of %d items, want at most %d", limit, len(items), want)
		}
		for _, s := range items {
			ids = append(ids, s.ID)
		}
		if next == "" {
			return ids
		}
		if len(items) == 0 {
			t.Fatalf("limit %d: empty page with a next cursor", limit)
		}
		cursor = next
	}
}

func testPagination(t *testing.T, st store.Store) {
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("s-%03d", i))
	}
	// Odd ids: ordering is by id, not insertion, and ids may need escaping.
	want = append(want, "A", "z/ü?&=", "s-010a")
	insert := slices.Clone(want)
	rand.Shuffle(len(insert), func(i, j int) { insert[i], insert[j] = insert[j], insert[i] }) //nolint:gosec // test data order, not security
	for _, id := range insert {
		mustCreate(t, st, newSession(id))
	}
	slices.Sort(want)
	for _, limit := range []int{1, 2, 7, 1000, 0, -1} {
		if got := listAll(t, st, limit); !slices.Equal(got, want) {
			t.Errorf("limit %d: ids\n got %q\nwant %q", limit, got, want)
		}
	}
	// A page ending exactly on the last item has no next cursor.
	items, next, err := st.ListSessions(t.Context(), store.Page{Limit: len(want)})
	if err != nil || len(items) != len(want) {
		t.Fatalf("full page: %d items, %v", len(items), err)
	}
	if next != "" {
		items, next2, err := st.ListSessions(t.Context(), store.Page{Cursor: next, Limit: len(want)})
		if err != nil || len(items) != 0 || next2 != "" {
			t.Errorf("page after the last: %d items, next %q, err %v", len(items), next2, err)
		}
	}
}

func testPaginationClamp(t *testing.T, st store.Store) {
	ctx := t.Context()
	n := store.MaxLimit + 5
	for i := range n {
		mustCreate(t, st, newSession(fmt.Sprintf("c-%05d", i)))
	}
	items, next, err := st.ListSessions(ctx, store.Page{Limit: store.MaxLimit * 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != store.MaxLimit || next == "" {
		t.Fatalf("limit %d: got %d items, next %q; want %d and a cursor", store.MaxLimit*10, len(items), next, store.MaxLimit)
	}
	rest, next, err := st.ListSessions(ctx, store.Page{Cursor: next, Limit: store.MaxLimit * 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 5 || next != "" || rest[0].ID != fmt.Sprintf("c-%05d", store.MaxLimit) {
		t.Errorf("second page: %d items, next %q", len(rest), next)
	}
	items, _, err = st.ListSessions(ctx, store.Page{})
	if err != nil || len(items) != store.DefaultLimit {
		t.Errorf("default limit: %d items, %v; want %d", len(items), err, store.DefaultLimit)
	}
	if got := listAll(t, st, 0); len(got) != n || !slices.IsSorted(got) {
		t.Errorf("all pages: %d ids (sorted %v), want %d", len(got), slices.IsSorted(got), n)
	}
}

func testBadCursor(t *testing.T, st store.Store) {
	mustCreate(t, st, newSession("b"))
	_, _, err := st.ListSessions(t.Context(), store.Page{Cursor: "%%% not a cursor %%%"})
	if !errors.Is(err, store.ErrBadCursor) {
		t.Errorf("ListSessions(bad cursor): got %v, want ErrBadCursor", err)
	}
}

func testConcurrentCreate(t *testing.T, st store.Store) {
	ctx := context.WithoutCancel(t.Context())
	const workers = 16
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		wins   int
		others []error
	)
	// Everyone races for the same id: exactly one wins.
	for range workers {
		wg.Go(func() {
			err := st.CreateSession(ctx, newSession("same"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, store.ErrExists):
				others = append(others, err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || len(others) != 0 {
		t.Fatalf("same id: %d creates won, unexpected errors %v; want exactly 1 win", wins, others)
	}
	// Distinct ids all land, along with concurrent readers.
	const per = 20
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				id := fmt.Sprintf("w%02d-%02d", w, i)
				if err := st.CreateSession(ctx, newSession(id)); err != nil {
					t.Errorf("CreateSession(%q): %v", id, err)
				}
				if _, err := st.GetSession(ctx, id); err != nil {
					t.Errorf("GetSession(%q): %v", id, err)
				}
				if _, _, err := st.ListSessions(ctx, store.Page{Limit: 5}); err != nil {
					t.Errorf("ListSessions: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if got := listAll(t, st, store.MaxLimit); len(got) != workers*per+1 {
		t.Errorf("listed %d sessions, want %d", len(got), workers*per+1)
	}
}
