// Package session manages proxy sessions: it resolves the session of every
// proxied request or message through a short-lived cache in front of the
// store, opens, closes and labels sessions, and expires them on idle
// timeout or TTL.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/proxyctl/proxyctl/internal/store"
)

// Mode is the session mode (--session-mode).
type Mode string

// Session modes.
const (
	// ModeAuto opens unknown sessions and sends requests without an id to a
	// per-client default session.
	ModeAuto Mode = "auto"
	// ModeStrict refuses missing, unknown and ended sessions.
	ModeStrict Mode = "strict"
)

// ParseMode parses a --session-mode value; "" is ModeAuto.
func ParseMode(s string) (Mode, error) {
	switch Mode(strings.ToLower(strings.TrimSpace(s))) {
	case "", ModeAuto:
		return ModeAuto, nil
	case ModeStrict:
		return ModeStrict, nil
	default:
		return "", fmt.Errorf("invalid session mode %q (want auto or strict)", s)
	}
}

// Errors a caller branches on, with the HTTP status the proxy answers.
var (
	ErrMissing     = errors.New("session header missing")    // 400
	ErrUnknown     = errors.New("unknown session")           // 404
	ErrEnded       = errors.New("session is not active")     // 403
	ErrTooMany     = errors.New("too many sessions")         // 503
	ErrUnavailable = errors.New("session store unavailable") // 503
	ErrInvalidID   = errors.New("invalid session id")        // 400
)

// MaxIDLen is the longest session id accepted.
const MaxIDLen = 256

// Config configures a Manager. The zero value is usable: auto mode, no
// limits, a 1 s cache.
type Config struct {
	Mode        Mode          // default ModeAuto; an unrecognised mode is treated as strict
	Max         int           // max ACTIVE sessions opened through this manager; 0 = unlimited
	IdleTimeout time.Duration // 0 = never idles out
	TTL         time.Duration // default TTL for new sessions; 0 = none
	CacheTTL    time.Duration // default 1s; negative disables the cache (every lookup reads the store)
	// SweepInterval is how often Run expires sessions and flushes activity;
	// default 1s, or IdleTimeout/2 when that is smaller.
	SweepInterval time.Duration
	// Kind is recorded on the sessions Resolve opens in auto mode ("http" or "stdio").
	Kind string
}

// Stats are the session counts known to a manager. Active is a gauge of
// the ACTIVE sessions in its cache; Closed and Expired count the ACTIVE ->
// CLOSED/EXPIRED transitions it made or observed.
type Stats struct {
	Active, Closed, Expired int
}

const (
	shardCount     = 32
	minPruneAfter  = time.Minute
	flushTimeout   = 5 * time.Second
	defaultCache   = time.Second
	defaultSweep   = time.Second
	minSweep       = 10 * time.Millisecond
	defaultIDBytes = 16
)

// snapshot is an immutable view of a session as last read from (or written
// to) the store.
type snapshot struct {
	sess    store.Session
	fetched int64 // unix nanos when read; 0 = stale
	expires int64 // TTL deadline in unix nanos; 0 = none
	err     error // non-nil when the session is not ACTIVE
	pending bool  // expired locally; the EXPIRED write to the store is still to do
	// degraded marks a snapshot kept because the store could not be read:
	// while it is, lookups answer from it at once and refresh it in the
	// background instead of waiting for a store that is down.
	degraded bool
	// unsaved marks a session opened in auto mode while the store could
	// not be reached (see openUnsaved): the sweeper creates it in the store
	// once it answers.
	unsaved bool
}

type entry struct {
	snap atomic.Pointer[snapshot]
	_    [56]byte     // keep the hot-path write below off the snapshot's cache line
	seen atomic.Int64 // last use on this instance, unix nanos
	_    [56]byte
	// Guarded by the shard lock.
	owned   bool  // opened through this manager: counts against Max
	flushed int64 // seen value last written to the store (sweeper only)
}

type shard struct {
	mu      sync.RWMutex
	entries map[string]*entry
	alias   map[string]string // default id -> current default session id
}

