package stub_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/forward"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
	"github.com/proxyctl/proxyctl/internal/stub"
)

const baseUnix = 1767323045 // 2026-01-02T03:04:05Z

// The engine is the proxy's stub step as it is.
var _ forward.StubServer = (*stub.Engine)(nil)

// countingStore is a memory store that counts ListStubs calls and can be
// made to fail or to wait.
type countingStore struct {
	*memstore.Store
	lists atomic.Int64
	fail  atomic.Bool
	gate  chan struct{} // when set, ListStubs waits for it to close
}

var errDown = errors.New("store down")

func (c *countingStore) ListStubs(ctx context.Context, id string) ([]store.Stub, error) {
	c.lists.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	if c.fail.Load() {
		return nil, errDown
	}
	return c.Store.ListStubs(ctx, id)
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newEngine(t *testing.T) (*stub.Engine, *countingStore, *clock) {
	t.Helper()
	st := &countingStore{Store: memstore.New()}
	clk := &clock{now: time.Unix(baseUnix, 0)}
	e := &stub.Engine{Store: st, Now: clk.Now, Log: zerolog.New(zerolog.NewTestWriter(t))}
	return e, st, clk
}

// mk returns a valid stub answering with its id as the body.
func mk(session, id string, priority int, created time.Duration, pattern string) store.Stub {
	s := store.Stub{
		StubID: id, SessionID: session, Priority: priority,
		CreatedAt: time.Unix(baseUnix, 0).Add(created),
		Response:  store.StubResponse{Status: 200, Body: session + "/" + id},
	}
	if pattern != "" {
		if err := jsonUnmarshal(pattern, &s.Pattern); err != nil {
			panic(err)
		}
	}
	return s
}

func put(t *testing.T, st store.Stubs, stubs ...store.Stub) {
	t.Helper()
	for _, s := range stubs {
		if err := st.PutStub(t.Context(), s); err != nil {
			t.Fatalf("PutStub(%s/%s): %v", s.SessionID, s.StubID, err)
		}
	}
}

// matched returns "session/id" of the stub matching a GET of target, or
// "" when none does.
func matched(t *testing.T, e *stub.Engine, session, target string) string {
	t.Helper()
	s, ok, err := e.Match(t.Context(), session, &stub.Request{Method: "GET", Target: target, Body: []byte{}})
	if err != nil {
		t.Fatalf("Match(%s, %s): %v", session, target, err)
	}
	if !ok {
		return ""
	}
	return s.SessionID + "/" + s.StubID
}

func TestEnginePrecedence(t *testing.T) {
	tests := []struct {
		name    string
		stubs   []store.Stub
		session string
		target  string
		want    string
	}{
		{"none", nil, "s", "/a", ""},
		{"lowest priority wins",
			[]store.Stub{mk("s", "p10", 10, 0, ""), mk("s", "p1", 1, 0, ""), mk("s", "p5", 5, 0, "")}, "s", "/a", "s/p1"},
		{"tie goes to the newest",
			[]store.Stub{mk("s", "old", 10, 0, ""), mk("s", "new", 10, time.Second, ""), mk("s", "mid", 10, time.Millisecond, "")}, "s", "/a", "s/new"},
		{"full tie goes to the smaller id",
			[]store.Stub{mk("s", "b", 10, 0, ""), mk("s", "a", 10, 0, "")}, "s", "/a", "s/a"},
		{"non-matching better stub is skipped",
			[]store.Stub{mk("s", "best", 1, 0, `{"url":"/other"}`), mk("s", "ok", 9, 0, `{"url":"/a"}`)}, "s", "/a", "s/ok"},
		{"other sessions' stubs are not candidates",
			[]store.Stub{mk("t", "x", 1, 0, "")}, "s", "/a", ""},
		{"global applies to every session",
			[]store.Stub{mk("*", "g", 10, 0, "")}, "s", "/a", "*/g"},
		{"global with a lower priority wins",
			[]store.Stub{mk("s", "own", 10, 0, ""), mk("*", "g", 5, 0, "")}, "s", "/a", "*/g"},
		{"own with a lower priority wins",
			[]store.Stub{mk("s", "own", 5, time.Hour, ""), mk("*", "g", 10, 0, "")}, "s", "/a", "s/own"},
		{"newer global wins a priority tie",
			[]store.Stub{mk("s", "own", 10, 0, ""), mk("*", "g", 10, time.Second, "")}, "s", "/a", "*/g"},
		{"own wins a full tie with a global",
			[]store.Stub{mk("*", "x", 10, 0, ""), mk("s", "x", 10, 0, "")}, "s", "/a", "s/x"},
		{"interleaved lists",
			[]store.Stub{mk("s", "a", 1, 0, `{"url":"/no"}`), mk("*", "b", 2, 0, `{"url":"/no"}`), mk("s", "c", 3, 0, `{"url":"/no"}`), mk("*", "d", 4, 0, ""), mk("s", "e", 5, 0, "")}, "s", "/a", "*/d"},
		{"session * sees the global stubs once",
			[]store.Stub{mk("*", "g", 10, 0, "")}, "*", "/a", "*/g"},
		{"expired stub never matches",
			[]store.Stub{func() store.Stub { s := mk("s", "gone", 1, 0, ""); s.ExpiresAt = baseUnix; return s }(), mk("s", "live", 9, 0, "")}, "s", "/a", "s/live"},
		{"stub live until its expiry",
			[]store.Stub{func() store.Stub { s := mk("s", "soon", 1, 0, ""); s.ExpiresAt = baseUnix + 1; return s }(), mk("s", "live", 9, 0, "")}, "s", "/a", "s/soon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, st, _ := newEngine(t)
			put(t, st, tt.stubs...)
			if got := matched(t, e, tt.session, tt.target); got != tt.want {
				t.Errorf("matched %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEngineCacheTTL(t *testing.T) {
	e, st, clk := newEngine(t)
	put(t, st, mk("s", "a", 10, 0, ""))
	if got := matched(t, e, "s", "/"); got != "s/a" {
		t.Fatalf("matched %q", got)
	}
	reads := st.lists.Load() // the session and "*"
	for range 100 {
		matched(t, e, "s", "/")
	}
	if n := st.lists.Load(); n != reads {
		t.Errorf("%d store reads within the TTL, want none", n-reads)
	}
	// Another instance deletes the stub and adds a global one.
	if err := st.DeleteStub(t.Context(), "s", "a"); err != nil {
		t.Fatal(err)
	}
	put(t, st, mk("*", "g", 10, 0, ""))
	clk.Add(999 * time.Millisecond)
	if got := matched(t, e, "s", "/"); got != "s/a" {
		t.Errorf("within the TTL matched %q, want the cached s/a", got)
	}
	clk.Add(time.Millisecond)
	if got := matched(t, e, "s", "/"); got != "*/g" {
		t.Errorf("after the TTL matched %q, want */g", got)
	}
}

func TestEngineExpiryWithinTTL(t *testing.T) {
	e, st, clk := newEngine(t)
	e.CacheTTL = time.Hour
	s := mk("s", "a", 10, 0, "")
	s.ExpiresAt = baseUnix + 2
	put(t, st, s)
	if got := matched(t, e, "s", "/"); got != "s/a" {
		t.Fatalf("matched %q", got)
	}
	clk.Add(2 * time.Second)
	if got := matched(t, e, "s", "/"); got != "" {
		t.Errorf("after expiry matched %q", got)
	}
}

func TestEngineWriteThrough(t *testing.T) {
	e, st, _ := newEngine(t)
	e.CacheTTL = time.Hour
	if got := matched(t, e, "s", "/"); got != "" {
		t.Fatalf("matched %q", got)
	}
	put(t, e, mk("s", "a", 10, 0, ""))
	if got := matched(t, e, "s", "/"); got != "s/a" {
		t.Errorf("after PutStub matched %q, want s/a at once", got)
	}
	put(t, e, mk("*", "g", 1, 0, ""))
	if got := matched(t, e, "s", "/"); got != "*/g" {
		t.Errorf("after a global PutStub matched %q, want */g", got)
	}
	if err := e.DeleteStub(t.Context(), "*", "g"); err != nil {
		t.Fatal(err)
	}
	if got := matched(t, e, "s", "/"); got != "s/a" {
		t.Errorf("after DeleteStub matched %q, want s/a", got)
	}
	if err := e.DeleteStub(t.Context(), "*", "g"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteStub: %v, want ErrNotFound", err)
	}
	list, err := e.ListStubs(t.Context(), "s")
	if err != nil || len(list) != 1 {
		t.Errorf("ListStubs: %d, %v", len(list), err)
	}
	// Writes through a different path (another instance) are not seen
	// before the TTL.
	put(t, st, mk("s", "b", 1, 0, ""))
	if got := matched(t, e, "s", "/"); got != "s/a" {
		t.Errorf("matched %q, want the cached s/a", got)
	}
	e.Invalidate("s")
	if got := matched(t, e, "s", "/"); got != "s/b" {
		t.Errorf("after Invalidate matched %q, want s/b", got)
	}
}

func TestEngineStoreErrors(t *testing.T) {
	e, st, clk := newEngine(t)
	put(t, st, mk("s", "a", 10, 0, ""))
	st.fail.Store(true)
	if _, _, err := e.Match(t.Context(), "s", &stub.Request{Method: "GET", Target: "/"}); !errors.Is(err, errDown) {
		t.Fatalf("Match with nothing cached: %v, want the store's error", err)
	}
	if _, err := e.NeedsBody(t.Context(), "s"); !errors.Is(err, errDown) {
		t.Fatalf("NeedsBody with nothing cached: %v, want the store's error", err)
	}
	st.fail.Store(false)
	if got := matched(t, e, "s", "/"); got != "s/a" {
		t.Fatalf("store back: matched %q", got)
	}
	// Stale stubs answer while the store fails; the store is asked again
	// once per TTL, not on every request.
	st.fail.Store(true)
	clk.Add(time.Second)
	before := st.lists.Load()
	for range 10 {
		if got := matched(t, e, "s", "/"); got != "s/a" {
			t.Fatalf("store failing: matched %q, want the previous s/a", got)
		}
	}
	if n := st.lists.Load() - before; n != 2 {
		t.Errorf("%d store reads while failing, want 2 (the session and *)", n)
	}
	clk.Add(time.Second)
	matched(t, e, "s", "/")
	if n := st.lists.Load() - before; n != 4 {
		t.Errorf("%d store reads one TTL later, want 4", n)
	}
}

func TestEngineSharedMiss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, st, _ := newEngine(t)
		put(t, st, mk("s", "a", 10, 0, ""))
		st.gate = make(chan struct{})
		var wg sync.WaitGroup
		results := make(chan string, 20)
		for range 20 {
			wg.Go(func() {
				s, ok, err := e.Match(context.Background(), "s", &stub.Request{Method: "GET", Target: "/"})
				switch {
				case err != nil:
					results <- err.Error()
				case !ok:
					results <- "no match"
				default:
					results <- s.StubID
				}
			})
		}
		synctest.Wait() // every caller waits on the one read in flight
		if n := st.lists.Load(); n != 1 {
			t.Errorf("%d store reads in flight, want 1", n)
		}
		close(st.gate)
		wg.Wait()
		close(results)
		for r := range results {
			if r != "a" {
				t.Errorf("concurrent Match: %s", r)
			}
		}
		if n := st.lists.Load(); n != 2 {
			t.Errorf("%d store reads for 20 concurrent misses, want 2 (* and the session)", n)
		}
	})
}

func TestEngineWaiterContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, st, _ := newEngine(t)
		st.gate = make(chan struct{})
		defer close(st.gate)
		go func() { _, _, _ = e.Match(context.Background(), "s", &stub.Request{}) }()
		synctest.Wait()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, _, err := e.Match(ctx, "s", &stub.Request{}); !errors.Is(err, context.Canceled) {
			t.Errorf("waiting with a cancelled context: %v", err)
		}
	})
}

