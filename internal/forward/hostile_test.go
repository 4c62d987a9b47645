package forward_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/forward"
	"github.com/proxyctl/proxyctl/internal/ratelimit"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/testutil"
)

// TestHostile runs the hostile-client tests on both upstream paths. Each
// talks raw HTTP/1.1 over a real connection; the upstream records every
// request and every byte that reaches it.
func TestHostile(t *testing.T) {
	for _, path := range paths() {
		t.Run(path, func(t *testing.T) {
			for name, fn := range map[string]func(*testing.T){
				"SlowBody408":                 testSlowBody408,
				"SlowChunkedBody408":          testSlowChunkedBody408,
				"SteadyBodyPasses":            testSteadyBodyPasses,
				"LongResponseAfterBody":       testLongResponseAfterBody,
				"MalformedChunkedBody400":     testMalformedChunkedBody400,
				"CutBodyNeverForwardedWhole":  testCutBodyNeverForwardedWhole,
				"Connect405":                  testConnect405,
				"FramingConflictClosesConn":   testFramingConflictClosesConn,
				"SlowRefusedBodyIsBounded":    testSlowRefusedBodyIsBounded,
				"BodylessRequestsKeepTheConn": testBodylessRequestsKeepTheConn,
			} {
				t.Run(name, fn)
			}
		})
	}
}

// hostileObserver records what the proxy counts, to check that a client's
// fault is never counted as an upstream error.
type hostileObserver struct {
	mu             sync.Mutex
	upstreamErrors []string
	refused        []int
	clientErrors   []string
}

func (o *hostileObserver) Request(int, time.Duration) {}
func (o *hostileObserver) RateLimited(ratelimit.Tier) {}
func (o *hostileObserver) UpstreamError(kind string) {
	o.mu.Lock()
	o.upstreamErrors = append(o.upstreamErrors, kind)
	o.mu.Unlock()
}
func (o *hostileObserver) Refused(status int) {
	o.mu.Lock()
	o.refused = append(o.refused, status)
	o.mu.Unlock()
}
func (o *hostileObserver) ClientError(kind string) {
	o.mu.Lock()
	o.clientErrors = append(o.clientErrors, kind)
	o.mu.Unlock()
}
func (o *hostileObserver) clientErrs() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.clientErrors)
}
func (o *hostileObserver) counts() (up []string, ref []int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.upstreamErrors), slices.Clone(o.refused)
}

type hostileFixture struct {
	*fixture
	up   *testutil.Upstream
	obs  *hostileObserver
	c    collector
	addr string
}

// hostileProxy is newProxy in front of a recording upstream, with capture,
// an observer and the given client body timeout.
func hostileProxy(t *testing.T, bodyTimeout time.Duration, respond http.HandlerFunc, configure ...func(*forward.Proxy)) *hostileFixture {
	t.Helper()
	h := &hostileFixture{up: testutil.NewUpstream(t, respond), obs: &hostileObserver{}, c: make(collector, 16)}
	h.fixture = newProxy(t, h.up.Server, session.ModeAuto, func(p *forward.Proxy) {
		p.ClientBodyTimeout = bodyTimeout
		p.Observer = h.obs
		capturing(h.c, 0)(p)
		for _, f := range configure {
			f(p)
		}
	})
	h.addr = h.srv.Listener.Addr().String()
	return h
}

func wantJSONError(t *testing.T, resp *http.Response, body string, code int, msg string) {
	t.Helper()
	want := fmt.Sprintf(`{"error":%q,"status":%d}`, msg, code) + "\n"
	if resp.StatusCode != code || body != want || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q (%s), want %d %q", resp.StatusCode, body, resp.Header.Get("Content-Type"), code, want)
	}
	testutil.NoTrace(t, body)
}

func wantClosed(t *testing.T, resp *http.Response, c *testutil.RawConn) {
	t.Helper()
	if !resp.Close {
		t.Fatalf("response without Connection: close: %v", resp.Header)
	}
	if !c.ClosedWithin(t, 5*time.Second) {
		t.Fatal("connection still open 5 s after the response")
	}
}