// Manager resolves, opens, closes and expires sessions. It is safe for
// concurrent use.
type Manager struct {
	st         store.Sessions
	log        zerolog.Logger
	mode       Mode
	max        int64
	idle       int64
	ttl        time.Duration
	cacheTTL   int64
	sweep      time.Duration
	pruneAfter int64
	kind       string

	seed   maphash.Seed
	shards [shardCount]shard
	flight singleflight.Group

	active, ownedActive, closed, expired atomic.Int64
}

// NewManager returns a manager over st.
func NewManager(st store.Sessions, cfg Config, log zerolog.Logger) *Manager {
	m := &Manager{
		st:    st,
		log:   log,
		mode:  cfg.Mode,
		max:   int64(max(cfg.Max, 0)),
		idle:  int64(max(cfg.IdleTimeout, 0)),
		ttl:   max(cfg.TTL, 0),
		kind:  cfg.Kind,
		seed:  maphash.MakeSeed(),
		sweep: cfg.SweepInterval,
	}
	switch m.mode {
	case "":
		m.mode = ModeAuto
	case ModeAuto, ModeStrict:
	default:
		m.mode = ModeStrict
	}
	switch {
	case cfg.CacheTTL == 0:
		m.cacheTTL = int64(defaultCache)
	case cfg.CacheTTL > 0:
		m.cacheTTL = int64(cfg.CacheTTL)
	}
	if m.sweep <= 0 {
		m.sweep = defaultSweep
		if cfg.IdleTimeout > 0 && cfg.IdleTimeout/2 < m.sweep {
			m.sweep = cfg.IdleTimeout / 2
		}
	}
	m.sweep = max(m.sweep, minSweep)
	m.pruneAfter = max(10*m.cacheTTL, int64(minPruneAfter))
	for i := range m.shards {
		m.shards[i].entries = make(map[string]*entry)
		m.shards[i].alias = make(map[string]string)
	}
	return m
}

func (m *Manager) shard(id string) *shard {
	return &m.shards[maphash.String(m.seed, id)%shardCount]
}

func (m *Manager) lookup(id string) *entry {
	sh := m.shard(id)
	sh.mu.RLock()
	e := sh.entries[id]
	sh.mu.RUnlock()
	return e
}

// Resolve returns the ACTIVE session a request or message belongs to. id is
// the session id it carries ("" when none); defaultID names the client's
// default session, used in auto mode when id is "". It is on the hot path:
// a cache hit takes no store call and does not allocate. The returned
// Labels map is shared with the cache and must not be modified.
func (m *Manager) Resolve(ctx context.Context, id, defaultID string) (store.Session, error) {
	var e *entry
	viaDefault := id == ""
	if viaDefault {
		if m.mode != ModeAuto || defaultID == "" {
			return store.Session{}, ErrMissing
		}
		id, e = m.lookupDefault(defaultID)
	} else {
		e = m.lookup(id)
	}
	if e != nil {
		now := time.Now()
		snap := e.snap.Load()
		if m.usable(e, snap, now.UnixNano()) {
			if snap.err != nil {
				if viaDefault {
					return m.renewDefault(ctx, defaultID, id)
				}
				return snap.sess, snap.err
			}
			s := snap.sess
			s.LastSeenAt = now
			return s, nil
		}
		if snap.degraded && snap.err == nil && !m.passed(snap, e.seen.Load(), now.UnixNano()) {
			// The store was down at the last refresh: answer from the
			// cache now and try the store again in the background, so
			// requests keep their latency through an outage.
			m.refreshAsync(id)
			if n := now.UnixNano(); n > e.seen.Load() {
				e.seen.Store(n)
			}
			s := snap.sess
			s.LastSeenAt = now
			return s, nil
		}
	}
	s, err := m.resolveSlow(ctx, id)
	if viaDefault && errors.Is(err, ErrEnded) {
		return m.renewDefault(ctx, defaultID, id)
	}
	return s, err
}

