package storetest

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/store"
)

// TestStubs runs the store.Stubs contract against a fresh store made by
// newStore for each subtest. newStore registers its own cleanup (the suite
// does not call Close). The suite stores at most a few hundred stubs per
// session, so a bounded backend must keep at least that many.
func TestStubs(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"PutList", testStubPutList},
		{"Replace", testStubReplace},
		{"Delete", testStubDelete},
		{"NotFound", testStubNotFound},
		{"SessionsIsolated", testStubSessionsIsolated},
		{"Global", testStubGlobal},
		{"Many", testStubMany},
		{"MissingKey", testStubMissingKey},
		{"CopyIsolation", testStubCopyIsolation},
		{"Concurrent", testStubConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// fullStub returns a stub of session with every field set.
func fullStub(session, id string) store.Stub {
	return store.Stub{
		StubID:    id,
		SessionID: session,
		Priority:  5,
		Pattern: store.StubPattern{
			Method:     "POST",
			URL:        "/things?q=1",
			URLPath:    "/things",
			URLPattern: `/things/\d+`,
			Query: map[string]store.StringMatcher{
				"q":    {EqualTo: new("1")},
				"gone": {Absent: true},
			},
			Headers: map[string]store.StringMatcher{
				"Content-Type": {Contains: new("json")},
				"X-Trace":      {Matches: new(`[0-9a-f]{16}`)},
			},
			Body: &store.StringMatcher{EqualToJSON: json.RawMessage(`{"a": [1, 2.50], "b": null}`)},
		},
		Response: store.StubResponse{
			Status:     201,
			Headers:    map[string]string{"Content-Type": "application/json", "X-Stub": id},
			Body:       "stored as it is: validation is not the store's job",
			BodyBase64: "AAEC",
			JSONBody:   json.RawMessage(`{"ok": true}`),
			DelayMs:    250,
		},
		ExpiresAt: baseUnix + 3600,
		CreatedAt: baseTime(),
	}
}

// stubJSON encodes a stub for comparison: raw JSON is compacted by the
// encoder and the time is taken in UTC, so a backend that stores JSON
// documents or times in another zone compares equal.
func stubJSON(t *testing.T, s store.Stub) string {
	t.Helper()
	s.CreatedAt = s.CreatedAt.UTC()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("encode stub %s: %v", s.StubID, err)
	}
	return string(b)
}

func sameStub(t *testing.T, got, want store.Stub) {
	t.Helper()
	if g, w := stubJSON(t, got), stubJSON(t, want); g != w {
		t.Errorf("stub:\n got %s\nwant %s", g, w)
	}
}

func mustPutStub(t *testing.T, st store.Store, s store.Stub) {
	t.Helper()
	if err := st.PutStub(t.Context(), s); err != nil {
		t.Fatalf("PutStub(%q, %q): %v", s.SessionID, s.StubID, err)
	}
}

// mustListStubs returns the session's stubs sorted by id.
func mustListStubs(t *testing.T, st store.Store, session string) []store.Stub {
	t.Helper()
	out, err := st.ListStubs(t.Context(), session)
	if err != nil {
		t.Fatalf("ListStubs(%q): %v", session, err)
	}
	slices.SortFunc(out, func(a, b store.Stub) int { return cmp.Compare(a.StubID, b.StubID) })
	return out
}

func stubIDs(stubs []store.Stub) []string {
	ids := make([]string, len(stubs))
	for i, s := range stubs {
		ids[i] = s.SessionID + "/" + s.StubID
	}
	return ids
}

