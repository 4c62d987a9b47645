package forward_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/forward"
	"github.com/proxyctl/proxyctl/internal/ratelimit"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
	"github.com/proxyctl/proxyctl/internal/transport"
)

type fixture struct {
	proxy    *forward.Proxy
	srv      *proxyServer
	sessions *session.Manager
	store    *memstore.Store
}

// TestProxy runs every behaviour test on both upstream paths: the fast
// synchronous path (transport.Sync) and httputil.ReverseProxy over
// http.Transport (what https, upgrades and streamed bodies use).
func TestProxy(t *testing.T) {
	for _, path := range paths() {
		t.Run(path, func(t *testing.T) {
			for name, fn := range map[string]func(*testing.T){
				"ForwardsAndSetsForwardedHeaders":    testForwardsAndSetsForwardedHeaders,
				"TrustedProxyXForwardedFor":          testTrustedProxyXForwardedFor,
				"ProxyTokenCheckedAndNeverForwarded": testProxyTokenCheckedAndNeverForwarded,
				"ServiceMap":                         testServiceMap,
				"StrictSessionGuard":                 testStrictSessionGuard,
				"RateLimit429":                       testRateLimit429,
				"UpstreamErrors":                     testUpstreamErrors,
				"SSEArrivesEventByEvent":             testSSEArrivesEventByEvent,
				"StreamHeadersBeforeFirstEvent":      testStreamHeadersBeforeFirstEvent,
				"InformationalResponsesPass":         testInformationalResponsesPass,
				"Trailers":                           testTrailers,
				"UpstreamBreaksMidBody":              testUpstreamBreaksMidBody,
				"LargeDownloadFlatMemory":            testLargeDownloadFlatMemory,
				"WebSocketPassesThrough":             testWebSocketPassesThrough,
				"LargeBodiesStreamWithFlatMemory":    testLargeBodiesStreamWithFlatMemory,
				"MaxBodySize":                        testMaxBodySize,
			} {
				t.Run(name, fn)
			}
		})
	}
}

// transportFor builds the transport for the path the running test is on.
func transportFor(t *testing.T, o transport.Options) http.RoundTripper {
	if strings.Contains(t.Name(), "/reverseproxy/") {
		return transport.New(o)
	}
	return transport.NewSync(o)
}

func sessionErrors() forward.SessionErrors {
	return forward.SessionErrors{
		Missing: session.ErrMissing, Unknown: session.ErrUnknown, Ended: session.ErrEnded,
		TooMany: session.ErrTooMany, Unavailable: session.ErrUnavailable, InvalidID: session.ErrInvalidID,
	}
}

