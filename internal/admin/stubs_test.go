package admin_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/admin"
	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
	"github.com/proxyctl/proxyctl/internal/stub"
)

// stubAPI is the production wiring: the engine for stubs (write-through),
// the store for traffic.
type stubAPI struct {
	*stub.Engine
	store.Traffic
}

// newStubServer serves the admin API with stubs over a memory store, with
// a strict session manager that knows no session (stubs need none).
func newStubServer(t *testing.T, token string, opts memstore.Options) (*httptest.Server, *memstore.Store, *stub.Engine) {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t))
	st := memstore.NewWithOptions(opts)
	eng := &stub.Engine{Store: st, CacheTTL: time.Hour, Log: log}
	s := &admin.Server{
		Sessions: session.NewManager(st, session.Config{Mode: session.ModeStrict}, log),
		Errors:   admin.Errors{Ended: session.ErrEnded, TooMany: session.ErrTooMany, Unavailable: session.ErrUnavailable, InvalidID: session.ErrInvalidID},
		Traffic:  st,
		Stubs:    stubAPI{eng, st},
		Token:    token,
		Log:      log,
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, st, eng
}

func items(t *testing.T, body map[string]any) []map[string]any {
	t.Helper()
	raw, ok := body["items"].([]any)
	if !ok || body["next"] != "" {
		t.Fatalf("not a list: %v", body)
	}
	out := make([]map[string]any, len(raw))
	for i, v := range raw {
		out[i] = v.(map[string]any)
	}
	return out
}

func ids(list []map[string]any) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i], _ = s["stubId"].(string)
	}
	return out
}

func TestStubsCRUD(t *testing.T) {
	srv, _, _ := newStubServer(t, "", memstore.Options{})
	u := srv.URL + "/api/sessions/run-1/stubs"

	// Defaults: a generated id, the path's session, priority 10, status
	// 200, createdAt now. The session does not exist: that is allowed.
	before := time.Now().Add(-time.Second)
	code, body := call(t, "POST", u, "", `{"pattern":{"method":"GET","url":"/foo"},"response":{"body":"hi"}}`)
	if code != 201 {
		t.Fatalf("create: %d %v", code, body)
	}
	gen, _ := body["stubId"].(string)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(gen) || body["sessionId"] != "run-1" || body["priority"] != 10.0 {
		t.Errorf("create defaults: %v", body)
	}
	if resp := body["response"].(map[string]any); resp["status"] != 200.0 || resp["body"] != "hi" {
		t.Errorf("response: %v", resp)
	}
	if c, err := time.Parse(time.RFC3339Nano, body["createdAt"].(string)); err != nil || c.Before(before) {
		t.Errorf("createdAt %v (%v)", body["createdAt"], err)
	}

	// An explicit priority 0 is kept; a given id is used.
	code, body = call(t, "POST", u, "", `{"stubId":"first","priority":0,"pattern":{"urlPath":"/foo"},"response":{"status":404}}`)
	if code != 201 || body["stubId"] != "first" || body["priority"] != 0.0 {
		t.Fatalf("create with id: %d %v", code, body)
	}
	time.Sleep(2 * time.Millisecond) // a distinct createdAt
	code, _ = call(t, "POST", u, "", `{"stubId":"newer","priority":10,"response":{}}`)
	if code != 201 {
		t.Fatalf("create newer: %d", code)
	}

	// Listed by priority, then newest.
	code, body = call(t, "GET", u, "", "")
	if got, want := strings.Join(ids(items(t, body)), ","), "first,newer,"+gen; code != 200 || got != want {
		t.Errorf("list: %d %s, want %s", code, got, want)
	}

	// Posting the same id replaces (and makes it the newest).
	code, body = call(t, "POST", u, "", `{"stubId":"first","priority":20,"response":{"body":"v2"}}`)
	if code != 201 || body["priority"] != 20.0 {
		t.Fatalf("replace: %d %v", code, body)
	}
	_, body = call(t, "GET", u, "", "")
	if got, want := strings.Join(ids(items(t, body)), ","), "newer,"+gen+",first"; got != want {
		t.Errorf("list after replace: %s, want %s", got, want)
	}
	code, body = call(t, "GET", u+"/first", "", "")
	if code != 200 || body["response"].(map[string]any)["body"] != "v2" {
		t.Errorf("get: %d %v", code, body)
	}

	if code, _ := call(t, "DELETE", u+"/first", "", ""); code != 204 {
		t.Errorf("delete: %d, want 204", code)
	}
	for _, method := range []string{"DELETE", "GET"} {
		if code, body := call(t, method, u+"/first", "", ""); code != 404 || body["error"] != "stub not found" {
			t.Errorf("%s deleted stub: %d %v, want 404", method, code, body)
		}
	}
	if code, _ := call(t, "DELETE", srv.URL+"/api/sessions/other/stubs/newer", "", ""); code != 404 {
		t.Errorf("delete through another session: %d, want 404", code)
	}
	code, body = call(t, "GET", srv.URL+"/api/sessions/nobody/stubs", "", "")
	if code != 200 || len(items(t, body)) != 0 {
		t.Errorf("list of a session with no stubs: %d %v", code, body)
	}
}

