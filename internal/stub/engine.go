package stub

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/store"
)

// Engine defaults.
const (
	DefaultCacheTTL  = time.Second
	DefaultCacheSize = 10_000
	// DefaultMaxBodySize is the most of a request body ServeStub buffers
	// to match body patterns.
	DefaultMaxBodySize = 16 << 20
	// loadTimeout bounds one store read of a session's stubs.
	loadTimeout = 10 * time.Second
)

// Engine finds the stub that answers a request. It reads each session's
// stubs from the store at most once per CacheTTL and keeps them compiled,
// so the hot path makes no store call while the cache is fresh, and a
// stub created, deleted or expired by another instance is seen within
// CacheTTL. Lookup cost is the request's session's stubs plus the global
// ones, never all stubs.
//
// The cache holds at most CacheSize session ids (least recently used out
// first), each entry holding that session's stubs. When a refresh fails and
// the session's stubs were read before, the old ones keep answering (the
// failure is logged and the read retried after CacheTTL); with nothing read
// before, the store's error is returned.
//
// The Engine also implements store.Stubs by writing through to Store and
// dropping the session's cache entry, so changes made through it (the
// admin API) apply on this instance at once.
//
// The zero value needs only Store; an Engine is safe for concurrent use.
type Engine struct {
	Store store.Stubs
	// CacheTTL is how long a session's stubs are used before the store is
	// read again; DefaultCacheTTL when <= 0.
	CacheTTL time.Duration
	// CacheSize caps the session ids cached; DefaultCacheSize when <= 0.
	CacheSize int
	// MaxBodySize caps the request body ServeStub buffers to match body
	// patterns (DefaultMaxBodySize when <= 0); a stub with a body matcher
	// does not match a larger body.
	MaxBodySize int64
	// Now returns the current time; time.Now when nil.
	Now func() time.Time
	// Log receives refresh failures and stored stubs that do not compile.
	Log zerolog.Logger

	mu    sync.Mutex
	cache map[string]*entry
	lru   list.List // of *entry, most recently used first
}

var _ store.Stubs = (*Engine)(nil)

// entry is one session id's cached stubs.
type entry struct {
	id       string
	elem     *list.Element
	set      *stubSet // nil until a read succeeded
	loadedAt time.Time
	loading  *load // the read in flight, if any
}

// load is one store read; waiters block on done.
type load struct {
	done chan struct{}
	set  *stubSet
	err  error
}

// stubSet is a session id's compiled stubs in precedence order.
type stubSet struct {
	stubs []*Compiled
	// The stubs with a body matcher: some never expire (bodyAlways), the
	// others are live until bodyUntil at the latest.
	bodyAlways bool
	bodyUntil  int64
}

func (s *stubSet) needsBody(now int64) bool {
	return s != nil && (s.bodyAlways || now < s.bodyUntil)
}

func (s *stubSet) list() []*Compiled {
	if s == nil {
		return nil
	}
	return s.stubs
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) ttl() time.Duration {
	if e.CacheTTL > 0 {
		return e.CacheTTL
	}
	return DefaultCacheTTL
}

// NeedsBody reports whether a live stub of the session or a global one
// matches on the body, so that the caller reads the body only then.
func (e *Engine) NeedsBody(ctx context.Context, sessionID string) (bool, error) {
	own, global, err := e.sets(ctx, sessionID)
	if err != nil {
		return false, err
	}
	now := e.now().Unix()
	return own.needsBody(now) || global.needsBody(now), nil
}

// Match returns the stub that answers r in the session, if any (see the
// package documentation for the rules). The stub is shared: the caller must
// not modify it. An error means the stubs could not be read (the caller
// decides whether to forward).
func (e *Engine) Match(ctx context.Context, sessionID string, r *Request) (*store.Stub, bool, error) {
	c, err := e.match(ctx, sessionID, r)
	if err != nil || c == nil {
		return nil, false, err
	}
	return &c.stub, true, nil
}

func (e *Engine) match(ctx context.Context, sessionID string, r *Request) (*Compiled, error) {
	own, global, err := e.sets(ctx, sessionID)
	if err != nil {
		return nil, err
	}
	return pick(own.list(), global.list(), e.now().Unix(), r), nil
}

