// Package store defines the persistence contract for sessions, stubs and
// traffic items that every backend (memory, bolt, DynamoDB) implements.
//
// The key layout follows the DynamoDB tables: sessions are keyed by id,
// stubs by (sessionId, stubId) and traffic by (sessionId, timestamp), so
// every backend answers the same queries with the same ordering and
// pagination.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/proxyctl/proxyctl/internal/capture"
)

// Errors a caller branches on.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrConflict reports a conditional write that lost: the stored item was
	// not in the state the writer expected (for example a stale writer trying
	// to reopen a CLOSED session).
	ErrConflict = errors.New("conflicting update")
	// ErrBadCursor reports a Page.Cursor that the backend did not issue.
	ErrBadCursor = errors.New("invalid page cursor")
)

// SessionState is the lifecycle state of a session.
type SessionState string

// Session states.
const (
	StateActive  SessionState = "ACTIVE"
	StateClosed  SessionState = "CLOSED"
	StateExpired SessionState = "EXPIRED"
)

// Session is one stored session.
type Session struct {
	ID        string            `json:"id"`
	State     SessionState      `json:"state"`
	Kind      string            `json:"kind,omitempty"` // "http" or "stdio"
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
	// LastSeenAt is the last time traffic used the session (written lazily).
	LastSeenAt time.Time `json:"lastSeenAt"`
	// ExpiresAt is the TTL deadline; zero means no TTL.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// EndedAt is when the session was closed or expired.
	EndedAt time.Time `json:"endedAt,omitzero"`
}

// Page asks for one page of a list. Cursor is opaque ("" = from the start);
// Limit <= 0 means the backend's default.
type Page struct {
	Cursor string
	Limit  int
}

// Pagination limits shared by all backends.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// EffectiveLimit clamps a requested page size into [1, MaxLimit].
func (p Page) EffectiveLimit() int {
	switch {
	case p.Limit <= 0:
		return DefaultLimit
	case p.Limit > MaxLimit:
		return MaxLimit
	default:
		return p.Limit
	}
}

// Sessions stores sessions.
type Sessions interface {
	// CreateSession stores a new session; ErrExists if the id is taken.
	CreateSession(ctx context.Context, s Session) error
	// GetSession returns ErrNotFound for an unknown id.
	GetSession(ctx context.Context, id string) (Session, error)
	// EndSession moves an ACTIVE session to CLOSED or EXPIRED at time at.
	// It is a conditional write: a session that is not ACTIVE is left alone
	// and ErrConflict is returned (with the stored session).
	EndSession(ctx context.Context, id string, to SessionState, at time.Time) (Session, error)
	// TouchSession records activity (LastSeenAt) on an ACTIVE session.
	// LastSeenAt never moves backwards: an older at is a no-op. A session
	// that is not ACTIVE is left alone and ErrConflict is returned;
	// ErrNotFound for an unknown id.
	TouchSession(ctx context.Context, id string, at time.Time) error
	// LabelSession merges labels into the session's labels (a key already
	// present is overwritten); ErrNotFound for an unknown id. Labels can be
	// set whatever the session's state.
	LabelSession(ctx context.Context, id string, labels map[string]string) error
	// ListSessions lists sessions ordered by id. next is the cursor of the
	// following page, "" when there is none; a cursor the backend did not
	// issue gives ErrBadCursor.
	ListSessions(ctx context.Context, p Page) (items []Session, next string, err error)
}

// Traffic stores captured traffic items (already truncated/fitted by the
// capture pipeline). Items are keyed by (SessionID, Timestamp); Timestamp is
// unix microseconds, unique within a session (capture.Stamper).
type Traffic interface {
	// AppendTraffic stores items of any sessions. Storing an item with the
	// same (SessionID, Timestamp) again overwrites it (redelivery is
	// idempotent). Items are immutable once appended (the capture pipeline
	// shares them read-only between sinks): a backend may keep them as they
	// are, maps and bodies included, and the caller must not modify them or
	// hand over bodies that are views of larger buffers it wants freed.
	AppendTraffic(ctx context.Context, items []*capture.Item) error
	// ListTraffic returns up to limit items of sessionID with Timestamp >
	// after, oldest first (limit clamped like Page.EffectiveLimit). An
	// unknown session has no items: the result is empty, not an error.
	ListTraffic(ctx context.Context, sessionID string, after int64, limit int) ([]capture.Item, error)
	// GetTraffic returns the item with that id in that session, ErrNotFound
	// otherwise.
	GetTraffic(ctx context.Context, sessionID, id string) (capture.Item, error)
}

// Store is the whole persistence contract: sessions and traffic items
// (stubs are added by the stub work). The method sets are kept small so
// that consumers can depend on just the part they use.
type Store interface {
	Sessions
	Traffic
	// Close releases the backend's resources.
	Close() error
}