// newProxy puts a forward.Proxy with a real session manager in front of
// upstream. configure may adjust the proxy before it serves. The send
// timeout is forward http's default, so every test runs with the send
// deadline set before each write.
func newProxy(t *testing.T, upstream *httptest.Server, mode session.Mode, configure func(p *forward.Proxy)) *fixture {
	t.Helper()
	st := memstore.New()
	log := zerolog.New(zerolog.NewTestWriter(t))
	mgr := session.NewManager(st, session.Config{Mode: mode, CacheTTL: time.Second}, log)
	p := &forward.Proxy{
		Sessions:      mgr,
		SessionErrors: sessionErrors(),
		Transport:     transportFor(t, transport.Options{ResponseHeaderTimeout: 2 * time.Second}),
		Log:           log,
		// forward http's default
		ClientSendTimeout: time.Minute,
	}
	if upstream != nil {
		u, _ := url.Parse(upstream.URL)
		p.Target = u
	}
	if configure != nil {
		configure(p)
	}
	return &fixture{proxy: p, srv: serveProxy(t, p, nil), sessions: mgr, store: st}
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func testForwardsAndSetsForwardedHeaders(t *testing.T) {
	var seen http.Header
	var seenHost, seenPath string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, seenHost, seenPath = r.Header.Clone(), r.Host, r.URL.RequestURI()
		// (With "close" in it, http.ReadResponse drops the Connection header
		// before any proxy sees it — net/http behaviour, same in http.Transport.)
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "must not pass")
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	f := newProxy(t, up, session.ModeAuto, nil)
	resp, body := get(t, f.srv.URL+"/a/b?x=1&y=2", map[string]string{
		"X-Forwarded-For": "6.6.6.6", // spoofed by an untrusted client
		"Authorization":   "Bearer user-token",
		"Connection":      "X-Drop-Me",
		"X-Drop-Me":       "hop-by-hop",
	})
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q, want 200 ok", resp.StatusCode, body)
	}
	if seenPath != "/a/b?x=1&y=2" {
		t.Errorf("upstream path = %q", seenPath)
	}
	if got := seen.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want 127.0.0.1 (spoofed value dropped)", got)
	}
	if seen.Get("X-Forwarded-Proto") != "http" || seen.Get("X-Forwarded-Host") == "" {
		t.Errorf("X-Forwarded-Proto/Host = %q/%q", seen.Get("X-Forwarded-Proto"), seen.Get("X-Forwarded-Host"))
	}
	if seen.Get("Authorization") != "Bearer user-token" {
		t.Errorf("Authorization must pass through to the upstream, got %q", seen.Get("Authorization"))
	}
	if seen.Get("X-Drop-Me") != "" {
		t.Errorf("hop-by-hop request header forwarded")
	}
	if u, _ := url.Parse(up.URL); seenHost != u.Host {
		t.Errorf("Host = %q, want %q", seenHost, u.Host)
	}
	if resp.Header.Get("X-Hop") != "" {
		t.Errorf("hop-by-hop response header returned to client: %v", resp.Header)
	}
}

func testTrustedProxyXForwardedFor(t *testing.T) {
	var xff atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		xff.Store(r.Header.Get("X-Forwarded-For"))
	}))
	defer up.Close()
	var limitedKeys []ratelimit.Keys
	f := newProxy(t, up, session.ModeAuto, func(p *forward.Proxy) {
		p.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		p.Limiter = limiterFunc(func(k ratelimit.Keys) ratelimit.Decision {
			limitedKeys = append(limitedKeys, k)
			return ratelimit.Decision{Allowed: true}
		})
	})
	get(t, f.srv.URL+"/", map[string]string{"X-Forwarded-For": "203.0.113.9, 127.0.0.2"})
	if got := xff.Load(); got != "203.0.113.9, 127.0.0.2, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the trusted chain appended", got)
	}
	if len(limitedKeys) != 1 || limitedKeys[0].IP != "203.0.113.9" {
		t.Errorf("rate-limit IP key = %+v, want 203.0.113.9", limitedKeys)
	}
}

type limiterFunc func(ratelimit.Keys) ratelimit.Decision

func (f limiterFunc) Allow(k ratelimit.Keys) ratelimit.Decision { return f(k) }

func testProxyTokenCheckedAndNeverForwarded(t *testing.T) {
	var leaked atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		for _, vals := range r.Header {
			for _, v := range vals {
				if strings.Contains(v, "s3cret-proxy-token") {
					leaked.Store(true)
				}
			}
		}
		if r.Header.Get("Proxy-Authorization") != "" {
			leaked.Store(true)
		}
	}))
	defer up.Close()
	f := newProxy(t, up, session.ModeAuto, func(p *forward.Proxy) { p.ProxyToken = "s3cret-proxy-token" })
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"missing", "", http.StatusProxyAuthRequired},
		{"wrong", "Bearer nope", http.StatusProxyAuthRequired},
		{"wrong scheme", "Basic s3cret-proxy-token", http.StatusProxyAuthRequired},
		{"right", "Bearer s3cret-proxy-token", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.auth != "" {
				hdr["Proxy-Authorization"] = tc.auth
			}
			resp, body := get(t, f.srv.URL+"/", hdr)
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want != 200 && strings.Contains(body, "s3cret") {
				t.Errorf("error body reveals the token: %s", body)
			}
		})
	}
	if leaked.Load() {
		t.Fatal("the proxy token reached the upstream")
	}
}

