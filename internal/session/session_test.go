package session_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newManager(t testing.TB, st store.Sessions, cfg session.Config) *session.Manager {
	t.Helper()
	return session.NewManager(st, cfg, zerolog.New(zerolog.NewTestWriter(t)))
}

func storedState(t *testing.T, st store.Sessions, id string) store.SessionState {
	t.Helper()
	s, err := st.GetSession(context.Background(), id)
	if err != nil {
		t.Fatalf("store GetSession(%q): %v", id, err)
	}
	return s.State
}

// runSweeper starts m.Run and returns a function that stops it and checks
// that it returned nil.
func runSweeper(t *testing.T, m *session.Manager) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    session.Mode
		wantErr bool
	}{
		{"", session.ModeAuto, false},
		{"auto", session.ModeAuto, false},
		{"STRICT", session.ModeStrict, false},
		{" strict ", session.ModeStrict, false},
		{"loose", "", true},
	}
	for _, tt := range tests {
		got, err := session.ParseMode(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseMode(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestStrict(t *testing.T) {
	ctx := t.Context()
	st := memstore.New()
	m := newManager(t, st, session.Config{Mode: session.ModeStrict})
	if _, err := m.Open(ctx, "open", 0, "http", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Open(ctx, "closed", 0, "http", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Close(ctx, "closed"); err != nil {
		t.Fatal(err)
	}
	// "expired" was opened and expired by another instance.
	if err := st.CreateSession(ctx, store.Session{ID: "expired", State: store.StateActive, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.EndSession(ctx, "expired", store.StateExpired, time.Now()); err != nil {
		t.Fatal(err)
	}
	m2 := newManager(t, st, session.Config{Mode: session.ModeStrict}) // cold cache

	tests := []struct {
		id, defaultID string
		want          error
		wantState     store.SessionState
	}{
		{"", "client-1", session.ErrMissing, ""},
		{"nope", "client-1", session.ErrUnknown, ""},
		{"closed", "", session.ErrEnded, store.StateClosed},
		{"expired", "", session.ErrEnded, store.StateExpired},
		{"open", "", nil, store.StateActive},
	}
	for _, mgr := range []*session.Manager{m, m2} {
		for _, tt := range tests {
			s, err := mgr.Resolve(ctx, tt.id, tt.defaultID)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Resolve(%q, %q): got %v, want %v", tt.id, tt.defaultID, err, tt.want)
			}
			if tt.wantState != "" && s.State != tt.wantState {
				t.Errorf("Resolve(%q): state %q, want %q", tt.id, s.State, tt.wantState)
			}
			if tt.wantState == store.StateClosed && !strings.Contains(fmt.Sprint(err), "CLOSED") {
				t.Errorf("Resolve(%q): error %q does not name the state", tt.id, err)
			}
		}
	}
	// Strict mode never creates anything.
	for _, id := range []string{"nope", "client-1"} {
		if _, err := st.GetSession(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("store has %q after strict lookups: %v", id, err)
		}
	}
}

func TestAuto(t *testing.T) {
	ctx := t.Context()
	st := memstore.New()
	m := newManager(t, st, session.Config{Kind: "http", TTL: time.Hour})

	s, err := m.Resolve(ctx, "new-id", "client-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "new-id" || s.State != store.StateActive || s.Kind != "http" || s.ExpiresAt.IsZero() {
		t.Errorf("auto-created session %+v", s)
	}
	if got := storedState(t, st, "new-id"); got != store.StateActive {
		t.Errorf("stored state %q", got)
	}
	s, err = m.Resolve(ctx, "", "client-127.0.0.1")
	if err != nil || s.ID != "client-127.0.0.1" {
		t.Fatalf("default session: %+v, %v", s, err)
	}
	if s2, err := m.Resolve(ctx, "", "client-127.0.0.1"); err != nil || s2.ID != s.ID {
		t.Errorf("default session again: %+v, %v", s2, err)
	}
	if _, err := m.Resolve(ctx, "", ""); !errors.Is(err, session.ErrMissing) {
		t.Errorf("no id and no default: got %v, want ErrMissing", err)
	}
	if _, err := m.Resolve(ctx, "bad id\n", ""); !errors.Is(err, session.ErrInvalidID) {
		t.Errorf("invalid id: got %v, want ErrInvalidID", err)
	}
	// A session created by another instance is used, not re-created.
	if err := st.CreateSession(ctx, store.Session{ID: "other", State: store.StateActive, Kind: "stdio", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Resolve(ctx, "other", ""); err != nil || s.Kind != "stdio" {
		t.Errorf("existing session: %+v, %v", s, err)
	}
	// A closed session is not reopened in auto mode either.
	if _, err := m.Close(ctx, "new-id"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Resolve(ctx, "new-id", ""); !errors.Is(err, session.ErrEnded) {
		t.Errorf("closed session in auto mode: got %v, want ErrEnded", err)
	}
	if got := m.Stats(); got != (session.Stats{Active: 2, Closed: 1}) {
		t.Errorf("Stats = %+v", got)
	}
}

func TestAutoCreateRace(t *testing.T) {
	st := memstore.New()
	ms := []*session.Manager{newManager(t, st, session.Config{}), newManager(t, st, session.Config{})}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			if s, err := ms[i%2].Resolve(t.Context(), "racy", ""); err != nil || s.ID != "racy" {
				t.Errorf("Resolve: %+v, %v", s, err)
			}
		})
	}
	wg.Wait()
}

func TestMax(t *testing.T) {
	ctx := t.Context()
	st := memstore.New()
	m := newManager(t, st, session.Config{Max: 2})
	if _, err := m.Open(ctx, "a", 0, "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Resolve(ctx, "b", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Open(ctx, "c", 0, "", nil); !errors.Is(err, session.ErrTooMany) {
		t.Errorf("Open beyond Max: got %v, want ErrTooMany", err)
	}
	if _, err := m.Resolve(ctx, "c", ""); !errors.Is(err, session.ErrTooMany) {
		t.Errorf("Resolve beyond Max: got %v, want ErrTooMany", err)
	}
	if _, err := st.GetSession(ctx, "c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused session was stored: %v", err)
	}
	// Sessions opened elsewhere do not count against this manager's Max.
	if err := st.CreateSession(ctx, store.Session{ID: "elsewhere", State: store.StateActive, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Resolve(ctx, "elsewhere", ""); err != nil {
		t.Errorf("Resolve of a session opened elsewhere: %v", err)
	}
	if _, err := m.Close(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	// A duplicate does not leak the freed slot.
	if _, err := m.Open(ctx, "a", 0, "", nil); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate Open: got %v, want ErrExists", err)
	}
	if _, err := m.Open(ctx, "c", 0, "", nil); err != nil {
		t.Errorf("Open after a close freed a slot: %v", err)
	}
	if _, err := m.Open(ctx, "d", 0, "", nil); !errors.Is(err, session.ErrTooMany) {
		t.Errorf("Open beyond Max again: got %v, want ErrTooMany", err)
	}
}

func TestOpenCloseLabelList(t *testing.T) {
	ctx := t.Context()
	st := memstore.New()
	m := newManager(t, st, session.Config{TTL: time.Hour})

	labels := map[string]string{"team": "a"}
	s, err := m.Open(ctx, "", 0, "stdio", labels)
	if err != nil {
		t.Fatal(err)
	}
	labels["team"] = "mutated"
	if len(s.ID) != 32 || strings.Trim(s.ID, "0123456789abcdef") != "" {
		t.Errorf("random id %q, want 32 hex digits", s.ID)
	}
	if s.Kind != "stdio" || s.Labels["team"] != "a" || s.ExpiresAt.Sub(s.CreatedAt) != time.Hour {
		t.Errorf("opened %+v", s)
	}
	s2, err := m.Open(ctx, "explicit", 5*time.Minute, "http", nil)
	if err != nil || s2.ExpiresAt.Sub(s2.CreatedAt) != 5*time.Minute {
		t.Fatalf("Open with ttl: %+v, %v", s2, err)
	}
	if _, err := m.Open(ctx, "explicit", 0, "http", nil); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate Open: got %v, want ErrExists", err)
	}

	if err := m.Label(ctx, "explicit", map[string]string{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Label(ctx, "explicit", map[string]string{"b": "2"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Label(ctx, "nope", map[string]string{"b": "2"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Label unknown: got %v, want ErrNotFound", err)
	}
	got, err := m.Get(ctx, "explicit")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"a": "1", "b": "2"}; !maps.Equal(got.Labels, want) {
		t.Errorf("labels after Label %v, want %v", got.Labels, want)
	}
	got.Labels["a"] = "mutated"
	if got, _ := m.Get(ctx, "explicit"); got.Labels["a"] != "1" {
		t.Errorf("Get shares its labels map")
	}
	if _, err := m.Get(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get unknown: got %v, want ErrNotFound", err)
	}

	closed, err := m.Close(ctx, "explicit")
	if err != nil || closed.State != store.StateClosed || closed.EndedAt.IsZero() {
		t.Fatalf("Close: %+v, %v", closed, err)
	}
	if again, err := m.Close(ctx, "explicit"); !errors.Is(err, session.ErrEnded) || again.State != store.StateClosed {
		t.Errorf("second Close: %+v, %v; want ErrEnded", again, err)
	}
	if _, err := m.Close(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Close unknown: got %v, want ErrNotFound", err)
	}
	if _, err := m.Resolve(ctx, "explicit", ""); !errors.Is(err, session.ErrEnded) {
		t.Errorf("Resolve after Close: got %v, want ErrEnded", err)
	}

	for _, id := range []string{"c", "b", "a"} {
		if _, err := m.Open(ctx, id, 0, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for cursor := ""; ; {
		items, next, err := m.List(ctx, store.Page{Cursor: cursor, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range items {
			ids = append(ids, s.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if want := slices.Sorted(slices.Values([]string{"a", "b", "c", "explicit", s.ID})); !slices.Equal(ids, want) {
		t.Errorf("List ids %q, want %q", ids, want)
	}
	if _, _, err := m.List(ctx, store.Page{Cursor: "!!"}); !errors.Is(err, store.ErrBadCursor) {
		t.Errorf("List with a bad cursor: got %v, want ErrBadCursor", err)
	}
	if got := m.Stats(); got != (session.Stats{Active: 4, Closed: 1}) {
		t.Errorf("Stats = %+v", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		st := memstore.New()
		m := newManager(t, st, session.Config{IdleTimeout: 10 * time.Second})
		start := time.Now()
		if _, err := m.Resolve(ctx, "s", ""); err != nil {
			t.Fatal(err)
		}
		for range 3 { // activity keeps it alive
			time.Sleep(9 * time.Second)
			if _, err := m.Resolve(ctx, "s", ""); err != nil {
				t.Fatalf("Resolve after 9s idle: %v", err)
			}
		}
		time.Sleep(10 * time.Second) // no sweeper: Resolve itself refuses it
		s, err := m.Resolve(ctx, "s", "")
		if !errors.Is(err, session.ErrEnded) || s.State != store.StateExpired {
			t.Fatalf("Resolve after 10s idle: %+v, %v; want EXPIRED", s, err)
		}
		stored, _ := st.GetSession(ctx, "s")
		if stored.State != store.StateExpired || !stored.EndedAt.Equal(start.Add(37*time.Second)) {
			t.Errorf("stored %s ended %v, want EXPIRED at %v", stored.State, stored.EndedAt, start.Add(37*time.Second))
		}
		if got := m.Stats(); got != (session.Stats{Expired: 1}) {
			t.Errorf("Stats = %+v", got)
		}
	})
}

func TestTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		st := memstore.New()
		m := newManager(t, st, session.Config{TTL: 5 * time.Second})
		if _, err := m.Open(ctx, "s", 0, "", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Open(ctx, "long", time.Minute, "", nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * time.Second)
		if _, err := m.Resolve(ctx, "s", ""); err != nil {
			t.Fatalf("Resolve before TTL: %v", err)
		}
		time.Sleep(time.Second)
		if _, err := m.Resolve(ctx, "s", ""); !errors.Is(err, session.ErrEnded) {
			t.Fatalf("Resolve at TTL: got %v, want ErrEnded", err)
		}
		if got := storedState(t, st, "s"); got != store.StateExpired {
			t.Errorf("stored state %s, want EXPIRED", got)
		}
		if _, err := m.Resolve(ctx, "long", ""); err != nil {
			t.Errorf("session with its own TTL: %v", err)
		}
	})
}

func TestSweeper(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		st := memstore.New()
		m := newManager(t, st, session.Config{IdleTimeout: 10 * time.Second, TTL: time.Minute})
		stop := runSweeper(t, m)
		defer stop()

		for _, id := range []string{"idle", "busy", "ttl"} {
			if _, err := m.Open(ctx, id, 0, "", nil); err != nil {
				t.Fatal(err)
			}
		}
		for range 11 {
			time.Sleep(time.Second)
			if _, err := m.Resolve(ctx, "busy", ""); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Resolve(ctx, "ttl", ""); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if got := storedState(t, st, "idle"); got != store.StateExpired {
			t.Errorf("idle session after 11s: %s, want EXPIRED", got)
		}
		busy, _ := st.GetSession(ctx, "busy")
		if busy.State != store.StateActive || time.Since(busy.LastSeenAt) > time.Second {
			t.Errorf("busy session: %s, LastSeenAt %v ago; want ACTIVE and flushed", busy.State, time.Since(busy.LastSeenAt))
		}
		// TTL ends even a busy session, without a lookup.
		for range 45 {
			time.Sleep(time.Second)
			if _, err := m.Resolve(ctx, "busy", ""); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := storedState(t, st, "busy"); got != store.StateExpired {
			t.Errorf("busy session past its TTL: %s, want EXPIRED", got)
		}
		if got := storedState(t, st, "ttl"); got != store.StateExpired {
			t.Errorf("ttl session: %s, want EXPIRED", got)
		}
		if got := m.Stats(); got != (session.Stats{Expired: 3}) {
			t.Errorf("Stats = %+v", got)
		}
	})
}

// TestSharedActivity checks that activity seen by one instance keeps the
// session alive on another once the sweeper has flushed it.
func TestSharedActivity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		st := memstore.New()
		cfg := session.Config{IdleTimeout: 10 * time.Second}
		a, b := newManager(t, st, cfg), newManager(t, st, cfg)
		stop := runSweeper(t, a)
		defer stop()
		if _, err := b.Resolve(ctx, "s", ""); err != nil {
			t.Fatal(err)
		}
		for range 15 {
			time.Sleep(time.Second)
			if _, err := a.Resolve(ctx, "s", ""); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.Resolve(ctx, "s", ""); err != nil {
			t.Errorf("instance b refused a session busy on instance a: %v", err)
		}
	})
}

func TestCacheTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		st := memstore.New()
		m := newManager(t, st, session.Config{Mode: session.ModeStrict})
		if _, err := m.Open(ctx, "s", 0, "", nil); err != nil {
			t.Fatal(err)
		}
		// Another instance closes it directly in the shared store.
		if _, err := st.EndSession(ctx, "s", store.StateClosed, time.Now()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(999 * time.Millisecond)
		if _, err := m.Resolve(ctx, "s", ""); err != nil {
			t.Errorf("Resolve within the cache TTL: %v, want the cached session", err)
		}
		time.Sleep(time.Millisecond)
		s, err := m.Resolve(ctx, "s", "")
		if !errors.Is(err, session.ErrEnded) || s.State != store.StateClosed {
			t.Errorf("Resolve after the cache TTL: %+v, %v; want CLOSED", s, err)
		}
		if got := m.Stats(); got != (session.Stats{Closed: 1}) {
			t.Errorf("Stats = %+v", got)
		}
	})
}

// flaky wraps a store; while failing is set every call fails.
type flaky struct {
	store.Sessions
	failing atomic.Bool
	calls   atomic.Int64
}

var errDown = errors.New("store down")

func (f *flaky) err() error {
	f.calls.Add(1)
	if f.failing.Load() {
		return errDown
	}
	return nil
}

func (f *flaky) CreateSession(ctx context.Context, s store.Session) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Sessions.CreateSession(ctx, s)
}

func (f *flaky) GetSession(ctx context.Context, id string) (store.Session, error) {
	if err := f.err(); err != nil {
		return store.Session{}, err
	}
	return f.Sessions.GetSession(ctx, id)
}

func (f *flaky) EndSession(ctx context.Context, id string, to store.SessionState, at time.Time) (store.Session, error) {
	if err := f.err(); err != nil {
		return store.Session{}, err
	}
	return f.Sessions.EndSession(ctx, id, to, at)
}

func (f *flaky) TouchSession(ctx context.Context, id string, at time.Time) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Sessions.TouchSession(ctx, id, at)
}

func TestOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		mem := memstore.New()
		st := &flaky{Sessions: mem}
		m := newManager(t, st, session.Config{IdleTimeout: time.Minute})
		stop := runSweeper(t, m)
		defer stop()
		if _, err := m.Resolve(ctx, "cached", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Open(ctx, "closing", 0, "", nil); err != nil {
			t.Fatal(err)
		}
		st.failing.Store(true)
		for range 10 { // well past the cache TTL
			time.Sleep(time.Second)
			if _, err := m.Resolve(ctx, "cached", ""); err != nil {
				t.Fatalf("cached session during the outage: %v", err)
			}
		}
		// Auto mode opens an unknown session here and saves it later.
		if _, err := m.Resolve(ctx, "uncached", ""); err != nil {
			t.Errorf("uncached session during the outage: %v", err)
		}
		if _, err := m.Open(ctx, "new", 0, "", nil); !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("Open during the outage: got %v, want ErrUnavailable", err)
		}
		if _, err := m.Close(ctx, "closing"); !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("Close during the outage: got %v, want ErrUnavailable", err)
		}
		// Idle expiry still refuses it, and is written once the store is back.
		time.Sleep(2 * time.Minute)
		if _, err := m.Resolve(ctx, "closing", ""); !errors.Is(err, session.ErrEnded) {
			t.Errorf("idle session during the outage: got %v, want ErrEnded", err)
		}
		st.failing.Store(false)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		for _, id := range []string{"closing", "cached", "uncached"} {
			if got := storedState(t, mem, id); got != store.StateExpired {
				t.Errorf("%s after the outage: stored %s, want EXPIRED", id, got)
			}
		}
		if got := m.Stats(); got != (session.Stats{Expired: 3}) {
			t.Errorf("Stats = %+v", got)
		}
		if _, err := m.Open(ctx, "new", 0, "", nil); err != nil {
			t.Errorf("Open after the outage: %v", err)
		}
	})
}

func TestDefaultSessionRenewed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		st := memstore.New()
		m := newManager(t, st, session.Config{IdleTimeout: 10 * time.Second})
		s, err := m.Resolve(ctx, "", "client-1")
		if err != nil || s.ID != "client-1" {
			t.Fatalf("default session: %+v, %v", s, err)
		}
		time.Sleep(11 * time.Second)
		s2, err := m.Resolve(ctx, "", "client-1")
		if err != nil || !strings.HasPrefix(s2.ID, "client-1~") {
			t.Fatalf("default session after it expired: %+v, %v; want a new client-1~ session", s2, err)
		}
		if s3, err := m.Resolve(ctx, "", "client-1"); err != nil || s3.ID != s2.ID {
			t.Errorf("default session again: %+v, %v; want %s", s3, err, s2.ID)
		}
		if got := storedState(t, st, "client-1"); got != store.StateExpired {
			t.Errorf("old default session: %s, want EXPIRED", got)
		}
		// An explicit id of an ended session is still refused.
		for _, def := range []string{"", "client-1"} {
			if _, err := m.Resolve(ctx, "client-1", def); !errors.Is(err, session.ErrEnded) {
				t.Errorf("explicit ended id (default %q): got %v, want ErrEnded", def, err)
			}
		}
		// So is a closed default session: the client gets a new one.
		if _, err := m.Close(ctx, s2.ID); err != nil {
			t.Fatal(err)
		}
		if s4, err := m.Resolve(ctx, "", "client-1"); err != nil || s4.ID == s2.ID || !strings.HasPrefix(s4.ID, "client-1~") {
			t.Errorf("default session after close: %+v, %v", s4, err)
		}
	})
}

func TestResolveContextCanceled(t *testing.T) {
	st := memstore.New()
	m := newManager(t, st, session.Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := m.Resolve(ctx, "s", ""); !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve with a canceled context: got %v", err)
	}
}

func TestResolveHitNoAllocNoStore(t *testing.T) {
	st := &flaky{Sessions: memstore.New()}
	m := newManager(t, st, session.Config{CacheTTL: time.Hour, IdleTimeout: time.Hour})
	if _, err := m.Resolve(t.Context(), "s", ""); err != nil {
		t.Fatal(err)
	}
	calls := st.calls.Load()
	ctx := t.Context()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := m.Resolve(ctx, "s", ""); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("cache hit allocates %.1f times", allocs)
	}
	if got := st.calls.Load(); got != calls {
		t.Errorf("cache hits made %d store calls", got-calls)
	}
}

func BenchmarkResolveHit(b *testing.B) {
	st := memstore.New()
	m := newManager(b, st, session.Config{CacheTTL: time.Hour, IdleTimeout: time.Hour})
	ctx := context.Background()
	for i := range 1000 {
		if _, err := m.Resolve(ctx, fmt.Sprintf("s-%d", i), ""); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.Resolve(ctx, "s-42", ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel-same", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := m.Resolve(ctx, "s-42", ""); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("s-%d", i)
	}
	b.Run("parallel-spread", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(397))
			for pb.Next() {
				i++
				if _, err := m.Resolve(ctx, ids[i%len(ids)], ""); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("default", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.Resolve(ctx, "", "client-127.0.0.1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// gated blocks GetSession until gate is closed and counts the calls.
type gated struct {
	store.Sessions
	gate  chan struct{}
	calls atomic.Int64
}

func (g *gated) GetSession(ctx context.Context, id string) (store.Session, error) {
	g.calls.Add(1)
	<-g.gate
	return g.Sessions.GetSession(ctx, id)
}

func TestConcurrentMissesCollapse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New()
		if err := mem.CreateSession(t.Context(), store.Session{ID: "s", State: store.StateActive, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		st := &gated{Sessions: mem, gate: make(chan struct{})}
		m := newManager(t, st, session.Config{Mode: session.ModeStrict})
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if _, err := m.Resolve(t.Context(), "s", ""); err != nil {
					t.Errorf("Resolve: %v", err)
				}
			})
		}
		synctest.Wait()
		close(st.gate)
		wg.Wait()
		if got := st.calls.Load(); got != 1 {
			t.Errorf("20 concurrent misses made %d store reads, want 1", got)
		}
	})
}

// slowDown answers GetSession after a delay with an error while down.
type slowDown struct {
	store.Sessions
	down  atomic.Bool
	calls atomic.Int64
}

func (s *slowDown) GetSession(ctx context.Context, id string) (store.Session, error) {
	s.calls.Add(1)
	if s.down.Load() {
		time.Sleep(time.Second) // a store that times out
		return store.Session{}, errDown
	}
	return s.Sessions.GetSession(ctx, id)
}

// Once an outage is detected, cached sessions are answered at once (the
// store is retried in the background, one read at a time), and the first
// read after the store is back takes the cache out of outage mode.
func TestOutageServesCacheWithoutWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		mem := memstore.New()
		st := &slowDown{Sessions: mem}
		m := newManager(t, st, session.Config{Mode: session.ModeStrict})
		if _, err := m.Open(ctx, "s", 0, "", nil); err != nil {
			t.Fatal(err)
		}
		st.down.Store(true)
		time.Sleep(2 * time.Second) // past the cache TTL
		start := time.Now()
		if _, err := m.Resolve(ctx, "s", ""); err != nil { // detects the outage: waits once
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != time.Second {
			t.Fatalf("the first lookup after the TTL waited %v, want the store's 1s", waited)
		}
		time.Sleep(2 * time.Second)
		for range 50 {
			start := time.Now()
			if _, err := m.Resolve(ctx, "s", ""); err != nil {
				t.Fatal(err)
			}
			if waited := time.Since(start); waited != 0 {
				t.Fatalf("a lookup during the outage waited %v", waited)
			}
		}
		synctest.Wait()
		calls := st.calls.Load()
		if calls > 3 {
			t.Errorf("%d store reads for 51 lookups during the outage: the refresh must be one at a time", calls)
		}
		// Closed on another instance while we were cut off: seen once the
		// store answers again.
		if _, err := mem.EndSession(ctx, "s", store.StateClosed, time.Now()); err != nil {
			t.Fatal(err)
		}
		st.down.Store(false)
		time.Sleep(2 * time.Second)
		_, _ = m.Resolve(ctx, "s", "") // may still answer from the cache: refreshes
		synctest.Wait()
		if _, err := m.Resolve(ctx, "s", ""); !errors.Is(err, session.ErrEnded) {
			t.Fatalf("after the outage: %v, want ErrEnded", err)
		}
	})
}