// A body that stalls longer than ClientBodyTimeout between two reads gets
// 408 (the response had not started), the upstream never receives a whole
// request, the upstream is not blamed, and the item records the error.
func testSlowBody408(t *testing.T) {
	h := hostileProxy(t, 300*time.Millisecond, nil)
	c := testutil.DialRaw(t, h.addr)
	_ = c.Send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	resp, body := c.Response(t)
	wantJSONError(t, resp, body, http.StatusRequestTimeout, "request body timed out")
	wantClosed(t, resp, c)

	it := h.c.next(t)
	if it.Status != http.StatusRequestTimeout || it.Error != "request body timed out" || string(it.RequestBody.Data) != "0123456789" {
		t.Fatalf("item status %d error %q request body %q", it.Status, it.Error, it.RequestBody.Data)
	}
	if got := h.up.Complete(); len(got) != 0 {
		t.Fatalf("the upstream received a whole request: %+v", got)
	}
	if up, ref := h.obs.counts(); len(up) != 0 || !slices.Contains(ref, http.StatusRequestTimeout) {
		t.Fatalf("upstream errors %v, refusals %v: want none and a 408", up, ref)
	}
}

// The same for a chunked body that stops after its first chunk.
func testSlowChunkedBody408(t *testing.T) {
	h := hostileProxy(t, 300*time.Millisecond, nil)
	c := testutil.DialRaw(t, h.addr)
	_ = c.Send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	resp, body := c.Response(t)
	wantJSONError(t, resp, body, http.StatusRequestTimeout, "request body timed out")
	wantClosed(t, resp, c)
	if it := h.c.next(t); it.Error != "request body timed out" {
		t.Fatalf("item error %q", it.Error)
	}
	if got := h.up.Complete(); len(got) != 0 {
		t.Fatalf("the upstream received a whole request: %+v", got)
	}
}

// The timeout is between two reads, not for the whole body: a body that
// keeps coming, slower overall than the timeout, passes whole.
func testSteadyBodyPasses(t *testing.T) {
	h := hostileProxy(t, time.Second, nil)
	c := testutil.DialRaw(t, h.addr)
	const pieces, gap = 8, 200 * time.Millisecond // 1.4 s in all, each gap a fifth of the timeout
	_ = c.Send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(pieces*4) + "\r\n\r\n")
	var want strings.Builder
	for i := range pieces {
		time.Sleep(gap)
		piece := fmt.Sprintf("p%02d,", i)
		want.WriteString(piece)
		if err := c.Send(piece); err != nil {
			t.Fatalf("piece %d: %v", i, err)
		}
	}
	resp, body := c.Response(t)
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	got := h.up.Requests()
	if len(got) != 1 || got[0].Body != want.String() || got[0].BodyErr != nil {
		t.Fatalf("upstream received %+v, want one request with body %q", got, want.String())
	}
}

// Once the body is read, its deadline is gone: a response that streams for
// longer than the timeout arrives whole, and the keep-alive connection
// serves the next request after more than the timeout.
func testLongResponseAfterBody(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := hostileProxy(t, timeout, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 6 {
			_, _ = fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(timeout / 2)
		}
	})
	c := testutil.DialRaw(t, h.addr)
	_ = c.Send("POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	resp, body := c.Response(t)
	if resp.StatusCode != http.StatusOK || strings.Count(body, "data: ") != 6 {
		t.Fatalf("got %d %q: want the whole stream", resp.StatusCode, body)
	}
	time.Sleep(2 * timeout)
	_ = c.Send("GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.Response(t); resp.StatusCode != http.StatusOK {
		t.Fatalf("next request on the connection: %d %q", resp.StatusCode, body)
	}
}