// pick walks the session's and the global stubs together in precedence
// order (both lists are sorted) and returns the first live one that
// matches; on a full tie the session's own stub goes first.
func pick(own, global []*Compiled, now int64, r *Request) *Compiled {
	if len(own) == 0 && len(global) == 0 {
		return nil
	}
	p := prepare(r)
	i, j := 0, 0
	for i < len(own) || j < len(global) {
		var c *Compiled
		if j == len(global) || i < len(own) && compare(&own[i].stub, &global[j].stub) <= 0 {
			c = own[i]
			i++
		} else {
			c = global[j]
			j++
		}
		if c.live(now) && c.match(&p) {
			return c
		}
	}
	return nil
}

// ServeStub answers r with the session's matching stub and reports true,
// or reports false having written nothing. It reads the request body only
// when a stub may match on it (at most MaxBodySize) and then leaves r.Body
// reading the whole body again from the start. An error means the stubs
// could not be read; nothing was written.
func (e *Engine) ServeStub(w http.ResponseWriter, r *http.Request, sessionID string) (bool, error) {
	own, global, err := e.sets(r.Context(), sessionID)
	if err != nil {
		return false, err
	}
	if len(own.list()) == 0 && len(global.list()) == 0 {
		return false, nil
	}
	now := e.now().Unix()
	var body []byte
	if own.needsBody(now) || global.needsBody(now) {
		var ok bool
		if body, ok = e.readBody(r); !ok {
			// The body cannot be read (the client left, or it is over
			// the proxy's --max-body-size): the next reader of r.Body
			// meets the same error and answers it.
			return false, nil
		}
	}
	c := pick(own.list(), global.list(), now, NewRequest(r, body))
	if c == nil {
		return false, nil
	}
	// An error here is the client leaving during the delay, or a failed
	// write: the stub owned the exchange all the same.
	_ = c.resp.write(w, r)
	return true, nil
}

// readBody buffers r's body for matching and puts it back in front of
// what is left unread. It returns nil (not read, for matching) when the
// body is larger than MaxBodySize, and false when reading it failed; the
// failure stays in r.Body for the next reader.
func (e *Engine) readBody(r *http.Request) ([]byte, bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return []byte{}, true
	}
	limit := e.MaxBodySize
	if limit <= 0 {
		limit = DefaultMaxBodySize
	}
	if r.ContentLength > limit {
		return nil, true
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	r.Body = &replayBody{Reader: io.MultiReader(bytes.NewReader(b), r.Body), Closer: r.Body}
	switch {
	case err != nil:
		return nil, false
	case int64(len(b)) > limit:
		return nil, true
	}
	return b, true
}

// replayBody reads the buffered prefix, then the rest of the original body;
// closing closes the original.
type replayBody struct {
	io.Reader
	io.Closer
}

// Peek reports, without reading the store, whether ServeStub could
// answer for the session: known false when the session's stubs (or the
// global ones) are not cached fresh, else some true when there are stubs
// to match. An event loop serves a request itself only when the answer
// is known and none.
func (e *Engine) Peek(sessionID string) (known, some bool) {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range [2]string{store.GlobalSession, sessionID} {
		ent := e.cache[id]
		if ent == nil || ent.set == nil || ent.loading == nil && now.Sub(ent.loadedAt) >= e.ttl() {
			return false, false
		}
		if len(ent.set.list()) > 0 {
			return true, true
		}
		if sessionID == store.GlobalSession {
			break
		}
	}
	return true, false
}

// sets returns the session's and the global stubs.
func (e *Engine) sets(ctx context.Context, sessionID string) (own, global *stubSet, err error) {
	global, err = e.get(ctx, store.GlobalSession)
	if err != nil || sessionID == store.GlobalSession {
		return nil, global, err
	}
	own, err = e.get(ctx, sessionID)
	if err != nil {
		return nil, nil, err
	}
	return own, global, nil
}

