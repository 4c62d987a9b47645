package memstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/proxyctl/proxyctl/internal/store"
)

// stubs is the Stubs part of Store, with its own lock.
type stubs struct {
	mu         sync.RWMutex
	bySession  map[string]map[string]store.Stub
	total      int
	perSession int // bound per session id
	max        int // bound on the whole store
}

func (st *stubs) init(perSession, maxStubs int) {
	st.perSession, st.max = perSession, maxStubs
	st.bySession = make(map[string]map[string]store.Stub)
}

// PutStub implements store.Stubs. A new stub beyond Options.MaxStubsPerSession
// for its session or Options.MaxStubs in all is refused with store.ErrLimit,
// after the session's expired stubs have been dropped to make room.
func (s *Store) PutStub(ctx context.Context, sb store.Stub) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch {
	case sb.SessionID == "":
		return errors.New("put stub: empty session id")
	case sb.StubID == "":
		return errors.New("put stub: empty stub id")
	}
	st := &s.stubs
	st.mu.Lock()
	defer st.mu.Unlock()
	m := st.bySession[sb.SessionID]
	if _, replace := m[sb.StubID]; !replace {
		if len(m) >= st.perSession || st.total >= st.max {
			st.dropExpired(sb.SessionID, time.Now().Unix())
			m = st.bySession[sb.SessionID]
		}
		switch {
		case len(m) >= st.perSession:
			return fmt.Errorf("put stub %s: session %s has %d stubs: %w", sb.StubID, sb.SessionID, len(m), store.ErrLimit)
		case st.total >= st.max:
			return fmt.Errorf("put stub %s: the store holds %d stubs: %w", sb.StubID, st.total, store.ErrLimit)
		}
		if m == nil {
			m = make(map[string]store.Stub)
			st.bySession[sb.SessionID] = m
		}
		st.total++
	}
	m[sb.StubID] = sb.Clone()
	return nil
}

// dropExpired deletes the session's stubs that expired by now (unix
// seconds).
func (st *stubs) dropExpired(sessionID string, now int64) {
	m := st.bySession[sessionID]
	for id, sb := range m {
		if sb.ExpiresAt != 0 && sb.ExpiresAt <= now {
			delete(m, id)
			st.total--
		}
	}
	if len(m) == 0 {
		delete(st.bySession, sessionID)
	}
}

// DeleteStub implements store.Stubs.
func (s *Store) DeleteStub(ctx context.Context, sessionID, stubID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st := &s.stubs
	st.mu.Lock()
	defer st.mu.Unlock()
	m := st.bySession[sessionID]
	if _, ok := m[stubID]; !ok {
		return fmt.Errorf("stub %s of session %s: %w", stubID, sessionID, store.ErrNotFound)
	}
	delete(m, stubID)
	st.total--
	if len(m) == 0 {
		delete(st.bySession, sessionID)
	}
	return nil
}

// ListStubs implements store.Stubs. Expired stubs are included.
func (s *Store) ListStubs(ctx context.Context, sessionID string) ([]store.Stub, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st := &s.stubs
	st.mu.RLock()
	defer st.mu.RUnlock()
	m := st.bySession[sessionID]
	out := make([]store.Stub, 0, len(m))
	for _, sb := range m {
		out = append(out, sb.Clone())
	}
	return out, nil
}
