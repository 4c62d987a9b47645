package replay

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/tape"
)

// serveTest serves ix with a real server and returns its URL.
func serveTest(t *testing.T, h *Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// rawClient does not decompress or otherwise touch response bodies.
func rawClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableCompression: true}}
}

func do(t *testing.T, c *http.Client, method, url, body string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, hdr)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestHandlerServesRecordedResponses(t *testing.T) {
	binary := []byte{0x89, 'P', 'N', 'G', 0, 0xff, 0xfe, '\r', '\n', 0x1a, 0}
	gz := gzipped(t, `{"hello":"world"}`)
	xs := []*tape.Exchange{
		{
			ID:      "headers",
			Request: tape.Request{Method: "GET", URL: "/headers"},
			Response: &tape.Response{Status: 201, Headers: http.Header{
				"Content-Type":      {"application/json"},
				"X-Multi":           {"a", "b"},
				"x-lower":           {"kept"},
				"Connection":        {"keep-alive, X-Hop"},
				"X-Hop":             {"dropped"},
				"Keep-Alive":        {"timeout=5"},
				"Transfer-Encoding": {"chunked"},
				"Content-Length":    {"999"},
				"Date":              {"Mon, 02 Jan 2006 15:04:05 GMT"},
				"Set-Cookie":        {tape.Redacted},
			}, Body: tape.Body(`{"ok":true}`)},
		},
		{
			ID:       "binary",
			Request:  tape.Request{Method: "GET", URL: "/img.png"},
			Response: &tape.Response{Status: 200, Headers: http.Header{"Content-Type": {"image/png"}}, Body: binary},
		},
		{
			ID:      "gzip",
			Request: tape.Request{Method: "GET", URL: "/gz"},
			Response: &tape.Response{Status: 200, Headers: http.Header{
				"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}, "Vary": {"Accept-Encoding"},
			}, Body: gz},
		},
		{
			ID:       "untyped",
			Request:  tape.Request{Method: "GET", URL: "/untyped"},
			Response: &tape.Response{Status: 200, Body: tape.Body("<html>not sniffed</html>")},
		},
		{
			ID:      "trailers",
			Request: tape.Request{Method: "GET", URL: "/trailers"},
			Response: &tape.Response{
				Status:   200,
				Headers:  http.Header{"Content-Type": {"text/plain"}},
				Trailers: http.Header{"X-Checksum": {"9f2c"}, "grpc-status": {"0"}},
				Body:     tape.Body("with trailers"),
			},
		},
		{
			ID:       "empty",
			Request:  tape.Request{Method: "DELETE", URL: "/items/1"},
			Response: &tape.Response{Status: 204, Headers: http.Header{"X-Deleted": {"1"}}},
		},
		{
			ID:       "head",
			Request:  tape.Request{Method: "HEAD", URL: "/big"},
			Response: &tape.Response{Status: 200, Headers: http.Header{"Content-Length": {"12345"}, "Content-Type": {"text/plain"}}},
		},
	}
	url := serveTest(t, &Handler{Index: mustIndex(t, xs, Options{Log: testLog(t)})})
	c := rawClient()

	t.Run("headers", func(t *testing.T) {
		before := time.Now().Add(-2 * time.Second)
		resp, body := do(t, c, "GET", url+"/headers", "", nil)
		if resp.StatusCode != 201 || string(body) != `{"ok":true}` {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		h := resp.Header
		if got := h.Values("X-Multi"); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("X-Multi %q", got)
		}
		if h.Get("X-Lower") != "kept" || h.Get("Set-Cookie") != tape.Redacted {
			t.Errorf("headers %v", h)
		}
		for _, k := range []string{"X-Hop", "Keep-Alive"} {
			if h.Get(k) != "" {
				t.Errorf("hop-by-hop %s served: %q", k, h.Get(k))
			}
		}
		if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
			t.Errorf("Content-Length %d, transfer encoding %q; want %d, none", resp.ContentLength, resp.TransferEncoding, len(body))
		}
		date, err := http.ParseTime(h.Get("Date"))
		if err != nil || date.Before(before.Truncate(time.Second)) {
			t.Errorf("Date %q not refreshed", h.Get("Date"))
		}
	})
	t.Run("binary", func(t *testing.T) {
		resp, body := do(t, c, "GET", url+"/img.png", "", nil)
		if !bytes.Equal(body, binary) || resp.Header.Get("Content-Type") != "image/png" {
			t.Errorf("got %q %q, want %q", resp.Header.Get("Content-Type"), body, binary)
		}
	})
	t.Run("gzip as recorded", func(t *testing.T) {
		resp, body := do(t, c, "GET", url+"/gz", "", http.Header{"Accept-Encoding": {"gzip"}})
		if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(body, gz) {
			t.Fatalf("got Content-Encoding %q body %q, want the recorded gzip bytes", resp.Header.Get("Content-Encoding"), body)
		}
		if resp.ContentLength != int64(len(gz)) {
			t.Errorf("Content-Length %d, want %d", resp.ContentLength, len(gz))
		}
		// A client that decompresses gets the recorded document.
		resp, body = do(t, http.DefaultClient, "GET", url+"/gz", "", nil)
		if string(body) != `{"hello":"world"}` || !resp.Uncompressed {
			t.Errorf("decompressed %q (uncompressed %v)", body, resp.Uncompressed)
		}
	})
	t.Run("no Content-Type sniffing", func(t *testing.T) {
		resp, _ := do(t, c, "GET", url+"/untyped", "", nil)
		if ct, ok := resp.Header["Content-Type"]; ok {
			t.Errorf("Content-Type %q added", ct)
		}
	})
	t.Run("trailers", func(t *testing.T) {
		resp, body := do(t, c, "GET", url+"/trailers", "", nil)
		if string(body) != "with trailers" {
			t.Errorf("body %q", body)
		}
		if resp.Trailer.Get("X-Checksum") != "9f2c" || resp.Trailer.Get("Grpc-Status") != "0" {
			t.Errorf("trailers %v", resp.Trailer)
		}
	})
	t.Run("204", func(t *testing.T) {
		resp, body := do(t, c, "DELETE", url+"/items/1", "", nil)
		if resp.StatusCode != 204 || len(body) != 0 || resp.Header.Get("X-Deleted") != "1" {
			t.Errorf("got %d %q %v", resp.StatusCode, body, resp.Header)
		}
	})
	t.Run("HEAD keeps the recorded length", func(t *testing.T) {
		resp, _ := do(t, c, "HEAD", url+"/big", "", nil)
		if resp.StatusCode != 200 || resp.ContentLength != 12345 {
			t.Errorf("got %d, Content-Length %d, want 12345", resp.StatusCode, resp.ContentLength)
		}
	})
}

