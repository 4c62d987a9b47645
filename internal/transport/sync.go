package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// SyncBodyLimit is the largest request body (with a known Content-Length)
// the synchronous path sends; larger or streamed bodies use the fallback
// transport, which writes the body concurrently with reading the response.
const SyncBodyLimit = 64 << 10

// Sync is an http.RoundTripper for HTTP/1.1 upstreams that does the whole
// exchange on the caller's goroutine: it takes a pooled keep-alive
// connection, writes the request, reads the response headers and returns
// a Response whose Body reads straight from the connection and puts the
// connection back in the pool at EOF.
//
// http.Transport runs two goroutines per connection and hands every
// request and response between them over channels; for a proxy that is the
// largest fixed cost per request (see docs/performance.md). Sync has none
// of that. It handles the common case — http:// upstreams, requests with no
// body or a small body of known length, no Upgrade, no Expect — and sends
// everything else to Fallback.
//
// Connection reuse follows net/http's rules: a connection whose response
// said "Connection: close", was HTTP/1.0 without keep-alive, or whose body
// was not read to the end is closed, never reused. So is one that carried
// bytes past the end of its response, or whose upstream sent any while it
// was idle: http.Transport drops such a connection too ("unsolicited
// response"), since those bytes would be read as the answer to the next
// request, perhaps another client's. Every reuse is preceded by a
// non-blocking check of the socket for that, and for the upstream having
// closed it. A request that still fails on a reused connection before any
// response byte arrived (the upstream closed it just then) is retried once
// on a new connection when it is replayable (GET, HEAD, OPTIONS or TRACE
// with no body).
type Sync struct {
	// Fallback handles what Sync does not (default: New(Options{})).
	Fallback http.RoundTripper
	// DialTimeout, ResponseHeaderTimeout, IdleConnTimeout and
	// MaxIdleConnsPerHost have Options' meanings and defaults.
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration
	IdleConnTimeout       time.Duration
	MaxIdleConnsPerHost   int

	once  sync.Once
	mu    sync.Mutex
	pools map[string]*pool
	fb    http.RoundTripper
}

var _ http.RoundTripper = (*Sync)(nil)

// NewSync returns a Sync with o's limits and an http.Transport with the
// same limits as its fallback.
func NewSync(o Options) *Sync {
	return &Sync{
		Fallback:              New(o),
		DialTimeout:           o.DialTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		IdleConnTimeout:       o.IdleConnTimeout,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
	}
}

type pool struct {
	mu   sync.Mutex
	idle []*conn // LIFO: the most recently used connection is reused first
}

type conn struct {
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	lastUsed time.Time
	reused   bool

	// For alive, made once per connection so that the check before each
	// reuse allocates nothing: the raw socket (nil: not checkable), the
	// peek run on it, and what the peek found.
	raw    syscall.RawConn
	peek   func(fd uintptr) bool
	silent bool
	peekB  [1]byte
}

func newConn(nc net.Conn) *conn {
	c := &conn{
		nc: nc,
		br: bufio.NewReaderSize(nc, BufferSize),
		bw: bufio.NewWriterSize(nc, 4<<10),
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.peek = func(fd uintptr) bool {
				n, _, err := syscall.Recvfrom(int(fd), c.peekB[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
				c.silent = n < 0 && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK))
				return true
			}
		}
	}
	return c
}

func (t *Sync) init() {
	t.pools = map[string]*pool{}
	t.fb = t.Fallback
	if t.fb == nil {
		t.fb = New(Options{
			DialTimeout: t.DialTimeout, ResponseHeaderTimeout: t.ResponseHeaderTimeout,
			IdleConnTimeout: t.IdleConnTimeout, MaxIdleConnsPerHost: t.MaxIdleConnsPerHost,
		})
	}
}

// eligible reports whether req can take the synchronous path.
func eligible(req *http.Request) bool {
	if req.URL.Scheme != "http" {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody && (req.ContentLength <= 0 || req.ContentLength > SyncBodyLimit) {
		return false
	}
	if len(req.Trailer) > 0 || req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" || len(req.TransferEncoding) > 0 {
		return false
	}
	return true
}

// HasBody reports whether req has a body of known, positive length.
func HasBody(req *http.Request) bool { return hasBody(req) }

func hasBody(req *http.Request) bool {
	return req.Body != nil && req.Body != http.NoBody && req.ContentLength > 0
}

