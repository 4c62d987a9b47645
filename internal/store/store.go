// Package store defines the persistence contract for sessions, stubs and
// traffic items that every backend (memory, bolt, DynamoDB) implements.
//
// The key layout follows the DynamoDB tables: sessions are keyed by id,
// stubs by (sessionId, stubId) and traffic by (sessionId, timestamp), so
// every backend answers the same queries with the same ordering and
// pagination.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
	// ErrLimit reports a write refused because one of the backend's
	// documented bounds is reached (for example memstore's stubs per
	// session). Nothing was written; deleting something makes room.
	ErrLimit = errors.New("limit reached")
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

// CheckItems returns the error AppendTraffic gives a batch holding a nil
// item or an item without a session id; backends check the whole batch
// before they store any of it.
func CheckItems(items []*capture.Item) error {
	for i, it := range items {
		switch {
		case it == nil:
			return fmt.Errorf("append traffic: item %d is nil", i)
		case it.SessionID == "":
			return fmt.Errorf("append traffic: item %d (%s) has no session id", i, it.ID)
		}
	}
	return nil
}

// Store is the whole persistence contract: sessions, stubs and traffic
// items. The method sets are kept small so that consumers can depend on
// just the part they use.
type Store interface {
	Sessions
	Stubs
	Traffic
	// Close releases the backend's resources.
	Close() error
}

// GlobalSession is the session id of stubs that apply to every session.
const GlobalSession = "*"

// Stub is one stored stub: when a request of SessionID (or of any session,
// for GlobalSession) matches Pattern, Response answers it instead of the
// upstream. The JSON form is the admin API's (DESIGN, Stubs). Package stub
// validates, compiles and matches stubs; a backend stores them as they are.
type Stub struct {
	StubID    string `json:"stubId"`
	SessionID string `json:"sessionId"` // GlobalSession ("*") = every session
	// Priority orders candidates: the lowest number wins. The admin API
	// applies the default (10) when it is absent.
	Priority int          `json:"priority"`
	Pattern  StubPattern  `json:"pattern"`
	Response StubResponse `json:"response"`
	// ExpiresAt is when the stub stops matching, in unix seconds; 0 means
	// never.
	ExpiresAt int64 `json:"expiresAt,omitempty"`
	// CreatedAt breaks priority ties: the newest stub wins.
	CreatedAt time.Time `json:"createdAt"`
}

// StubPattern is what a request must look like for a stub to answer it.
// Every field that is set must match; an empty pattern matches every
// request. At most one of URL, URLPath and URLPattern is set.
type StubPattern struct {
	// Method matches the request method exactly, case-insensitively;
	// "" or "ANY" matches any method.
	Method string `json:"method,omitempty"`
	// URL matches the whole request target as sent (path and query).
	URL string `json:"url,omitempty"`
	// URLPath matches the request target's path as sent, whatever the query.
	URLPath string `json:"urlPath,omitempty"`
	// URLPattern is a regular expression (Go syntax) that must match the
	// whole request target.
	URLPattern string `json:"urlPattern,omitempty"`
	// Query matches decoded query parameters by name (case-sensitive).
	Query map[string]StringMatcher `json:"query,omitempty"`
	// Headers matches request headers; names are case-insensitive.
	Headers map[string]StringMatcher `json:"headers,omitempty"`
	// Body matches the request body.
	Body *StringMatcher `json:"body,omitempty"`
}

// StringMatcher matches one value (a query parameter, a header, the body).
// Exactly one of its fields is set. A query parameter or header with
// several values matches when any of them does.
type StringMatcher struct {
	EqualTo *string `json:"equalTo,omitempty"`
	// EqualToJSON compares JSON semantically: key order and whitespace are
	// ignored. A JSON string holding a JSON document is accepted too (as
	// WireMock users write it).
	EqualToJSON json.RawMessage `json:"equalToJson,omitempty"`
	Contains    *string         `json:"contains,omitempty"`
	// Matches is a regular expression (Go syntax) that must match the whole
	// value.
	Matches *string `json:"matches,omitempty"`
	// BinaryEqualTo compares bytes exactly (base64 in JSON): for bodies
	// that are not text. Empty but set (an empty body) is kept in JSON
	// (omitzero, not omitempty), so a stored stub compiles as it did.
	BinaryEqualTo []byte `json:"binaryEqualTo,omitzero"`
	// Absent requires the query parameter or header to be missing.
	Absent bool `json:"absent,omitempty"`
}

// StubResponse is what a stub answers.
type StubResponse struct {
	Status  int               `json:"status"` // 0 means 200
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
	// BodyBase64 is a binary body; it excludes Body and JSONBody.
	BodyBase64 string `json:"bodyBase64,omitempty"`
	// JSONBody is written as the body, with Content-Type application/json
	// unless Headers sets one; it excludes Body and BodyBase64.
	JSONBody json.RawMessage `json:"jsonBody,omitempty"`
	DelayMs  int             `json:"delayMs,omitempty"`
}

// Clone returns a deep copy of s: it shares no map, slice or pointer with s.
func (s Stub) Clone() Stub {
	p := &s.Pattern
	p.Query = cloneMatchers(p.Query)
	p.Headers = cloneMatchers(p.Headers)
	if p.Body != nil {
		b := p.Body.clone()
		p.Body = &b
	}
	s.Response.Headers = maps.Clone(s.Response.Headers)
	s.Response.JSONBody = bytes.Clone(s.Response.JSONBody)
	return s
}

func cloneMatchers(m map[string]StringMatcher) map[string]StringMatcher {
	if m == nil {
		return nil
	}
	out := make(map[string]StringMatcher, len(m))
	for k, v := range m {
		out[k] = v.clone()
	}
	return out
}

func (m StringMatcher) clone() StringMatcher {
	m.EqualTo = clonePtr(m.EqualTo)
	m.Contains = clonePtr(m.Contains)
	m.Matches = clonePtr(m.Matches)
	m.EqualToJSON = bytes.Clone(m.EqualToJSON)
	m.BinaryEqualTo = bytes.Clone(m.BinaryEqualTo)
	return m
}

func clonePtr(p *string) *string {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Stubs stores stubs, keyed by (SessionID, StubID).
type Stubs interface {
	// PutStub creates the stub or replaces the one with the same SessionID
	// and StubID (both must be set). A bounded backend refuses a new stub
	// past its bound with ErrLimit.
	PutStub(ctx context.Context, s Stub) error
	// DeleteStub deletes a stub; ErrNotFound if there is none.
	DeleteStub(ctx context.Context, sessionID, stubID string) error
	// ListStubs returns the stubs stored under sessionID only
	// (GlobalSession lists the global ones), in any order. Expired stubs
	// may be included: package stub filters them. An unknown session has
	// no stubs: the result is empty, not an error.
	ListStubs(ctx context.Context, sessionID string) ([]Stub, error)
}
