// Package admin serves proxyctl's admin API: health, metrics, session
// management, stubs and captured traffic, behind an optional bearer token.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/store"
)

// Sessions is the session manager as the admin API uses it.
type Sessions interface {
	Open(ctx context.Context, id string, ttl time.Duration, kind string, labels map[string]string) (store.Session, error)
	Get(ctx context.Context, id string) (store.Session, error)
	List(ctx context.Context, p store.Page) ([]store.Session, string, error)
	Close(ctx context.Context, id string) (store.Session, error)
}

// Errors are the session manager's sentinel errors the API maps to status
// codes (409 for ended, 503 for too many or unavailable).
type Errors struct {
	Ended, TooMany, Unavailable, InvalidID error
}

// Server is the admin API handler.
type Server struct {
	Sessions Sessions
	Errors   Errors
	// Traffic, when set, serves GET /api/sessions/{id}/traffic from the
	// store. With Sessions also set, an unknown session is a 404.
	Traffic store.Traffic
	// Stubs, when set, serves the session-scoped stub routes (see
	// StubAPI): list, create, get, delete and from-traffic.
	Stubs StubAPI
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every route but /healthz.
	Token string
	// Metrics serves /metrics (Prometheus text format).
	Metrics http.Handler
	// Health reports component health for /healthz; a non-nil error in the
	// map makes /healthz answer 503.
	Health func(ctx context.Context) map[string]error
	// TrafficCount, when set, adds to each listed session the number of
	// traffic items this instance captured for it ("traffic").
	TrafficCount func(sessionID string) int64
	// Routes, when set, adds further routes (stubs, live stream, UI) to
	// the mux; they are behind the same token check.
	Routes func(mux *http.ServeMux)
	// UI, when set, serves the web UI under /ui/ (and redirects /ui). Its
	// static files load without the token: the page asks for it and sends
	// it on every /api call.
	UI  http.Handler
	Log zerolog.Logger

	once sync.Once
	mux  *http.ServeMux
}

var _ http.Handler = (*Server)(nil)

func (s *Server) init() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	if s.Sessions != nil {
		mux.HandleFunc("GET /api/sessions", s.listSessions)
		mux.HandleFunc("POST /api/sessions", s.createSession)
		mux.HandleFunc("GET /api/sessions/{id}", s.getSession)
		mux.HandleFunc("DELETE /api/sessions/{id}", s.closeSession)
	}
	if s.Traffic != nil {
		mux.HandleFunc("GET /api/sessions/{id}/traffic", s.listTraffic)
	}
	if s.Stubs != nil {
		s.stubRoutes(mux)
	}
	// Go's profiler, as Caddy's admin API has it: behind the same token,
	// on the admin listener (loopback unless a token is set).
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	if s.Routes != nil {
		s.Routes(mux)
	}
	if s.UI != nil {
		mux.Handle("GET /ui/", s.UI)
		mux.Handle("GET /ui", s.UI)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		WriteError(w, http.StatusNotFound, "no such endpoint")
	})
	s.mux = mux
}