func replayable(req *http.Request) bool {
	if hasBody(req) {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// RoundTrip implements http.RoundTripper.
func (t *Sync) RoundTrip(req *http.Request) (*http.Response, error) {
	t.once.Do(t.init)
	if !eligible(req) {
		return t.fb.RoundTrip(req)
	}
	var interim func(int, http.Header) error
	if tr := httptrace.ContextClientTrace(req.Context()); tr != nil && tr.Got1xxResponse != nil {
		// As http.Transport: 1xx responses go to the trace.
		interim = func(code int, h http.Header) error { return tr.Got1xxResponse(code, textproto.MIMEHeader(h)) }
	}
	return t.Exchange(req, req.URL.Host, replayable(req), func(w *bufio.Writer) error { return writeRequest(w, req) }, interim)
}

// Exchange does one HTTP/1.1 exchange with host ("host:port") on a pooled
// connection. writeHead writes the request line and header block (ending
// with the blank line); Exchange then sends req.ContentLength bytes of
// req.Body when positive (at most SyncBodyLimit: the caller checks), and
// reads the response headers. req supplies the context (cancelling it
// aborts the exchange), the method (for HEAD responses) and the body.
// replayable says whether the request may be sent again after a reused
// connection turned out to be closed. interim, when not nil, receives each
// 1xx informational response (other than 101) that precedes the final one,
// as http.Transport gives them to httptrace's Got1xxResponse; its error
// ends the exchange.
//
// It lets a proxy write the outbound head straight from the inbound
// request, without cloning it first.
func (t *Sync) Exchange(req *http.Request, host string, replayable bool, writeHead func(*bufio.Writer) error, interim func(int, http.Header) error) (*http.Response, error) {
	t.once.Do(t.init)
	p := t.pool(host)
	for attempt := 0; ; attempt++ {
		c, err := t.getConn(req.Context(), p, host)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(req, p, c, writeHead, interim)
		if err == nil {
			return resp, nil
		}
		var re *retryable
		if attempt == 0 && errors.As(err, &re) && c.reused && replayable && req.Context().Err() == nil {
			continue
		}
		if re != nil {
			err = re.err
		}
		return nil, err
	}
}

// retryable marks a failure on a reused connection before any response
// byte arrived (the upstream most likely closed the idle connection).
type retryable struct{ err error }

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

func (t *Sync) pool(host string) *pool {
	t.mu.Lock()
	p := t.pools[host]
	if p == nil {
		p = &pool{}
		t.pools[host] = p
	}
	t.mu.Unlock()
	return p
}

func (t *Sync) getConn(ctx context.Context, p *pool, host string) (*conn, error) {
	idleTimeout := orDuration(t.IdleConnTimeout, DefaultIdleConnTimeout)
	now := time.Now()
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now.Sub(c.lastUsed) > idleTimeout || !alive(c) {
			_ = c.nc.Close()
			continue
		}
		c.reused = true
		return c, nil
	}
	d := net.Dialer{Timeout: orDuration(t.DialTimeout, DefaultDialTimeout), KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", hostPort(host))
	if err != nil {
		return nil, err
	}
	return newConn(nc), nil
}

// alive checks without blocking that an idle connection is still usable:
// no bytes arrived on it (they would be read as the next response) and the
// upstream has not closed it. A non-blocking MSG_PEEK read: "would block"
// means open and silent, as an idle connection should be; data, EOF or an
// error mean it is not.
func alive(c *conn) bool {
	if c.br.Buffered() > 0 {
		return false // unsolicited bytes on an idle connection: do not trust it
	}
	if c.raw == nil {
		return true
	}
	c.silent = false
	return c.raw.Read(c.peek) == nil && c.silent
}

func hostPort(host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(host, "80")
}

func (t *Sync) put(p *pool, c *conn) {
	limit := t.MaxIdleConnsPerHost
	if limit <= 0 {
		limit = DefaultMaxIdleConnsPerHost
	}
	c.lastUsed = time.Now()
	p.mu.Lock()
	if len(p.idle) >= limit {
		p.mu.Unlock()
		_ = c.nc.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// CloseIdleConnections closes every pooled connection (and the fallback's).
func (t *Sync) CloseIdleConnections() {
	t.once.Do(t.init)
	t.mu.Lock()
	pools := make([]*pool, 0, len(t.pools))
	for _, p := range t.pools {
		pools = append(pools, p)
	}
	t.mu.Unlock()
	for _, p := range pools {
		p.mu.Lock()
		idle := p.idle
		p.idle = nil
		p.mu.Unlock()
		for _, c := range idle {
			_ = c.nc.Close()
		}
	}
	if ci, ok := t.fb.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func (t *Sync) exchange(req *http.Request, p *pool, c *conn, writeHead func(*bufio.Writer) error, interim func(int, http.Header) error) (*http.Response, error) {
	ctx := req.Context()
	// Cancelling the request (the client went away) unblocks any I/O on
	// the connection, which is then closed rather than reused.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error, beforeResponse bool) (*http.Response, error) {
		stop()
		_ = c.nc.Close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		if beforeResponse && c.reused {
			return nil, &retryable{err}
		}
		return nil, err
	}
	if err := writeHead(c.bw); err != nil {
		return fail(err, true)
	}
	if hasBody(req) {
		n, err := io.CopyN(c.bw, req.Body, req.ContentLength)
		if err != nil {
			return fail(fmt.Errorf("send request body: %d of %d bytes: %w", n, req.ContentLength, err), false)
		}
	}
	if err := c.bw.Flush(); err != nil {
		return fail(err, true)
	}
	if req.Body != nil {
		_ = req.Body.Close()
	}
	if d := orDuration(t.ResponseHeaderTimeout, DefaultResponseHeaderTimeout); d > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(d))
	}
	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				err = timeoutError{"timeout awaiting response headers"}
			}
			return fail(err, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET))
		}
		// 1xx informational responses (other than 101) precede the real one.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			if interim != nil {
				if err := interim(resp.StatusCode, resp.Header); err != nil {
					return fail(err, false)
				}
			}
			continue
		}
		break
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	if resp.StatusCode < 100 {
		// http.ReadResponse takes any three digits; a handler cannot
		// send a status below 100 (net/http panics), so it is a bad
		// response, as a garbled status line is.
		return fail(fmt.Errorf("malformed HTTP status code %03d", resp.StatusCode), false)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Not expected (Upgrade requests take the fallback); do not reuse.
		return fail(errors.New("unexpected 101 Switching Protocols"), false)
	}
	resp.Body = &body{rc: resp.Body, t: t, p: p, c: c, stop: stop, keep: !resp.Close, eof: resp.Body == http.NoBody}
	return resp, nil
}

