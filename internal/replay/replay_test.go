package replay

import (
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/tape"
)

// xch returns an exchange whose id is its response body, to tell hits apart.
func xch(method, target, body, resp string) *tape.Exchange {
	return &tape.Exchange{
		ID:      resp,
		Request: tape.Request{Method: method, URL: target, Body: tape.Body(body)},
		Response: &tape.Response{
			Status:  http.StatusOK,
			Headers: http.Header{"Content-Type": {"text/plain"}},
			Body:    tape.Body(resp),
		},
	}
}

func withReqHeader(x *tape.Exchange, k, v string) *tape.Exchange {
	if x.Request.Headers == nil {
		x.Request.Headers = http.Header{}
	}
	x.Request.Headers.Add(k, v)
	return x
}

func testLog(t *testing.T) zerolog.Logger { return zerolog.New(zerolog.NewTestWriter(t)) }

func mustIndex(t testing.TB, xs []*tape.Exchange, o Options) *Index {
	t.Helper()
	ix, err := NewIndex(xs, o)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestLookup(t *testing.T) {
	recorded := []*tape.Exchange{
		xch("GET", "/v1/items", "", "items"),
		xch("GET", "/v1/items?b=2&a=1&a=0", "", "items-q"),
		xch("GET", "/v1/search?q=a+b&lang=caf%C3%A9", "", "search"),
		xch("GET", "/v1/flag?debug", "", "flag"),
		xch("POST", "/v1/items", `{"name":"ada","tags":["x","y"],"n":1.50}`, "created-json"),
		xch("POST", "/v1/form", "a=1&b=2", "created-form"),
		xch("PUT", "/v1/blob", "\x00\x01\xff\xfe binary", "blob"),
		xch("POST", "/v1/scalar", "42", "scalar"),
		xch("POST", "/v1/text", "{not json", "text"),
		withReqHeader(xch("GET", "/v1/tenant", "", "tenant-acme"), "X-Tenant", "acme"),
		withReqHeader(xch("GET", "/v1/tenant", "", "tenant-umbrella"), "X-Tenant", "umbrella"),
		xch("GET", "/v1/tenant", "", "tenant-none"),
		xch("GET", "https://api.example.com/v1/abs?x=1", "", "absolute"),
	}
	ix := mustIndex(t, recorded, Options{MatchHeaders: []string{"x-tenant"}, Log: testLog(t)})

	tests := []struct {
		name           string
		method, target string
		header         http.Header
		body           string
		want           string   // the hit's id, "" for a miss
		differs        []string // on a miss
		closest        string   // on a miss, the closest's id
	}{
		{name: "exact", method: "GET", target: "/v1/items", want: "items"},
		{name: "query in another order", method: "GET", target: "/v1/items?a=0&b=2&a=1", want: "items-q"},
		{name: "query decoded", method: "GET", target: "/v1/search?lang=café&q=a%20b", want: "search"},
		{name: "key without value", method: "GET", target: "/v1/flag?debug=", want: "flag"},
		{name: "empty query", method: "GET", target: "/v1/items?", want: "items"},
		{name: "fragment ignored", method: "GET", target: "/v1/items#top", want: "items"},
		{name: "absolute form", method: "GET", target: "http://localhost:8080/v1/items", want: "items"},
		{name: "recorded absolute", method: "GET", target: "/v1/abs?x=1", want: "absolute"},
		{
			name: "query value differs", method: "GET", target: "/v1/items?a=1&b=3&a=0",
			differs: []string{"query.b"}, closest: "items-q",
		},
		{
			name: "query value repeated", method: "GET", target: "/v1/items?a=1&a=1&b=2",
			differs: []string{"query.a"}, closest: "items-q",
		},
		{name: "query missing", method: "GET", target: "/v1/search?q=a+b", differs: []string{"query.lang"}, closest: "search"},
		{name: "method differs", method: "DELETE", target: "/v1/form", body: "a=1&b=2", differs: []string{"method"}, closest: "created-form"},
		{name: "path differs", method: "GET", target: "/v1/itemz", differs: []string{"path"}, closest: "items"},
		{name: "path case", method: "GET", target: "/V1/items", differs: []string{"path"}, closest: "items"},
		{
			name: "JSON body, keys reordered and spaced", method: "POST", target: "/v1/items",
			body: "{ \"n\": 1.50,\n \"tags\": [\"x\", \"y\"], \"name\": \"ada\" }", want: "created-json",
		},
		{
			name: "JSON body, array order matters", method: "POST", target: "/v1/items",
			body: `{"name":"ada","tags":["y","x"],"n":1.50}`, differs: []string{"body"}, closest: "created-json",
		},
		{
			name: "JSON body, numbers as written", method: "POST", target: "/v1/items",
			body: `{"name":"ada","tags":["x","y"],"n":1.5}`, differs: []string{"body"}, closest: "created-json",
		},
		{name: "JSON scalar body", method: "POST", target: "/v1/scalar", body: " 42\n", want: "scalar"},
		{name: "form body exact", method: "POST", target: "/v1/form", body: "a=1&b=2", want: "created-form"},
		{
			name: "form body reordered", method: "POST", target: "/v1/form", body: "b=2&a=1",
			differs: []string{"body"}, closest: "created-form",
		},
		{name: "binary body exact", method: "PUT", target: "/v1/blob", body: "\x00\x01\xff\xfe binary", want: "blob"},
		{
			name: "binary body one byte off", method: "PUT", target: "/v1/blob", body: "\x00\x01\xff\xff binary",
			differs: []string{"body"}, closest: "blob",
		},
		{name: "not JSON is exact", method: "POST", target: "/v1/text", body: "{not json", want: "text"},
		{
			name: "not JSON with a space", method: "POST", target: "/v1/text", body: "{not  json",
			differs: []string{"body"}, closest: "text",
		},
		{name: "match header", method: "GET", target: "/v1/tenant", header: http.Header{"X-Tenant": {"umbrella"}}, want: "tenant-umbrella"},
		{name: "match header, name any case", method: "GET", target: "/v1/tenant", header: http.Header{"x-tenant": {"acme"}}, want: "tenant-acme"},
		{name: "match header absent", method: "GET", target: "/v1/tenant", want: "tenant-none"},
		{
			name: "match header value case", method: "GET", target: "/v1/tenant", header: http.Header{"X-Tenant": {"ACME"}},
			differs: []string{"header.x-tenant"}, closest: "tenant-acme",
		},
		{
			name: "other headers ignored", method: "GET", target: "/v1/items",
			header: http.Header{"Accept": {"text/html"}, "User-Agent": {"x"}}, want: "items",
		},
		{
			name: "body on a GET", method: "GET", target: "/v1/items", body: "x",
			differs: []string{"body"}, closest: "items",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, miss := ix.Lookup(tt.method, tt.target, tt.header, []byte(tt.body))
			if tt.want != "" {
				if x == nil {
					t.Fatalf("miss %+v, want hit %q", miss, tt.want)
				}
				if x.ID != tt.want {
					t.Errorf("got %q, want %q", x.ID, tt.want)
				}
				return
			}
			if x != nil {
				t.Fatalf("got hit %q, want a miss", x.ID)
			}
			if miss.Method != tt.method || miss.Target != tt.target {
				t.Errorf("miss names %s %s, want %s %s", miss.Method, miss.Target, tt.method, tt.target)
			}
			if miss.Closest == nil || miss.Closest.ID != tt.closest {
				t.Errorf("closest %v, want %q", miss.Closest, tt.closest)
			}
			if !slices.Equal(miss.Differs, tt.differs) {
				t.Errorf("differs %q, want %q", miss.Differs, tt.differs)
			}
		})
	}
}