// Auto mode, store unreachable: an unknown session opens on this instance
// (requests are served) and is created in the store once it answers. In
// strict mode the same lookup is refused (503): the id cannot be checked.
func TestAutoOpensUnknownSessionDuringOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		mem := memstore.New()
		st := &flaky{Sessions: mem}
		m := newManager(t, st, session.Config{})
		strict := newManager(t, st, session.Config{Mode: session.ModeStrict})
		stop := runSweeper(t, m)
		defer stop()
		st.failing.Store(true)
		for range 5 {
			if s, err := m.Resolve(ctx, "fresh", ""); err != nil || s.State != store.StateActive {
				t.Fatalf("new session during the outage: %+v, %v", s, err)
			}
			time.Sleep(time.Second)
		}
		if _, err := strict.Resolve(ctx, "fresh", ""); !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("strict mode during the outage: got %v, want ErrUnavailable", err)
		}
		if _, err := mem.GetSession(ctx, "fresh"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("stored during the outage: %v", err)
		}
		st.failing.Store(false)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := storedState(t, mem, "fresh"); got != store.StateActive {
			t.Errorf("after the outage: stored %s, want ACTIVE", got)
		}
		if got := m.Stats(); got != (session.Stats{Active: 1}) {
			t.Errorf("Stats = %+v", got)
		}
	})
}