// timeoutError is a net.Error with Timeout() true, like http.Transport's
// response header timeout, so callers map it to 504.
type timeoutError struct{ msg string }

func (e timeoutError) Error() string   { return e.msg }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }

// body releases the connection when the response body is read to EOF and
// closes it otherwise.
type body struct {
	rc   io.ReadCloser
	t    *Sync
	p    *pool
	c    *conn
	stop func() bool
	keep bool
	eof  bool
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		return 0, errors.New("read on closed response body")
	}
	n, err := b.rc.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

func (b *body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.rc.Close()
	stopped := b.stop()
	// Bytes already read past the response's end: not reusable.
	if b.eof && b.keep && stopped && err == nil && b.c.br.Buffered() == 0 {
		b.t.put(b.p, b.c)
		return nil
	}
	_ = b.c.nc.Close()
	return nil
}

// writeRequest writes the request line and headers (not the body).
func writeRequest(w *bufio.Writer, req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	uri := req.URL.RequestURI()
	_, _ = w.WriteString(method)
	_ = w.WriteByte(' ')
	_, _ = w.WriteString(uri)
	_, _ = w.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = w.WriteString(host)
	_, _ = w.WriteString("\r\n")
	for k, vs := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
			continue
		case "User-Agent":
			// ReverseProxy sets an empty User-Agent to mean "send none".
			if len(vs) == 0 || vs[0] == "" {
				continue
			}
		}
		for _, v := range vs {
			_, _ = w.WriteString(k)
			_, _ = w.WriteString(": ")
			_, _ = w.WriteString(v)
			_, _ = w.WriteString("\r\n")
		}
	}
	if hasBody(req) {
		_, _ = w.WriteString("Content-Length: ")
		_, _ = w.WriteString(strconv.FormatInt(req.ContentLength, 10))
		_, _ = w.WriteString("\r\n")
	} else if req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
		_, _ = w.WriteString("Content-Length: 0\r\n")
	}
	_, err := w.WriteString("\r\n")
	return err
}
