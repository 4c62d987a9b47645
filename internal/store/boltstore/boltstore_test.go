package boltstore_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/boltstore"
	"github.com/proxyctl/proxyctl/internal/store/storetest"
)

func open(t *testing.T, path string, o boltstore.Options) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(path, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newStore(t *testing.T) store.Store {
	return open(t, filepath.Join(t.TempDir(), "proxyctl.db"), boltstore.Options{})
}

func TestSessions(t *testing.T) {
	storetest.TestSessions(t, newStore)
}

func TestTraffic(t *testing.T) {
	storetest.TestTraffic(t, newStore)
}

func TestStubs(t *testing.T) {
	storetest.TestStubs(t, newStore)
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "proxyctl")
	path := filepath.Join(dir, "proxyctl.db")
	st := open(t, path, boltstore.Options{})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(path + ".traffic/*.seg")
	if err != nil || len(segs) == 0 {
		t.Fatalf("no traffic segment next to the file: %v %v", segs, err)
	}
	for _, p := range append([]string{dir, path, path + ".traffic"}, segs...) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s: mode %v, want no group or other access", p, perm)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notBolt := filepath.Join(dir, "not-bolt.db")
	if err := os.WriteFile(notBolt, []byte(strings.Repeat("not a bolt file\n", 512)), 0o600); err != nil {
		t.Fatal(err)
	}
	fileAsDir := filepath.Join(dir, "file")
	if err := os.WriteFile(fileAsDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"", notBolt, filepath.Join(fileAsDir, "proxyctl.db")} {
		st, err := boltstore.Open(path, boltstore.Options{})
		if err == nil {
			_ = st.Close()
			t.Errorf("Open(%q) succeeded", path)
			continue
		}
		if path != "" && !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%q): error %q does not name the file", path, err)
		}
	}
}

// TestOpenInUse opens the same file twice in this process: flock locks are
// per open file, so the second Open waits for the lock as another process
// would.
func TestOpenInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxyctl.db")
	first := open(t, path, boltstore.Options{})
	start := time.Now()
	second, err := boltstore.Open(path, boltstore.Options{LockTimeout: 200 * time.Millisecond})
	if err == nil {
		_ = second.Close()
		t.Fatal("second Open succeeded while the first is open")
	}
	t.Logf("second Open failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if want := "store " + path + " is in use by another proxyctl process"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !errors.Is(err, bolterrors.ErrTimeout) {
		t.Errorf("error %v does not wrap bbolt's ErrTimeout", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// Once the first has closed, the file is free.
	open(t, path, boltstore.Options{LockTimeout: 200 * time.Millisecond})
}

// TestOpenInUseByAnotherProcess runs this test binary as the second
// process (see TestHelperOpen).
func TestOpenInUseByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxyctl.db")
	open(t, path, boltstore.Options{})
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperOpen$")
	cmd.Env = append(os.Environ(), "BOLTSTORE_HELPER_PATH="+path)
	out, err := cmd.CombinedOutput()
	if _, ok := errors.AsType[*exec.ExitError](err); !ok {
		t.Fatalf("helper: got %v, want it to fail\n%s", err, out)
	}
	if want := "store " + path + " is in use by another proxyctl process"; !strings.Contains(string(out), want) {
		t.Errorf("helper output does not say %q:\n%s", want, out)
	}
}