func testServiceMap(t *testing.T) {
	mk := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Proxy-Service") != "" {
				t.Errorf("service header forwarded to %s", name)
			}
			_, _ = io.WriteString(w, name)
		}))
	}
	api, auth := mk("api"), mk("auth")
	defer api.Close()
	defer auth.Close()
	apiURL, _ := url.Parse(api.URL)
	authURL, _ := url.Parse(auth.URL)
	f := newProxy(t, nil, session.ModeAuto, func(p *forward.Proxy) {
		p.Services = map[string]*url.URL{"api": apiURL, "auth": authURL}
	})
	for _, tc := range []struct {
		service  string
		want     int
		wantBody string
	}{
		{"api", 200, "api"},
		{"auth", 200, "auth"},
		{"admin", 403, ""},
		{"", 400, ""},
	} {
		t.Run("service="+tc.service, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.service != "" {
				hdr["X-Proxy-Service"] = tc.service
			}
			resp, body := get(t, f.srv.URL+"/", hdr)
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.wantBody != "" && body != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
			if tc.want == 403 && (strings.Contains(body, "127.0.0.1") || strings.Contains(body, "auth") || strings.Contains(body, "admin")) {
				t.Errorf("403 body reveals the map or echoes the name: %s", body)
			}
		})
	}
}

func testStrictSessionGuard(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer up.Close()
	f := newProxy(t, up, session.ModeStrict, nil)
	ctx := t.Context()
	if _, err := f.sessions.Open(ctx, "open-1", 0, "test", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sessions.Open(ctx, "closed-1", 0, "test", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sessions.Close(ctx, "closed-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sessions.Open(ctx, "expired-1", 0, "test", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.EndSession(ctx, "expired-1", store.StateExpired, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id      string
		want    int
		wantMsg string
	}{
		{"", 400, "missing X-Proxy-Session header"},
		{"nope", 404, "unknown session"},
		{"closed-1", 403, "session is closed"},
		{"open-1", 200, ""},
	} {
		t.Run("id="+tc.id, func(t *testing.T) {
			before := hits.Load()
			hdr := map[string]string{}
			if tc.id != "" {
				hdr["X-Proxy-Session"] = tc.id
			}
			resp, body := get(t, f.srv.URL+"/", hdr)
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, body, tc.want)
			}
			forwarded := hits.Load() - before
			if tc.want != 200 {
				if forwarded != 0 {
					t.Errorf("refused request reached the upstream")
				}
				var e struct{ Error string }
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != tc.wantMsg {
					t.Errorf("body %s, want error %q", body, tc.wantMsg)
				}
			}
		})
	}
	// The expired session was ended in the store behind the cache's back:
	// after the cache TTL it is refused as well.
	time.Sleep(1100 * time.Millisecond)
	resp, _ := get(t, f.srv.URL+"/", map[string]string{"X-Proxy-Session": "expired-1"})
	if resp.StatusCode != 403 {
		t.Errorf("expired session: got %d, want 403", resp.StatusCode)
	}
}