func testStubPutList(t *testing.T, st store.Store) {
	full := fullStub("s", "full")
	bare := store.Stub{StubID: "bare", SessionID: "s", CreatedAt: baseTime().Add(time.Second)}
	mustPutStub(t, st, full)
	mustPutStub(t, st, bare)
	got := mustListStubs(t, st, "s")
	if len(got) != 2 {
		t.Fatalf("listed %v, want s/bare and s/full", stubIDs(got))
	}
	sameStub(t, got[0], bare)
	sameStub(t, got[1], full)
	if b := got[0]; b.Pattern.Query != nil || b.Pattern.Headers != nil || b.Pattern.Body != nil ||
		b.Response.Headers != nil || b.Response.JSONBody != nil || b.ExpiresAt != 0 {
		t.Errorf("bare stub came back with fields set: %+v", b)
	}
	// Every matcher kind round-trips.
	kinds := store.Stub{StubID: "kinds", SessionID: "s", CreatedAt: baseTime(), Pattern: store.StubPattern{
		Headers: map[string]store.StringMatcher{
			"A": {EqualTo: new("")}, // an empty string is a value, not "unset"
			"B": {EqualToJSON: json.RawMessage(`"{\"x\":1}"`)},
			"C": {Absent: true},
		},
		Body: &store.StringMatcher{BinaryEqualTo: []byte{0, 1, 0xff}},
	}}
	mustPutStub(t, st, kinds)
	for _, s := range mustListStubs(t, st, "s") {
		if s.StubID == "kinds" {
			sameStub(t, s, kinds)
			if m := s.Pattern.Headers["A"]; m.EqualTo == nil || *m.EqualTo != "" {
				t.Errorf("empty equalTo lost: %+v", m)
			}
		}
	}
}

func testStubReplace(t *testing.T, st store.Store) {
	first := fullStub("s", "x")
	mustPutStub(t, st, first)
	second := store.Stub{StubID: "x", SessionID: "s", Priority: 1, CreatedAt: baseTime().Add(time.Minute),
		Response: store.StubResponse{Status: 404, Body: "replaced"}}
	mustPutStub(t, st, second)
	got := mustListStubs(t, st, "s")
	if len(got) != 1 {
		t.Fatalf("after replace listed %v, want one stub", stubIDs(got))
	}
	sameStub(t, got[0], second)
}

func testStubDelete(t *testing.T, st store.Store) {
	ctx := t.Context()
	for _, id := range []string{"a", "b", "c"} {
		mustPutStub(t, st, fullStub("s", id))
	}
	if err := st.DeleteStub(ctx, "s", "b"); err != nil {
		t.Fatalf("DeleteStub: %v", err)
	}
	if got, want := stubIDs(mustListStubs(t, st, "s")), []string{"s/a", "s/c"}; !slices.Equal(got, want) {
		t.Errorf("after delete listed %v, want %v", got, want)
	}
	if err := st.DeleteStub(ctx, "s", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteStub: got %v, want ErrNotFound", err)
	}
	for _, id := range []string{"a", "c"} {
		if err := st.DeleteStub(ctx, "s", id); err != nil {
			t.Fatalf("DeleteStub(%q): %v", id, err)
		}
	}
	if got := mustListStubs(t, st, "s"); len(got) != 0 {
		t.Errorf("after deleting all listed %v", stubIDs(got))
	}
	// The session can get stubs again.
	mustPutStub(t, st, fullStub("s", "a"))
	if got := mustListStubs(t, st, "s"); len(got) != 1 {
		t.Errorf("after re-put listed %v", stubIDs(got))
	}
}

func testStubNotFound(t *testing.T, st store.Store) {
	ctx := t.Context()
	if err := st.DeleteStub(ctx, "nope", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteStub in an unknown session: got %v, want ErrNotFound", err)
	}
	mustPutStub(t, st, fullStub("s", "x"))
	if err := st.DeleteStub(ctx, "s", "y"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteStub of an unknown stub: got %v, want ErrNotFound", err)
	}
	if err := st.DeleteStub(ctx, "other", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteStub with another session's stub id: got %v, want ErrNotFound", err)
	}
	got, err := st.ListStubs(ctx, "nope")
	if err != nil || len(got) != 0 {
		t.Errorf("ListStubs of an unknown session: %v, %v; want none, nil", stubIDs(got), err)
	}
}

func testStubSessionsIsolated(t *testing.T, st store.Store) {
	ctx := t.Context()
	for _, sess := range []string{"s1", "s2", store.GlobalSession, "s1x", "s"} {
		s := fullStub(sess, "same-id")
		s.Response.Body = sess
		mustPutStub(t, st, s)
	}
	mustPutStub(t, st, fullStub("s1", "only-s1"))
	if got, want := stubIDs(mustListStubs(t, st, "s1")), []string{"s1/only-s1", "s1/same-id"}; !slices.Equal(got, want) {
		t.Errorf("s1 listed %v, want %v", got, want)
	}
	if got, want := stubIDs(mustListStubs(t, st, "s2")), []string{"s2/same-id"}; !slices.Equal(got, want) {
		t.Errorf("s2 listed %v, want %v", got, want)
	}
	if err := st.DeleteStub(ctx, "s1", "same-id"); err != nil {
		t.Fatal(err)
	}
	for _, sess := range []string{"s2", store.GlobalSession, "s1x", "s"} {
		got := mustListStubs(t, st, sess)
		if len(got) != 1 || got[0].Response.Body != sess {
			t.Errorf("%s after deleting s1's stub: %v", sess, stubIDs(got))
		}
	}
}

