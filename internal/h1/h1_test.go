package h1_test

// Conformance tests: the same raw bytes go over real TCP connections to an
// h1.Server and to a plain net/http server running the same handler, and
// what comes back (status, headers but Date, de-chunked body, trailers,
// and whether the connection stays open) must be the same. Where h1
// differs on purpose (see the package documentation), the h1 behaviour is
// asserted on its own.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/h1"
	"github.com/proxyctl/proxyctl/internal/testutil"
)

// kind names a server under test.
type kind string

const (
	stdKind kind = "net/http"
	h1Kind  kind = "h1"
)

func bothKinds() []kind { return []kind{stdKind, h1Kind} }

const (
	// viaHeader is set by every test handler: "h1" when the response
	// writer has no Hijack (h1 served the request), "net/http" otherwise
	// (the plain server, or h1's fallback).
	viaHeader = "X-Test-Via"
	// probePath is answered "probe" by every test server, to see whether
	// a connection still carries requests.
	probePath = "/__probe"
	// connTimeout bounds every test connection.
	connTimeout = 5 * time.Second
	// host is the Host of the test requests.
	host = "example.com"
)

// testServer is a running net/http server or h1 server.
type testServer struct {
	kind kind
	addr string
	h1   *h1.Server           // nil for stdKind
	http *http.Server         // the net/http server, or h1's Fallback
	log  *testutil.SyncBuffer // both servers' ErrorLog
	done chan struct{}
	err  error // Serve's result, once done is closed
}

// startServer serves h (wrapped by testHandler) on a new 127.0.0.1
// listener with a server of kind k; cfg, when not nil, configures the
// net/http server (for h1: its Fallback, whose ReadHeaderTimeout and
// IdleTimeout h1 copies). The server is closed when the test ends.
func startServer(t testing.TB, k kind, h http.Handler, cfg func(*http.Server)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, k, ln, h, cfg)
}

func serveOn(t testing.TB, k kind, ln net.Listener, h http.Handler, cfg func(*http.Server)) *testServer {
	t.Helper()
	lb := &testutil.SyncBuffer{}
	hs := &http.Server{Handler: testHandler(h), ErrorLog: log.New(lb, "", 0)}
	if cfg != nil {
		cfg(hs)
	}
	s := &testServer{kind: k, addr: ln.Addr().String(), http: hs, log: lb, done: make(chan struct{})}
	serve := hs.Serve
	if k == h1Kind {
		s.h1 = &h1.Server{
			Handler:           hs.Handler,
			Fallback:          hs,
			ReadHeaderTimeout: hs.ReadHeaderTimeout,
			IdleTimeout:       hs.IdleTimeout,
			ErrorLog:          hs.ErrorLog,
		}
		serve = s.h1.Serve
	}
	go func() {
		defer close(s.done)
		s.err = serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		if err := s.wait(); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("%s: Serve returned %v, want http.ErrServerClosed", k, err)
		}
	})
	return s
}

// startBoth starts a net/http server and an h1 server with the same
// handler and configuration.
func startBoth(t testing.TB, h http.Handler, cfg func(*http.Server)) []*testServer {
	t.Helper()
	return []*testServer{startServer(t, stdKind, h, cfg), startServer(t, h1Kind, h, cfg)}
}

func (s *testServer) Shutdown(ctx context.Context) error {
	if s.h1 != nil {
		return s.h1.Shutdown(ctx)
	}
	return s.http.Shutdown(ctx)
}

func (s *testServer) Close() error {
	if s.h1 != nil {
		return s.h1.Close()
	}
	return s.http.Close()
}

// wait returns Serve's result, or an error when Serve does not return
// within connTimeout.
func (s *testServer) wait() error {
	select {
	case <-s.done:
		return s.err
	case <-time.After(connTimeout):
		return errors.New("Serve did not return")
	}
}

// testHandler answers probePath itself, and marks every other response
// with viaHeader before calling h.
func testHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == probePath {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "probe")
			return
		}
		via := string(h1Kind)
		if _, ok := w.(http.Hijacker); ok {
			via = string(stdKind)
		}
		w.Header().Set(viaHeader, via)
		h.ServeHTTP(w, r)
	})
}

// client is a raw connection to a test server.
type client struct {
	t    *testing.T
	conn *net.TCPConn
	br   *bufio.Reader
}