// TestHelperOpen is the second process of TestOpenInUseByAnotherProcess.
func TestHelperOpen(t *testing.T) {
	path := os.Getenv("BOLTSTORE_HELPER_PATH")
	if path == "" {
		t.Skip("helper process only")
	}
	st, err := boltstore.Open(path, boltstore.Options{LockTimeout: 200 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	_ = st.Close()
}

func item(session string, ts int64, body string) *capture.Item {
	return &capture.Item{
		SessionID:       session,
		Timestamp:       ts,
		ID:              fmt.Sprintf("%s-%d", session, ts),
		Kind:            capture.KindHTTP,
		Method:          "GET",
		Path:            "/x",
		Status:          200,
		ResponseHeaders: map[string][]string{"Content-Type": {"text/plain"}},
		ResponseBody:    capture.NewBody([]byte(body)),
	}
}

// stamps is the timestamps of session's items in st after 0.
func stamps(t *testing.T, st store.Store, session string) []int64 {
	t.Helper()
	return storetest.Timestamps(t, st, session, 0)
}

// TestReopen writes sessions, stubs and traffic, closes the store and
// reads everything back from a new one on the same file; the retention
// totals carry over too.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "proxyctl.db")
	o := boltstore.Options{MaxTrafficItems: 5, MaxStubsPerSession: 2}
	base := time.Unix(1767323045, 0).UTC()

	st := open(t, path, o)
	sess := store.Session{ID: "s1", State: store.StateActive, Kind: "http", Labels: map[string]string{"team": "a"},
		CreatedAt: base, LastSeenAt: base, ExpiresAt: base.Add(time.Hour)}
	if err := st.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateSession(ctx, store.Session{ID: "s2", State: store.StateActive, CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.EndSession(ctx, "s2", store.StateClosed, base.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	stub := store.Stub{StubID: "a", SessionID: "s1", Priority: 3, CreatedAt: base,
		Pattern:  store.StubPattern{Method: "GET", URL: "/x"},
		Response: store.StubResponse{Status: 418, Body: "teapot"}}
	for _, id := range []string{"a", "b"} {
		stub.StubID = id
		if err := st.PutStub(ctx, stub); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AppendTraffic(ctx, []*capture.Item{item("s1", 1, "one"), item("s1", 2, "two"), item("s2", 3, "three")}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = open(t, path, o)
	got, err := st.GetSession(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.StateActive || !got.CreatedAt.Equal(base) || !got.ExpiresAt.Equal(sess.ExpiresAt) ||
		!maps.Equal(got.Labels, sess.Labels) || got.Kind != "http" {
		t.Errorf("s1 after reopen: %+v", got)
	}
	if got, err := st.GetSession(ctx, "s2"); err != nil || got.State != store.StateClosed || !got.EndedAt.Equal(base.Add(time.Minute)) {
		t.Errorf("s2 after reopen: %+v, %v", got, err)
	}
	// The closed session stays closed: the conditional write still holds.
	if _, err := st.EndSession(ctx, "s2", store.StateExpired, base.Add(time.Hour)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("EndSession of a closed session after reopen: got %v, want ErrConflict", err)
	}
	stubs, err := st.ListStubs(ctx, "s1")
	if err != nil || len(stubs) != 2 || stubs[0].Response.Body != "teapot" {
		t.Errorf("stubs after reopen: %+v, %v", stubs, err)
	}
	// The stub count survived: the session is still at its bound.
	if err := st.PutStub(ctx, store.Stub{SessionID: "s1", StubID: "c"}); !errors.Is(err, store.ErrLimit) {
		t.Errorf("third stub after reopen: got %v, want ErrLimit", err)
	}
	if got := stamps(t, st, "s1"); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("s1 traffic after reopen: %v", got)
	}
	it, err := st.GetTraffic(ctx, "s2", "s2-3")
	if err != nil || string(it.ResponseBody.Data) != "three" {
		t.Errorf("GetTraffic after reopen: %+v, %v", it, err)
	}
	// The item total survived: 3 stored, 3 more go over the bound of 5 by
	// one, so the oldest item (s1 at 1) goes.
	if err := st.AppendTraffic(ctx, []*capture.Item{item("s3", 4, ""), item("s3", 5, ""), item("s3", 6, "")}); err != nil {
		t.Fatal(err)
	}
	if got := stamps(t, st, "s1"); !slices.Equal(got, []int64{2}) {
		t.Errorf("s1 traffic after going over the bound: %v, want [2]", got)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening with a smaller bound applies it at once.
	st = open(t, path, boltstore.Options{MaxTrafficItems: 2})
	if got := stamps(t, st, "s1"); len(got) != 0 {
		t.Errorf("s1 traffic after reopening with a bound of 2: %v", got)
	}
	if got := stamps(t, st, "s3"); !slices.Equal(got, []int64{5, 6}) {
		t.Errorf("s3 traffic after reopening with a bound of 2: %v, want [5 6]", got)
	}
}

func TestForeignCursor(t *testing.T) {
	st := newStore(t)
	for _, id := range []string{"a", "b", "c"} {
		if err := st.CreateSession(t.Context(), store.Session{ID: id, State: store.StateActive}); err != nil {
			t.Fatal(err)
		}
	}
	// memstore's cursor for "a" is the bare base64url id.
	for _, c := range []string{base64.RawURLEncoding.EncodeToString([]byte("a")), "@@"} {
		if _, _, err := st.ListSessions(t.Context(), store.Page{Cursor: c}); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("cursor %q: got %v, want ErrBadCursor", c, err)
		}
	}
	_, next, err := st.ListSessions(t.Context(), store.Page{Limit: 1})
	if err != nil || next == "" {
		t.Fatalf("first page: next %q, %v", next, err)
	}
	items, _, err := st.ListSessions(t.Context(), store.Page{Cursor: next, Limit: 1})
	if err != nil || len(items) != 1 || items[0].ID != "b" {
		t.Errorf("second page: %+v, %v", items, err)
	}
}

func TestNegativeTimestamps(t *testing.T) {
	st := newStore(t)
	var batch []*capture.Item
	for _, ts := range []int64{5, -3, 0, -1 << 62, 1 << 62, -1} {
		batch = append(batch, item("s", ts, "x"))
	}
	if err := st.AppendTraffic(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	items, err := st.ListTraffic(t.Context(), "s", -1<<63, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, it := range items {
		got = append(got, it.Timestamp)
	}
	if want := []int64{-1 << 62, -3, -1, 0, 5, 1 << 62}; !slices.Equal(got, want) {
		t.Errorf("timestamps %v, want %v", got, want)
	}
	// after is exclusive, as for positive timestamps.
	if got := stamps(t, st, "s"); !slices.Equal(got, []int64{5, 1 << 62}) {
		t.Errorf("after 0: %v, want [5 %d]", got, int64(1<<62))
	}
}
