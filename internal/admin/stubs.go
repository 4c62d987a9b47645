package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/stub"
)

// StubAPI is what the stub routes use: the stub store (in production the
// stub.Engine, which writes through to the store and refreshes its own
// cache at once) and the captured traffic for from-traffic.
type StubAPI interface {
	ListStubs(ctx context.Context, sessionID string) ([]store.Stub, error)
	PutStub(ctx context.Context, s store.Stub) error
	DeleteStub(ctx context.Context, sessionID, stubID string) error
	GetTraffic(ctx context.Context, sessionID, id string) (capture.Item, error)
}

// maxSessionIDLen bounds the session id in a stub route (the session
// manager's own bound).
const maxSessionIDLen = 256

func (s *Server) stubRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/sessions/{id}/stubs", s.listStubs)
	mux.HandleFunc("POST /api/sessions/{id}/stubs", s.createStub)
	mux.HandleFunc("POST /api/sessions/{id}/stubs/from-traffic", s.stubFromTraffic)
	mux.HandleFunc("GET /api/sessions/{id}/stubs/{stubId}", s.getStub)
	mux.HandleFunc("DELETE /api/sessions/{id}/stubs/{stubId}", s.deleteStub)
}

// stubSession returns the route's session id; "*" names the global stubs.
// The session need not exist: stubs may be installed before the session
// is opened (a test run sets up its stubs, then starts sending), and they
// apply once traffic arrives with that id.
func stubSession(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxSessionIDLen {
		WriteError(w, http.StatusBadRequest, fmt.Sprintf("session id: length %d, want 1 to %d", len(id), maxSessionIDLen))
		return "", false
	}
	for i := range len(id) {
		if c := id[i]; c < 0x21 || c > 0x7e {
			WriteError(w, http.StatusBadRequest, "session id: want visible ASCII")
			return "", false
		}
	}
	return id, true
}

// listStubs serves GET /api/sessions/{id}/stubs: the session's own stubs
// ("*": the global ones), unexpired, in precedence order (priority, then
// newest). The list is not paginated (a session holds a bounded number of
// stubs): next is always "".
func (s *Server) listStubs(w http.ResponseWriter, r *http.Request) {
	id, ok := stubSession(w, r)
	if !ok {
		return
	}
	all, err := s.Stubs.ListStubs(r.Context(), id)
	if err != nil {
		s.stubError(w, err)
		return
	}
	now := time.Now().Unix()
	items := make([]store.Stub, 0, len(all))
	for _, st := range all {
		if st.ExpiresAt == 0 || now < st.ExpiresAt {
			items = append(items, st)
		}
	}
	slices.SortFunc(items, stub.Compare)
	WriteJSON(w, http.StatusOK, List[store.Stub]{Items: items, Next: ""})
}

func (s *Server) getStub(w http.ResponseWriter, r *http.Request) {
	id, ok := stubSession(w, r)
	if !ok {
		return
	}
	all, err := s.Stubs.ListStubs(r.Context(), id)
	if err != nil {
		s.stubError(w, err)
		return
	}
	want := r.PathValue("stubId")
	for _, st := range all {
		if st.StubID == want {
			WriteJSON(w, http.StatusOK, st)
			return
		}
	}
	WriteError(w, http.StatusNotFound, "stub not found")
}

// stubRequest is the body of POST /api/sessions/{id}/stubs: a store.Stub
// whose priority may be absent (DefaultPriority). createdAt is accepted,
// so that a listed stub can be posted back, and replaced by the server's
// clock.
type stubRequest struct {
	StubID    string             `json:"stubId"`
	SessionID string             `json:"sessionId"`
	Priority  *int               `json:"priority"`
	Pattern   store.StubPattern  `json:"pattern"`
	Response  store.StubResponse `json:"response"`
	ExpiresAt int64              `json:"expiresAt"`
	CreatedAt *time.Time         `json:"createdAt"`
}