func TestHandlerMiss(t *testing.T) {
	var logs bytes.Buffer
	ix := mustIndex(t, []*tape.Exchange{
		xch("GET", "/v1/items?page=1&token=s3cret", "", "page1"),
		xch("POST", "/v1/items", `{"a":1}`, "created"),
	}, Options{Log: zerolog.New(&logs)})
	url := serveTest(t, &Handler{Index: ix})

	resp, body := do(t, http.DefaultClient, "GET", url+"/v1/items?token=s3cret&page=2", "", nil)
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got struct {
		Error   string
		Request struct{ Method, Target string }
		Closest *struct{ Method, Target string }
		Differs []string
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if got.Error != "no recorded exchange matches" || got.Request.Method != "GET" ||
		got.Request.Target != "/v1/items?token=s3cret&page=2" || got.Closest == nil ||
		got.Closest.Method != "GET" || got.Closest.Target != "/v1/items?page=1&token=s3cret" ||
		!slices.Equal(got.Differs, []string{"query.page"}) {
		t.Errorf("body %s", body)
	}

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("logged %d lines, want 1: %q", len(lines), logs.String())
	}
	if !strings.Contains(lines[0], `"path":"/v1/items"`) || !strings.Contains(lines[0], `"differs":["query.page"]`) {
		t.Errorf("log line %s", lines[0])
	}
	if strings.Contains(lines[0], "s3cret") {
		t.Errorf("log line holds the query: %s", lines[0])
	}

	// A miss with nothing to compare has "closest": null and "differs": [].
	empty := serveTest(t, &Handler{Index: mustIndex(t, nil, Options{})})
	_, body = do(t, http.DefaultClient, "GET", empty+"/x", "", nil)
	want := `{"error":"no recorded exchange matches","request":{"method":"GET","target":"/x"},"closest":null,"differs":[]}` + "\n"
	if string(body) != want {
		t.Errorf("got %s, want %s", body, want)
	}
	if st := ix.Stats(); st.Misses != 1 || st.Hits != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestHandlerFallback(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Upstream", "yes")
		_, _ = io.WriteString(w, "upstream got "+r.Method+" "+r.RequestURI+" "+string(b))
	}))
	t.Cleanup(upstream.Close)
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, upstream.URL+r.RequestURI, r.Body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("X-Upstream", resp.Header.Get("X-Upstream"))
		_, _ = io.Copy(w, resp.Body)
	})
	ix := mustIndex(t, []*tape.Exchange{xch("POST", "/known", "k", "recorded")}, Options{Log: testLog(t)})
	url := serveTest(t, &Handler{Index: ix, Fallback: fallback})

	_, body := do(t, http.DefaultClient, "POST", url+"/known", "k", nil)
	if string(body) != "recorded" {
		t.Errorf("hit: got %q", body)
	}
	resp, body := do(t, http.DefaultClient, "POST", url+"/unknown?x=1", "the body", nil)
	if resp.Header.Get("X-Upstream") != "yes" || string(body) != "upstream got POST /unknown?x=1 the body" {
		t.Errorf("miss: got %q", body)
	}
	if st := ix.Stats(); st.Hits != 1 || st.Misses != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestHandlerMaxBody(t *testing.T) {
	ix := mustIndex(t, []*tape.Exchange{xch("POST", "/up", "0123456789", "ok")}, Options{})
	tests := []struct {
		name    string
		max     int64
		body    string
		chunked bool
		want    int
	}{
		{"at the limit", 10, "0123456789", false, 200},
		{"over, known length", 9, "0123456789", false, 413},
		{"over, chunked", 9, "0123456789", true, 413},
		{"no limit", -1, "0123456789", true, 200},
		{"default", 0, "0123456789", false, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequestWithContext(t.Context(), "POST", "/up", strings.NewReader(tt.body))
			if tt.chunked {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			(&Handler{Index: ix, MaxBody: tt.max}).ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("got %d %s, want %d", rec.Code, rec.Body, tt.want)
			}
		})
	}
}

