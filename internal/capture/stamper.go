package capture

import (
	"slices"
	"sync"
	"time"
)

// Stamper defaults.
const (
	DefaultStamperMaxSessions = 100_000
	DefaultStamperIdle        = 10 * time.Minute
)

// Stamper issues per-session timestamps (unix microseconds) that are unique
// and increasing within a session, even when several exchanges of a session
// finish in the same microsecond: a stamp that would not exceed the
// session's previous one is bumped to previous+1.
//
// Memory is bounded: sessions not stamped for Idle are forgotten, and when
// more than MaxSessions are remembered the least recently used are
// forgotten. Forgetting never breaks uniqueness: the Stamper keeps the
// highest stamp it ever forgot, and a session it does not remember starts
// above it. The zero value is ready to use and safe for concurrent use.
type Stamper struct {
	// MaxSessions caps the sessions remembered; DefaultStamperMaxSessions
	// when <= 0.
	MaxSessions int
	// Idle is how long an unused session is remembered;
	// DefaultStamperIdle when <= 0.
	Idle time.Duration

	mu        sync.Mutex
	sessions  map[string]stampEntry
	floor     int64 // highest stamp of any forgotten session
	lastSweep int64 // unix µs of the last idle sweep
}

type stampEntry struct {
	last int64 // last stamp issued
	used int64 // unix µs (of the caller's clock) when last stamped
}

// Stamp returns t as unix microseconds, bumped when needed so it is greater
// than every stamp issued before for sessionID.
func (s *Stamper) Stamp(sessionID string, t time.Time) int64 {
	now := t.UnixMicro()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions == nil {
		s.sessions = make(map[string]stampEntry)
		s.lastSweep = now
	}
	e, ok := s.sessions[sessionID]
	if !ok {
		e.last = s.floor
	}
	ts := max(now, e.last+1)
	s.sessions[sessionID] = stampEntry{last: ts, used: now}
	s.sweep(now)
	return ts
}

// Len reports how many sessions the Stamper remembers.
func (s *Stamper) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// sweep forgets idle sessions (at most once per Idle/2 of the callers'
// clock) and, past MaxSessions, the least recently used down to 3/4 of it,
// so its cost is amortized over many stamps.
func (s *Stamper) sweep(now int64) {
	idle := s.Idle
	if idle <= 0 {
		idle = DefaultStamperIdle
	}
	limit := s.MaxSessions
	if limit <= 0 {
		limit = DefaultStamperMaxSessions
	}
	if now-s.lastSweep >= (idle / 2).Microseconds() {
		s.lastSweep = now
		cutoff := now - idle.Microseconds()
		for id, e := range s.sessions {
			if e.used < cutoff {
				s.forget(id, e)
			}
		}
	}
	if len(s.sessions) <= limit {
		return
	}
	type aged struct {
		id string
		e  stampEntry
	}
	all := make([]aged, 0, len(s.sessions))
	for id, e := range s.sessions {
		all = append(all, aged{id, e})
	}
	slices.SortFunc(all, func(a, b aged) int { return int(min(max(a.e.used-b.e.used, -1), 1)) })
	keep := max(limit*3/4, 1)
	for _, a := range all[:len(all)-keep] {
		s.forget(a.id, a.e)
	}
}

func (s *Stamper) forget(id string, e stampEntry) {
	s.floor = max(s.floor, e.last)
	delete(s.sessions, id)
}