// dial connects to addr; every read and write on the connection fails
// after timeout (connTimeout when 0). The connection is closed when the
// test ends.
func dial(t *testing.T, addr string, timeout time.Duration) *client {
	t.Helper()
	if timeout == 0 {
		timeout = connTimeout
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	return &client{t: t, conn: conn.(*net.TCPConn), br: bufio.NewReader(conn)}
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads a whole response to a request with method.
func (c *client) read(method string) (result, error) {
	return readResult(c.br, method)
}

// mustRead reads a whole response and fails the test when there is none.
func (c *client) mustRead(method string) result {
	c.t.Helper()
	r, err := c.read(method)
	if err != nil {
		c.t.Fatalf("read response: %v (%s)", err, classify(err))
	}
	return r
}

// state reports whether the connection still carries requests ("open"),
// was closed by the server ("closed"), or neither within the deadline
// ("hung").
func (c *client) state() string {
	return probe(c.conn, c.br)
}

// result is a response as compared between the servers.
type result struct {
	Proto            string
	Status           string
	Header           http.Header // without Date and viaHeader
	HasDate          bool
	Via              string
	ContentLength    int64
	TransferEncoding []string
	Close            bool
	Body             []byte
	BodyErr          string // how reading the body ended, if not cleanly
	Trailer          http.Header
}

func readResult(br *bufio.Reader, method string) (result, error) {
	if method == "" {
		method = http.MethodGet
	}
	if _, err := br.Peek(1); err != nil {
		return result{}, err // no response at all: EOF is "closed"
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return result{}, err
	}
	body, berr := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	r := result{
		Proto:            resp.Proto,
		Status:           resp.Status,
		Header:           resp.Header.Clone(),
		Via:              resp.Header.Get(viaHeader),
		ContentLength:    resp.ContentLength,
		TransferEncoding: resp.TransferEncoding,
		Close:            resp.Close,
		Body:             body,
		BodyErr:          classify(berr),
		Trailer:          resp.Trailer,
	}
	_, r.HasDate = r.Header["Date"]
	delete(r.Header, "Date")
	delete(r.Header, viaHeader)
	return r, nil
}

func (r result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", r.Proto, r.Status)
	writeHeader(&b, "", r.Header)
	fmt.Fprintf(&b, "(date: %v, content length: %d, transfer encoding: %q, close: %v)\n",
		r.HasDate, r.ContentLength, r.TransferEncoding, r.Close)
	if len(r.Body) <= 600 {
		fmt.Fprintf(&b, "body %q", r.Body)
	} else {
		fmt.Fprintf(&b, "body %d bytes %q... sha256 %x", len(r.Body), r.Body[:32], sha256.Sum256(r.Body))
	}
	if r.BodyErr != "" {
		fmt.Fprintf(&b, " then %s", r.BodyErr)
	}
	b.WriteString("\n")
	writeHeader(&b, "trailer ", r.Trailer)
	return b.String()
}

func writeHeader(b *strings.Builder, prefix string, h http.Header) {
	for _, k := range slices.Sorted(maps.Keys(h)) {
		fmt.Fprintf(b, "%s%s: %q\n", prefix, k, h[k])
	}
}

// classify names how a read ended: "" (nil), "closed" (EOF or reset),
// "truncated" (EOF inside a message), "timeout", or the error's text.
func classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return err.Error()
}

// probe sends a request for probePath and reports "open" when it is
// answered, "closed" when the server closed the connection, "hung" when
// neither happens before the connection's deadline.
func probe(conn net.Conn, br *bufio.Reader) string {
	if _, err := io.WriteString(conn, "GET "+probePath+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		if c := classify(err); c != "closed" {
			return "write: " + c
		}
		return "closed"
	}
	r, err := readResult(br, http.MethodGet)
	switch c := classify(err); {
	case c == "timeout":
		return "hung"
	case c != "":
		return c
	case r.Status == "200 OK" && string(r.Body) == "probe":
		return "open"
	}
	return "unexpected probe response " + r.Status
}

// outcome is what a client saw of one exchange.
type outcome struct {
	Responses []result
	Err       string // how reading the responses ended, if it did early
	End       string // the connection's state after them (see probe)
}

func (o outcome) String() string {
	var b strings.Builder
	for i, r := range o.Responses {
		fmt.Fprintf(&b, "--- response %d: %s", i, r)
	}
	if o.Err != "" {
		fmt.Fprintf(&b, "--- then: %s\n", o.Err)
	}
	if o.End != "" {
		fmt.Fprintf(&b, "--- connection: %s\n", o.End)
	}
	return b.String()
}

// wireCase is one exchange run against both servers.
type wireCase struct {
	name    string
	handler http.HandlerFunc
	cfg     func(*http.Server)
	// send is written piece by piece, with pause between the pieces.
	send  []string
	pause time.Duration
	// methods has the request method of each response to read (nil: one
	// GET).
	methods []string
	// end is the connection's expected state after the responses
	// ("open", "closed"); "": not probed.
	end string
	// via, when set, lists who must serve each request on the h1 server:
	// "h1" or "net/http" (the fallback).
	via []string
	// deadline replaces connTimeout.
	deadline time.Duration
	// framingMayDiffer: the responses may differ in how their bodies are
	// delimited (Content-Length or chunked), which a client does not see
	// once it has read them; the difference is logged.
	framingMayDiffer bool
	// check, when set, makes further assertions on each server's outcome.
	check func(t *testing.T, k kind, o outcome)
}

// runWire runs tc against both servers and compares what came back.
func runWire(t *testing.T, tc wireCase) {
	t.Helper()
	servers := startBoth(t, tc.handler, tc.cfg)
	outcomes := make([]outcome, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { outcomes[i] = exchange(s.addr, tc) })
	}
	wg.Wait()
	std, got := outcomes[0], outcomes[1]
	ignoreSniffing(std, got)
	if tc.framingMayDiffer && std.String() != got.String() {
		t.Logf("framing differs (allowed)\n=== net/http:\n%s=== h1:\n%s", std, got)
		ignoreFraming(std)
		ignoreFraming(got)
	}
	if std.String() != got.String() {
		t.Errorf("h1 differs from net/http\n=== net/http:\n%s=== h1:\n%s", std, got)
	}
	if tc.end != "" && std.End != tc.end {
		t.Errorf("net/http: connection %q after the exchange, the test expects %q", std.End, tc.end)
	}
	for i, want := range tc.via {
		if want != "" && i < len(got.Responses) && got.Responses[i].Via != want {
			t.Errorf("h1: response %d served by %q, want %q", i, got.Responses[i].Via, want)
		}
	}
	if tc.check != nil {
		tc.check(t, stdKind, std)
		tc.check(t, h1Kind, got)
	}
}