// A session opened here during an outage whose id the store knows as
// CLOSED (closed on another instance): once the store answers, the stored
// state wins and the session is refused.
func TestUnsavedSessionYieldsToTheStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		mem := memstore.New()
		st := &flaky{Sessions: mem}
		m := newManager(t, st, session.Config{})
		stop := runSweeper(t, m)
		defer stop()
		other := newManager(t, mem, session.Config{})
		if _, err := other.Open(ctx, "gone", 0, "", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Close(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		st.failing.Store(true)
		if _, err := m.Resolve(ctx, "gone", ""); err != nil {
			t.Fatalf("during the outage: %v", err)
		}
		st.failing.Store(false)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if _, err := m.Resolve(ctx, "gone", ""); !errors.Is(err, session.ErrEnded) {
			t.Errorf("after the outage: got %v, want ErrEnded", err)
		}
		if got := storedState(t, mem, "gone"); got != store.StateClosed {
			t.Errorf("stored %s, want CLOSED (not overwritten)", got)
		}
	})
}

// racingCreate answers the first GetSession of an id with ErrNotFound and
// then lets another instance create it, so the manager's CreateSession
// meets ErrExists.
type racingCreate struct {
	store.Sessions
	raced atomic.Bool
}

func (r *racingCreate) GetSession(ctx context.Context, id string) (store.Session, error) {
	if r.raced.CompareAndSwap(false, true) {
		other := store.Session{ID: id, State: store.StateActive, Kind: "other", CreatedAt: time.Now().UTC()}
		if err := r.CreateSession(ctx, other); err != nil {
			return store.Session{}, err
		}
		return store.Session{}, store.ErrNotFound
	}
	return r.Sessions.GetSession(ctx, id)
}