// ResolveCached is Resolve for a caller that must not wait (an event
// loop): decided false means the answer needs the store (a session not
// cached or due for a refresh, a default session to renew), and the
// caller should call Resolve where it may block. A decided answer is the
// one Resolve would give, with its error.
func (m *Manager) ResolveCached(id, defaultID string) (s store.Session, decided bool, err error) {
	var e *entry
	viaDefault := id == ""
	if viaDefault {
		if m.mode != ModeAuto || defaultID == "" {
			return store.Session{}, true, ErrMissing
		}
		_, e = m.lookupDefault(defaultID)
	} else {
		e = m.lookup(id)
	}
	if e == nil {
		return store.Session{}, false, nil
	}
	now := time.Now()
	snap := e.snap.Load()
	if !m.usable(e, snap, now.UnixNano()) || snap.err != nil && viaDefault {
		return store.Session{}, false, nil
	}
	s, err = answer(snap, now)
	return s, true, err
}

// resolveID is Resolve for an explicit id.
func (m *Manager) resolveID(ctx context.Context, id string) (store.Session, error) {
	if e := m.lookup(id); e != nil {
		now := time.Now()
		if snap := e.snap.Load(); m.usable(e, snap, now.UnixNano()) {
			return answer(snap, now)
		}
	}
	return m.resolveSlow(ctx, id)
}

// usable reports whether a cached snapshot answers a lookup at now (unix
// nanos), and records the use. It is false when the entry is stale or the
// session is due to expire.
func (m *Manager) usable(e *entry, snap *snapshot, now int64) bool {
	if now-snap.fetched >= m.cacheTTL {
		return false
	}
	if snap.err != nil {
		return true
	}
	last := e.seen.Load()
	if m.passed(snap, last, now) {
		return false
	}
	if now > last {
		e.seen.Store(now)
	}
	return true
}

// answer is the result of a usable snapshot.
func answer(snap *snapshot, now time.Time) (store.Session, error) {
	if snap.err != nil {
		return snap.sess, snap.err
	}
	s := snap.sess
	s.LastSeenAt = now
	return s, nil
}

// lookupDefault returns the current default session id of a client and its
// cache entry (nil if not cached).
func (m *Manager) lookupDefault(defaultID string) (string, *entry) {
	sh := m.shard(defaultID)
	sh.mu.RLock()
	id, ok := sh.alias[defaultID]
	var e *entry
	if !ok {
		id, e = defaultID, sh.entries[defaultID]
	}
	sh.mu.RUnlock()
	if ok {
		e = m.lookup(id)
	}
	return id, e
}

// renewDefault replaces a client's ended default session (idle timeout,
// TTL or closed) so that the client keeps working in a new one.
func (m *Manager) renewDefault(ctx context.Context, defaultID, ended string) (store.Session, error) {
	sh := m.shard(defaultID)
	v, err, _ := m.flight.Do("\x00default\x00"+defaultID, func() (any, error) {
		if cur, _ := m.lookupDefault(defaultID); cur != ended {
			return m.resolveID(ctx, cur) // another caller already renewed it
		}
		next := defaultID + "~" + randomID()[:8]
		s, err := m.create(context.WithoutCancel(ctx), next, m.ttl, m.kind, nil)
		if err != nil {
			return s, err
		}
		sh.mu.Lock()
		sh.alias[defaultID] = next
		sh.mu.Unlock()
		return s, nil
	})
	s, _ := v.(store.Session)
	return s, err
}

// deadline is when the session ends by TTL or idle timeout (MaxInt64 = never).
func (m *Manager) deadline(snap *snapshot, last int64) int64 {
	d := int64(math.MaxInt64)
	if snap.expires != 0 {
		d = snap.expires
	}
	if m.idle > 0 && last+m.idle < d {
		d = last + m.idle
	}
	return d
}

func (m *Manager) passed(snap *snapshot, last, now int64) bool {
	return (snap.expires != 0 && now >= snap.expires) || (m.idle > 0 && now-last >= m.idle)
}