// ServeHTTP checks the token and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.once.Do(s.init)
	if s.Token != "" && !s.public(r) && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="proxyctl-admin"`)
		WriteError(w, http.StatusUnauthorized, "admin token required")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// public reports whether r needs no token: /healthz, and the UI's static
// files when a UI is set.
func (s *Server) public(r *http.Request) bool {
	if r.URL.Path == "/healthz" {
		return true
	}
	return s.UI != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		(r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/"))
}

// authorized checks "Authorization: Bearer <token>" and, for the WebSocket
// upgrade GET /api/ws only (browsers cannot set headers on a WebSocket),
// ?access_token=<token>.
func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		return s.tokenMatches(strings.TrimSpace(h[len(prefix):]))
	}
	if r.Method == http.MethodGet && r.URL.Path == "/api/ws" {
		if tok := r.URL.Query().Get("access_token"); tok != "" {
			return s.tokenMatches(tok)
		}
	}
	return false
}

func (s *Server) tokenMatches(tok string) bool {
	return subtle.ConstantTimeCompare([]byte(tok), []byte(s.Token)) == 1
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	status := map[string]string{}
	code := http.StatusOK
	if s.Health != nil {
		for name, err := range s.Health(r.Context()) {
			if err != nil {
				status[name] = "error: " + err.Error()
				code = http.StatusServiceUnavailable
			} else {
				status[name] = "ok"
			}
		}
	}
	overall := "ok"
	if code != http.StatusOK {
		overall = "degraded"
	}
	WriteJSON(w, code, map[string]any{"status": overall, "components": status})
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	p, err := PageFrom(r)
	if err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	items, next, err := s.Sessions.List(r.Context(), p)
	if err != nil {
		s.storeError(w, err)
		return
	}
	if items == nil {
		items = []store.Session{}
	}
	if s.TrafficCount == nil {
		WriteJSON(w, http.StatusOK, List[store.Session]{Items: items, Next: next})
		return
	}
	views := make([]sessionView, len(items))
	for i, it := range items {
		views[i] = sessionView{Session: it, Traffic: s.TrafficCount(it.ID)}
	}
	WriteJSON(w, http.StatusOK, List[sessionView]{Items: views, Next: next})
}

// sessionView is a session with the traffic items this instance captured
// for it (when the command captures).
type sessionView struct {
	store.Session
	Traffic int64 `json:"traffic"`
}

type createRequest struct {
	ID     string            `json:"id"`
	TTL    json.RawMessage   `json:"ttl"`
	Labels map[string]string `json:"labels"`
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := DecodeJSON(r, &req); err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	ttl, err := parseTTL(req.TTL)
	if err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	sess, err := s.Sessions.Open(r.Context(), req.ID, ttl, "api", req.Labels)
	if err != nil {
		s.storeError(w, err)
		return
	}
	w.Header().Set("Location", "/api/sessions/"+sess.ID)
	WriteJSON(w, http.StatusCreated, sess)
}

// parseTTL accepts a Go duration string ("5m") or a number of seconds.
func parseTTL(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		d, err := time.ParseDuration(str)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("ttl %q must be a positive duration such as \"5m\"", str)
		}
		return d, nil
	}
	var secs float64
	if err := json.Unmarshal(raw, &secs); err != nil || secs < 0 {
		return 0, errors.New("ttl must be a duration string or a number of seconds")
	}
	return time.Duration(secs * float64(time.Second)), nil
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	sess, err := s.Sessions.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.storeError(w, err)
		return
	}
	if s.TrafficCount != nil {
		WriteJSON(w, http.StatusOK, sessionView{Session: sess, Traffic: s.TrafficCount(sess.ID)})
		return
	}
	WriteJSON(w, http.StatusOK, sess)
}

func (s *Server) closeSession(w http.ResponseWriter, r *http.Request) {
	sess, err := s.Sessions.Close(r.Context(), r.PathValue("id"))
	if err != nil {
		s.storeError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, sess)
}

func (s *Server) storeError(w http.ResponseWriter, err error) {
	e := s.Errors
	switch {
	case errors.Is(err, store.ErrNotFound):
		WriteError(w, http.StatusNotFound, "session not found")
	case errors.Is(err, store.ErrBadCursor):
		WriteError(w, http.StatusBadRequest, "invalid cursor in since")
	case e.InvalidID != nil && errors.Is(err, e.InvalidID):
		WriteError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, store.ErrExists):
		WriteError(w, http.StatusConflict, "session already exists")
	case e.Ended != nil && errors.Is(err, e.Ended), errors.Is(err, store.ErrConflict):
		WriteError(w, http.StatusConflict, "session is not active")
	case e.TooMany != nil && errors.Is(err, e.TooMany):
		WriteError(w, http.StatusServiceUnavailable, "too many sessions")
	default:
		s.Log.Error().Err(err).Msg("admin request failed")
		WriteError(w, http.StatusServiceUnavailable, "store unavailable")
	}
}

// List is the shape of every list response.
type List[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next"`
}

// PageFrom reads ?since= (or ?cursor=) and ?limit= (1..1000).
func PageFrom(r *http.Request) (store.Page, error) {
	q := r.URL.Query()
	p := store.Page{Cursor: q.Get("since")}
	if c := q.Get("cursor"); c != "" {
		p.Cursor = c
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > store.MaxLimit {
			return p, fmt.Errorf("limit must be a number from 1 to %d", store.MaxLimit)
		}
		p.Limit = n
	}
	return p, nil
}

// maxRequestBody bounds admin API request bodies.
const maxRequestBody = 1 << 20

// DecodeJSON decodes a JSON request body (an empty body is an empty
// object); unknown fields are refused so typos are not silently ignored.
func DecodeJSON(r *http.Request, v any) error {
	body := http.MaxBytesReader(nil, r.Body, maxRequestBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	return nil
}

// WriteJSON writes v as JSON with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes {"error": msg, "status": code}.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, map[string]any{"error": msg, "status": code})
}