// Auto mode: an unknown id created by someone else between the lookup and
// the create is the stored session, not an error (it was a 503 in the soak).
func TestAutoCreateRaceReadsTheStoredSession(t *testing.T) {
	m := newManager(t, &racingCreate{Sessions: memstore.New()}, session.Config{})
	s, err := m.Resolve(t.Context(), "raced", "")
	if err != nil || s.ID != "raced" || s.Kind != "other" {
		t.Fatalf("Resolve = %+v, %v; want the session the other instance created", s, err)
	}
}

// ResolveCached answers what Resolve would from the cache only, and says
// when the store is needed instead.
func TestResolveCached(t *testing.T) {
	ctx := t.Context()
	st := memstore.New()
	m := newManager(t, st, session.Config{Kind: "http", TTL: time.Hour, CacheTTL: time.Minute})
	if _, decided, _ := m.ResolveCached("", "client-1"); decided {
		t.Fatal("a client's first default session was decided without the store")
	}
	want, err := m.Resolve(ctx, "", "client-1")
	if err != nil {
		t.Fatal(err)
	}
	s, decided, err := m.ResolveCached("", "client-1")
	if !decided || err != nil || s.ID != want.ID {
		t.Fatalf("cached default session: %+v decided=%v err=%v, want %s", s, decided, err, want.ID)
	}
	if _, decided, _ := m.ResolveCached("nope", ""); decided {
		t.Fatal("an unknown id was decided without the store")
	}
	if _, err := m.Open(ctx, "gone", 0, "http", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Close(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Resolve(ctx, "gone", ""); !errors.Is(err, session.ErrEnded) {
		t.Fatalf("Resolve(gone): %v", err)
	}
	if _, decided, err := m.ResolveCached("gone", ""); decided && !errors.Is(err, session.ErrEnded) {
		t.Fatalf("cached closed session: decided with %v, want ErrEnded", err)
	}
	strict := newManager(t, st, session.Config{Mode: session.ModeStrict})
	if _, decided, err := strict.ResolveCached("", "client-1"); !decided || !errors.Is(err, session.ErrMissing) {
		t.Fatalf("strict without an id: decided=%v err=%v, want ErrMissing", decided, err)
	}
}