func TestStubsValidation(t *testing.T) {
	srv, _, _ := newStubServer(t, "", memstore.Options{})
	u := srv.URL + "/api/sessions/s/stubs"
	tests := []struct {
		name, body, want string
	}{
		{"not JSON", `{`, "invalid JSON body"},
		{"unknown field", `{"patern":{}}`, `unknown field "patern"`},
		{"unknown pattern field", `{"pattern":{"uri":"/"}}`, `unknown field "uri"`},
		{"unknown matcher", `{"pattern":{"body":{"equalsTo":"x"}}}`, `unknown field "equalsTo"`},
		{"bad regexp", `{"pattern":{"urlPattern":"(("}}`, "pattern.urlPattern: error parsing regexp"},
		{"two matchers", `{"pattern":{"headers":{"A":{"equalTo":"1","matches":"1"}}}}`, `pattern.headers["A"]: set only one matcher`},
		{"bad equalToJson", `{"pattern":{"body":{"equalToJson":"{nope"}}}`, "pattern.body.equalToJson"},
		{"status", `{"response":{"status":700}}`, "response.status 700"},
		{"two bodies", `{"response":{"body":"a","bodyBase64":"YQ=="}}`, "response: set only one of body, bodyBase64 and jsonBody"},
		{"session mismatch", `{"sessionId":"t"}`, `sessionId "t" differs`},
		{"bad stub id", `{"stubId":"a b"}`, `stubId "a b"`},
		{"expired", `{"expiresAt":1000}`, "expiresAt 1000 is in the past"},
		{"milliseconds", `{"expiresAt":1767323045000}`, "want unix seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, "POST", u, "", tt.body)
			msg, _ := body["error"].(string)
			if code != 400 || !strings.Contains(msg, tt.want) {
				t.Errorf("POST %s: %d %q, want 400 with %q", tt.body, code, msg, tt.want)
			}
		})
	}
	if code, _ := call(t, "GET", srv.URL+"/api/sessions/a%0Ab/stubs", "", ""); code != 400 {
		t.Errorf("session id with a line break: %d, want 400", code)
	}
	_, body := call(t, "GET", u, "", "")
	if n := len(items(t, body)); n != 0 {
		t.Errorf("%d stubs stored by invalid requests", n)
	}
}