func testRateLimit429(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	specs, err := ratelimit.ParseSpecs([]string{"ip=2/m:2"})
	if err != nil {
		t.Fatal(err)
	}
	f := newProxy(t, up, session.ModeAuto, func(p *forward.Proxy) { p.Limiter = ratelimit.New(specs, ratelimit.Options{}) })
	for i, want := range []int{200, 200, 429, 429} {
		resp, body := get(t, f.srv.URL+"/x", nil)
		if resp.StatusCode != want {
			t.Fatalf("request %d: got %d, want %d", i, resp.StatusCode, want)
		}
		if resp.Header.Get("RateLimit-Limit") != "2" {
			t.Errorf("request %d: RateLimit-Limit = %q", i, resp.Header.Get("RateLimit-Limit"))
		}
		if want == 429 {
			if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("Retry-After = %q", ra)
			}
			if resp.Header.Get("RateLimit-Remaining") != "0" {
				t.Errorf("RateLimit-Remaining = %q", resp.Header.Get("RateLimit-Remaining"))
			}
			if !strings.Contains(body, "rate limit") || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("429 body %q", body)
			}
		}
	}
}

func testUpstreamErrors(t *testing.T) {
	t.Run("refused is 502", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		f := newProxy(t, nil, session.ModeAuto, func(p *forward.Proxy) { p.Target, _ = url.Parse("http://" + addr) })
		resp, body := get(t, f.srv.URL+"/", nil)
		if resp.StatusCode != 502 {
			t.Fatalf("got %d, want 502", resp.StatusCode)
		}
		if strings.Contains(body, addr) || strings.Contains(body, "dial") {
			t.Errorf("502 body is not sanitized: %s", body)
		}
		if body != `{"error":"upstream unreachable","status":502}`+"\n" {
			t.Errorf("body = %q", body)
		}
	})
	t.Run("slow is 504", func(t *testing.T) {
		release := make(chan struct{})
		up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
		defer up.Close()
		defer close(release)
		f := newProxy(t, up, session.ModeAuto, func(p *forward.Proxy) {
			p.Transport = transportFor(t, transport.Options{ResponseHeaderTimeout: 200 * time.Millisecond})
		})
		resp, body := get(t, f.srv.URL+"/", nil)
		if resp.StatusCode != 504 || body != `{"error":"upstream timed out","status":504}`+"\n" {
			t.Fatalf("got %d %q, want 504", resp.StatusCode, body)
		}
	})
}

func testSSEArrivesEventByEvent(t *testing.T) {
	next := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for range 3 {
			_, _ = io.WriteString(w, "data: event\n\n")
			_ = rc.Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	defer up.Close()
	f := newProxy(t, up, session.ModeAuto, nil)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		// Each event must arrive while the upstream is still blocked
		// before sending the next one: no buffering in the proxy.
		line, err := br.ReadString('\n')
		if err != nil || line != "data: event\n" {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		next <- struct{}{}
	}
}

// testStreamHeadersBeforeFirstEvent: an event stream, or any response of
// unknown length, whose upstream sends its head and then waits must reach
// the client's head at once (an EventSource opens on it), not with the
// first event (httputil.ReverseProxy flushes the head at once too).
func testStreamHeadersBeforeFirstEvent(t *testing.T) {
	for _, ct := range []string{"text/event-stream", "application/octet-stream"} {
		t.Run(ct, func(t *testing.T) {
			release := make(chan struct{})
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ct)
				w.WriteHeader(http.StatusOK)
				_ = http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
				_, _ = io.WriteString(w, "data: late\n\n")
			}))
			defer up.Close()
			defer close(release)
			f := newProxy(t, up, session.ModeAuto, nil)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/events", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("no response head while the upstream holds the body back: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ct {
				t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
		})
	}
}

// testInformationalResponsesPass: a proxy forwards 1xx responses (RFC 9110
// 15.2): 103 Early Hints reaches the client before the final response,
// which keeps the headers the proxy set for it.
func testInformationalResponsesPass(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "final")
	}))
	defer up.Close()
	f := newProxy(t, up, session.ModeAuto, func(p *forward.Proxy) {
		specs, _ := ratelimit.ParseSpecs([]string{"global=1000/s"})
		p.Limiter = ratelimit.New(specs, ratelimit.Options{})
	})
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, f.srv.URL+"/page", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "final" {
		t.Fatalf("final response %d %q", resp.StatusCode, body)
	}
	if want := "[103 </a.css>; rel=preload]"; fmt.Sprint(hints) != want {
		t.Errorf("1xx responses seen %v, want %s", hints, want)
	}
	if strings.Contains(t.Name(), "/fast/") && resp.Header.Get("RateLimit-Limit") == "" {
		// ReverseProxy empties the header map after a 1xx; the fast path
		// keeps what the proxy set (here the rate limit's fields).
		t.Errorf("the final response lost the proxy's RateLimit fields: %v", resp.Header)
	}
}