// Bad chunk sizes and bad chunk framing are the client's fault: 400, the
// connection closed, no whole request upstream, nothing smuggled, and the
// upstream not blamed.
func testMalformedChunkedBody400(t *testing.T) {
	for name, chunks := range map[string]string{
		"not hex":            "zz\r\nabc\r\n0\r\n\r\n",
		"negative":           "-1\r\nabc\r\n0\r\n\r\n",
		"overflow":           "fffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
		"0x prefix":          "0x3\r\nabc\r\n0\r\n\r\n",
		"no CRLF after data": "3\r\nabcXY0\r\n\r\n",
		"size too small":     "2\r\nabc\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			h := hostileProxy(t, time.Minute, nil)
			c := testutil.DialRaw(t, h.addr)
			_ = c.Send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks +
				"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, body := c.Response(t)
			wantJSONError(t, resp, body, http.StatusBadRequest, "malformed request body")
			wantClosed(t, resp, c)
			if it := h.c.next(t); it.Error != "malformed request body" {
				t.Fatalf("item error %q", it.Error)
			}
			if got := h.up.Complete(); len(got) != 0 {
				t.Fatalf("the upstream received a whole request: %+v", got)
			}
			if strings.Contains(h.up.Wire(), "smuggled") {
				t.Fatalf("smuggled bytes reached the upstream: %q", h.up.Wire())
			}
			if up, _ := h.obs.counts(); len(up) != 0 {
				t.Fatalf("counted as upstream errors: %v", up)
			}
		})
	}
}

// A client that sends part of its body and hangs up: nothing whole reaches
// the upstream; the client, if still listening, gets 400.
func testCutBodyNeverForwardedWhole(t *testing.T) {
	h := hostileProxy(t, time.Minute, nil)
	c := testutil.DialRaw(t, h.addr)
	_ = c.Send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	_ = c.Conn.(*net.TCPConn).CloseWrite()
	it := h.c.next(t)
	if it.Error == "" {
		t.Fatalf("the item does not record the cut body: %+v", it)
	}
	if got := h.up.Complete(); len(got) != 0 {
		t.Fatalf("the upstream received a whole request: %+v", got)
	}
}

// CONNECT is refused with 405: no tunnel to the host it names, nothing to
// the upstream.
func testConnect405(t *testing.T) {
	h := hostileProxy(t, time.Minute, nil)
	elsewhere, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var dialed sync.WaitGroup
	accepted := make(chan struct{}, 1)
	dialed.Go(func() {
		if conn, err := elsewhere.Accept(); err == nil {
			accepted <- struct{}{}
			_ = conn.Close()
		}
	})
	defer func() { _ = elsewhere.Close(); dialed.Wait() }()

	target := elsewhere.Addr().String()
	c := testutil.DialRaw(t, h.addr)
	_ = c.Send("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
	resp, body := c.Response(t)
	wantJSONError(t, resp, body, http.StatusMethodNotAllowed, "CONNECT is not supported by a reverse proxy")
	wantClosed(t, resp, c)
	select {
	case <-accepted:
		t.Fatal("the proxy connected to the CONNECT target")
	default:
	}
	if len(h.up.Requests()) != 0 || h.up.Wire() != "" {
		t.Fatalf("the upstream saw %q", h.up.Wire())
	}
}

// Where net/http drops a framing header the proxy cannot see (Content-Length
// beside chunked; Transfer-Encoding on HTTP/1.0), the request is forwarded
// as net/http framed it, with one consistent framing, and the connection is
// closed after it: the bytes after it never become a second request.
func testFramingConflictClosesConn(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      testutil.UpstreamRequest
	}{
		{
			name: "CL and chunked",
			raw: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
			want: testutil.UpstreamRequest{Method: "POST", URI: "/a", TransferEncoding: []string{"chunked"}, ContentLength: -1},
		},
		{
			name: "chunked and CL",
			raw: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" +
				"3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
			want: testutil.UpstreamRequest{Method: "POST", URI: "/a", TransferEncoding: []string{"chunked"}, ContentLength: -1, Body: "abc"},
		},
		{
			name: "HTTP/1.0 with Transfer-Encoding",
			raw: "POST /a HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" +
				"helloGET /smuggled HTTP/1.0\r\n\r\n",
			want: testutil.UpstreamRequest{Method: "POST", URI: "/a", ContentLength: 5, Body: "hello"},
		},
		{
			name: "plain chunked upload",
			raw:  "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			want: testutil.UpstreamRequest{Method: "POST", URI: "/a", TransferEncoding: []string{"chunked"}, ContentLength: -1, Body: "hello"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hostileProxy(t, time.Minute, nil)
			c := testutil.DialRaw(t, h.addr)
			_ = c.Send(tc.raw)
			resp, body := c.Response(t)
			if resp.StatusCode != http.StatusOK || body != "ok" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			wantClosed(t, resp, c)
			got := h.up.Requests()
			if len(got) != 1 {
				t.Fatalf("upstream received %d requests, want 1: %+v", len(got), got)
			}
			g := got[0]
			if g.Method != tc.want.Method || g.URI != tc.want.URI || !slices.Equal(g.TransferEncoding, tc.want.TransferEncoding) ||
				g.ContentLength != tc.want.ContentLength || g.Body != tc.want.Body || g.BodyErr != nil {
				t.Fatalf("upstream received %+v, want %+v", g, tc.want)
			}
			wire := strings.ToLower(h.up.Wire())
			if strings.Contains(wire, "smuggled") {
				t.Fatalf("smuggled bytes reached the upstream: %q", wire)
			}
			if strings.Contains(wire, "transfer-encoding") && strings.Contains(wire, "content-length") {
				t.Fatalf("the upstream got both framings: %q", wire)
			}
		})
	}
}

