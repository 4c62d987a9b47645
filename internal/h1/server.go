// Package h1 is an HTTP/1.1 server for the proxy's listener: it serves the
// plain keep-alive requests that make up nearly all of a proxy's traffic
// itself, and hands every other connection, with the bytes already read
// from it, to a net/http server (the fallback).
//
// # Why not only net/http
//
// Measured on the 2-core bench machine (docs/performance.md, issue 2),
// net/http's server spends about a third of a forwarded 1 KB exchange on
// machinery a reverse proxy does not use: a goroutine started and stopped
// per request to watch the connection while the handler runs, a chunk
// writer and a header clone per response, three deadline changes per
// request, and the response's own buffers. A loop that parses the request
// with net/http's own parser (http.ReadRequest) and writes the response
// itself serves the same handler with less of that work.
//
// # What it serves and what it hands on
//
// A connection stays here while its requests are HTTP/1.1, whole heads fit
// in the read buffer (8 KiB) and within the fallback's MaxHeaderBytes, and
// carry nothing that needs net/http's protocol machinery: no Upgrade
// (WebSocket, h2c), no Expect (100-continue), not CONNECT or OPTIONS *,
// and nothing net/http would refuse (a missing, repeated or odd Host
// field, an invalid field name, a head http.ReadRequest cannot parse, a
// line that cannot start one). The first request that does not qualify
// is handed, head and all, to the fallback, which then owns the
// connection: it answers errors with its usual responses, hijacks
// upgrades, and enforces its MaxHeaderBytes.
//
// # Differences from net/http that a handler or a client can see
//
//   - Nothing watches the connection while the handler runs: a client
//     that goes away is noticed when a write to it fails, which cancels
//     the request's context (net/http notices the close itself). The proxy
//     bounds the wait for the upstream with its own timeouts.
//   - The response writer has no Hijack (upgrades never reach it) and no
//     CloseNotify (deprecated), and does not sniff a Content-Type for
//     responses without one: a proxy passes the upstream's headers as
//     they are.
//   - A body of unknown length is held back up to 4 KiB (net/http: 2 KiB)
//     before the head goes out with chunked encoding.
//   - A client that half-closes in the middle of a request head gets no
//     answer; net/http answers 400, or nothing when its background read
//     had already taken those bytes. After a request body that broke off,
//     the response says Connection: close; net/http just closes.
//   - The fallback's ReadTimeout, WriteTimeout, ConnState, BaseContext,
//     ConnContext and TLSConfig would not apply here: Serve refuses them.
//     SetKeepAlivesEnabled(false) on the fallback is not seen either.
//
// Everything else follows net/http, and the tests compare the two on the
// wire (hand-written cases, and a fuzz target that sends the same bytes to
// both): the same parser and header checks (the fallback decides whatever
// this server is unsure of), a Date field, Content-Length for small
// bodies the handler did not declare, chunked encoding with trailers
// otherwise, no body for HEAD, 1xx, 204 and 304, 1xx interim responses,
// the header map read when the status is set (later changes are not
// sent; the map itself is never modified), an unread request body
// discarded up to 256 KiB before the response head (or the connection
// closed after the response) unless the handler enabled full duplex,
// Connection: close honoured both ways, multipart files removed, panics
// recovered and logged, and idle, header and shutdown behaviour as
// net/http's.
package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// readBufSize is the read buffer of a connection: a request head must
	// fit in it whole to be served here (larger heads go to the fallback,
	// which applies MaxHeaderBytes).
	readBufSize = 8 << 10
	// writeBufSize is the write buffer of a response. It, and the body
	// buffer, go back to a pool between requests: an idle connection
	// holds only its read buffer.
	writeBufSize = 4 << 10
	// bodyBufSize is how much of a body the response holds back before
	// its head is sent, so that a small body of undeclared length gets a
	// Content-Length instead of chunked encoding (net/http: 2 KiB).
	bodyBufSize = 4 << 10
	// maxPostHandlerReadBytes is how much of an unread request body is
	// discarded to keep the connection (net/http's figure).
	maxPostHandlerReadBytes = 256 << 10
	// rstAvoidanceDelay is how long a connection closed with request body
	// unread stays half-open, so the client reads the response before the
	// reset that closing with unread data causes (net/http's figure).
	rstAvoidanceDelay = 500 * time.Millisecond
)

