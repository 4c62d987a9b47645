// Package memstore is an in-memory store.Store, for tests and for a single
// instance that does not need its data to survive a restart.
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

// Store keeps sessions in memory. It is safe for concurrent use. Values are
// copied in and out: a caller never shares a map with the store.
type Store struct {
	mu       sync.RWMutex
	sessions map[string]store.Session
	ids      []string // sorted, for ListSessions
}

// New returns an empty store.
func New() *Store {
	return &Store{sessions: make(map[string]store.Session)}
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
