package testutil

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Upstream is an httptest server on 127.0.0.1 that records what reaches
// it, for tests that must prove a hostile request never got there: every
// request its handler was called with (the body read whole, or the error
// that cut it) and every byte that arrived on the wire, whatever net/http
// made of them.
type Upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []UpstreamRequest
	wire bytes.Buffer
}

// UpstreamRequest is one request the upstream's handler was called with.
type UpstreamRequest struct {
	Method, URI, Host string
	Header            http.Header
	TransferEncoding  []string
	ContentLength     int64
	Body              string
	BodyErr           error // nil: the body arrived whole
}

// NewUpstream starts an Upstream, closed when the test ends. Each request's
// body is read and recorded first; then respond answers (nil: 200 "ok").
func NewUpstream(t testing.TB, respond http.HandlerFunc) *Upstream {
	t.Helper()
	u := &Upstream{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, UpstreamRequest{
			Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(),
			TransferEncoding: r.TransferEncoding, ContentLength: r.ContentLength,
			Body: string(b), BodyErr: err,
		})
		u.mu.Unlock()
		if err != nil {
			return
		}
		if respond != nil {
			respond(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Listener = &wireListener{Listener: srv.Listener, u: u}
	srv.Start()
	u.Server = srv
	t.Cleanup(srv.Close)
	return u
}

// Requests returns the requests the handler was called with, in order.
func (u *Upstream) Requests() []UpstreamRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]UpstreamRequest(nil), u.reqs...)
}

// Complete returns the requests whose body arrived whole.
func (u *Upstream) Complete() []UpstreamRequest {
	var out []UpstreamRequest
	for _, r := range u.Requests() {
		if r.BodyErr == nil {
			out = append(out, r)
		}
	}
	return out
}

// Wire returns every byte received so far, all connections concatenated.
func (u *Upstream) Wire() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.wire.String()
}

// Reset forgets what was recorded so far.
func (u *Upstream) Reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reqs = nil
	u.wire.Reset()
}

type wireListener struct {
	net.Listener
	u *Upstream
}

func (l *wireListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &wireConn{Conn: c, u: l.u}, nil
}

type wireConn struct {
	net.Conn
	u *Upstream
}

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.u.mu.Lock()
		c.u.wire.Write(p[:n])
		c.u.mu.Unlock()
	}
	return n, err
}

// RawConn is a client connection that writes raw bytes and reads raw
// HTTP/1.1 responses, for requests no HTTP client would send.
type RawConn struct {
	net.Conn
	br *bufio.Reader
}

// DialRaw connects to addr; the connection is closed when the test ends.
func DialRaw(t testing.TB, addr string) *RawConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &RawConn{Conn: c, br: bufio.NewReader(c)}
}

// Send writes s. A failed write is not fatal: the server may have closed
// the connection already, which is what some tests expect.
func (c *RawConn) Send(s string) error {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := io.WriteString(c.Conn, s)
	return err
}

// Response reads one response and its whole body, waiting at most 5 s.
func (c *RawConn) Response(t testing.TB) (*http.Response, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	return resp, string(b)
}

// ClosedWithin reports whether the server closes the connection within d,
// failing the test if it sends anything first.
func (c *RawConn) ClosedWithin(t testing.TB, d time.Duration) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c.br)
	if len(b) > 0 {
		t.Fatalf("unexpected bytes before the close: %q", b)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return true // EOF or reset
}

// NoTrace fails the test if an error body carries what a client must never
// see: a stack trace, a source location, a panic.
func NoTrace(t testing.TB, body string) {
	t.Helper()
	for _, s := range []string{"goroutine ", "panic", ".go:", "runtime."} {
		if strings.Contains(body, s) {
			t.Fatalf("error body leaks %q: %q", s, body)
		}
	}
}

// PacedReader reads at most Chunk bytes of R, then waits Gap before
// reading more: a slow but steady client.
type PacedReader struct {
	R     io.Reader
	Chunk int
	Gap   time.Duration
	left  int
}

func (p *PacedReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		time.Sleep(p.Gap)
		p.left = p.Chunk
	}
	n, err := p.R.Read(b[:min(len(b), p.left)])
	p.left -= n
	return n, err
}

// ServeEvents answers with an event stream of n events, "data: 0" to
// "data: n-1", each flushed at once, waiting for next before every event
// after the first (or until the client goes away).
func ServeEvents(w http.ResponseWriter, r *http.Request, n int, next <-chan struct{}) {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	for i := range n {
		if i > 0 {
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
		_, _ = fmt.Fprintf(w, "data: %d\n\n", i)
		_ = rc.Flush()
	}
}