func TestHandlerEventStream(t *testing.T) {
	stream := ": comment\n\n" +
		"event: message\r\nid: 1\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"p\":1}}\r\n\r\n" +
		"data: line one\ndata: line two\n\n" +
		"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n" +
		"retry: 10" // cut: no final blank line
	x := &tape.Exchange{
		Request: tape.Request{Method: "GET", URL: "/events"},
		Response: &tape.Response{Status: 200, Headers: http.Header{
			"Content-Type": {"text/event-stream; charset=utf-8"}, "Cache-Control": {"no-cache"},
		}, Body: tape.Body(stream)},
	}
	ix := mustIndex(t, []*tape.Exchange{x}, Options{})

	t.Run("one write and flush per event", func(t *testing.T) {
		w := &flushRecorder{ResponseRecorder: httptest.NewRecorder()}
		(&Handler{Index: ix}).ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), "GET", "/events", nil))
		if got := w.Body.String(); got != stream {
			t.Fatalf("body %q, want %q", got, stream)
		}
		want := []string{
			": comment\n\n",
			"event: message\r\nid: 1\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"p\":1}}\r\n\r\n",
			"data: line one\ndata: line two\n\n",
			"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n",
			"retry: 10",
		}
		if !slices.Equal(w.writes, want) {
			t.Errorf("writes %q, want %q", w.writes, want)
		}
		if w.flushes != len(want) || !w.flushedAfterEachWrite {
			t.Errorf("%d flushes for %d writes (after each: %v)", w.flushes, len(want), w.flushedAfterEachWrite)
		}
		if w.Header().Get("Content-Length") != "" {
			t.Errorf("Content-Length %q on a stream", w.Header().Get("Content-Length"))
		}
	})
	t.Run("byte exact over HTTP", func(t *testing.T) {
		url := serveTest(t, &Handler{Index: ix})
		resp, body := do(t, http.DefaultClient, "GET", url+"/events", "", nil)
		if string(body) != stream {
			t.Errorf("got %q, want %q", body, stream)
		}
		if resp.ContentLength != -1 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
			t.Errorf("Content-Length %d, Content-Type %q; want a stream", resp.ContentLength, resp.Header.Get("Content-Type"))
		}
	})
}