// Server serves HTTP/1.1 on a listener; see the package documentation.
// Set the fields before Serve; they must not change after.
type Server struct {
	// Handler answers every request, here and (through Fallback) there.
	Handler http.Handler
	// Fallback serves the connections this server hands on. Its Handler
	// should be Handler; Serve runs it on a listener of its own, so its
	// Serve must not be called elsewhere. Required.
	Fallback *http.Server
	// ReadHeaderTimeout bounds the reading of a request head, from its
	// first byte (0: none).
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request of a keep-alive
	// connection (0: none; the fallback's ReadTimeout, which net/http
	// would use, must be 0).
	IdleTimeout time.Duration
	// ErrorLog receives panics and accept errors (nil: the log package's
	// standard logger).
	ErrorLog *log.Logger

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	shim      *shimListener
	fbExited  chan struct{} // closed when the fallback's Serve returned
	closing   atomic.Bool
	connWG    sync.WaitGroup
}

// ErrMissingFallback is returned by Serve without a Fallback.
var ErrMissingFallback = errors.New("h1: Server.Fallback is required")

// checkFallback refuses the http.Server settings h1 does not apply to
// the requests it serves itself, rather than ignore them.
func checkFallback(fb *http.Server) error {
	var field string
	switch {
	case fb.ReadTimeout != 0:
		field = "ReadTimeout"
	case fb.WriteTimeout != 0:
		field = "WriteTimeout"
	case fb.ConnState != nil:
		field = "ConnState"
	case fb.BaseContext != nil:
		field = "BaseContext"
	case fb.ConnContext != nil:
		field = "ConnContext"
	case fb.TLSConfig != nil:
		field = "TLSConfig"
	default:
		return nil
	}
	return fmt.Errorf("h1: Fallback.%s is not supported", field)
}

// Serve accepts connections on ln until Shutdown or Close, and returns
// http.ErrServerClosed then. It also runs Fallback on a listener of its
// own that receives the handed-on connections.
func (s *Server) Serve(ln net.Listener) error {
	if s.Fallback == nil {
		return ErrMissingFallback
	}
	if err := checkFallback(s.Fallback); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.startLocked(ln.Addr())
	s.listeners[&ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &ln)
		s.mu.Unlock()
	}()

	var delay time.Duration
	for {
		rw, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("h1: accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(rw)
		if c == nil {
			continue
		}
		go c.serve()
	}
}

// startLocked sets up the connection registry and starts the fallback
// on its shim listener, once. s.mu must be held.
func (s *Server) startLocked(addr net.Addr) {
	if s.listeners == nil {
		s.listeners = make(map[*net.Listener]struct{})
		s.conns = make(map[*conn]struct{})
	}
	if s.shim == nil {
		s.shim = newShim(addr)
		s.fbExited = make(chan struct{})
		shim, fb, exited := s.shim, s.Fallback, s.fbExited
		// Its Serve only ends when the shim is closed (ErrServerClosed).
		go func() { _ = fb.Serve(shim); close(exited) }()
	}
}

// ServeOne serves one request of nc for an event loop that owns the
// connection and gives it here for a request it does not serve itself
// (forward's loop server). nc's unread bytes start with prefix, which
// holds at least the request's head. It returns back true when that
// request was served here and the connection may carry another: the loop
// takes it back with rest, the bytes read past the request, and nc must
// then be closed without ending the connection (nc is a duplicate of the
// loop's descriptor). With back false the connection is no longer the
// loop's: it was closed, or handed on to the fallback, which owns it
// from then on (an upgrade, an HTTP/1.0 client...). addr is the
// listener's address, for the fallback. Shutdown waits for ServeOne as
// for any connection; ServeOne after Shutdown closes nc.
func (s *Server) ServeOne(nc net.Conn, prefix []byte, addr net.Addr) (rest []byte, back bool) {
	if s.Fallback == nil {
		_ = nc.Close()
		return nil, false
	}
	s.mu.Lock()
	if !s.closing.Load() {
		s.startLocked(addr)
	}
	s.mu.Unlock()
	c := s.newConn(&handedConn{Conn: nc, head: prefix})
	if c == nil {
		return nil, false
	}
	c.one = true
	c.serve()
	return c.rest, c.back
}

