package stub_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/proxyctl/proxyctl/internal/stub"
)

func TestMatch(t *testing.T) {
	get := func(target string) *stub.Request {
		return &stub.Request{Method: "GET", Target: target, Header: http.Header{}, Body: []byte{}}
	}
	with := func(r *stub.Request, f func(r *stub.Request)) *stub.Request { f(r); return r }
	header := func(target, k, v string) *stub.Request {
		return with(get(target), func(r *stub.Request) { r.Header.Add(k, v) })
	}
	post := func(target, body string) *stub.Request {
		return &stub.Request{Method: "POST", Target: target, Header: http.Header{}, Body: []byte(body)}
	}
	tests := []struct {
		name    string
		pattern string
		req     *stub.Request
		want    bool
	}{
		{"empty pattern", `{}`, get("/anything?x=1"), true},
		{"method", `{"method":"GET"}`, get("/"), true},
		{"method case", `{"method":"get"}`, get("/"), true},
		{"method other", `{"method":"POST"}`, get("/"), false},
		{"method any", `{"method":"ANY"}`, post("/", ""), true},

		{"url exact", `{"url":"/a?b=1&c=2"}`, get("/a?b=1&c=2"), true},
		{"url query order", `{"url":"/a?b=1&c=2"}`, get("/a?c=2&b=1"), false},
		{"url no query", `{"url":"/a"}`, get("/a?b=1"), false},
		{"url escaped as sent", `{"url":"/a%20b"}`, get("/a%20b"), true},
		{"urlPath any query", `{"urlPath":"/a"}`, get("/a?b=1"), true},
		{"urlPath no query", `{"urlPath":"/a"}`, get("/a"), true},
		{"urlPath other", `{"urlPath":"/a"}`, get("/ab"), false},
		{"urlPattern whole", `{"urlPattern":"/users/\\d+"}`, get("/users/42"), true},
		{"urlPattern anchored end", `{"urlPattern":"/users/\\d+"}`, get("/users/42/x"), false},
		{"urlPattern anchored start", `{"urlPattern":"/users/\\d+"}`, get("/v1/users/42"), false},
		{"urlPattern alternation anchored", `{"urlPattern":"/a|/b"}`, get("/bc"), false},
		{"urlPattern with query", `{"urlPattern":"/s\\?q=.*"}`, get("/s?q=go"), true},

		{"query equal", `{"query":{"q":{"equalTo":"a b"}}}`, get("/s?q=a+b"), true},
		{"query any value", `{"query":{"q":{"equalTo":"2"}}}`, get("/s?q=1&q=2"), true},
		{"query missing", `{"query":{"q":{"equalTo":"1"}}}`, get("/s"), false},
		{"query absent", `{"query":{"q":{"absent":true}}}`, get("/s?r=1"), true},
		{"query absent but present", `{"query":{"q":{"absent":true}}}`, get("/s?q="), false},
		{"query names are case-sensitive", `{"query":{"Q":{"equalTo":"1"}}}`, get("/s?q=1"), false},
		{"query contains", `{"query":{"q":{"contains":"ell"}}}`, get("/s?q=hello"), true},
		{"query matches whole", `{"query":{"q":{"matches":"h.l"}}}`, get("/s?q=hello"), false},
		{"query all must match", `{"query":{"a":{"equalTo":"1"},"b":{"equalTo":"2"}}}`, get("/s?a=1&b=3"), false},
		{"query from Query", `{"query":{"a":{"equalTo":"1"}}}`, &stub.Request{Method: "GET", Path: "/s", Query: url.Values{"a": {"1"}}}, true},

		{"header case-insensitive name", `{"headers":{"x-api-version":{"equalTo":"2"}}}`, header("/", "X-Api-Version", "2"), true},
		{"header value case matters", `{"headers":{"Accept":{"equalTo":"TEXT/PLAIN"}}}`, header("/", "Accept", "text/plain"), false},
		{"header contains", `{"headers":{"Accept":{"contains":"json"}}}`, header("/", "Accept", "application/json"), true},
		{"header matches", `{"headers":{"X-Id":{"matches":"[0-9]+"}}}`, header("/", "X-Id", "123"), true},
		{"header matches partial", `{"headers":{"X-Id":{"matches":"[0-9]+"}}}`, header("/", "X-Id", "123a"), false},
		{"header absent", `{"headers":{"Authorization":{"absent":true}}}`, get("/"), true},
		{"header absent but set", `{"headers":{"Authorization":{"absent":true}}}`, header("/", "Authorization", "x"), false},
		{"header json", `{"headers":{"X-Json":{"equalToJson":{"a":1,"b":2}}}}`, header("/", "X-Json", `{"b":2, "a":1}`), true},
		{"header host", `{"headers":{"Host":{"equalTo":"api.test"}}}`, with(get("/"), func(r *stub.Request) { r.Host = "api.test" }), true},
		{"header non-canonical map", `{"headers":{"X-A":{"equalTo":"1"}}}`, &stub.Request{Method: "GET", Target: "/", Header: http.Header{"x-a": {"1"}}}, true},
		{"header nil map", `{"headers":{"X-A":{"absent":true}}}`, &stub.Request{Method: "GET", Target: "/"}, true},

		{"body equalTo", `{"body":{"equalTo":"hello"}}`, post("/", "hello"), true},
		{"body equalTo other", `{"body":{"equalTo":"hello"}}`, post("/", "hello!"), false},
		{"body empty equalTo", `{"body":{"equalTo":""}}`, post("/", ""), true},
		{"body contains", `{"body":{"contains":"\"id\":7"}}`, post("/", `{"id":7,"x":1}`), true},
		{"body matches", `{"body":{"matches":"(?s)a.*z"}}`, post("/", "a\nb\nz"), true},
		{"body json key order", `{"body":{"equalToJson":{"a":1,"b":[1,2]}}}`, post("/", `{ "b" : [1, 2], "a": 1 }`), true},
		{"body json array order matters", `{"body":{"equalToJson":{"b":[1,2]}}}`, post("/", `{"b":[2,1]}`), false},
		{"body json extra key", `{"body":{"equalToJson":{"a":1}}}`, post("/", `{"a":1,"b":2}`), false},
		{"body json not json", `{"body":{"equalToJson":{"a":1}}}`, post("/", `a=1`), false},
		{"body json as string", `{"body":{"equalToJson":"{\"a\": 1}"}}`, post("/", `{"a":1}`), true},
		{"body json scalar", `{"body":{"equalToJson":"\"x\""}}`, post("/", `"x"`), true},
		{"body json trailing data", `{"body":{"equalToJson":{"a":1}}}`, post("/", `{"a":1}{"a":1}`), false},
		{"body binary", `{"body":{"binaryEqualTo":"AAH/"}}`, post("/", "\x00\x01\xff"), true},
		{"body unread", `{"body":{"contains":""}}`, with(post("/", ""), func(r *stub.Request) { r.BodyUnread = true }), false},
		{"no body matcher, body unread", `{"method":"POST"}`, with(post("/", ""), func(r *stub.Request) { r.BodyUnread = true }), true},

		{"everything", `{"method":"POST","urlPath":"/orders","query":{"dry":{"equalTo":"1"}},"headers":{"Content-Type":{"contains":"json"}},"body":{"equalToJson":{"n":1}}}`,
			with(post("/orders?dry=1", `{"n":1}`), func(r *stub.Request) { r.Header.Set("Content-Type", "application/json") }), true},
		{"everything but the body", `{"method":"POST","urlPath":"/orders","query":{"dry":{"equalTo":"1"}},"headers":{"Content-Type":{"contains":"json"}},"body":{"equalToJson":{"n":1}}}`,
			with(post("/orders?dry=1", `{"n":2}`), func(r *stub.Request) { r.Header.Set("Content-Type", "application/json") }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := stub.Compile(parse(t, `{"pattern":`+tt.pattern+`}`))
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if got := c.Match(tt.req); got != tt.want {
				t.Errorf("pattern %s, request %s %s: match %v, want %v", tt.pattern, tt.req.Method, tt.req.Target, got, tt.want)
			}
		})
	}
}