// createStub serves POST /api/sessions/{id}/stubs: it validates the stub
// (400 with the reason), fills in stubId (random hex) when absent,
// sessionId from the path, priority 10 when absent, status 200 when absent
// and createdAt now, stores it (replacing a stub with the same id) and
// answers 201 with it.
func (s *Server) createStub(w http.ResponseWriter, r *http.Request) {
	id, ok := stubSession(w, r)
	if !ok {
		return
	}
	var req stubRequest
	if err := DecodeJSON(r, &req); err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.SessionID != "" && req.SessionID != id {
		WriteError(w, http.StatusBadRequest, fmt.Sprintf("sessionId %q differs from the session in the path (%q)", req.SessionID, id))
		return
	}
	st := store.Stub{
		StubID:    req.StubID,
		SessionID: id,
		Priority:  stub.DefaultPriority,
		Pattern:   req.Pattern,
		Response:  req.Response,
		ExpiresAt: req.ExpiresAt,
	}
	if req.Priority != nil {
		st.Priority = *req.Priority
	}
	s.saveStub(w, r, st, http.StatusBadRequest)
}

// fromTrafficRequest is the body of POST /api/sessions/{id}/stubs/from-traffic.
type fromTrafficRequest struct {
	TrafficID string `json:"trafficId"`
	StubID    string `json:"stubId"`
	Priority  *int   `json:"priority"`
	ExpiresAt int64  `json:"expiresAt"`
}

// stubFromTraffic serves POST /api/sessions/{id}/stubs/from-traffic: a
// stub of the session answering the request of one of its captured
// exchanges with that exchange's response (stub.FromTraffic). 404 when the
// session has no such item, 422 when it cannot be stubbed (its response
// body was truncated, it is a stdio frame ...).
func (s *Server) stubFromTraffic(w http.ResponseWriter, r *http.Request) {
	id, ok := stubSession(w, r)
	if !ok {
		return
	}
	var req fromTrafficRequest
	if err := DecodeJSON(r, &req); err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.TrafficID == "" {
		WriteError(w, http.StatusBadRequest, "trafficId is required")
		return
	}
	if _, err := stub.Compile(store.Stub{StubID: req.StubID, ExpiresAt: req.ExpiresAt}); err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	it, err := s.Stubs.GetTraffic(r.Context(), id, req.TrafficID)
	if errors.Is(err, store.ErrNotFound) {
		WriteError(w, http.StatusNotFound, "traffic item not found")
		return
	}
	if err != nil {
		s.stubError(w, err)
		return
	}
	st, err := stub.FromTraffic(it, id)
	if err != nil {
		WriteError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	st.StubID, st.ExpiresAt = req.StubID, req.ExpiresAt
	if req.Priority != nil {
		st.Priority = *req.Priority
	}
	// The caller's fields were checked above: what fails now is the
	// exchange (a 1xx status, an odd method), which cannot be stubbed.
	s.saveStub(w, r, st, http.StatusUnprocessableEntity)
}

// saveStub completes, validates and stores st and answers 201 with it;
// a stub that does not compile is answered with invalidCode.
func (s *Server) saveStub(w http.ResponseWriter, r *http.Request, st store.Stub, invalidCode int) {
	st, err := stub.Prepare(st, time.Now())
	if err != nil {
		if errors.Is(err, stub.ErrExpired) {
			invalidCode = http.StatusBadRequest
		}
		WriteError(w, invalidCode, err.Error())
		return
	}
	if err := s.Stubs.PutStub(r.Context(), st); err != nil {
		s.stubError(w, err)
		return
	}
	w.Header().Set("Location", "/api/sessions/"+url.PathEscape(st.SessionID)+"/stubs/"+st.StubID)
	WriteJSON(w, http.StatusCreated, st)
}

// deleteStub serves DELETE /api/sessions/{id}/stubs/{stubId}: 204, or 404
// when the session has no such stub.
func (s *Server) deleteStub(w http.ResponseWriter, r *http.Request) {
	id, ok := stubSession(w, r)
	if !ok {
		return
	}
	if err := s.Stubs.DeleteStub(r.Context(), id, r.PathValue("stubId")); err != nil {
		s.stubError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) stubError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		WriteError(w, http.StatusNotFound, "stub not found")
	case errors.Is(err, store.ErrLimit):
		WriteError(w, http.StatusConflict, "too many stubs: delete some first")
	default:
		s.Log.Error().Err(err).Msg("admin stub request failed")
		WriteError(w, http.StatusServiceUnavailable, "store unavailable")
	}
}