// ignoreSniffing removes from net/http's responses the Content-Type it
// sniffed where h1's have none: a difference the package documents (the
// test handlers mostly leave Content-Type unset). A sniffed type is
// what http.DetectContentType gives for the body; the handlers that set
// one set another ("text/plain" without a charset, say).
func ignoreSniffing(std, got outcome) {
	for i, r := range std.Responses {
		ct := r.Header.Get("Content-Type")
		if i < len(got.Responses) && ct != "" && ct == http.DetectContentType(r.Body) &&
			got.Responses[i].Header.Get("Content-Type") == "" {
			delete(r.Header, "Content-Type")
		}
	}
}

func ignoreFraming(o outcome) {
	for i := range o.Responses {
		r := &o.Responses[i]
		r.ContentLength, r.TransferEncoding = 0, nil
		delete(r.Header, "Content-Length")
	}
}

func exchange(addr string, tc wireCase) outcome {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return outcome{Err: "dial: " + err.Error()}
	}
	defer func() { _ = conn.Close() }()
	deadline := tc.deadline
	if deadline == 0 {
		deadline = connTimeout
	}
	_ = conn.SetDeadline(time.Now().Add(deadline))
	br := bufio.NewReader(conn)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i, p := range tc.send {
			if i > 0 && tc.pause > 0 {
				time.Sleep(tc.pause)
			}
			if _, err := io.WriteString(conn, p); err != nil {
				return
			}
		}
	}()
	methods := tc.methods
	if len(methods) == 0 {
		methods = []string{http.MethodGet}
	}
	var o outcome
	for _, m := range methods {
		r, err := readResult(br, m)
		if err != nil {
			o.Err = classify(err)
			break
		}
		o.Responses = append(o.Responses, r)
	}
	<-wrote
	if o.Err == "" && tc.end != "" {
		o.End = probe(conn, br)
	}
	return o
}

// get is a GET request for path with the test Host and extra header
// lines.
func get(path string, lines ...string) string {
	return request(http.MethodGet, path, "", lines...)
}

// request is a request with a Content-Length body (none when body is "")
// and extra header lines.
func request(method, path, body string, lines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host)
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

// chunked encodes body as chunks of at most size bytes, then trailer
// lines.
func chunked(body string, size int, trailer ...string) string {
	var b strings.Builder
	for len(body) > 0 {
		n := min(size, len(body))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n")
	for _, l := range trailer {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// text is a handler that writes body as text/plain.
func text(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, body)
	}
}

// echoPath writes the request's path.
func echoPath(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "path="+r.URL.Path)
}

// dump writes what the handler saw of the request, its body read whole
// and then its trailer.
func dump(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var b strings.Builder
	fmt.Fprintf(&b, "method=%s requestURI=%s url=%s proto=%s host=%s\n",
		r.Method, r.RequestURI, r.URL, r.Proto, r.Host)
	fmt.Fprintf(&b, "contentLength=%d transferEncoding=%q close=%v\n",
		r.ContentLength, r.TransferEncoding, r.Close)
	writeHeader(&b, "header ", r.Header)
	fmt.Fprintf(&b, "body=%q err=%v\n", body, err)
	writeHeader(&b, "trailer ", r.Trailer)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, b.String())
}