// get returns the session id's compiled stubs, from the cache while it is
// fresh. Concurrent misses share one store read; while a stale entry is
// being refreshed, other callers use the stale one.
func (e *Engine) get(ctx context.Context, id string) (*stubSet, error) {
	now := e.now()
	e.mu.Lock()
	if e.cache == nil {
		e.cache = make(map[string]*entry)
	}
	ent := e.cache[id]
	if ent == nil {
		ent = &entry{id: id}
		ent.elem = e.lru.PushFront(ent)
		e.cache[id] = ent
		e.evict()
	} else {
		e.lru.MoveToFront(ent.elem)
	}
	if ent.set != nil && (ent.loading != nil || now.Sub(ent.loadedAt) < e.ttl()) {
		set := ent.set
		e.mu.Unlock()
		return set, nil
	}
	if l := ent.loading; l != nil {
		e.mu.Unlock()
		select {
		case <-l.done:
			return l.set, l.err
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	l := &load{done: make(chan struct{})}
	ent.loading = l
	e.mu.Unlock()

	// The read is shared with other callers: it does not end with this
	// caller's context.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
	set, err := e.load(lctx, id)
	cancel()

	e.mu.Lock()
	ent.loading = nil
	switch {
	case err == nil:
		if e.cache[id] == ent { // not invalidated or evicted meanwhile
			ent.set, ent.loadedAt = set, e.now()
		}
	case ent.set != nil:
		e.Log.Warn().Err(err).Str("session", id).Msg("reading stubs failed; using the previous ones")
		set, err = ent.set, nil
		ent.loadedAt = e.now()
	}
	l.set, l.err = set, err
	close(l.done)
	e.mu.Unlock()
	return set, err
}

// evict drops the least recently used entries past CacheSize. Called with
// e.mu held.
func (e *Engine) evict() {
	size := e.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	for e.lru.Len() > size {
		old := e.lru.Back().Value.(*entry)
		e.lru.Remove(old.elem)
		delete(e.cache, old.id)
	}
}

// load reads and compiles a session id's stubs.
func (e *Engine) load(ctx context.Context, id string) (*stubSet, error) {
	if e.Store == nil {
		return nil, errors.New("stub engine: no store")
	}
	stubs, err := e.Store.ListStubs(ctx, id)
	if err != nil {
		return nil, err
	}
	now := e.now().Unix()
	set := &stubSet{stubs: make([]*Compiled, 0, len(stubs))}
	for _, s := range stubs {
		c, err := Compile(s)
		if err != nil {
			e.Log.Warn().Err(err).Str("session", id).Str("stub", s.StubID).Msg("ignoring a stored stub that does not compile")
			continue
		}
		if !c.live(now) {
			continue
		}
		set.stubs = append(set.stubs, c)
		if c.body != nil {
			if c.stub.ExpiresAt == 0 {
				set.bodyAlways = true
			} else {
				set.bodyUntil = max(set.bodyUntil, c.stub.ExpiresAt)
			}
		}
	}
	slices.SortFunc(set.stubs, func(a, b *Compiled) int { return compare(&a.stub, &b.stub) })
	return set, nil
}

// Invalidate drops the session id's cached stubs, so the next lookup reads
// the store. A read in flight does not put them back.
func (e *Engine) Invalidate(sessionID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ent := e.cache[sessionID]; ent != nil {
		e.lru.Remove(ent.elem)
		delete(e.cache, sessionID)
	}
}

// PutStub writes the stub to Store and drops its session's cache entry.
func (e *Engine) PutStub(ctx context.Context, s store.Stub) error {
	err := e.Store.PutStub(ctx, s)
	e.Invalidate(s.SessionID)
	return err
}

// DeleteStub deletes the stub from Store and drops its session's cache
// entry.
func (e *Engine) DeleteStub(ctx context.Context, sessionID, stubID string) error {
	err := e.Store.DeleteStub(ctx, sessionID, stubID)
	e.Invalidate(sessionID)
	return err
}

// ListStubs lists the session's stored stubs (Store.ListStubs).
func (e *Engine) ListStubs(ctx context.Context, sessionID string) ([]store.Stub, error) {
	return e.Store.ListStubs(ctx, sessionID)
}