func testWebSocketPassesThrough(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}))
	defer up.Close()
	f := newProxy(t, up, session.ModeAuto, nil)
	wsURL := "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/ws"
	c, resp, err := websocket.DefaultDialer.DialContext(t.Context(), wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, m := range []string{"one", "two", strings.Repeat("x", 100000)} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo: "+m {
			t.Fatalf("got %.40q", got)
		}
	}
}

// zeroReader produces n zero bytes without holding them in memory.
type zeroReader struct{ n int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

func testLargeBodiesStreamWithFlatMemory(t *testing.T) {
	const size = 100 << 20
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil || n != size {
			http.Error(w, "short body", 500)
			return
		}
		_, _ = io.Copy(w, &zeroReader{n: size})
	}))
	defer up.Close()
	f := newProxy(t, up, session.ModeAuto, nil)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.srv.URL+"/upload", io.NopCloser(&zeroReader{n: size}))
	req.ContentLength = size
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	close(stop)
	<-done
	if err != nil || n != size || resp.StatusCode != 200 {
		t.Fatalf("got %d bytes, status %d, err %v", n, resp.StatusCode, err)
	}
	// 200 MB went through (100 up, 100 down); the heap may grow by a few
	// buffers, never by the body.
	if grew := int64(peak.Load()) - int64(before.HeapInuse); grew > 16<<20 {
		t.Fatalf("heap grew by %d MB while streaming 2x100 MB", grew>>20)
	}
}

func testMaxBodySize(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer up.Close()
	f := newProxy(t, up, session.ModeAuto, func(p *forward.Proxy) { p.MaxBodySize = 1024 })
	for _, tc := range []struct {
		name    string
		size    int64
		chunked bool
		want    int
	}{
		{"fits", 1024, false, 200},
		{"declared too large", 2048, false, 413},
		{"chunked too large", 4096, true, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.srv.URL+"/", io.NopCloser(&zeroReader{n: tc.size}))
			if !tc.chunked {
				req.ContentLength = tc.size
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func testTrailers(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		_, _ = io.WriteString(w, "payload")
		w.Header().Set("X-Checksum", "abc123")
	}))
	defer up.Close()
	f := newProxy(t, up, session.ModeAuto, nil)
	resp, body := get(t, f.srv.URL+"/", nil)
	if body != "payload" || resp.Trailer.Get("X-Checksum") != "abc123" {
		t.Fatalf("body %q trailer %v", body, resp.Trailer)
	}
}

// An upstream that dies in the middle of a body must not look like a
// complete response to the client.
func testUpstreamBreaksMidBody(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100000")
		_, _ = w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	defer up.Close()
	f := newProxy(t, up, session.ModeAuto, nil)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // broken before the headers: also not a silent truncation
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil {
		t.Fatalf("client read %d bytes and a clean EOF from a broken upstream body", n)
	}
}

func testLargeDownloadFlatMemory(t *testing.T) {
	const size = 100 << 20
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.Copy(w, &zeroReader{n: size})
	}))
	defer up.Close()
	f := newProxy(t, up, session.ModeAuto, nil)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+"/big", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("got %d bytes, %v", n, err)
	}
	runtime.ReadMemStats(&after)
	// Cumulative allocation is the strictest measure: streaming 100 MB may
	// allocate buffers, never the body.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Fatalf("allocated %d MB while streaming 100 MB", grew>>20)
	}
}