// isTemporary reports errors that a busy machine produces and that pass:
// too many open files, and the like (net/http retries them too).
func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

func (s *Server) logf(format string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// newConn registers rw; nil (rw closed) when the server is closing.
func (s *Server) newConn(rw net.Conn) *conn {
	c := &conn{srv: s, rwc: rw}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		_ = rw.Close()
		return nil
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connWG.Done()
}

// handOff gives rw, which must first yield head and then what br holds,
// to the fallback.
func (s *Server) handOff(c *conn, head []byte) {
	hc := &handedConn{Conn: c.rwc, head: head, br: c.br}
	c.br = nil // the handed connection reads what is left in it
	if !s.shim.push(hc) {
		_ = hc.Close()
	}
}

// Shutdown stops accepting, closes idle connections, lets requests in
// flight finish, then closes their connections, and shuts the fallback
// down the same way. It returns when all are closed, or with ctx's error
// (the connections still open stay open: call Close).
func (s *Server) Shutdown(ctx context.Context) error {
	fbExited := s.closeListeners()
	var fbErr error
	fbDone := make(chan struct{})
	go func() {
		defer close(fbDone)
		if fbExited != nil {
			fbErr = s.Fallback.Shutdown(ctx)
			<-fbExited
		}
	}()
	allGone := make(chan struct{})
	go func() { s.connWG.Wait(); close(allGone) }()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	wait := time.Millisecond
	for {
		s.closeIdle()
		select {
		case <-allGone:
			<-fbDone
			return fbErr
		case <-ctx.Done():
			<-fbDone
			return ctx.Err()
		case <-tick.C:
			// net/http's shutdown poll: 1 ms doubling to 500 ms.
			wait = min(2*wait, 500*time.Millisecond)
			tick.Reset(wait)
		}
	}
}

// Close closes the listeners and every connection at once, and the
// fallback with them.
func (s *Server) Close() error {
	fbExited := s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.rwc.Close()
	}
	s.mu.Unlock()
	if fbExited != nil {
		err := s.Fallback.Close()
		<-fbExited
		return err
	}
	return nil
}

// closeListeners stops accepting, here and in the fallback, and returns
// the channel closed when the fallback's Serve returned (nil: it never
// ran).
func (s *Server) closeListeners() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing.Store(true)
	for ln := range s.listeners {
		_ = (*ln).Close()
	}
	if s.shim != nil {
		s.shim.close()
	}
	return s.fbExited
}

// closeIdle closes the connections waiting for a request.
func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			_ = c.rwc.Close()
		}
	}
}

// Connection states: idle while waiting for a request's first byte,
// active from then until the response is sent, closed once Shutdown took
// it (an idle connection it closed) or it ended.
const (
	stateIdle int32 = iota
	stateActive
	stateClosed
)

// conn is one client connection served here.
type conn struct {
	srv    *Server
	rwc    net.Conn
	ctx    context.Context // the parent of its requests' contexts
	remote string
	br     *bufio.Reader
	bw     *bufio.Writer
	state  atomic.Int32
	// buf is the body buffer of the last response, for the next one.
	buf []byte
	// fields is where a response serialises its header fields.
	fields []byte
	// writeDL: a handler set a write deadline on rwc. Atomic, as readDL:
	// the handler may set deadlines from another goroutine (one that
	// copies the request body upstream).
	writeDL atomic.Bool
	// lastPost: the previous request was a POST, after which a stray
	// CRLF is tolerated (RFC 9112 section 2.2, as net/http does).
	lastPost bool
	// readDL: a read deadline is set on rwc.
	readDL atomic.Bool
	// one: serve a single request (ServeOne); back and rest are its
	// outcome.
	one, back bool
	rest      []byte
}

// Buffers of ended connections and responses, for the next ones.
var (
	readerPool sync.Pool //nolint:gochecknoglobals // shared by all servers, as net/http's
	writerPool sync.Pool //nolint:gochecknoglobals // shared by all servers, as net/http's
	bodyPool   sync.Pool //nolint:gochecknoglobals // shared by all servers, as net/http's
)