func (m *Manager) resolveSlow(ctx context.Context, id string) (store.Session, error) {
	if ctx.Err() != nil {
		return store.Session{}, context.Cause(ctx)
	}
	ch := m.flight.DoChan(id, func() (any, error) {
		return m.load(context.WithoutCancel(ctx), id)
	})
	select {
	case r := <-ch:
		s, _ := r.Val.(store.Session)
		return s, r.Err
	case <-ctx.Done():
		return store.Session{}, context.Cause(ctx)
	}
}

// refreshAsync reads id from the store in the background (one flight per
// id, shared with Resolve's misses).
func (m *Manager) refreshAsync(id string) {
	m.flight.DoChan(id, func() (any, error) {
		return m.load(context.Background(), id)
	})
}

// load is the miss path of Resolve, run once per id at a time.
func (m *Manager) load(ctx context.Context, id string) (store.Session, error) {
	e := m.lookup(id)
	if e != nil {
		snap := e.snap.Load()
		if now := time.Now(); m.usable(e, snap, now.UnixNano()) {
			return answer(snap, now) // refreshed by a flight that just ended
		}
		if time.Now().UnixNano()-snap.fetched < m.cacheTTL {
			return m.expire(ctx, id) // fresh but past its deadline
		}
	}
	s, err := m.st.GetSession(ctx, id)
	switch {
	case err == nil:
		return m.check(ctx, m.install(s, false))
	case errors.Is(err, store.ErrNotFound):
		if e != nil {
			m.remove(id, e)
		}
		if m.mode != ModeAuto {
			return store.Session{}, fmt.Errorf("session %s: %w", id, ErrUnknown)
		}
		s, err := m.create(ctx, id, m.ttl, m.kind, nil)
		switch {
		case errors.Is(err, store.ErrExists):
			// Created meanwhile: by another instance, by the sweeper saving
			// a session opened during an outage, or by a create that timed
			// out here but was applied. The stored one is the session.
			s, err = m.st.GetSession(ctx, id)
			if err == nil {
				return m.check(ctx, m.install(s, false))
			}
			if errors.Is(err, store.ErrNotFound) {
				return store.Session{}, fmt.Errorf("session %s: created and gone: %w", id, ErrUnavailable)
			}
			return m.openUnsaved(id, err)
		case errors.Is(err, ErrUnavailable):
			return m.openUnsaved(id, err)
		}
		return s, err
	default:
		if e != nil {
			// Outage: keep serving what we know; ask again after CacheTTL.
			m.log.Warn().Err(err).Str("session", id).Msg("session store unavailable, using cached session")
			return m.check(ctx, m.refetched(id, e))
		}
		if m.mode == ModeAuto {
			return m.openUnsaved(id, err)
		}
		return store.Session{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

// openUnsaved opens id on this instance alone, in auto mode, when the store
// could not be asked or written in time (it is down, or too slow for the
// call bounds: a burst of new sessions on a loaded store). Auto mode opens
// unknown sessions, so refusing the request would trade availability for
// nothing the client asked for. The session is ACTIVE at once and marked
// degraded and unsaved: lookups answer from the cache and refresh it in the
// background, and the sweeper creates it in the store as soon as the store
// answers. If the store turns out to know the id (opened, closed or expired
// elsewhere meanwhile), the stored session wins from the next lookup on.
// The price is the same as for cached sessions during an outage: a session
// ended on another instance is served here until the store answers.
func (m *Manager) openUnsaved(id string, cause error) (store.Session, error) {
	if err := validID(id); err != nil {
		return store.Session{}, err
	}
	if !m.reserve() {
		return store.Session{}, ErrTooMany
	}
	now := time.Now().UTC().Round(0)
	s := store.Session{ID: id, State: store.StateActive, Kind: m.kind, CreatedAt: now, LastSeenAt: now}
	if m.ttl > 0 {
		s.ExpiresAt = now.Add(m.ttl)
	}
	snap := m.newSnap(s, now.UnixNano(), false)
	snap.degraded, snap.unsaved = true, true
	m.installSnap(id, snap, true)
	m.log.Warn().Err(cause).Str("session", id).Msg("session store unavailable: opened the session here, saving it when the store answers")
	return s, nil
}

// check answers for a freshly installed entry, expiring it if it is due.
func (m *Manager) check(ctx context.Context, e *entry) (store.Session, error) {
	snap := e.snap.Load()
	if snap.err != nil {
		return snap.sess, snap.err
	}
	now := time.Now()
	last := e.seen.Load()
	if m.passed(snap, last, now.UnixNano()) {
		return m.expire(ctx, snap.sess.ID)
	}
	if now.UnixNano() > last {
		e.seen.Store(now.UnixNano())
	}
	s := snap.sess
	s.LastSeenAt = now
	return s, nil
}

// expire ends a session whose deadline has passed. It re-reads the store
// first so that activity flushed by other instances is taken into account.
func (m *Manager) expire(ctx context.Context, id string) (store.Session, error) {
	s, err := m.st.GetSession(ctx, id)
	switch {
	case err == nil:
		e := m.install(s, false)
		snap := e.snap.Load()
		if snap.err != nil {
			return snap.sess, snap.err
		}
		if !m.passed(snap, e.seen.Load(), time.Now().UnixNano()) {
			return m.check(ctx, e) // used elsewhere meanwhile
		}
	case errors.Is(err, store.ErrNotFound):
		if e := m.lookup(id); e != nil {
			m.remove(id, e)
		}
		return store.Session{}, fmt.Errorf("session %s: %w", id, ErrUnknown)
	}
	e := m.lookup(id)
	if e == nil {
		return store.Session{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	snap := e.snap.Load()
	at := time.Unix(0, m.deadline(snap, e.seen.Load())).UTC()
	ended, err := m.st.EndSession(ctx, id, store.StateExpired, at)
	switch {
	case err == nil, errors.Is(err, store.ErrConflict) && ended.ID == id:
		snap = m.install(ended, false).snap.Load()
		return snap.sess, snap.err
	default:
		// Refuse it now; the sweeper writes EXPIRED once the store is back.
		m.log.Warn().Err(err).Str("session", id).Msg("expire session: store write failed, retrying later")
		local := snap.sess
		local.State = store.StateExpired
		local.EndedAt = at
		snap = m.installSnap(id, m.newSnap(local, time.Now().UnixNano(), true), false).snap.Load()
		return snap.sess, snap.err
	}
}

func (m *Manager) newSnap(s store.Session, fetched int64, pending bool) *snapshot {
	snap := &snapshot{sess: s, fetched: fetched, pending: pending}
	if !s.ExpiresAt.IsZero() {
		snap.expires = s.ExpiresAt.UnixNano()
	}
	if s.State != store.StateActive {
		snap.err = fmt.Errorf("session %s %s: %w", s.ID, s.State, ErrEnded)
	}
	return snap
}

func seenOf(s store.Session) int64 {
	var n int64
	if !s.CreatedAt.IsZero() {
		n = s.CreatedAt.UnixNano()
	}
	if !s.LastSeenAt.IsZero() {
		n = max(n, s.LastSeenAt.UnixNano())
	}
	return n
}

// install caches s as just read from the store.
func (m *Manager) install(s store.Session, owned bool) *entry {
	return m.installSnap(s.ID, m.newSnap(s, time.Now().UnixNano(), false), owned)
}

// installSnap publishes snap for id and keeps the counters in step. owned
// means the caller reserved a Max slot for this session.
func (m *Manager) installSnap(id string, snap *snapshot, owned bool) *entry {
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.entries[id]
	oldActive := false
	if e == nil {
		e = &entry{}
		sh.entries[id] = e
	} else {
		old := e.snap.Load()
		oldActive = old.err == nil
		if old.pending && snap.err == nil {
			// Expired here while the store was down: a store read that still
			// says ACTIVE does not revive it; the sweeper writes EXPIRED.
			cp := *old
			cp.fetched = snap.fetched
			snap = &cp
		}
	}
	newActive := snap.err == nil
	wasOwnedActive := e.owned && oldActive
	if owned {
		e.owned = true
	}
	for s := seenOf(snap.sess); ; {
		cur := e.seen.Load()
		if s <= cur || e.seen.CompareAndSwap(cur, s) {
			break
		}
	}
	e.snap.Store(snap)
	switch {
	case !oldActive && newActive:
		m.active.Add(1)
	case oldActive && !newActive:
		m.active.Add(-1)
		if snap.sess.State == store.StateClosed {
			m.closed.Add(1)
		} else {
			m.expired.Add(1)
		}
	}
	delta := b2i(e.owned && newActive) - b2i(wasOwnedActive) - b2i(owned)
	if delta != 0 {
		m.ownedActive.Add(delta)
	}
	return e
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// refetched marks e's snapshot as just checked (used when the store is
// down, so the store is asked at most once per CacheTTL).
func (m *Manager) refetched(id string, e *entry) *entry {
	old := e.snap.Load()
	snap := *old
	snap.fetched = time.Now().UnixNano()
	snap.degraded = true
	return m.installSnap(id, &snap, false)
}

// invalidate makes the next lookup of id read the store.
func (m *Manager) invalidate(id string) {
	if e := m.lookup(id); e != nil {
		snap := *e.snap.Load()
		snap.fetched, snap.degraded, snap.unsaved = 0, false, false
		m.installSnap(id, &snap, false)
	}
}

// remove drops e from the cache if it is still the entry for id.
func (m *Manager) remove(id string, e *entry) {
	sh := m.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.entries[id] != e {
		return
	}
	delete(sh.entries, id)
	if e.snap.Load().err == nil {
		m.active.Add(-1)
		if e.owned {
			m.ownedActive.Add(-1)
		}
	}
}

func (m *Manager) reserve() bool {
	if m.max == 0 {
		m.ownedActive.Add(1)
		return true
	}
	for {
		n := m.ownedActive.Load()
		if n >= m.max {
			return false
		}
		if m.ownedActive.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func validID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%w: length %d (want 1 to %d)", ErrInvalidID, len(id), MaxIDLen)
	}
	for i := range len(id) {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w: %q (want visible ASCII)", ErrInvalidID, id)
		}
	}
	return nil
}

func randomID() string {
	b := make([]byte, defaultIDBytes)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// create opens a session; on an ErrExists race in auto mode it re-reads.
func (m *Manager) create(ctx context.Context, id string, ttl time.Duration, kind string, labels map[string]string) (store.Session, error) {
	if err := validID(id); err != nil {
		return store.Session{}, err
	}
	if !m.reserve() {
		return store.Session{}, ErrTooMany
	}
	now := time.Now().UTC().Round(0)
	s := store.Session{
		ID:         id,
		State:      store.StateActive,
		Kind:       kind,
		Labels:     maps.Clone(labels),
		CreatedAt:  now,
		LastSeenAt: now,
	}
	if ttl > 0 {
		s.ExpiresAt = now.Add(ttl)
	}
	if err := m.st.CreateSession(ctx, s); err != nil {
		m.ownedActive.Add(-1)
		if errors.Is(err, store.ErrExists) {
			return store.Session{}, err
		}
		return store.Session{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	m.install(s, true)
	return s, nil
}

// Open creates a session explicitly (admin API, stdio relay). An empty id
// gets a random one; ttl 0 means Config.TTL. It returns store.ErrExists if
// the id is taken and ErrTooMany when Max sessions are active.
func (m *Manager) Open(ctx context.Context, id string, ttl time.Duration, kind string, labels map[string]string) (store.Session, error) {
	if id == "" {
		id = randomID()
	}
	switch {
	case ttl < 0:
		return store.Session{}, fmt.Errorf("open session %s: negative ttl %v", id, ttl)
	case ttl == 0:
		ttl = m.ttl
	}
	s, err := m.create(ctx, id, ttl, kind, labels)
	if err != nil {
		return store.Session{}, err
	}
	s.Labels = maps.Clone(s.Labels)
	return s, nil
}

// Get returns a session, through the cache; store.ErrNotFound if unknown.
func (m *Manager) Get(ctx context.Context, id string) (store.Session, error) {
	e := m.lookup(id)
	if e != nil {
		if snap := e.snap.Load(); time.Now().UnixNano()-snap.fetched < m.cacheTTL {
			return m.view(snap, e), nil
		}
	}
	s, err := m.st.GetSession(ctx, id)
	switch {
	case err == nil:
		if e != nil {
			e = m.install(s, false)
			return m.view(e.snap.Load(), e), nil
		}
		return s, nil
	case errors.Is(err, store.ErrNotFound):
		if e != nil {
			m.remove(id, e)
		}
		return store.Session{}, err
	case e != nil:
		return m.view(e.snap.Load(), e), nil
	default:
		return store.Session{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

// view is a caller-owned copy of a cached session with local activity.
func (m *Manager) view(snap *snapshot, e *entry) store.Session {
	s := snap.sess
	s.Labels = maps.Clone(s.Labels)
	if seen := e.seen.Load(); snap.err == nil && seen > seenOf(s) {
		s.LastSeenAt = time.Unix(0, seen).UTC()
	}
	return s
}

// List lists sessions from the store, ordered by id.
func (m *Manager) List(ctx context.Context, p store.Page) ([]store.Session, string, error) {
	items, next, err := m.st.ListSessions(ctx, p)
	if err != nil {
		if errors.Is(err, store.ErrBadCursor) {
			return nil, "", err
		}
		return nil, "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for i := range items {
		if e := m.lookup(items[i].ID); e != nil && items[i].State == store.StateActive {
			if seen := e.seen.Load(); seen > seenOf(items[i]) {
				items[i].LastSeenAt = time.Unix(0, seen).UTC()
			}
		}
	}
	return items, next, nil
}

// Close closes a session. It returns store.ErrNotFound for an unknown id
// and an error wrapping ErrEnded (with the stored session) if it had
// already ended.
func (m *Manager) Close(ctx context.Context, id string) (store.Session, error) {
	s, err := m.st.EndSession(ctx, id, store.StateClosed, time.Now().UTC().Round(0))
	switch {
	case err == nil:
		m.install(s, false)
		s.Labels = maps.Clone(s.Labels)
		return s, nil
	case errors.Is(err, store.ErrConflict) && s.ID == id:
		snap := m.install(s, false).snap.Load()
		s.Labels = maps.Clone(s.Labels)
		return s, snap.err
	case errors.Is(err, store.ErrNotFound):
		if e := m.lookup(id); e != nil {
			m.remove(id, e)
		}
		return store.Session{}, err
	default:
		return store.Session{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

// Label merges labels into a session's labels.
func (m *Manager) Label(ctx context.Context, id string, labels map[string]string) error {
	err := m.st.LabelSession(ctx, id, labels)
	switch {
	case err == nil:
		m.invalidate(id)
		return nil
	case errors.Is(err, store.ErrNotFound):
		return err
	default:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

// Stats returns the counts known to this manager; it makes no store call.
func (m *Manager) Stats() Stats {
	return Stats{
		Active:  int(m.active.Load()),
		Closed:  int(m.closed.Load()),
		Expired: int(m.expired.Load()),
	}
}

// Run expires idle and TTL-passed sessions, flushes activity to the store
// and prunes the cache every SweepInterval until ctx ends; it then flushes
// once more and returns nil.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
			defer cancel()
			m.sweepAll(fctx, false)
			return nil
		case <-t.C:
			m.sweepAll(ctx, true)
		}
	}
}

type swept struct {
	id      string
	e       *entry
	owned   bool
	flushed int64
}

// sweepAll runs one pass of Run: it flushes activity and, when expire is
// true, expires due sessions and prunes the cache.
func (m *Manager) sweepAll(ctx context.Context, expire bool) {
	var todo []swept
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		for id, e := range sh.entries {
			todo = append(todo, swept{id: id, e: e, owned: e.owned, flushed: e.flushed})
		}
		sh.mu.RUnlock()
	}
	for _, w := range todo {
		if ctx.Err() != nil {
			return
		}
		m.sweepOne(ctx, w, expire)
	}
	m.pruneAliases()
}

// pruneAliases forgets default-session renewals whose session is no longer
// cached (it ended and was pruned), so the alias map stays bounded by the
// cache however many clients come and go. A client that returns later
// finds its original default session ended and is renewed again.
func (m *Manager) pruneAliases() {
	type pair struct{ def, cur string }
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		pairs := make([]pair, 0, len(sh.alias))
		for def, cur := range sh.alias {
			pairs = append(pairs, pair{def, cur})
		}
		sh.mu.RUnlock()
		// Lookups take the target's shard lock: never while holding this one.
		var stale []pair
		for _, p := range pairs {
			if m.lookup(p.cur) == nil {
				stale = append(stale, p)
			}
		}
		if len(stale) == 0 {
			continue
		}
		sh.mu.Lock()
		for _, p := range stale {
			if sh.alias[p.def] == p.cur { // not renewed meanwhile
				delete(sh.alias, p.def)
			}
		}
		sh.mu.Unlock()
	}
}

func (m *Manager) sweepOne(ctx context.Context, w swept, expire bool) {
	snap := w.e.snap.Load()
	now := time.Now().UnixNano()
	seen := w.e.seen.Load()
	switch {
	case snap.pending:
		ended, err := m.st.EndSession(ctx, w.id, store.StateExpired, snap.sess.EndedAt)
		if err == nil || errors.Is(err, store.ErrConflict) && ended.ID == w.id {
			m.install(ended, false)
		} else if !errors.Is(err, store.ErrNotFound) {
			m.log.Warn().Err(err).Str("session", w.id).Msg("expire session")
		}
		return
	case snap.unsaved && snap.err == nil:
		m.save(ctx, w.id, snap, seen)
		return
	case snap.err != nil:
		if expire && now-snap.fetched >= m.cacheTTL {
			m.remove(w.id, w.e)
		}
		return
	case expire && m.passed(snap, seen, now):
		if _, err := m.expire(ctx, w.id); err != nil && !errors.Is(err, ErrEnded) && !errors.Is(err, ErrUnknown) {
			m.log.Warn().Err(err).Str("session", w.id).Msg("expire session")
		}
		return
	}
	if seen > w.flushed && seen > seenOf(snap.sess) {
		err := m.st.TouchSession(ctx, w.id, time.Unix(0, seen).UTC())
		switch {
		case err == nil:
			m.setFlushed(w.id, w.e, seen)
			w.flushed = seen
		case errors.Is(err, store.ErrConflict):
			m.invalidate(w.id) // ended elsewhere: the next lookup sees it
			return
		case errors.Is(err, store.ErrNotFound):
			m.remove(w.id, w.e)
			return
		default:
			m.log.Warn().Err(err).Str("session", w.id).Msg("flush session activity")
			return
		}
	}
	if expire && !w.owned && now-seen >= m.pruneAfter && (w.flushed >= seen || seen <= seenOf(snap.sess)) {
		m.remove(w.id, w.e)
	}
}

// save creates a session openUnsaved opened in the store. If the store
// already has the id, the next lookup reads it (the stored state wins).
func (m *Manager) save(ctx context.Context, id string, snap *snapshot, seen int64) {
	s := snap.sess
	if seen > 0 {
		s.LastSeenAt = time.Unix(0, seen).UTC()
	}
	err := m.st.CreateSession(ctx, s)
	switch {
	case err == nil:
		saved := m.newSnap(s, time.Now().UnixNano(), false)
		sh := m.shard(id)
		sh.mu.Lock()
		// Only if nothing replaced the snapshot meanwhile (a store read
		// or an expiry): then that one is the newer truth.
		if e := sh.entries[id]; e != nil && e.snap.CompareAndSwap(snap, saved) {
			e.flushed = max(e.flushed, seen)
		}
		sh.mu.Unlock()
	case errors.Is(err, store.ErrExists):
		m.invalidate(id)
	default:
		m.log.Debug().Err(err).Str("session", id).Msg("save session opened during a store outage: will retry")
	}
}

func (m *Manager) setFlushed(id string, e *entry, seen int64) {
	sh := m.shard(id)
	sh.mu.Lock()
	e.flushed = max(e.flushed, seen)
	sh.mu.Unlock()
}
