package transport_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/transport"
)

// countingServer is an httptest server that counts new connections.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func do(t *testing.T, rt http.RoundTripper, method, u string, body io.Reader, size int64) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if size >= 0 {
		req.ContentLength = size
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestSyncReusesConnections(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s ua=%q len=%d", r.Method, r.URL.RequestURI(), b, r.Header.Get("User-Agent"), r.ContentLength)
	})
	rt := transport.NewSync(transport.Options{})
	defer rt.CloseIdleConnections()
	for range 20 {
		_, body := do(t, rt, "GET", srv.URL+"/a?b=c", nil, -1)
		if body != `GET /a?b=c  ua="Go-http-client/1.1" len=0` && body != `GET /a?b=c  ua="" len=0` {
			t.Fatalf("body %q", body)
		}
		_, body = do(t, rt, "POST", srv.URL+"/p", strings.NewReader("hello"), 5)
		if !strings.HasPrefix(body, "POST /p hello") || !strings.HasSuffix(body, "len=5") {
			t.Fatalf("body %q", body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 40 sequential requests, want 1", n)
	}
}

func TestSyncResponseKinds(t *testing.T) {
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Sum", "42")
		case "/early-hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = io.WriteString(w, "final")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		default:
			_, _ = io.WriteString(w, "body")
		}
	})
	rt := transport.NewSync(transport.Options{})
	defer rt.CloseIdleConnections()
	resp, body := do(t, rt, "GET", srv.URL+"/chunked", nil, -1)
	if body != "part0;part1;part2;" || resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("chunked: %q trailer %v", body, resp.Trailer)
	}
	resp, body = do(t, rt, "GET", srv.URL+"/early-hints", nil, -1)
	if resp.StatusCode != 200 || body != "final" {
		t.Errorf("after 103: %d %q", resp.StatusCode, body)
	}
	resp, body = do(t, rt, "HEAD", srv.URL+"/x", nil, -1)
	if resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, body)
	}
	resp, body = do(t, rt, "GET", srv.URL+"/nocontent", nil, -1)
	if resp.StatusCode != 204 || body != "" {
		t.Errorf("204: %d %q", resp.StatusCode, body)
	}
	if _, body = do(t, rt, "GET", srv.URL+"/x", nil, -1); body != "body" {
		t.Errorf("after the others, the connection still works: %q", body)
	}
}

func TestSyncConnectionClose(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "x")
	})
	rt := transport.NewSync(transport.Options{})
	for range 3 {
		do(t, rt, "GET", srv.URL, nil, -1)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3 (Connection: close is honoured)", n)
	}
}

func TestSyncPartialBodyIsNotReused(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(make([]byte, 1<<20))
	})
	rt := transport.NewSync(transport.Options{})
	defer rt.CloseIdleConnections()
	for range 2 {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL, nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = resp.Body.Read(make([]byte, 10))
		resp.Body.Close()
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (a half-read body poisons its connection)", n)
	}
}

// oneShotServer answers one request per connection and then closes it
// without saying "Connection: close", like an upstream whose keep-alive
// timeout fired while the connection sat in the pool.
// serveConns accepts connections on a new 127.0.0.1 listener until the
// test ends and runs serve on each (first: it is the first connection),
// closing it afterwards; it returns the server's URL.
func serveConns(t *testing.T, serve func(c net.Conn, first bool)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for first := true; ; first = false {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				serve(c, first)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func oneShotServer(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var served atomic.Int64
	u := serveConns(t, func(c net.Conn, _ bool) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		served.Add(1)
		msg := "ok " + string(b)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
		time.Sleep(20 * time.Millisecond)
	})
	return u, &served
}

func TestSyncStaleConnection(t *testing.T) {
	u, served := oneShotServer(t)
	rt := transport.NewSync(transport.Options{})
	defer rt.CloseIdleConnections()
	do(t, rt, "GET", u, nil, -1)
	time.Sleep(100 * time.Millisecond) // the server has closed the pooled connection
	if _, body := do(t, rt, "GET", u, nil, -1); body != "ok " {
		t.Fatalf("GET on a stale connection was not retried: %q", body)
	}
	time.Sleep(100 * time.Millisecond)
	if _, body := do(t, rt, "POST", u, strings.NewReader("data"), 4); body != "ok data" {
		t.Fatalf("POST after a stale connection: %q", body)
	}
	if n := served.Load(); n != 3 {
		t.Errorf("served %d, want 3 (the POST must be sent exactly once)", n)
	}
}

func TestSyncTimeoutsAndCancel(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv, _ := countingServer(t, func(http.ResponseWriter, *http.Request) { <-release })
	rt := transport.NewSync(transport.Options{ResponseHeaderTimeout: 100 * time.Millisecond})
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL, nil)
	_, err := rt.RoundTrip(req)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("got %v, want a timeout net.Error", err)
	}

	rt = transport.NewSync(transport.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	req, _ = http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	start := time.Now()
	_, err = rt.RoundTrip(req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("cancel did not unblock the exchange")
	}

	u, _ := url.Parse(srv.URL)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	req, _ = http.NewRequestWithContext(t.Context(), "GET", "http://"+dead, nil)
	_, err = rt.RoundTrip(req)
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("got %v, want a dial error", err)
	}
	_ = u
}

