package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/admin"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
)

func newServer(t *testing.T, token string) (*httptest.Server, *session.Manager) {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t))
	mgr := session.NewManager(memstore.New(), session.Config{Mode: session.ModeStrict, Max: 3}, log)
	s := &admin.Server{
		Sessions: mgr,
		Errors:   admin.Errors{Ended: session.ErrEnded, TooMany: session.ErrTooMany, Unavailable: session.ErrUnavailable, InvalidID: session.ErrInvalidID},
		Token:    token,
		Metrics:  http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "m 1\n") }),
		Health: func(context.Context) map[string]error {
			return map[string]error{"store": nil}
		},
		Log: log,
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, mgr
}

func call(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rb)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: bad JSON %q", method, url, b)
		}
	}
	return resp.StatusCode, out
}

func TestSessionsAPI(t *testing.T) {
	srv, _ := newServer(t, "")
	u := srv.URL + "/api/sessions"

	code, body := call(t, "POST", u, "", `{"id":"run-1","ttl":"5m","labels":{"ci":"42"}}`)
	if code != 201 || body["id"] != "run-1" || body["state"] != "ACTIVE" {
		t.Fatalf("create: %d %v", code, body)
	}
	if exp, _ := time.Parse(time.RFC3339Nano, body["expiresAt"].(string)); time.Until(exp) < 4*time.Minute {
		t.Errorf("ttl not applied: %v", body["expiresAt"])
	}
	if code, _ := call(t, "POST", u, "", `{"id":"run-1"}`); code != 409 {
		t.Errorf("duplicate: %d, want 409", code)
	}
	code, body = call(t, "POST", u, "", `{}`)
	if code != 201 || len(body["id"].(string)) != 32 {
		t.Errorf("generated id: %d %v", code, body)
	}
	for _, bad := range []string{`{"ttl":"soon"}`, `{"idd":"x"}`, `not json`, `{"id":"` + strings.Repeat("x", 300) + `"}`} {
		if code, _ := call(t, "POST", u, "", bad); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
	code, body = call(t, "GET", u+"/run-1", "", "")
	if code != 200 || body["labels"].(map[string]any)["ci"] != "42" {
		t.Errorf("get: %d %v", code, body)
	}
	if code, _ := call(t, "GET", u+"/nope", "", ""); code != 404 {
		t.Errorf("get unknown: %d", code)
	}
	code, body = call(t, "DELETE", u+"/run-1", "", "")
	if code != 200 || body["state"] != "CLOSED" {
		t.Errorf("close: %d %v", code, body)
	}
	if code, _ := call(t, "DELETE", u+"/run-1", "", ""); code != 409 {
		t.Errorf("close twice: %d, want 409", code)
	}
	if code, _ := call(t, "DELETE", u+"/nope", "", ""); code != 404 {
		t.Errorf("close unknown: %d, want 404", code)
	}
}

func TestSessionsPagination(t *testing.T) {
	srv, mgr := newServer(t, "")
	for _, id := range []string{"c", "a", "b"} {
		if _, err := mgr.Open(t.Context(), id, 0, "test", nil); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	next := ""
	for range 5 {
		code, body := call(t, "GET", srv.URL+"/api/sessions?limit=2&since="+next, "", "")
		if code != 200 {
			t.Fatalf("list: %d %v", code, body)
		}
		for _, it := range body["items"].([]any) {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		next = body["next"].(string)
		if next == "" {
			break
		}
	}
	if strings.Join(ids, ",") != "a,b,c" {
		t.Errorf("pages gave %v, want a,b,c", ids)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "since=%21%21"} {
		if code, _ := call(t, "GET", srv.URL+"/api/sessions?"+q, "", ""); code != 400 {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
	// The session limit (Max 3) gives 503 on create.
	if code, _ := call(t, "POST", srv.URL+"/api/sessions", "", `{"id":"d"}`); code != 503 {
		t.Errorf("over max: %d, want 503", code)
	}
}

func TestToken(t *testing.T) {
	srv, _ := newServer(t, "adm1n")
	if code, _ := call(t, "GET", srv.URL+"/api/sessions", "", ""); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := call(t, "GET", srv.URL+"/metrics", "wrong", ""); code != 401 {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code, _ := call(t, "GET", srv.URL+"/api/sessions", "adm1n", ""); code != 200 {
		t.Errorf("right token: %d", code)
	}
	if code, body := call(t, "GET", srv.URL+"/healthz", "", ""); code != 200 || body["status"] != "ok" {
		t.Errorf("healthz needs no token: %d %v", code, body)
	}
	if code, _ := call(t, "GET", srv.URL+"/nothing", "adm1n", ""); code != 404 {
		t.Errorf("unknown route: %d", code)
	}
}

func TestHealthDegraded(t *testing.T) {
	s := &admin.Server{Health: func(context.Context) map[string]error {
		return map[string]error{"store": errors.New("connection refused")}
	}}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "degraded") {
		t.Errorf("got %d %s", rec.Code, rec.Body)
	}
}

// The token may come as ?access_token= for the WebSocket upgrade GET
// /api/ws only (browsers cannot set headers there); the UI's static files
// need no token, the rest of the API still does.
func TestTokenQueryAndUI(t *testing.T) {
	log := zerolog.New(zerolog.NewTestWriter(t))
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	s := &admin.Server{
		Sessions: session.NewManager(memstore.New(), session.Config{Mode: session.ModeStrict, Max: 3}, log),
		Token:    "adm1n",
		Routes:   func(mux *http.ServeMux) { mux.Handle("GET /api/ws", ok) },
		UI:       ok,
		Log:      log,
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/api/ws?topic=traffic&access_token=adm1n", 200},
		{"GET", "/api/ws?topic=traffic&access_token=wrong", 401},
		{"GET", "/api/ws?topic=traffic&access_token=", 401},
		{"GET", "/api/ws?topic=traffic", 401},
		{"GET", "/api/sessions?access_token=adm1n", 401},
		{"DELETE", "/api/sessions/x?access_token=adm1n", 401},
		{"POST", "/api/ws?access_token=adm1n", 401},
		{"GET", "/ui/", 200},
		{"GET", "/ui/app.js", 200},
		{"GET", "/ui", 200},
		{"POST", "/ui/", 401},
		{"GET", "/ui/../api/sessions", 307}, // cleaned by the mux: a redirect, never the API
		{"GET", "/uiX", 401},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = tc.path[:strings.IndexAny(tc.path+"?", "?")] // keep "..": no client-side cleaning
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("got %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestSessionsTrafficCount(t *testing.T) {
	log := zerolog.New(zerolog.NewTestWriter(t))
	mgr := session.NewManager(memstore.New(), session.Config{Mode: session.ModeStrict}, log)
	s := &admin.Server{Sessions: mgr, TrafficCount: func(id string) int64 { return int64(len(id)) }, Log: log}
	srv := httptest.NewServer(s)
	defer srv.Close()
	if code, _ := call(t, "POST", srv.URL+"/api/sessions", "", `{"id":"abcd"}`); code != 201 {
		t.Fatalf("create: %d", code)
	}
	code, body := call(t, "GET", srv.URL+"/api/sessions", "", "")
	items, _ := body["items"].([]any)
	if code != 200 || len(items) != 1 || items[0].(map[string]any)["traffic"] != float64(4) || items[0].(map[string]any)["id"] != "abcd" {
		t.Fatalf("list: %d %v", code, body)
	}
	if code, body = call(t, "GET", srv.URL+"/api/sessions/abcd", "", ""); code != 200 || body["traffic"] != float64(4) {
		t.Fatalf("get: %d %v", code, body)
	}
}