func TestLookupMultiValueHeader(t *testing.T) {
	ix := mustIndex(t, []*tape.Exchange{
		withReqHeader(withReqHeader(xch("GET", "/", "", "two-lines"), "Accept", "a"), "Accept", "b"),
	}, Options{MatchHeaders: []string{"Accept"}})
	for _, h := range []http.Header{{"Accept": {"a", "b"}}, {"Accept": {"a, b"}}} {
		if x, miss := ix.Lookup("GET", "/", h, nil); x == nil {
			t.Errorf("%v: miss %+v", h, miss)
		}
	}
	if x, _ := ix.Lookup("GET", "/", http.Header{"Accept": {"b", "a"}}, nil); x != nil {
		t.Errorf("values in another order matched")
	}
}

func TestSequence(t *testing.T) {
	ix := mustIndex(t, []*tape.Exchange{
		xch("GET", "/job", "", "pending"),
		xch("GET", "/other", "", "other"),
		xch("GET", "/job", "", "running"),
		xch("POST", "/job", "", "posted"),
		xch("GET", "/job", "", "done"),
	}, Options{})
	var got []string
	for range 6 {
		x, miss := ix.Lookup("GET", "/job", nil, nil)
		if x == nil {
			t.Fatalf("miss %+v", miss)
		}
		got = append(got, x.ID)
	}
	want := []string{"pending", "running", "done", "done", "done", "done"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// Each key has its own sequence.
	if x, _ := ix.Lookup("GET", "/other", nil, nil); x == nil || x.ID != "other" {
		t.Errorf("got %v, want other", x)
	}
}

func TestJSONRPCMatching(t *testing.T) {
	call := func(id, method, params string) string {
		s := `{"jsonrpc":"2.0",`
		if id != "" {
			s += `"id":` + id + `,`
		}
		s += `"method":"` + method + `"`
		if params != "" {
			s += `,"params":` + params
		}
		return s + "}"
	}
	ix := mustIndex(t, []*tape.Exchange{
		xch("POST", "/mcp", call("1", "initialize", `{"protocolVersion":"2025-06-18"}`), "init"),
		xch("POST", "/mcp", call("", "notifications/initialized", ""), "initialized"),
		xch("POST", "/mcp", call("2", "tools/call", `{"name":"search","arguments":{"q":"x"},"_meta":{"progressToken":1}}`), "search-x"),
		xch("POST", "/mcp", call("3", "tools/call", `{"name":"search","arguments":{"q":"y"}}`), "search-y"),
		xch("POST", "/mcp", call("4", "tools/list", ""), "list"),
	}, Options{})
	tests := []struct {
		name, body string
		want       string
		differs    []string
	}{
		{name: "same call", body: call("1", "initialize", `{"protocolVersion":"2025-06-18"}`), want: "init"},
		{name: "another id", body: call(`"abc"`, "initialize", `{"protocolVersion":"2025-06-18"}`), want: "init"},
		{name: "members reordered", body: `{"params":{"protocolVersion":"2025-06-18"},"method":"initialize","id":9,"jsonrpc":"2.0"}`, want: "init"},
		{name: "notification", body: call("", "notifications/initialized", ""), want: "initialized"},
		{name: "null params are absent params", body: call("", "notifications/initialized", "null"), want: "initialized"},
		{name: "_meta ignored (recorded with)", body: call("7", "tools/call", `{"arguments":{"q":"x"},"name":"search"}`), want: "search-x"},
		{name: "_meta ignored (sent with)", body: call("8", "tools/call", `{"name":"search","arguments":{"q":"y"},"_meta":{"traceId":"t"}}`), want: "search-y"},
		{name: "nested _meta is params", body: call("8", "tools/call", `{"name":"search","arguments":{"q":"y","_meta":1}}`), differs: []string{"jsonrpc.params"}},
		{name: "params differ", body: call("9", "tools/call", `{"name":"search","arguments":{"q":"z"}}`), differs: []string{"jsonrpc.params"}},
		{name: "method differs", body: call("9", "tools/lisst", ""), differs: []string{"jsonrpc.method"}},
		{name: "notification of a request", body: call("", "tools/list", ""), differs: []string{"jsonrpc.id"}},
		{name: "not JSON-RPC", body: `{"method":"tools/list","id":1}`, differs: []string{"body"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, miss := ix.Lookup("POST", "/mcp", nil, []byte(tt.body))
			if tt.want != "" {
				if x == nil || x.ID != tt.want {
					t.Fatalf("got %v (miss %+v), want %q", x, miss, tt.want)
				}
				return
			}
			if x != nil {
				t.Fatalf("got hit %q, want a miss", x.ID)
			}
			if !slices.Equal(miss.Differs, tt.differs) {
				t.Errorf("differs %q, want %q", miss.Differs, tt.differs)
			}
		})
	}
}

func TestClosestPrefersSamePathThenMethod(t *testing.T) {
	ix := mustIndex(t, []*tape.Exchange{
		xch("POST", "/b", "", "post-b"),
		xch("GET", "/a?x=1", "", "get-a"),
		xch("GET", "/a?x=1&y=2", "", "get-a-y"),
	}, Options{})
	tests := []struct {
		method, target, closest string
		differs                 []string
	}{
		{"GET", "/a?x=2", "get-a", []string{"query.x"}},
		{"GET", "/a?y=2&x=3", "get-a-y", []string{"query.x"}},
		{"PUT", "/a?x=1", "get-a", []string{"method"}},
		{"POST", "/c", "post-b", []string{"path"}},
		{"PATCH", "/c", "post-b", []string{"method", "path"}},
	}
	for _, tt := range tests {
		_, miss := ix.Lookup(tt.method, tt.target, nil, nil)
		if miss == nil || miss.Closest == nil || miss.Closest.ID != tt.closest || !slices.Equal(miss.Differs, tt.differs) {
			t.Errorf("%s %s: got %+v, want closest %q differing in %q", tt.method, tt.target, miss, tt.closest, tt.differs)
		}
	}
	empty := mustIndex(t, nil, Options{})
	if _, miss := empty.Lookup("GET", "/", nil, nil); miss == nil || miss.Closest != nil || miss.Differs != nil {
		t.Errorf("empty index: got %+v", miss)
	}
}

func TestSkippedExchanges(t *testing.T) {
	failed := xch("GET", "/slow", "", "")
	failed.Response, failed.Error = nil, "upstream response header timeout"
	switching := xch("GET", "/ws", "", "ws")
	switching.Response.Status = http.StatusSwitchingProtocols
	ok := xch("GET", "/ok", "", "ok")
	ix := mustIndex(t, []*tape.Exchange{failed, switching, ok}, Options{Log: testLog(t)})
	if ix.Len() != 1 {
		t.Errorf("Len %d, want 1", ix.Len())
	}
	if x, _ := ix.Lookup("GET", "/slow", nil, nil); x != nil {
		t.Errorf("an error-only exchange was served")
	}
	st := ix.Stats()
	if st.Hits != 0 || st.Misses != 1 || len(st.Unused) != 1 || st.Unused[0] != ok {
		t.Errorf("stats %+v, want 0 hits, 1 miss, /ok unused", st)
	}
}

func TestStats(t *testing.T) {
	xs := []*tape.Exchange{
		xch("GET", "/a", "", "a1"),
		xch("GET", "/a", "", "a2"),
		xch("GET", "/a", "", "a3"),
		xch("GET", "/b", "", "b"),
		xch("GET", "/c", "", "c"),
	}
	ix := mustIndex(t, xs, Options{})
	if st := ix.Stats(); st.Hits != 0 || st.Misses != 0 || len(st.Unused) != 5 {
		t.Fatalf("fresh stats %+v", st)
	}
	ix.Lookup("GET", "/a", nil, nil)
	ix.Lookup("GET", "/a", nil, nil)
	ix.Lookup("GET", "/c", nil, nil)
	ix.Lookup("GET", "/c", nil, nil)
	ix.Lookup("GET", "/nope", nil, nil)
	st := ix.Stats()
	if st.Hits != 4 || st.Misses != 1 {
		t.Errorf("hits %d misses %d, want 4 and 1", st.Hits, st.Misses)
	}
	var unused []string
	for _, x := range st.Unused {
		unused = append(unused, x.ID)
	}
	if want := []string{"a3", "b"}; !slices.Equal(unused, want) {
		t.Errorf("unused %q, want %q", unused, want)
	}
}

func TestNewIndexErrors(t *testing.T) {
	tests := []struct {
		name string
		xs   []*tape.Exchange
		o    Options
		want string
	}{
		{"latency", nil, Options{Latency: "fast"}, `latency "fast"`},
		{"empty header name", nil, Options{MatchHeaders: []string{""}}, `match header ""`},
		{"bad header name", nil, Options{MatchHeaders: []string{"X Tenant"}}, `match header "X Tenant"`},
		{"nil exchange", []*tape.Exchange{xch("GET", "/", "", "a"), nil}, Options{}, "exchange 1: nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewIndex(tt.xs, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
	for _, l := range []string{"", LatencyNone, LatencyRecorded} {
		if _, err := NewIndex(nil, Options{Latency: l}); err != nil {
			t.Errorf("latency %q: %v", l, err)
		}
	}
}

func TestMatchHeaderWarnings(t *testing.T) {
	tests := []struct {
		name   string
		x      *tape.Exchange
		header string
		want   string // in the log, "" for no warning
	}{
		{"redacted", withReqHeader(xch("GET", "/", "", "a"), "Authorization", tape.Redacted), "authorization", "redacted"},
		{"on no request", withReqHeader(xch("GET", "/", "", "a"), "X-Tenant", "a"), "X-Tennant", "no recorded request"},
		{"fine", withReqHeader(xch("GET", "/", "", "a"), "X-Tenant", "a"), "x-tenant", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf strings.Builder
			mustIndex(t, []*tape.Exchange{tt.x}, Options{MatchHeaders: []string{tt.header}, Log: zerolog.New(&buf)})
			got := buf.String()
			if tt.want == "" {
				if got != "" {
					t.Errorf("logged %q", got)
				}
				return
			}
			if !strings.Contains(got, `"level":"warn"`) || !strings.Contains(got, tt.want) ||
				!strings.Contains(got, textproto.CanonicalMIMEHeaderKey(tt.header)) {
				t.Errorf("log %q: want a warning naming %s with %q", got, tt.header, tt.want)
			}
		})
	}
}

func TestConcurrentLookups(t *testing.T) {
	const n, workers, each = 100, 8, 50
	var xs []*tape.Exchange
	for i := range n {
		xs = append(xs, xch("GET", "/seq", "", fmt.Sprint(i)))
		xs = append(xs, xch("GET", fmt.Sprintf("/p/%d", i), "", fmt.Sprintf("p%d", i)))
	}
	ix := mustIndex(t, xs, Options{})
	var mu sync.Mutex
	count := make(map[string]int)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				x, miss := ix.Lookup("GET", "/seq", nil, nil)
				if x == nil {
					t.Errorf("miss %+v", miss)
					return
				}
				if p, _ := ix.Lookup("GET", fmt.Sprintf("/p/%d", (w*each+i)%n), nil, nil); p == nil {
					t.Errorf("miss on /p")
				}
				ix.Lookup("GET", "/missing", nil, nil)
				mu.Lock()
				count[x.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for i := range n - 1 {
		if c := count[fmt.Sprint(i)]; c != 1 {
			t.Errorf("response %d served %d times, want once", i, c)
		}
	}
	if c, want := count[fmt.Sprint(n-1)], workers*each-(n-1); c != want {
		t.Errorf("last response served %d times, want %d", c, want)
	}
	st := ix.Stats()
	if st.Hits != 2*workers*each || st.Misses != workers*each || len(st.Unused) != 0 {
		t.Errorf("stats hits %d misses %d unused %d", st.Hits, st.Misses, len(st.Unused))
	}
}

func TestSplitTarget(t *testing.T) {
	tests := []struct{ in, path, query string }{
		{"/a/b?x=1", "/a/b", "x=1"},
		{"/a%2Fb", "/a%2Fb", ""},
		{"/?", "/", ""},
		{"?x=1", "/", "x=1"},
		{"", "/", ""},
		{"*", "*", ""},
		{"http://h:1", "/", ""},
		{"http://h?x=1", "/", "x=1"},
		{"https://h/p?q#f", "/p", "q"},
		{"/p?a=1#frag", "/p", "a=1"},
	}
	for _, tt := range tests {
		p, q := splitTarget(tt.in)
		if p != tt.path || q != tt.query {
			t.Errorf("splitTarget(%q) = %q, %q; want %q, %q", tt.in, p, q, tt.path, tt.query)
		}
	}
}