func TestEngineCacheBound(t *testing.T) {
	e, st, _ := newEngine(t)
	e.CacheSize = 3 // "*" and two sessions
	for _, id := range []string{"s1", "s2", "s1", "s3"} {
		matched(t, e, id, "/")
	}
	before := st.lists.Load()
	matched(t, e, "s1", "/") // recently used: cached
	if n := st.lists.Load() - before; n != 0 {
		t.Errorf("s1 read again (%d reads)", n)
	}
	matched(t, e, "s2", "/") // least recently used: evicted
	if n := st.lists.Load() - before; n != 1 {
		t.Errorf("s2: %d reads, want 1", n)
	}
}

func TestEngineSkipsBadStoredStubs(t *testing.T) {
	e, st, _ := newEngine(t)
	bad := mk("s", "bad", 1, 0, `{"urlPattern":"("}`)
	put(t, st, bad, mk("s", "good", 10, 0, ""))
	if got := matched(t, e, "s", "/"); got != "s/good" {
		t.Errorf("matched %q, want s/good", got)
	}
}

func TestNeedsBody(t *testing.T) {
	withBody := func(session, id string, expires int64) store.Stub {
		s := mk(session, id, 10, 0, `{"body":{"contains":"x"}}`)
		s.ExpiresAt = expires
		return s
	}
	tests := []struct {
		name  string
		stubs []store.Stub
		want  bool
	}{
		{"no stubs", nil, false},
		{"no body matcher", []store.Stub{mk("s", "a", 10, 0, `{"url":"/"}`)}, false},
		{"own body matcher", []store.Stub{withBody("s", "a", 0)}, true},
		{"global body matcher", []store.Stub{withBody("*", "a", 0)}, true},
		{"other session's body matcher", []store.Stub{withBody("t", "a", 0)}, false},
		{"live until later", []store.Stub{withBody("s", "a", baseUnix+10)}, true},
		{"expired", []store.Stub{withBody("s", "a", baseUnix)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, st, _ := newEngine(t)
			put(t, st, tt.stubs...)
			got, err := e.NeedsBody(t.Context(), "s")
			if err != nil || got != tt.want {
				t.Errorf("NeedsBody: %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	t.Run("expires while cached", func(t *testing.T) {
		e, st, clk := newEngine(t)
		e.CacheTTL = time.Hour
		put(t, st, withBody("s", "a", baseUnix+5))
		if got, _ := e.NeedsBody(t.Context(), "s"); !got {
			t.Fatal("NeedsBody false before expiry")
		}
		clk.Add(5 * time.Second)
		if got, _ := e.NeedsBody(t.Context(), "s"); got {
			t.Error("NeedsBody true after expiry")
		}
	})
}

// serveStubs runs e as the stub step of a handler whose "upstream" echoes
// the body it gets.
func serveStubs(t *testing.T, e *stub.Engine) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served, err := e.ServeStub(w, r, r.Header.Get("X-Proxy-Session"))
		if err != nil {
			t.Errorf("ServeStub: %v", err)
		}
		if served {
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = fmt.Fprintf(w, "upstream:%s", b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestServeStub(t *testing.T) {
	e, st, _ := newEngine(t)
	e.MaxBodySize = 64
	put(t, st,
		mk("s", "plain", 10, 0, `{"method":"GET","url":"/plain"}`),
		mk("s", "json", 10, 0, `{"method":"POST","url":"/orders","body":{"equalToJson":{"n":1}}}`),
		mk("*", "big", 10, 0, `{"url":"/big","body":{"contains":"x"}}`),
	)
	srv := serveStubs(t, e)
	tests := []struct {
		name, method, path, session, body string
		wantStatus                        int
		want                              string
	}{
		{"plain", "GET", "/plain", "s", "", 200, "s/plain"},
		{"plain, other session", "GET", "/plain", "t", "", 200, "upstream:"},
		{"body matched", "POST", "/orders", "s", `{ "n": 1 }`, 200, "s/json"},
		{"body not matched: upstream gets it whole", "POST", "/orders", "s", `{"n":2}`, 200, `upstream:{"n":2}`},
		{"body over the limit is not matched", "POST", "/big", "s", strings.Repeat("x", 65), 200, "upstream:" + strings.Repeat("x", 65)},
		{"body at the limit", "POST", "/big", "s", strings.Repeat("x", 64), 200, "*/big"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("X-Proxy-Session", tt.session)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || string(b) != tt.want {
				t.Errorf("%d %q, want %d %q", resp.StatusCode, b, tt.wantStatus, tt.want)
			}
		})
	}
	t.Run("chunked body over the limit", func(t *testing.T) {
		body := strings.Repeat("x", 200)
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/big", io.NopCloser(strings.NewReader(body)))
		req.ContentLength = -1
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if b, _ := io.ReadAll(resp.Body); string(b) != "upstream:"+body {
			t.Errorf("got %q", b)
		}
	})
	t.Run("body read error", func(t *testing.T) {
		// A chunked body over the proxy's --max-body-size: no stub
		// answers, and the next reader meets the error.
		put(t, e, mk("s", "any", 99, 0, "")) // would answer anything
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/big", strings.NewReader(strings.Repeat("x", 20)))
		r.ContentLength = -1
		r.Body = http.MaxBytesReader(rec, r.Body, 10)
		served, err := e.ServeStub(rec, r, "s")
		if served || err != nil {
			t.Errorf("served %v, err %v", served, err)
		}
		var mbe *http.MaxBytesError
		if _, err := io.ReadAll(r.Body); !errors.As(err, &mbe) {
			t.Errorf("next reader: %v, want the MaxBytesError", err)
		}
	})
	t.Run("store error", func(t *testing.T) {
		e, st, _ := newEngine(t)
		st.fail.Store(true)
		rec := httptest.NewRecorder()
		served, err := e.ServeStub(rec, httptest.NewRequest("GET", "/", nil), "s")
		if served || !errors.Is(err, errDown) || rec.Code != 200 || rec.Body.Len() != 0 {
			t.Errorf("served %v, err %v, wrote %d %q", served, err, rec.Code, rec.Body)
		}
	})
}

// Peek knows only what the cache holds: nothing before a lookup, then
// whether the session (or the global set) has stubs, until the TTL.
func TestEnginePeek(t *testing.T) {
	e, st, clk := newEngine(t)
	if known, _ := e.Peek("s"); known {
		t.Fatal("known before any lookup")
	}
	matched(t, e, "s", "/")
	if known, some := e.Peek("s"); !known || some {
		t.Fatalf("after a lookup with no stubs: known=%v some=%v", known, some)
	}
	put(t, st, mk("*", "g", 10, 0, ""))
	clk.Add(time.Second)
	if known, _ := e.Peek("s"); known {
		t.Fatal("known after the TTL")
	}
	matched(t, e, "s", "/")
	if known, some := e.Peek("s"); !known || !some {
		t.Fatalf("with a global stub: known=%v some=%v", known, some)
	}
	// The global stubs apply to every session: known for any.
	if known, some := e.Peek("other"); !known || !some {
		t.Fatalf("another session, with a global stub: known=%v some=%v", known, some)
	}
}