func (c *conn) serve() {
	defer c.srv.forget(c)
	defer func() {
		if v := recover(); v != nil {
			if err, ok := v.(error); !ok || !errors.Is(err, http.ErrAbortHandler) {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.srv.logf("h1: panic serving %v: %v\n%s", c.remote, v, buf)
			}
			c.close()
		}
	}()
	c.remote = c.rwc.RemoteAddr().String()
	// The request contexts carry what net/http's do: the server (the
	// fallback, whose settings apply; httputil.ReverseProxy looks for it
	// to know a server recovers its http.ErrAbortHandler panic) and the
	// local address.
	c.ctx = context.WithValue(context.WithValue(context.Background(), http.ServerContextKey, c.srv.Fallback),
		http.LocalAddrContextKey, c.rwc.LocalAddr())
	c.br, _ = readerPool.Get().(*bufio.Reader)
	if c.br == nil {
		c.br = bufio.NewReaderSize(c.rwc, readBufSize)
	} else {
		c.br.Reset(c.rwc)
	}

	first := true
	for {
		head, ok := c.awaitHead(first)
		first = false
		if !ok {
			c.close()
			return
		}
		if head == nil {
			c.srv.handOff(c, nil)
			c.release()
			return
		}
		req, err := c.readRequest(head)
		if err != nil {
			if errors.Is(err, errHandOff) {
				c.srv.handOff(c, append([]byte(nil), head...))
				c.release()
				return
			}
			c.close()
			return
		}
		c.writer()
		keep := c.serveRequest(req)
		c.release()
		if !keep {
			c.close()
			return
		}
		if c.srv.closing.Load() {
			c.close()
			return
		}
		if c.one {
			// Back to the event loop, with what was read past the request.
			c.rest = append([]byte(nil), peekBuffered(c.br)...)
			c.back = true
			c.state.Store(stateClosed)
			c.br.Reset(nil)
			readerPool.Put(c.br)
			c.br = nil
			return
		}
		if !c.state.CompareAndSwap(stateActive, stateIdle) {
			c.close()
			return
		}
	}
}

// writer takes a write buffer for a response.
func (c *conn) writer() {
	c.bw, _ = writerPool.Get().(*bufio.Writer)
	if c.bw == nil {
		c.bw = bufio.NewWriterSize(c.rwc, writeBufSize)
	} else {
		c.bw.Reset(c.rwc)
	}
}

// release returns the write and body buffers, between requests and when
// the connection ends or is handed on.
func (c *conn) release() {
	if c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
	if c.buf != nil {
		b := c.buf[:0]
		bodyPool.Put(&b)
		c.buf = nil
	}
}

func (c *conn) close() {
	c.state.Store(stateClosed)
	_ = c.rwc.Close()
	if c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
	c.release()
}

// awaitHead waits for the next request's head to be in the read buffer
// whole, and returns it (a slice of the buffer, valid until the next
// read). ok false: the connection ended or timed out, or Shutdown took it
// while idle. head nil with ok: the head does not fit the buffer; hand
// the connection on.
func (c *conn) awaitHead(first bool) (head []byte, ok bool) {
	s := c.srv
	idle := s.IdleTimeout
	if !first && c.br.Buffered() == 0 {
		// Waiting for the next request: the idle timeout applies.
		if idle > 0 {
			c.setReadDeadline(time.Now().Add(idle))
		} else {
			c.clearReadDeadline()
		}
	} else if s.ReadHeaderTimeout > 0 {
		c.setReadDeadline(time.Now().Add(s.ReadHeaderTimeout))
	}
	if _, err := c.br.Peek(1); err != nil {
		return nil, false
	}
	if !c.state.CompareAndSwap(stateIdle, stateActive) {
		return nil, false
	}
	if c.lastPost {
		c.lastPost = false
		c.skipLeadingCRLF()
	}
	end := headEnd(peekBuffered(c.br))
	if end < 0 {
		// More of the head is still to come: the header timeout runs from
		// its first byte.
		if !first && s.ReadHeaderTimeout > 0 {
			c.setReadDeadline(time.Now().Add(s.ReadHeaderTimeout))
		}
		for end < 0 {
			if !plausibleHead(peekBuffered(c.br)) {
				// net/http answers a bad line as soon as it has it,
				// without waiting for the rest of the head.
				return nil, true
			}
			n := c.br.Buffered()
			if n == c.br.Size() {
				return nil, true
			}
			if _, err := c.br.Peek(n + 1); err != nil {
				if errors.Is(err, bufio.ErrBufferFull) {
					return nil, true
				}
				return nil, false
			}
			end = headEnd(peekBuffered(c.br))
		}
	}
	// The head is here: no deadline while the handler runs (its own
	// timeouts bound the body and the response).
	c.clearReadDeadline()
	if mhb := s.Fallback.MaxHeaderBytes; mhb > 0 && end > mhb {
		// Larger than the fallback may accept: it decides (431).
		return nil, true
	}
	b, _ := c.br.Peek(end)
	return b, true
}