func testStubGlobal(t *testing.T, st store.Store) {
	mustPutStub(t, st, fullStub(store.GlobalSession, "g1"))
	mustPutStub(t, st, fullStub(store.GlobalSession, "g2"))
	mustPutStub(t, st, fullStub("s", "own"))
	if got, want := stubIDs(mustListStubs(t, st, store.GlobalSession)), []string{"*/g1", "*/g2"}; !slices.Equal(got, want) {
		t.Errorf("global listed %v, want %v", got, want)
	}
	// A session's list holds its own stubs only: merging the global ones
	// is the engine's job.
	if got, want := stubIDs(mustListStubs(t, st, "s")), []string{"s/own"}; !slices.Equal(got, want) {
		t.Errorf("s listed %v, want %v", got, want)
	}
	if err := st.DeleteStub(t.Context(), store.GlobalSession, "g1"); err != nil {
		t.Fatal(err)
	}
	if got, want := stubIDs(mustListStubs(t, st, store.GlobalSession)), []string{"*/g2"}; !slices.Equal(got, want) {
		t.Errorf("global after delete listed %v, want %v", got, want)
	}
}

func testStubMany(t *testing.T, st store.Store) {
	const n = 300
	want := make([]string, 0, n)
	for i := range n {
		s := fullStub("s", fmt.Sprintf("stub-%03d", i))
		s.Priority = i % 7
		mustPutStub(t, st, s)
		want = append(want, "s/"+s.StubID)
	}
	if got := stubIDs(mustListStubs(t, st, "s")); !slices.Equal(got, want) {
		t.Errorf("listed %d stubs, want %d", len(got), len(want))
	}
}

func testStubMissingKey(t *testing.T, st store.Store) {
	for _, s := range []store.Stub{
		{StubID: "x"},
		{SessionID: "s"},
	} {
		if err := st.PutStub(t.Context(), s); err == nil {
			t.Errorf("PutStub(session %q, stub %q) succeeded", s.SessionID, s.StubID)
		}
	}
}

func testStubCopyIsolation(t *testing.T, st store.Store) {
	in := fullStub("s", "c")
	want := stubJSON(t, in)
	mustPutStub(t, st, in)
	// The caller changes everything it handed over.
	in.Pattern.Query["q"] = store.StringMatcher{EqualTo: new("changed")}
	*in.Pattern.Headers["Content-Type"].Contains = "changed"
	in.Pattern.Body.EqualToJSON[2] = 'Z'
	in.Response.Headers["X-Stub"] = "changed"
	in.Response.JSONBody[2] = 'Z'
	if got := stubJSON(t, mustListStubs(t, st, "s")[0]); got != want {
		t.Fatalf("caller's values shared on put:\n got %s\nwant %s", got, want)
	}
	out := mustListStubs(t, st, "s")[0]
	out.Pattern.Query["q"] = store.StringMatcher{EqualTo: new("changed")}
	*out.Pattern.Headers["Content-Type"].Contains = "changed"
	out.Pattern.Body.EqualToJSON[2] = 'Z'
	out.Response.Headers["X-Stub"] = "changed"
	if got := stubJSON(t, mustListStubs(t, st, "s")[0]); got != want {
		t.Errorf("values shared on list:\n got %s\nwant %s", got, want)
	}
}

func testStubConcurrent(t *testing.T, st store.Store) {
	const workers, each = 8, 20
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*2)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				s := fullStub("s", fmt.Sprintf("w%d-%d", w, i))
				if err := st.PutStub(ctx, s); err != nil {
					errs <- err
				}
				if _, err := st.ListStubs(ctx, "s"); err != nil {
					errs <- err
				}
				if i%2 == 1 {
					if err := st.DeleteStub(ctx, "s", fmt.Sprintf("w%d-%d", w, i-1)); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := mustListStubs(t, st, "s"); len(got) != workers*each/2 {
		t.Errorf("after concurrent puts and deletes: %d stubs, want %d", len(got), workers*each/2)
	}
}