// flushRecorder records each Write and whether a Flush followed it.
type flushRecorder struct {
	*httptest.ResponseRecorder
	writes                []string
	flushes               int
	pending               bool
	flushedAfterEachWrite bool
}

func (f *flushRecorder) Write(b []byte) (int, error) {
	if len(f.writes) == 0 {
		f.flushedAfterEachWrite = true
	}
	if f.pending {
		f.flushedAfterEachWrite = false
	}
	f.writes = append(f.writes, string(b))
	f.pending = true
	return f.ResponseRecorder.Write(b)
}

func (f *flushRecorder) Flush() {
	f.flushes++
	f.pending = false
	f.ResponseRecorder.Flush()
}

func TestHandlerJSONRPCID(t *testing.T) {
	rpcJSON := &tape.Exchange{
		ID:      "json",
		Request: tape.Request{Method: "POST", URL: "/mcp", Body: tape.Body(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)},
		Response: &tape.Response{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}},
			Body: tape.Body("{\"result\": {\"tools\": [{\"id\": 1}]},\n  \"jsonrpc\":\"2.0\", \"id\" : 1 }\n")},
	}
	rpcSSE := &tape.Exchange{
		ID: "sse",
		Request: tape.Request{Method: "POST", URL: "/mcp",
			Body: tape.Body(`{"jsonrpc":"2.0","id":"req-1","method":"tools/call","params":{"name":"slow","_meta":{"progressToken":"p1"}}}`)},
		Response: &tape.Response{Status: 200, Headers: http.Header{"Content-Type": {"text/event-stream"}}, Body: tape.Body(
			"event: message\n" +
				"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"p1\",\"id\":\"req-1\"}}\n\n" +
				"data: {\"jsonrpc\":\"2.0\",\"id\":\"req-1\",\"method\":\"sampling/createMessage\",\"params\":{}}\n\n" +
				"data:{\"jsonrpc\":\"2.0\",\"id\":\"other\",\"result\":{}}\r\n\r\n" +
				"event: message\n" +
				"data: {\"jsonrpc\":\"2.0\",\"id\":\"req-1\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"done\"}]}}\n\n")},
	}
	notif := &tape.Exchange{
		ID:       "notif",
		Request:  tape.Request{Method: "POST", URL: "/mcp", Body: tape.Body(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)},
		Response: &tape.Response{Status: 202},
	}
	ix := mustIndex(t, []*tape.Exchange{rpcJSON, rpcSSE, notif}, Options{})
	url := serveTest(t, &Handler{Index: ix})

	tests := []struct {
		name, body string
		status     int
		want       string
	}{
		{
			name:   "JSON response, number id",
			body:   `{"jsonrpc":"2.0","id":42,"method":"tools/list"}`,
			status: 200,
			want:   "{\"result\": {\"tools\": [{\"id\": 1}]},\n  \"jsonrpc\":\"2.0\", \"id\" : 42 }\n",
		},
		{
			name:   "JSON response, string id",
			body:   `{"method":"tools/list","id":"a\"b","jsonrpc":"2.0"}`,
			status: 200,
			want:   "{\"result\": {\"tools\": [{\"id\": 1}]},\n  \"jsonrpc\":\"2.0\", \"id\" : \"a\\\"b\" }\n",
		},
		{
			name:   "JSON response, same id",
			body:   `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
			status: 200,
			want:   string(rpcJSON.Response.Body),
		},
		{
			name:   "event stream, _meta differs",
			body:   `{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"_meta":{"progressToken":"zz"},"name":"slow"}}`,
			status: 200,
			want: "event: message\n" +
				"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"p1\",\"id\":\"req-1\"}}\n\n" +
				"data: {\"jsonrpc\":\"2.0\",\"id\":\"req-1\",\"method\":\"sampling/createMessage\",\"params\":{}}\n\n" +
				"data:{\"jsonrpc\":\"2.0\",\"id\":\"other\",\"result\":{}}\r\n\r\n" +
				"event: message\n" +
				"data: {\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"done\"}]}}\n\n",
		},
		{
			name:   "notification",
			body:   `{"jsonrpc":"2.0","method":"notifications/initialized","params":{"_meta":{}}}`,
			status: 202,
			want:   "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, http.DefaultClient, "POST", url+"/mcp", tt.body, http.Header{"Content-Type": {"application/json"}})
			if resp.StatusCode != tt.status || string(body) != tt.want {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tt.status, tt.want)
			}
			if resp.ContentLength >= 0 && resp.ContentLength != int64(len(body)) {
				t.Errorf("Content-Length %d for %d bytes", resp.ContentLength, len(body))
			}
		})
	}
	if string(rpcSSE.Response.Body) == "" || !strings.Contains(string(rpcSSE.Response.Body), `"id":"req-1","result"`) {
		t.Errorf("the recorded body was modified")
	}
}

func TestHandlerLatency(t *testing.T) {
	x := xch("GET", "/slow", "", "slow")
	x.DurationMs = 1500.5
	for _, tt := range []struct {
		latency string
		want    time.Duration
	}{
		{LatencyNone, 0},
		{LatencyRecorded, 1500500 * time.Microsecond},
	} {
		t.Run(tt.latency, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := &Handler{Index: mustIndex(t, []*tape.Exchange{x}, Options{Latency: tt.latency})}
				start := time.Now()
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), "GET", "/slow", nil))
				if got := time.Since(start); got != tt.want || rec.Body.String() != "slow" {
					t.Errorf("answered %q after %v, want after %v", rec.Body, got, tt.want)
				}
			})
		})
	}
	t.Run("client gone", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := &Handler{Index: mustIndex(t, []*tape.Exchange{x}, Options{Latency: LatencyRecorded})}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			rec := httptest.NewRecorder()
			start := time.Now()
			h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", "/slow", nil))
			if got := time.Since(start); got != time.Second || rec.Body.Len() != 0 {
				t.Errorf("returned after %v with %q, want after 1s with nothing", got, rec.Body)
			}
		})
	})
}

func TestHandlerMatchHost(t *testing.T) {
	ix := mustIndex(t, []*tape.Exchange{
		withReqHeader(xch("GET", "/", "", "a"), "Host", "a.example"),
		withReqHeader(xch("GET", "/", "", "b"), "Host", "b.example"),
	}, Options{MatchHeaders: []string{"host"}})
	for _, host := range []string{"a.example", "b.example"} {
		req := httptest.NewRequestWithContext(t.Context(), "GET", "http://"+host+"/", nil)
		rec := httptest.NewRecorder()
		(&Handler{Index: ix}).ServeHTTP(rec, req)
		if rec.Body.String() != host[:1] {
			t.Errorf("Host %s: got %q", host, rec.Body)
		}
	}
}

func TestHAR(t *testing.T) {
	const har = `{"log":{"version":"1.2","creator":{"name":"browser","version":"1"},"entries":[
	{"startedDateTime":"2026-01-02T03:04:05.000Z","time":12,
	 "request":{"method":"GET","url":"https://api.example.com/v1/users?page=2&sort=name","httpVersion":"HTTP/2",
	   "headers":[{"name":":authority","value":"api.example.com"},{"name":"accept","value":"application/json"}],
	   "queryString":[],"cookies":[],"headersSize":-1,"bodySize":0},
	 "response":{"status":200,"statusText":"OK","httpVersion":"HTTP/2",
	   "headers":[{"name":"content-type","value":"application/json"},{"name":"content-length","value":"17"}],
	   "cookies":[],"content":{"size":17,"mimeType":"application/json","text":"{\"users\":[\"ada\"]}"},
	   "redirectURL":"","headersSize":-1,"bodySize":17},"cache":{},"timings":{"send":0,"wait":12,"receive":0}},
	{"startedDateTime":"2026-01-02T03:04:06.000Z","time":3,
	 "request":{"method":"POST","url":"https://api.example.com/v1/users","httpVersion":"HTTP/2",
	   "headers":[{"name":"content-type","value":"application/json"}],"queryString":[],"cookies":[],
	   "headersSize":-1,"bodySize":14,"postData":{"mimeType":"application/json","text":"{\"name\":\"bob\"}"}},
	 "response":{"status":201,"statusText":"Created","httpVersion":"HTTP/2","headers":[{"name":"content-type","value":"image/png"}],
	   "cookies":[],"content":{"size":4,"mimeType":"image/png","text":"iVBORw==","encoding":"base64"},
	   "redirectURL":"","headersSize":-1,"bodySize":4},"cache":{},"timings":{"send":0,"wait":3,"receive":0}},
	{"startedDateTime":"2026-01-02T03:04:07.000Z","time":0,
	 "request":{"method":"GET","url":"https://api.example.com/v1/broken","httpVersion":"HTTP/2","headers":[],
	   "queryString":[],"cookies":[],"headersSize":-1,"bodySize":0},
	 "response":{"status":0,"statusText":"","httpVersion":"","headers":[],"cookies":[],"content":{"size":0,"mimeType":""},
	   "redirectURL":"","headersSize":-1,"bodySize":-1},"cache":{},"timings":{"send":0,"wait":0,"receive":0}}
	]}}`
	xs, err := tape.ReadHAR(strings.NewReader(har))
	if err != nil {
		t.Fatal(err)
	}
	ix := mustIndex(t, xs, Options{Log: testLog(t)})
	if ix.Len() != 2 {
		t.Errorf("Len %d, want 2 (the entry without a response is skipped)", ix.Len())
	}
	url := serveTest(t, &Handler{Index: ix})
	c := rawClient()
	resp, body := do(t, c, "GET", url+"/v1/users?sort=name&page=2", "", nil)
	if resp.StatusCode != 200 || string(body) != `{"users":["ada"]}` || resp.ContentLength != 17 {
		t.Errorf("GET: %d %q (length %d)", resp.StatusCode, body, resp.ContentLength)
	}
	resp, body = do(t, c, "POST", url+"/v1/users", `{ "name" : "bob" }`, nil)
	if resp.StatusCode != 201 || !bytes.Equal(body, []byte{0x89, 'P', 'N', 'G'}) {
		t.Errorf("POST: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do(t, c, "GET", url+"/v1/broken", "", nil); resp.StatusCode != 404 {
		t.Errorf("the entry without a response answered %d", resp.StatusCode)
	}
}