// A refused request whose body stalls is bounded too: net/http reads the
// unread rest of a body before it answers (to keep the connection), and
// does so under the deadline armed when the request arrived, so the
// refusal goes out and the connection closes instead of waiting forever.
func testSlowRefusedBodyIsBounded(t *testing.T) {
	h := hostileProxy(t, 300*time.Millisecond, nil, func(p *forward.Proxy) { p.ProxyToken = "secret" })
	c := testutil.DialRaw(t, h.addr)
	_ = c.Send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	resp, body := c.Response(t)
	wantJSONError(t, resp, body, http.StatusProxyAuthRequired, "proxy authentication required")
	wantClosed(t, resp, c)
	if len(h.up.Requests()) != 0 {
		t.Fatal("a refused request reached the upstream")
	}
}

// Requests without a body keep their keep-alive connection and take no
// deadline: the connection serves request after request.
func testBodylessRequestsKeepTheConn(t *testing.T) {
	h := hostileProxy(t, 300*time.Millisecond, nil)
	c := testutil.DialRaw(t, h.addr)
	for i := range 3 {
		_ = c.Send("GET /" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := c.Response(t)
		if resp.StatusCode != http.StatusOK || body != "ok" || resp.Close {
			t.Fatalf("request %d: %d %q close=%v", i, resp.StatusCode, body, resp.Close)
		}
	}
	if n := len(h.up.Requests()); n != 3 {
		t.Fatalf("upstream received %d requests, want 3", n)
	}
}

// rereadTransport answers after reading the whole request body, and, once
// the proxy has sent the response's head and first event, reads the
// request body again, as http.Transport does after the last byte of a body
// of known length (to check there is no more).
type rereadTransport struct{ reread chan error }

func (tr rereadTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, err := io.ReadAll(req.Body); err != nil {
		return nil, err
	}
	events := []string{"data: 1\n\n"}
	body := readerFunc(func(p []byte) (int, error) {
		if len(events) > 0 {
			n := copy(p, events[0])
			events = events[1:]
			return n, nil
		}
		// The proxy has flushed the first event: net/http has closed the
		// request body.
		_, err := req.Body.Read(make([]byte, 1))
		tr.reread <- err
		return 0, io.EOF
	})
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"text/event-stream"}}, ContentLength: -1,
		Body: io.NopCloser(body), Request: req,
	}, nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// A read of the request body after its end answers io.EOF again, also once
// the response has started and net/http has closed the body. (It answered
// "invalid Read on closed Body", and http.Transport, whose check for more
// bytes after a body of known length can come that late, closed the
// upstream connection: a long response after a POST was cut at random.)
func TestRequestBodyReadAfterResponseStarts(t *testing.T) {
	tr := rereadTransport{reread: make(chan error, 1)}
	f := newProxy(t, nil, session.ModeAuto, func(p *forward.Proxy) {
		p.Target, _ = url.Parse("http://upstream.invalid")
		p.Transport = tr
	})
	c := testutil.DialRaw(t, f.srv.Listener.Addr().String())
	_ = c.Send("POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	resp, body := c.Response(t)
	if resp.StatusCode != http.StatusOK || body != "data: 1\n\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if err := <-tr.reread; !errors.Is(err, io.EOF) {
		t.Fatalf("reading the request body after its end: %v, want io.EOF", err)
	}
}