// recordingRT records which requests reached the fallback.
type recordingRT struct {
	inner http.RoundTripper
	n     atomic.Int64
}

func (r *recordingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r.n.Add(1)
	return r.inner.RoundTrip(req)
}

func TestSyncFallback(t *testing.T) {
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	})
	fb := &recordingRT{inner: transport.New(transport.Options{})}
	rt := &transport.Sync{Fallback: fb}
	do(t, rt, "GET", srv.URL, nil, -1)
	do(t, rt, "POST", srv.URL, strings.NewReader("small"), 5)
	if fb.n.Load() != 0 {
		t.Fatalf("simple requests went to the fallback")
	}
	big := strings.Repeat("x", transport.SyncBodyLimit+1)
	if _, body := do(t, rt, "POST", srv.URL, strings.NewReader(big), int64(len(big))); body != fmt.Sprint(len(big)) {
		t.Errorf("big body: %q", body)
	}
	if _, body := do(t, rt, "POST", srv.URL, io.NopCloser(strings.NewReader("streamed")), -1); body != "8" {
		t.Errorf("unknown-length body: %q", body)
	}
	if fb.n.Load() != 2 {
		t.Errorf("fallback used %d times, want 2", fb.n.Load())
	}
}

// smugglingServer answers every request with "honest", and on its first
// connection, after the first answer, sends a second, unrequested
// response, in the same write or a moment later: what a broken or hostile
// upstream does to poison the next request's answer.
func smugglingServer(t *testing.T, late bool) string {
	t.Helper()
	const evil = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
	return serveConns(t, func(c net.Conn, first bool) {
		br := bufio.NewReader(c)
		for i := 1; ; i++ {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			answer := "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhonest"
			smuggle := first && i == 1
			if smuggle && !late {
				answer += evil
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
			if smuggle && late {
				time.Sleep(20 * time.Millisecond)
				if _, err := io.WriteString(c, evil); err != nil {
					return
				}
			}
		}
	})
}

// TestSyncUnsolicitedBytesNotReused: bytes an upstream sends past the end
// of a response, with it or while the connection is idle, must never be
// read as the answer to the next request (http.Transport drops such a
// connection too).
func TestSyncUnsolicitedBytesNotReused(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprintf("late=%v", late), func(t *testing.T) {
			u := smugglingServer(t, late)
			rt := transport.NewSync(transport.Options{})
			defer rt.CloseIdleConnections()
			if _, body := do(t, rt, "GET", u, nil, -1); body != "honest" {
				t.Fatalf("first answer %q", body)
			}
			time.Sleep(100 * time.Millisecond) // the late bytes have arrived
			for _, method := range []string{"GET", "POST", "GET"} {
				if _, body := do(t, rt, method, u, nil, -1); body != "honest" {
					t.Fatalf("%s after the unsolicited response: %q", method, body)
				}
			}
		})
	}
}

// rawServer answers every request on every connection with answer.
func rawServer(t *testing.T, answer string) string {
	t.Helper()
	return serveConns(t, func(c net.Conn, _ bool) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	})
}

// TestSyncInformational: 1xx responses before the final one reach
// httptrace's Got1xxResponse, as with http.Transport.
func TestSyncInformational(t *testing.T) {
	u := rawServer(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"+
		"HTTP/1.1 102 Processing\r\n\r\n"+
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	rt := transport.NewSync(transport.Options{})
	defer rt.CloseIdleConnections()
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, u, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("final response %d %q", resp.StatusCode, b)
	}
	if want := []string{"103 </a.css>", "102 "}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("1xx responses seen %q, want %q", got, want)
	}
}

// TestSyncStatusBelow100: http.ReadResponse accepts any three digits, but
// no handler can send a status below 100: the response is refused.
func TestSyncStatusBelow100(t *testing.T) {
	u := rawServer(t, "HTTP/1.1 042 Odd\r\nContent-Length: 2\r\n\r\nok")
	rt := transport.NewSync(transport.Options{})
	defer rt.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	resp, err := rt.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got status %d, want an error", resp.StatusCode)
	}
	if !strings.Contains(err.Error(), "malformed HTTP status code 042") {
		t.Errorf("error %q", err)
	}
}