func TestNewRequest(t *testing.T) {
	tests := []struct {
		name, requestURI, wantTarget string
	}{
		{"origin form", "/a%2Fb?x=1&y=%20", "/a%2Fb?x=1&y=%20"},
		{"absolute form", "http://api.test/a?x=1", "/a?x=1"},
		{"asterisk", "*", "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.requestURI, nil)
			r.RequestURI = tt.requestURI
			got := stub.NewRequest(r, nil)
			if got.Target != tt.wantTarget || !got.BodyUnread {
				t.Errorf("NewRequest(%q): target %q, unread %v; want %q, true", tt.requestURI, got.Target, got.BodyUnread, tt.wantTarget)
			}
		})
	}
	r := httptest.NewRequest("POST", "/a?x=1", strings.NewReader("b"))
	got := stub.NewRequest(r, []byte{})
	if got.BodyUnread || got.Query.Get("x") != "1" || got.Host != "example.com" {
		t.Errorf("NewRequest with a read body: %+v", got)
	}
	// A client-made request has no RequestURI.
	r, _ = http.NewRequestWithContext(t.Context(), "GET", "http://h/p?q=1", nil)
	if got := stub.NewRequest(r, nil); got.Target != "/p?q=1" {
		t.Errorf("NewRequest without RequestURI: target %q", got.Target)
	}
}