func (c *conn) setReadDeadline(t time.Time) {
	c.readDL.Store(true)
	_ = c.rwc.SetReadDeadline(t)
}

func (c *conn) clearReadDeadline() {
	if c.readDL.Swap(false) {
		_ = c.rwc.SetReadDeadline(time.Time{})
	}
}

func (c *conn) skipLeadingCRLF() {
	b, _ := c.br.Peek(min(4, c.br.Buffered()))
	n := 0
	for n < len(b) && (b[n] == '\r' || b[n] == '\n') {
		n++
	}
	_, _ = c.br.Discard(n)
}

func peekBuffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

// headEnd returns the length of the request head at the start of b
// (through the empty line that ends it, "\r\n" or a bare "\n" as
// net/textproto accepts), or -1 when b holds no complete head.
func headEnd(b []byte) int {
	for i := range len(b) {
		if b[i] != '\n' {
			continue
		}
		// A line ends at i; the next one is empty when it is "\n" or
		// "\r\n".
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return -1
}

// plausibleHead reports whether the complete lines of an unfinished
// head b look like a request line and header fields. It is only a shape
// check, so that a head that cannot be served here is handed on (and
// answered by net/http) before the rest of it arrives.
func plausibleHead(b []byte) bool {
	first := true
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return true
		}
		line := bytes.TrimSuffix(b[:i], []byte("\r"))
		b = b[i+1:]
		if first {
			first = false
			method, rest, ok := bytes.Cut(line, []byte(" "))
			if !ok || !isToken(method) {
				return false
			}
			target, proto, ok := bytes.Cut(rest, []byte(" "))
			if !ok || len(target) == 0 || !bytes.HasPrefix(proto, []byte("HTTP/")) {
				return false
			}
			continue
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok || !isToken(name) {
			return false
		}
	}
}

// errHandOff: the request is the fallback's.
var errHandOff = errors.New("h1: hand off")

// readRequest parses the head (which is in the read buffer whole) and
// decides whether this server serves it.
func (c *conn) readRequest(head []byte) (*http.Request, error) {
	before := c.br.Buffered()
	req, err := http.ReadRequest(c.br)
	if consumed := before - c.br.Buffered(); consumed > len(head) {
		// The parser read past the head the scan found: the two disagree
		// about where it ends, and what was read is gone.
		return nil, fmt.Errorf("h1: request head parsed past its end (%d > %d bytes)", consumed, len(head))
	} else if err != nil || !servable(req) || !oneHost(head) {
		// Position the buffer after the head: the handed connection
		// replays the head from its copy.
		_, _ = c.br.Discard(len(head) - consumed)
		return nil, errHandOff
	}
	c.lastPost = req.Method == http.MethodPost
	return req, nil
}

// servable reports whether this server serves req, which http.ReadRequest
// parsed: HTTP/1.1, none of the features that need net/http's machinery,
// and nothing net/http's server would refuse beyond what ReadRequest
// checks (net/textproto already refuses bad header names and values).
func servable(req *http.Request) bool {
	if req.ProtoMajor != 1 || req.ProtoMinor != 1 {
		return false
	}
	switch req.Method {
	case http.MethodConnect, "PRI":
		return false
	}
	if req.RequestURI == "*" {
		// OPTIONS * is net/http's to answer (or its handler's).
		return false
	}
	h := req.Header
	if _, ok := h["Upgrade"]; ok {
		return false
	}
	if _, ok := h["Expect"]; ok {
		return false
	}
	// net/textproto lets a few invalid names through (a space in one)
	// that net/http's server refuses.
	for k := range h {
		if !isToken(k) {
			return false
		}
	}
	return true
}