func TestStubsGlobalAndExpired(t *testing.T) {
	srv, st, _ := newStubServer(t, "", memstore.Options{})
	code, body := call(t, "POST", srv.URL+"/api/sessions/*/stubs", "", `{"stubId":"g","sessionId":"*"}`)
	if code != 201 || body["sessionId"] != "*" {
		t.Fatalf("create global: %d %v", code, body)
	}
	past := store.Stub{SessionID: "*", StubID: "old", ExpiresAt: 1000, CreatedAt: time.Now()}
	future := store.Stub{SessionID: "*", StubID: "later", Priority: 1, ExpiresAt: time.Now().Add(time.Hour).Unix(), CreatedAt: time.Now()}
	for _, s := range []store.Stub{past, future} {
		if err := st.PutStub(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	_, body = call(t, "GET", srv.URL+"/api/sessions/%2A/stubs", "", "")
	if got := strings.Join(ids(items(t, body)), ","); got != "later,g" {
		t.Errorf("global list %s, want later,g (expired ones left out)", got)
	}
	_, body = call(t, "GET", srv.URL+"/api/sessions/s/stubs", "", "")
	if n := len(items(t, body)); n != 0 {
		t.Errorf("a session's list holds %d global stubs", n)
	}
	if code, _ := call(t, "DELETE", srv.URL+"/api/sessions/*/stubs/g", "", ""); code != 204 {
		t.Errorf("delete global: %d", code)
	}
}

func TestStubsWriteThrough(t *testing.T) {
	srv, _, eng := newStubServer(t, "", memstore.Options{})
	req := &stub.Request{Method: "GET", Target: "/foo"}
	if _, ok, err := eng.Match(t.Context(), "s", req); ok || err != nil {
		t.Fatalf("before: %v %v", ok, err)
	}
	if code, _ := call(t, "POST", srv.URL+"/api/sessions/s/stubs", "", `{"stubId":"a","pattern":{"url":"/foo"}}`); code != 201 {
		t.Fatal(code)
	}
	if s, ok, err := eng.Match(t.Context(), "s", req); !ok || err != nil || s.StubID != "a" {
		t.Errorf("after create (cache TTL 1h): %v %v", ok, err)
	}
	if code, _ := call(t, "DELETE", srv.URL+"/api/sessions/s/stubs/a", "", ""); code != 204 {
		t.Fatal(code)
	}
	if _, ok, err := eng.Match(t.Context(), "s", req); ok || err != nil {
		t.Errorf("after delete: %v %v", ok, err)
	}
}

func TestStubsFromTraffic(t *testing.T) {
	srv, st, eng := newStubServer(t, "", memstore.Options{})
	ok := trafficItem("s", 1)
	ok.Method, ok.Path, ok.Status = "POST", "/orders?dry=1", 201
	ok.RequestBody = capture.NewBody([]byte(`{"n":1}`))
	ok.ResponseHeaders = map[string][]string{"Content-Type": {"application/json"}, "Date": {"x"}}
	cut := trafficItem("s", 2)
	cut.ResponseBody.Truncated = true
	frame := trafficItem("s", 3)
	frame.Kind, frame.Direction = capture.KindStdio, capture.DirClientToServer
	other := trafficItem("t", 4)
	if err := st.AppendTraffic(t.Context(), []*capture.Item{ok, cut, frame, other}); err != nil {
		t.Fatal(err)
	}
	u := srv.URL + "/api/sessions/s/stubs/from-traffic"

	code, body := call(t, "POST", u, "", `{"trafficId":"s-1","priority":3}`)
	if code != 201 {
		t.Fatalf("from-traffic: %d %v", code, body)
	}
	p, r := body["pattern"].(map[string]any), body["response"].(map[string]any)
	if body["priority"] != 3.0 || body["sessionId"] != "s" || p["method"] != "POST" || p["url"] != "/orders?dry=1" ||
		r["status"] != 201.0 || r["body"] != `{"ok":true}` || r["headers"].(map[string]any)["Date"] != nil {
		t.Errorf("from-traffic stub: %v", body)
	}
	if p["body"].(map[string]any)["equalToJson"] == nil {
		t.Errorf("request body not matched: %v", p)
	}
	// The stub answers the recorded request at once.
	rec := httptest.NewRecorder()
	hr := httptest.NewRequest("POST", "/orders?dry=1", strings.NewReader(`{ "n": 1 }`))
	if served, err := eng.ServeStub(rec, hr, "s"); !served || err != nil || rec.Code != 201 || rec.Body.String() != `{"ok":true}` {
		t.Errorf("serving the new stub: %v %v %d %q", served, err, rec.Code, rec.Body)
	}

	code, body = call(t, "POST", u, "", `{"trafficId":"s-1"}`)
	if code != 201 || body["priority"] != 10.0 {
		t.Errorf("default priority: %d %v", code, body["priority"])
	}
	tests := []struct {
		name, body string
		want       int
		msg        string
	}{
		{"unknown item", `{"trafficId":"nope"}`, 404, "traffic item not found"},
		{"another session's item", `{"trafficId":"t-4"}`, 404, "traffic item not found"},
		{"truncated", `{"trafficId":"s-2"}`, 422, "incomplete"},
		{"stdio frame", `{"trafficId":"s-3"}`, 422, "not an HTTP exchange"},
		{"no id", `{}`, 400, "trafficId is required"},
		{"unknown field", `{"trafficId":"s-1","x":1}`, 400, "unknown field"},
		{"bad stub id", `{"trafficId":"s-1","stubId":"a/b"}`, 400, "stubId"},
		{"expired", `{"trafficId":"s-1","expiresAt":5}`, 400, "in the past"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, "POST", u, "", tt.body)
			if msg, _ := body["error"].(string); code != tt.want || !strings.Contains(msg, tt.msg) {
				t.Errorf("%s: %d %q, want %d %q", tt.body, code, msg, tt.want, tt.msg)
			}
		})
	}
}

