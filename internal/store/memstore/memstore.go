// Package memstore is an in-memory store.Store, for tests and for a single
// instance that does not need its data to survive a restart.
//
// # Traffic bounds
//
// Traffic items are kept in bounded memory, so a long-running proxy's
// footprint stays flat: at most Options.MaxTrafficItems items
// (DefaultMaxTrafficItems, 10,000) and at most Options.MaxTrafficBytes
// (DefaultMaxTrafficBytes, 64 MiB) of estimated item size. An item's size is
// estimated cheaply, without encoding it: the length of its body data,
// header names and values and strings, plus fixed overheads (about half a
// kilobyte per item) for the struct, the indexes and the map entries. When
// an append goes over either bound, the oldest items (in global insertion
// order, across all sessions) are evicted until both hold again; an item
// larger than MaxTrafficBytes on its own is therefore not kept. Overwriting
// an item (same session and timestamp) keeps its place in that order.
//
// Stored items are deep copies: the store never keeps the caller's item,
// maps or body bytes (nor the large backing array a truncated body may
// share with the original), and never hands out its own.
//
// Sessions are not bounded here: the session manager enforces the maximum
// number of sessions.
//
// # Stub bounds
//
// At most Options.MaxStubsPerSession stubs (DefaultMaxStubsPerSession, 10,000)
// are kept per session id (the global id "*" included) and at most
// Options.MaxStubs (DefaultMaxStubs, 100,000) in all. A new stub past either
// bound is refused with store.ErrLimit, once the session's expired stubs have
// been dropped to make room; replacing a stub is always allowed. Stubs are
// deep copies in and out, like sessions and items.
package memstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/proxyctl/proxyctl/internal/store"
)

var _ store.Store = (*Store)(nil)

// Store keeps sessions and traffic items in memory. It is safe for
// concurrent use. Values are copied in and out: a caller never shares a map
// or a byte slice with the store.
type Store struct {
	mu       sync.RWMutex
	sessions map[string]store.Session
	ids      []string // sorted, for ListSessions

	traffic traffic // has its own lock
	stubs   stubs   // has its own lock
}

// Traffic bound defaults (see the package documentation).
const (
	DefaultMaxTrafficItems       = 10_000
	DefaultMaxTrafficBytes int64 = 64 << 20
)

// Stub bound defaults (see the package documentation).
const (
	DefaultMaxStubsPerSession = 10_000
	DefaultMaxStubs           = 100_000
)

// Options configures a Store. The zero value gives the defaults.
type Options struct {
	// MaxTrafficItems caps the traffic items kept; DefaultMaxTrafficItems
	// when <= 0.
	MaxTrafficItems int
	// MaxTrafficBytes caps the estimated size of the traffic items kept;
	// DefaultMaxTrafficBytes when <= 0.
	MaxTrafficBytes int64
	// MaxStubsPerSession caps the stubs kept per session id;
	// DefaultMaxStubsPerSession when <= 0.
	MaxStubsPerSession int
	// MaxStubs caps the stubs kept in all; DefaultMaxStubs when <= 0.
	MaxStubs int
}

// New returns an empty store with the default Options.
func New() *Store { return NewWithOptions(Options{}) }

// NewWithOptions returns an empty store with the given bounds.
func NewWithOptions(o Options) *Store {
	if o.MaxTrafficItems <= 0 {
		o.MaxTrafficItems = DefaultMaxTrafficItems
	}
	if o.MaxTrafficBytes <= 0 {
		o.MaxTrafficBytes = DefaultMaxTrafficBytes
	}
	if o.MaxStubsPerSession <= 0 {
		o.MaxStubsPerSession = DefaultMaxStubsPerSession
	}
	if o.MaxStubs <= 0 {
		o.MaxStubs = DefaultMaxStubs
	}
	s := &Store{sessions: make(map[string]store.Session)}
	s.traffic.init(o.MaxTrafficItems, o.MaxTrafficBytes)
	s.stubs.init(o.MaxStubsPerSession, o.MaxStubs)
	return s
}

// Close implements store.Store; the store stays usable.
func (s *Store) Close() error { return nil }

func clone(sess store.Session) store.Session {
	sess.Labels = maps.Clone(sess.Labels)
	return sess
}

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if sess.ID == "" {
		return errors.New("create session: empty id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[sess.ID]; ok {
		return fmt.Errorf("session %s: %w", sess.ID, store.ErrExists)
	}
	s.sessions[sess.ID] = clone(sess)
	i, _ := slices.BinarySearch(s.ids, sess.ID)
	s.ids = slices.Insert(s.ids, i, sess.ID)
	return nil
}

// GetSession implements store.Sessions.
func (s *Store) GetSession(ctx context.Context, id string) (store.Session, error) {
	if err := ctx.Err(); err != nil {
		return store.Session{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	sess, ok := s.sessions[id]
	if !ok {
		return store.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	return clone(sess), nil
}

// EndSession implements store.Sessions.
func (s *Store) EndSession(ctx context.Context, id string, to store.SessionState, at time.Time) (store.Session, error) {
	if err := ctx.Err(); err != nil {
		return store.Session{}, err
	}
	if to != store.StateClosed && to != store.StateExpired {
		return store.Session{}, fmt.Errorf("end session %s: invalid target state %q", id, to)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[id]
	if !ok {
		return store.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	if sess.State != store.StateActive {
		return clone(sess), fmt.Errorf("end session %s (%s): %w", id, sess.State, store.ErrConflict)
	}
	sess.State = to
	sess.EndedAt = at
	s.sessions[id] = sess
	return clone(sess), nil
}

// TouchSession implements store.Sessions.
func (s *Store) TouchSession(ctx context.Context, id string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[id]
	if !ok {
		return fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	if sess.State != store.StateActive {
		return fmt.Errorf("touch session %s (%s): %w", id, sess.State, store.ErrConflict)
	}
	if at.After(sess.LastSeenAt) {
		sess.LastSeenAt = at
		s.sessions[id] = sess
	}
	return nil
}

// LabelSession implements store.Sessions.
func (s *Store) LabelSession(ctx context.Context, id string, labels map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[id]
	if !ok {
		return fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	if len(labels) == 0 {
		return nil
	}
	merged := make(map[string]string, len(sess.Labels)+len(labels))
	maps.Copy(merged, sess.Labels)
	maps.Copy(merged, labels)
	sess.Labels = merged
	s.sessions[id] = sess
	return nil
}

// ListSessions implements store.Sessions. The cursor is the last id of the
// previous page, base64url-encoded.
func (s *Store) ListSessions(ctx context.Context, p store.Page) ([]store.Session, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	var after string
	if p.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(p.Cursor)
		if err != nil || len(b) == 0 {
			return nil, "", fmt.Errorf("list sessions: %w", store.ErrBadCursor)
		}
		after = string(b)
	}
	limit := p.EffectiveLimit()
	s.mu.RLock()
	defer s.mu.RUnlock()
	start := 0
	if p.Cursor != "" {
		i, found := slices.BinarySearch(s.ids, after)
		if found {
			i++
		}
		start = i
	}
	end := min(start+limit, len(s.ids))
	items := make([]store.Session, 0, end-start)
	for _, id := range s.ids[start:end] {
		items = append(items, clone(s.sessions[id]))
	}
	var next string
	if end < len(s.ids) && len(items) > 0 {
		next = base64.RawURLEncoding.EncodeToString([]byte(items[len(items)-1].ID))
	}
	return items, next, nil
}