// oneHost reports whether head has exactly one Host field and its value
// is a plainHost (http.ReadRequest removes the field from the header map,
// so the head is read for what net/http's server checks).
func oneHost(head []byte) bool {
	n := 0
	for i := bytes.IndexByte(head, '\n'); i >= 0 && i+1 < len(head); {
		line := head[i+1:]
		end := bytes.IndexByte(line, '\n')
		if end < 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// A continued (obs-fold) line: net/http decides.
			return false
		}
		if len(line) > 5 && line[4] == ':' && (line[0]|0x20) == 'h' && (line[1]|0x20) == 'o' &&
			(line[2]|0x20) == 's' && (line[3]|0x20) == 't' {
			n++
			v := bytes.TrimRight(line[5:end], "\r")
			v = bytes.Trim(v, " \t")
			if n > 1 || !plainHost(v) {
				return false
			}
		}
		i += 1 + end
	}
	return n == 1
}

// plainHost reports whether h is made only of the bytes of a host name,
// an IPv4 or bracketed IPv6 address and a port: the Host headers this
// server passes. Anything else is left to net/http's check.
func plainHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	for i := range len(h) {
		b := h[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case b == '.', b == '-', b == ':', b == '[', b == ']', b == '_':
		default:
			return false
		}
	}
	return true
}

// serveRequest runs the handler for req and finishes its response. It
// reports whether the connection may carry another request.
func (c *conn) serveRequest(req *http.Request) (keep bool) {
	ctx, cancel := context.WithCancel(c.ctx)
	orig := req
	req = req.WithContext(ctx)
	req.RemoteAddr = c.remote
	var body *requestBody
	if req.Body != http.NoBody && req.Body != nil {
		body = &requestBody{rc: req.Body, remaining: req.ContentLength, orig: orig, req: req}
		req.Body = body
	}
	// A response per request, as net/http: a late write from a goroutine
	// the handler left behind finds its own response finished, never the
	// next request's.
	w := &response{c: c, req: req, body: body, header: make(http.Header), cancel: cancel,
		clen: -1, closeAfter: req.Close, buf: c.buf}
	c.buf = nil
	if c.writeDL.Swap(false) {
		// net/http clears the deadline a handler set after each request.
		_ = c.rwc.SetWriteDeadline(time.Time{})
	}
	defer cancel()

	h := c.srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	h.ServeHTTP(w, req)
	w.handlerDone = true
	keep = w.finish()
	if req.MultipartForm != nil {
		_ = req.MultipartForm.RemoveAll()
	}
	if w.buf != nil && cap(w.buf) <= bodyBufSize {
		c.buf = w.buf[:0]
	}
	w.buf = nil
	return keep
}

// shimListener is the fallback's listener: Accept returns the connections
// handed on.
type shimListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newShim(addr net.Addr) *shimListener {
	return &shimListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *shimListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// push hands c to the fallback; false when it no longer accepts.
func (l *shimListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *shimListener) close() { l.once.Do(func() { close(l.done) }) }

func (l *shimListener) Close() error { l.close(); return nil }

func (l *shimListener) Addr() net.Addr { return l.addr }

// handedConn is a connection handed on: reads return the request head
// read here, then what the read buffer held, then the connection.
type handedConn struct {
	net.Conn
	head []byte
	br   *bufio.Reader
}

func (hc *handedConn) Read(p []byte) (int, error) {
	if len(hc.head) > 0 {
		n := copy(p, hc.head)
		hc.head = hc.head[n:]
		return n, nil
	}
	if hc.br != nil {
		if hc.br.Buffered() > 0 {
			return hc.br.Read(p)
		}
		hc.br.Reset(nil)
		readerPool.Put(hc.br)
		hc.br = nil
	}
	return hc.Conn.Read(p)
}

// CloseWrite lets net/http half-close the connection as it does for its
// own (it looks for this method).
func (hc *handedConn) CloseWrite() error {
	if cw, ok := hc.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