func TestStubsTokenAndLimits(t *testing.T) {
	srv, _, _ := newStubServer(t, "sekret", memstore.Options{MaxStubsPerSession: 1})
	u := srv.URL + "/api/sessions/s/stubs"
	for _, r := range []struct{ method, url, body string }{
		{"GET", u, ""},
		{"POST", u, `{}`},
		{"DELETE", u + "/x", ""},
		{"POST", u + "/from-traffic", `{"trafficId":"x"}`},
	} {
		if code, _ := call(t, r.method, r.url, "", r.body); code != 401 {
			t.Errorf("%s %s without the token: %d, want 401", r.method, r.url, code)
		}
	}
	if code, _ := call(t, "POST", u, "sekret", `{"stubId":"a"}`); code != 201 {
		t.Fatalf("first stub: %d", code)
	}
	if code, body := call(t, "POST", u, "sekret", `{"stubId":"b"}`); code != 409 {
		t.Errorf("past the limit: %d %v, want 409", code, body)
	}
	if code, _ := call(t, "POST", u, "sekret", `{"stubId":"a","priority":1}`); code != 201 {
		t.Errorf("replace at the limit: %d", code)
	}
}

// failingStubs is a StubAPI whose store is down.
type failingStubs struct{}

var errStoreDown = errors.New("dial tcp 10.0.0.1:8000: connection refused")

func (failingStubs) ListStubs(context.Context, string) ([]store.Stub, error) {
	return nil, errStoreDown
}
func (failingStubs) PutStub(context.Context, store.Stub) error        { return errStoreDown }
func (failingStubs) DeleteStub(context.Context, string, string) error { return errStoreDown }
func (failingStubs) GetTraffic(context.Context, string, string) (capture.Item, error) {
	return capture.Item{}, errStoreDown
}

func TestStubsStoreDown(t *testing.T) {
	s := &admin.Server{Stubs: failingStubs{}, Log: zerolog.New(zerolog.NewTestWriter(t))}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	u := srv.URL + "/api/sessions/s/stubs"
	for _, r := range []struct{ method, url, body string }{
		{"GET", u, ""},
		{"GET", u + "/a", ""},
		{"POST", u, `{}`},
		{"DELETE", u + "/x", ""},
		{"POST", u + "/from-traffic", `{"trafficId":"x"}`},
	} {
		code, body := call(t, r.method, r.url, "", r.body)
		if code != 503 || strings.Contains(body["error"].(string), "10.0.0.1") {
			t.Errorf("%s %s: %d %v, want a sanitized 503", r.method, r.url, code, body)
		}
	}
}
