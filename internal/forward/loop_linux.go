//go:build linux

package forward

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/proxyctl/proxyctl/internal/h1"
	"github.com/proxyctl/proxyctl/internal/transport"
)

// LoopsSupported reports whether this platform has the loop server.
const LoopsSupported = true

// loopState is the loop server's own state.
type loopState struct {
	mu      sync.Mutex
	loops   []*loop
	ln      net.Listener
	closing atomic.Bool
	done    chan struct{} // closed when every loop has ended
	served  atomic.Uint64
	handed  atomic.Uint64
	// unwatched counts the loops that took the listener out of their
	// sets; the last closes it.
	unwatched atomic.Int32
}

// unlisten is a loop's part in closing the listener.
func (s *LoopServer) unlisten() {
	s.st.mu.Lock()
	ln, n := s.st.ln, len(s.st.loops)
	s.st.mu.Unlock()
	if ln != nil && int(s.st.unwatched.Add(1)) == n {
		_ = ln.Close()
	}
}

// LoopStats counts the requests of a loop server.
type LoopStats struct {
	// Served is the requests the loops served themselves; Handed the
	// ones they lent a connection to H1 for.
	Served, Handed uint64
}

// Stats returns the server's counts so far.
func (s *LoopServer) Stats() LoopStats {
	return LoopStats{Served: s.st.served.Load(), Handed: s.st.handed.Load()}
}

// Sizes of the loop server.
const (
	// loopReadSize is how much one read takes from a socket.
	loopReadSize = 32 << 10
	// loopOutHigh is how much response a slow client may have pending
	// before the loop stops reading the upstream; it reads again once
	// all of it has gone out.
	loopOutHigh = 256 << 10
	// loopInMax is how much of what a client sent the loop holds (a
	// head, a body of up to transport.SyncBodyLimit, requests sent
	// ahead) before it stops reading it.
	loopInMax = 64 << 10
	// The loop must be able to hold a whole body it serves.
	_ = uint(loopInMax - transport.SyncBodyLimit)
	// loopRespHeadMax bounds an upstream response head (as
	// transport.New's MaxResponseHeaderBytes).
	loopRespHeadMax = 1 << 20
	// loopTick is the resolution of the loop's timeouts.
	loopTick = 50 * time.Millisecond
)

// Serve accepts on ln, which must be a TCP listener, until Shutdown or
// Close, and returns http.ErrServerClosed then.
func (s *LoopServer) Serve(ln net.Listener) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return fmt.Errorf("forward: the loop server needs a TCP listener, not %T", ln)
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	lfd := -1
	if err := rc.Control(func(fd uintptr) { lfd = int(fd) }); err != nil { //nolint:gosec // a descriptor fits in int
		return err
	}
	s.Proxy.once.Do(s.Proxy.init)
	n := max(s.Loops, 1)
	if runtime.GOMAXPROCS(0) < n+1 {
		// Each loop keeps a P while it waits in epoll_wait; the rest of
		// the program (the collector, hand-offs, capture) needs one of
		// its own, or a loop waits for them to be preempted, 10 ms at
		// a time (a p99 of 20-50 ms measured with GOMAXPROCS=1).
		runtime.GOMAXPROCS(n + 1)
	}
	s.st.mu.Lock()
	if s.st.closing.Load() {
		s.st.mu.Unlock()
		return http.ErrServerClosed
	}
	s.st.ln = ln
	s.st.done = make(chan struct{})
	for range n {
		l, err := newLoop(s, lfd, ln.Addr())
		if err != nil {
			for _, l := range s.st.loops {
				l.free()
			}
			s.st.loops = nil
			s.st.mu.Unlock()
			return err
		}
		s.st.loops = append(s.st.loops, l)
	}
	loops := s.st.loops
	s.st.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(loops))
	for i, l := range loops {
		wg.Go(func() { errs[i] = l.run() })
	}
	wg.Wait()
	close(s.st.done)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return http.ErrServerClosed
}

// Shutdown stops accepting, closes idle connections, lets exchanges in
// flight finish (their responses say Connection: close), then shuts H1
// down, which waits for the requests handed to it.
func (s *LoopServer) Shutdown(ctx context.Context) error {
	if done := s.stop(false); done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.H1.Shutdown(ctx)
}

// Close closes the listener and every connection at once.
func (s *LoopServer) Close() error {
	if done := s.stop(true); done != nil {
		<-done
	}
	return s.H1.Close()
}

func (s *LoopServer) stop(now bool) chan struct{} {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	s.st.closing.Store(true)
	// Each loop takes the listener out of its epoll set on the message;
	// the last one closes it (unlisten), which refuses new connections.
	// Closed earlier, its descriptor number could be reused by a socket
	// a loop then watches, and taken out of the set in its place.
	for _, l := range s.st.loops {
		l.post(loopMsg{stop: true, now: now})
	}
	return s.st.done
}

// loopMsg is what other goroutines tell a loop: a dial's outcome, a
// connection back from H1, or stop.
type loopMsg struct {
	dial     *uconn
	dialFD   int
	dialErr  error
	back     *cconn
	rest     []byte
	returned bool
	stop     bool
	now      bool
}

// loop is one event loop.
type loop struct {
	s      *LoopServer
	p      *Proxy
	ep     int
	lfd    int
	efd    int // eventfd: wakes the loop for its inbox
	addr   net.Addr
	fds    map[int32]loopFD
	pools  map[string][]*uconn
	events []unix.EpollEvent
	rbuf   []byte
	br     *bufio.Reader
	hr     bytes.Reader // what br parses: a head
	fields []byte       // scratch for a simple head's fields
	bw     *bufio.Writer
	wbuf   sliceWriter
	now    time.Time
	swept  time.Time

	mu    sync.Mutex
	inbox []loopMsg
	dead  bool // the loop has ended and freed its descriptors

	// Exchanges end inside an event's handling, where stack frames may
	// still hold them: they are retired there, and free for new ones
	// once the event is handled.
	retired, spare []*lexchange

	clients  int // client connections the loop owns (or lent to H1)
	lent     map[*cconn]struct{}
	stopping bool
	closed   bool // Close: the loop ends without waiting for anyone
	// acceptPaused: accept failed for want of resources (descriptors,
	// memory); the listener is out of the epoll set until then.
	acceptPaused time.Time
}

// loopFD is a descriptor the loop watches.
type loopFD interface {
	event(l *loop, ev uint32)
}

// reuse returns *buf emptied, allocating it the first time: a
// connection's input buffer, taken again whenever all it held was used.
// (Whatever is parsed from it is copied out: http.ReadRequest and
// ReadResponse make strings, bodies are appended elsewhere.)
func reuse(buf *[]byte) []byte {
	if *buf == nil {
		*buf = make([]byte, 0, 4<<10)
	}
	return (*buf)[:0]
}

// sliceWriter appends what is written to it.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

func newLoop(s *LoopServer, lfd int, addr net.Addr) (*loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(ep)
		return nil, os.NewSyscallError("eventfd", err)
	}
	l := &loop{s: s, p: s.Proxy, ep: ep, lfd: lfd, efd: efd, addr: addr,
		fds: make(map[int32]loopFD), pools: make(map[string][]*uconn), lent: make(map[*cconn]struct{}),
		events: make([]unix.EpollEvent, 256), rbuf: make([]byte, loopReadSize)}
	l.br = bufio.NewReaderSize(nil, 4<<10)
	l.bw = bufio.NewWriterSize(&l.wbuf, 4<<10)
	if err := l.ctl(unix.EPOLL_CTL_ADD, efd, unix.EPOLLIN); err != nil {
		l.free()
		return nil, err
	}
	// EPOLLEXCLUSIVE: one loop is woken per new connection, not all.
	if err := l.ctl(unix.EPOLL_CTL_ADD, lfd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE); err != nil {
		l.free()
		return nil, err
	}
	return l, nil
}

func (l *loop) free() {
	l.mu.Lock()
	l.dead = true // post writes to efd no more: its number may be reused
	for _, m := range l.inbox {
		if m.dial != nil && m.dialFD >= 0 {
			_ = unix.Close(m.dialFD)
		}
	}
	l.inbox = nil
	l.mu.Unlock()
	_ = unix.Close(l.ep)
	_ = unix.Close(l.efd)
}

func (l *loop) ctl(op, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)} //nolint:gosec // a descriptor fits in int32
	if err := unix.EpollCtl(l.ep, op, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// Edge-triggered interests: reads always, writes only while a write
// waits for room (armed on EAGAIN, so that writes that go through at
// once, nearly all of them, bring no event).
const (
	evRead  = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET
	evWrite = evRead | unix.EPOLLOUT
	// evEnd: the peer closed or the socket failed; reads must go on to
	// the end to see it.
	evEnd = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
)

// watch adds fd for reads.
func (l *loop) watch(fd int, h loopFD) error {
	if err := l.ctl(unix.EPOLL_CTL_ADD, fd, evRead); err != nil {
		return err
	}
	l.fds[int32(fd)] = h //nolint:gosec // a descriptor fits in int32
	return nil
}

// armWrite asks (on) or stops asking for fd's writability.
func (l *loop) armWrite(fd int, armed *bool, on bool) {
	if *armed == on {
		return
	}
	ev := uint32(evRead)
	if on {
		ev = evWrite
	}
	if l.ctl(unix.EPOLL_CTL_MOD, fd, ev) == nil {
		*armed = on
	}
}

func (l *loop) unwatch(fd int) {
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, fd, nil)
	delete(l.fds, int32(fd)) //nolint:gosec // a descriptor fits in int32
}

// post queues m for the loop and wakes it.
func (l *loop) post(m loopMsg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		// The loop has ended (Close): a dial's socket would leak.
		if m.dial != nil && m.dialFD >= 0 {
			_ = unix.Close(m.dialFD)
		}
		return
	}
	l.inbox = append(l.inbox, m)
	var one [8]byte
	one[0] = 1 // little-endian 1; eventfd counts
	_, _ = unix.Write(l.efd, one[:])
}

func (l *loop) run() error {
	// The loop keeps its thread: waking it is a futex on that thread,
	// never a goroutine handed between threads (the tail that
	// goroutine-per-connection servers have on busy cores).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer l.free()
	l.now = time.Now()
	l.swept = l.now
	for {
		n, err := unix.EpollWait(l.ep, l.events, int(loopTick/time.Millisecond))
		if err != nil && !errors.Is(err, unix.EINTR) {
			l.closeAll()
			return os.NewSyscallError("epoll_wait", err)
		}
		l.now = time.Now()
		for i := range max(n, 0) {
			ev := l.events[i]
			switch int(ev.Fd) {
			case l.lfd:
				l.accept()
			case l.efd:
				l.drainInbox()
			default:
				if h := l.fds[ev.Fd]; h != nil {
					l.dispatch(h, ev.Events)
				}
				l.recycle()
			}
		}
		if l.now.Sub(l.swept) >= loopTick {
			l.sweep()
		}
		if l.stopping && (l.clients == 0 || l.closed) {
			l.closeIdleUpstreams()
			return nil
		}
	}
}

// dispatch runs a descriptor's event. A panic (a bug) ends only the
// connection it happened on, as h1 and net/http recover theirs, and is
// logged with its stack.
func (l *loop) dispatch(h loopFD, ev uint32) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		l.p.Log.Error().Str("panic", fmt.Sprint(v)).Str("stack", string(debug.Stack())).
			Msg("event loop: panic serving a connection; it is closed")
		c, _ := h.(*cconn)
		if u, ok := h.(*uconn); ok {
			c = u.c
			l.closeUp(u)
		}
		if c != nil && c.state != cGone {
			if c.ex != nil {
				c.ex.u = nil
			}
			l.closeClient(c)
		}
	}()
	h.event(l, ev)
}

func (l *loop) accept() {
	if l.stopping {
		return
	}
	for {
		fd, sa, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			switch {
			case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE), errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ENOMEM):
				// Out of descriptors or memory: the pending connection
				// keeps the listener readable, so waiting on it would
				// spin. Stop accepting for a while, as net/http backs
				// off, and try again.
				l.p.Log.Warn().Err(err).Msg("event loop: accept failed; retrying in 100ms")
				_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, l.lfd, nil)
				l.acceptPaused = l.now.Add(100 * time.Millisecond)
			}
			// EAGAIN: none left (or another loop took it); a connection
			// reset before accept passes too.
			return
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &cconn{fd: fd, first: true, last: l.now}
		c.peer, c.remote = sockaddrPeer(sa)
		if err := l.watch(fd, c); err != nil {
			_ = unix.Close(fd)
			continue
		}
		l.clients++
	}
}

func sockaddrPeer(sa unix.Sockaddr) (netip.Addr, string) {
	var ap netip.AddrPort
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		ap = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)) //nolint:gosec // a port fits
	case *unix.SockaddrInet6:
		ap = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)) //nolint:gosec // a port fits
	default:
		return netip.Addr{}, ""
	}
	return ap.Addr().Unmap(), ap.String()
}

func (l *loop) drainInbox() {
	var buf [8]byte
	_, _ = unix.Read(l.efd, buf[:])
	l.mu.Lock()
	msgs := l.inbox
	l.inbox = nil
	l.mu.Unlock()
	for _, m := range msgs {
		switch {
		case m.stop:
			l.stop(m.now)
		case m.dial != nil:
			l.dialed(m.dial, m.dialFD, m.dialErr)
		case m.back != nil:
			l.returned(m.back, m.rest, m.returned)
		}
	}
}

// stop stops accepting; now: closes everything, else only what is idle
// (the rest closes when its exchange ends).
func (l *loop) stop(now bool) {
	l.stopAccepting()
	if now {
		l.closeAll()
		return
	}
	for _, h := range l.fds {
		if c, ok := h.(*cconn); ok && c.state == cIdle && len(c.in) == 0 {
			l.endWhenFlushed(c)
		}
	}
	l.closeIdleUpstreams()
}

// stopAccepting takes the listener out of the loop's set, once.
func (l *loop) stopAccepting() {
	if l.stopping {
		return
	}
	l.stopping = true
	if l.acceptPaused.IsZero() { // else it is out of the set already
		_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, l.lfd, nil)
	}
	l.s.unlisten()
}

func (l *loop) closeAll() {
	l.stopAccepting()
	// Connections lent to H1: their requests end with H1.Close, which
	// closes its duplicates; the loop's own descriptors go now.
	for c := range l.lent {
		c.state = cGone
		_ = unix.Close(c.fd)
		l.clients--
	}
	clear(l.lent)
	l.closed = true
	for _, h := range l.fds {
		switch x := h.(type) {
		case *cconn:
			if x.ex != nil {
				l.abort(x, "proxy shut down")
			}
			l.closeClient(x)
		case *uconn:
			l.closeUp(x)
		}
	}
}

func (l *loop) closeIdleUpstreams() {
	for host, list := range l.pools {
		for _, u := range list {
			l.closeUp(u)
		}
		delete(l.pools, host)
	}
}

// sweep enforces the timeouts, at loopTick's resolution.
func (l *loop) sweep() {
	l.swept = l.now
	if !l.acceptPaused.IsZero() && l.now.After(l.acceptPaused) {
		l.acceptPaused = time.Time{}
		if !l.stopping {
			_ = l.ctl(unix.EPOLL_CTL_ADD, l.lfd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE)
		}
	}
	for _, h := range l.fds {
		switch x := h.(type) {
		case *cconn:
			l.sweepClient(x)
		case *uconn:
			if x.c == nil && l.now.Sub(x.last) > orDur(l.s.Upstream.IdleConnTimeout, transport.DefaultIdleConnTimeout) {
				l.dropIdle(x)
			}
		}
	}
}

func orDur(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

func (l *loop) sweepClient(c *cconn) {
	since := l.now.Sub(c.last)
	if t := l.p.ClientSendTimeout; t > 0 && c.pending() > 0 && c.stalled(l.now, t) && c.state != cUp {
		// The client stopped reading a response the loop has finished.
		if l.p.Observer != nil {
			l.p.Observer.ClientError("send_timeout")
		}
		l.closeClient(c)
		return
	}
	switch c.state {
	case cLinger:
		if since > lingerTime {
			l.closeClient(c)
		}
	case cIdle:
		if c.pending() > 0 {
			return
		}
		if len(c.in) == 0 {
			if !c.first && l.s.IdleTimeout > 0 && since > l.s.IdleTimeout ||
				c.first && l.s.ReadHeaderTimeout > 0 && since > l.s.ReadHeaderTimeout {
				l.closeClient(c)
			}
			return
		}
		if t := l.s.ReadHeaderTimeout; t > 0 && l.now.Sub(c.headStart) > t {
			l.closeClient(c)
		}
	case cBody:
		if t := l.p.ClientBodyTimeout; t > 0 && since > t {
			ex := c.ex
			if ex.refusal != 0 {
				l.refuse(c, ex.refusal, ex.refusalMsg, true)
				return
			}
			ex.errText = "request body timed out"
			ex.hdr().Set("Connection", "close")
			l.refuse(c, http.StatusRequestTimeout, "request body timed out", true)
		}
	case cUp:
		ex := c.ex
		if t := l.p.ClientSendTimeout; t > 0 && c.pending() > 0 && c.stalled(l.now, t) {
			if l.p.Observer != nil {
				l.p.Observer.ClientError("send_timeout")
			}
			if ex.errText == "" {
				ex.errText = errSendTimeout
			}
			l.abort(c, "")
			l.closeClient(c)
			return
		}
		if !ex.headIn && ex.sent && !ex.sentAt.IsZero() &&
			l.now.Sub(ex.sentAt) > orDur(l.s.Upstream.ResponseHeaderTimeout, transport.DefaultResponseHeaderTimeout) {
			l.upstreamFailed(c, "timeout", http.StatusGatewayTimeout, "upstream timed out", errors.New("timeout awaiting response headers"))
		}
	}
}

// Client connections.

type cstate uint8

const (
	cIdle   cstate = iota // reading a request head
	cBody                 // reading a request body of known length
	cUp                   // the exchange runs: upstream and response
	cAway                 // lent to H1 for a request
	cLinger               // answered and half-closed: what the client still sends is read and dropped
	cGone
)

// lingerTime is how long a connection closed with input unread stays
// half-open (h1's and net/http's rstAvoidanceDelay), so that the client
// reads the response before the reset that closing with unread data
// brings.
const lingerTime = 500 * time.Millisecond

type cconn struct {
	fd        int
	state     cstate
	in        []byte
	out       []byte
	outOff    int
	peer      netip.Addr
	remote    string
	defaultID string // the client's default session id, once needed
	first     bool   // no request yet
	eof       bool   // the client sent its last byte
	closeNext bool   // close once the response is out
	lastPost  bool
	readMore  bool // reading stopped while ahead; read when idle again
	busy      bool // process is running for it
	// flushFirst: a request to hand on waits for the output before it.
	flushFirst bool
	last       time.Time
	headStart  time.Time
	buf        []byte    // the backing array of in, kept for the next request
	blocked    time.Time // since when a write has waited for the client (zero: none waits)
	outArmed   bool      // EPOLLOUT is asked for
	ex         *lexchange
}

func (c *cconn) pending() int { return len(c.out) - c.outOff }

// stalled reports whether the client has taken nothing for longer than
// t while output waits for it (nginx's send_timeout: between two
// successive writes).
func (c *cconn) stalled(now time.Time, t time.Duration) bool {
	return !c.blocked.IsZero() && now.Sub(c.blocked) > t
}

func (c *cconn) event(l *loop, ev uint32) {
	if c.state == cGone || c.state == cAway {
		return
	}
	if c.state == cLinger {
		l.readClient(c, true)
		return
	}
	if ev&unix.EPOLLOUT != 0 && c.pending() > 0 {
		l.flush(c)
		if c.state == cGone {
			return
		}
	}
	if ev&(unix.EPOLLIN|evEnd) != 0 {
		l.readClient(c, ev&evEnd != 0)
	}
}

// readClient reads what the client sent until the socket is drained (or
// the client is too far ahead), then acts on it. A read shorter than
// the buffer is taken to have drained it (what arrives later brings a
// new edge) unless toEnd: the peer closed, and reads go on to see it.
func (l *loop) readClient(c *cconn, toEnd bool) {
	if c.state == cLinger {
		for {
			switch _, got, _ := l.readSome(c.fd); got {
			case readData:
				continue
			case readEOF, readFailed:
				l.closeClient(c)
			}
			return
		}
	}
	if l.fill(c, toEnd) {
		l.process(c)
	}
}

// fill reads what the client sent into c.in (see readClient); false
// when the connection failed and is closed.
func (l *loop) fill(c *cconn, toEnd bool) bool {
	for !c.eof {
		if len(c.in) >= loopInMax {
			// Enough for any head and body the loop serves (both fit in
			// it): the rest waits in the socket until this is used.
			c.readMore = true
			break
		}
		n, got, _ := l.readSome(c.fd)
		if got == readAgain {
			break
		}
		if got == readFailed {
			// A reset: the client is gone.
			if c.ex != nil {
				l.abort(c, "client went away")
			}
			l.closeClient(c)
			return false
		}
		if got == readEOF {
			c.eof = true
			break
		}
		if len(c.in) == 0 {
			if c.state == cIdle {
				c.headStart = l.now
			}
			c.in = reuse(&c.buf)
		}
		c.in = append(c.in, l.rbuf[:n]...)
		c.last = l.now
		if n < len(l.rbuf) && !toEnd {
			break
		}
	}
	return true
}

// more reads on when process needs more input and reading stopped while
// the client was ahead (no edge comes for what is already there);
// false: wait for the next edge (or the connection is gone).
func (l *loop) more(c *cconn) bool {
	if !c.readMore {
		return false
	}
	c.readMore = false
	return l.fill(c, true) && c.state != cGone
}

// What a read of a non-blocking socket found.
const (
	readData   = iota // n > 0 bytes in l.rbuf
	readAgain         // nothing now (EAGAIN)
	readEOF           // the peer closed its side
	readFailed        // an error (a reset)
)

// readSome reads once from fd into l.rbuf (again after EINTR).
func (l *loop) readSome(fd int) (int, int, error) {
	for {
		n, err := unix.Read(fd, l.rbuf)
		switch {
		case n > 0:
			return n, readData, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return 0, readAgain, nil
		case err != nil:
			return 0, readFailed, err
		}
		return 0, readEOF, nil
	}
}

// process acts on what the client sent, in its current state.
func (l *loop) process(c *cconn) {
	if c.busy {
		// Called again from within (a response that completed at once):
		// the outer call goes on with the next request.
		return
	}
	c.busy = true
	defer func() { c.busy = false }()
	for c.state == cIdle || c.state == cBody {
		if c.flushFirst {
			return // flush takes it from here
		}
		if c.state == cIdle && (c.closeNext || len(c.in) == 0 && (c.eof || l.stopping)) {
			// No further request: the connection ends once the last
			// response is out.
			l.endWhenFlushed(c)
			return
		}
		if c.state == cBody {
			if !l.bodyArrived(c) && !l.more(c) {
				return
			}
			continue
		}
		if c.lastPost {
			// A stray CRLF after a POST is tolerated (RFC 9112 2.2).
			i := 0
			for i < len(c.in) && i < 4 && (c.in[i] == '\r' || c.in[i] == '\n') {
				i++
			}
			if i == len(c.in) && i < 4 && !c.eof {
				if l.more(c) {
					continue
				}
				return
			}
			c.in = c.in[i:]
			c.lastPost = false
		}
		if len(c.in) == 0 {
			if l.more(c) {
				continue
			}
			return
		}
		end := h1.HeadEnd(c.in)
		if end < 0 {
			if !h1.PlausibleHead(c.in) || len(c.in) >= h1.ReadBufSize {
				l.handOff(c)
				return
			}
			if c.eof {
				// Half a head, then nothing: as h1, no answer.
				l.closeClient(c)
				return
			}
			if l.more(c) {
				continue
			}
			return
		}
		l.request(c, end)
	}
}

// request parses the head at the start of c.in (end bytes long) and
// serves it, or lends the connection to H1 for it.
func (l *loop) request(c *cconn, end int) {
	head := c.in[:end]
	if m := l.s.MaxHeaderBytes; m > 0 && end > m || end > h1.ReadBufSize {
		l.handOff(c)
		return
	}
	l.hr.Reset(head)
	l.br.Reset(&l.hr)
	r, err := http.ReadRequest(l.br)
	l.br.Reset(nil)
	if err != nil || !h1.Servable(r, head) {
		l.handOff(c)
		return
	}
	r.RemoteAddr = c.remote
	if c.defaultID == "" {
		c.defaultID = defaultSessionID(c.peer)
	}
	up, sessionID, ok := l.p.loopAdmit(r, c.defaultID)
	if !ok {
		l.handOff(c)
		return
	}
	// The body is taken from c.in, never read through r (whose reader was
	// the head's).
	r.Body = http.NoBody
	l.s.st.served.Add(1)
	c.first = false
	c.lastPost = r.Method == http.MethodPost
	ex := l.newExchange()
	ex.r, ex.up, ex.start, ex.session, ex.bodyLen = r, up, l.now, sessionID, max(r.ContentLength, 0)
	c.ex = ex
	c.in = c.in[end:]
	if r.Close {
		c.closeNext = true
	}
	// The limits are the last decision; past them the loop answers.
	if p := l.p; p.Limiter != nil {
		d := p.Limiter.Allow(p.keys(r, c.peer, sessionID))
		d.SetHeaders(ex.hdr())
		if !d.Allowed {
			if p.Observer != nil {
				p.Observer.RateLimited(d.Tier)
			}
			c.state = cBody // the refusal waits for the body as the upstream would
			ex.refusal = http.StatusTooManyRequests
			ex.refusalMsg = "rate limit exceeded (" + string(d.Tier) + ")"
			return
		}
	}
	if l.p.Capture != nil {
		ex.hdr()
		lim := l.p.captureLimit()
		ex.x = &exchange{start: ex.start, session: sessionID}
		ex.x.req.limit, ex.x.resp.limit = lim, lim
	}
	c.state = cBody
}

// bodyArrived moves to the exchange once the request body is all here.
func (l *loop) bodyArrived(c *cconn) bool {
	ex := c.ex
	if int64(len(c.in)) < ex.bodyLen {
		if c.eof {
			// The body broke off: nothing goes upstream, and the client
			// gets the fast path's answer; the item keeps what came.
			if ex.x != nil {
				ex.x.req.write(c.in)
			}
			c.in = c.in[:0]
			if ex.refusal != 0 {
				l.refuse(c, ex.refusal, ex.refusalMsg, true)
				return true
			}
			ex.errText = "request body cut short"
			ex.hdr().Set("Connection", "close")
			l.refuse(c, http.StatusBadRequest, "request body cut short", true)
			return true
		}
		return false
	}
	body := c.in[:ex.bodyLen]
	c.in = c.in[ex.bodyLen:]
	if ex.refusal != 0 {
		l.refuse(c, ex.refusal, ex.refusalMsg, false)
		return true
	}
	if ex.x != nil {
		if len(body) > 0 {
			ex.x.req.data = make([]byte, 0, len(body))
		}
		ex.x.req.write(body)
	}
	// The request as the upstream gets it: h1 and the fast path's rules.
	l.wbuf.b = l.wbuf.b[:0]
	_ = l.p.writeHead(l.bw, ex.r, ex.up, c.peer)
	_ = l.bw.Flush()
	ex.wire = append(append(ex.wire[:0], l.wbuf.b...), body...)
	ex.replayable = replayableMethod(ex.r)
	c.state = cUp
	l.connectUp(c)
	return true
}

// flush writes what is pending to the client, as far as it takes it.
func (l *loop) flush(c *cconn) {
	for c.pending() > 0 {
		n, err := unix.Write(c.fd, c.out[c.outOff:])
		if n > 0 {
			c.outOff += n
			c.blocked = time.Time{}
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			if c.blocked.IsZero() {
				c.blocked = l.now
			}
			l.armWrite(c.fd, &c.outArmed, true)
			return
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		// The client is gone.
		if c.ex != nil {
			l.abort(c, "client went away")
		}
		l.closeClient(c)
		return
	}
	c.out, c.outOff = c.out[:0], 0
	l.armWrite(c.fd, &c.outArmed, false)
	if cap(c.out) > loopOutHigh {
		c.out = nil
	}
	if c.state == cUp && c.ex != nil && c.ex.u != nil && c.ex.u.paused {
		u := c.ex.u
		u.paused = false
		l.readUp(u, true)
		return
	}
	if c.state == cIdle && c.closeNext && c.ex == nil {
		l.endClient(c)
		return
	}
	if c.flushFirst && c.state == cIdle {
		c.flushFirst = false
		l.process(c)
	}
}

// endWhenFlushed ends the connection once its output is out.
func (l *loop) endWhenFlushed(c *cconn) {
	c.closeNext = true
	if c.pending() == 0 {
		l.endClient(c)
	}
}

// endClient closes a connection whose responses are all out: at once
// when the client has finished sending, else after lingering.
func (l *loop) endClient(c *cconn) {
	if c.eof || c.state == cLinger {
		l.closeClient(c)
		return
	}
	if err := unix.Shutdown(c.fd, unix.SHUT_WR); err != nil {
		l.closeClient(c)
		return
	}
	c.state, c.last, c.in = cLinger, l.now, nil
	l.readClient(c, true)
}

func (l *loop) closeClient(c *cconn) {
	if c.state == cGone {
		return
	}
	if c.ex != nil {
		l.abort(c, "")
	}
	c.state = cGone
	l.unwatch(c.fd)
	_ = unix.Close(c.fd)
	c.in, c.out = nil, nil
	l.clients--
}

// handOff lends c to H1 for the request at the start of c.in: its
// socket leaves the epoll set, a duplicate of it goes to a goroutine
// that runs H1.ServeOne, and the loop takes it back when that is done.
func (l *loop) handOff(c *cconn) {
	if c.pending() > 0 {
		// A response the loop wrote is still going out: h1 must not
		// write before its end. The request waits (process stops) and
		// is taken again once the output is out.
		c.flushFirst = true
		return
	}
	c.state = cAway
	l.unwatch(c.fd)
	nc, err := dupConn(c.fd)
	if err != nil {
		c.state = cIdle
		l.closeClient(c)
		return
	}
	prefix := c.in
	c.in, c.buf = nil, nil // the goroutine reads prefix: the loop leaves its array alone
	l.lent[c] = struct{}{}
	l.s.st.handed.Add(1)
	go func() {
		rest, back := l.s.H1.ServeOne(nc, prefix, l.addr)
		if back {
			_ = nc.Close() // the duplicate; the loop's descriptor keeps the connection
		}
		l.post(loopMsg{back: c, rest: rest, returned: back})
	}()
}

// dupConn makes a net.Conn of a duplicate of fd.
func dupConn(fd int) (net.Conn, error) {
	nfd, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(nfd), "") //nolint:gosec // a descriptor is not negative
	defer func() { _ = f.Close() }()
	return net.FileConn(f)
}

// returned takes c back from H1.
func (l *loop) returned(c *cconn, rest []byte, back bool) {
	if c.state == cGone {
		return // closed by Close while lent
	}
	delete(l.lent, c)
	if !back || l.stopping && len(rest) == 0 {
		// H1 closed it, or handed it to net/http, which owns a duplicate
		// now: the loop's descriptor goes.
		c.state = cGone
		_ = unix.Close(c.fd)
		l.clients--
		return
	}
	c.state, c.in, c.first, c.eof, c.last = cIdle, rest, false, false, l.now
	c.headStart = l.now
	if err := l.watch(c.fd, c); err != nil {
		c.state = cGone
		_ = unix.Close(c.fd)
		l.clients--
		return
	}
	// Registration reports a socket already readable; process what came
	// back with it now.
	l.process(c)
}

// The exchange.

type lexchange struct {
	r          *http.Request
	up         *upstream
	start      time.Time
	session    string
	header     http.Header // the response header the client gets
	bodyLen    int64
	refusal    int
	refusalMsg string
	wire       []byte // the request as sent, kept for a retry
	replayable bool
	u          *uconn
	sent       bool
	sentAt     time.Time
	retried    bool
	resp       *http.Response // nil when the head was a simpleHead
	headIn     bool           // the response head is here
	upClose    bool           // the upstream closes after this response
	status     int
	headOut    bool
	bodyless   bool
	chunkedOut bool
	framing    framing
	remaining  int64
	chunk      chunkReader
	x          *exchange
	errText    string
	done       bool
}

// newExchange returns a cleared exchange, reusing a finished one (and
// its request buffer).
func (l *loop) newExchange() *lexchange {
	n := len(l.spare)
	if n == 0 {
		return new(lexchange)
	}
	ex := l.spare[n-1]
	l.spare = l.spare[:n-1]
	return ex
}

// recycle makes the exchanges retired while an event was handled free
// for reuse. Nothing outside the loop's stack keeps them: a traffic
// item copies what it needs (the request, the header map, the bodies).
func (l *loop) recycle() {
	for _, ex := range l.retired {
		if len(l.spare) >= 1024 {
			break
		}
		wire := ex.wire
		if cap(wire) > 64<<10 {
			wire = nil
		}
		*ex = lexchange{wire: wire[:0]}
		l.spare = append(l.spare, ex)
	}
	clear(l.retired)
	l.retired = l.retired[:0]
}

// hdr returns the exchange's response header map, made on first use
// (most exchanges without capture or limits need none).
func (ex *lexchange) hdr() http.Header {
	if ex.header == nil {
		ex.header = make(http.Header, 8)
	}
	return ex.header
}

type framing uint8

const (
	frameNone framing = iota
	frameLength
	frameChunked
	frameClose
)

// connectUp gives the exchange an upstream connection: an idle one of
// this loop, or a new one dialled off the loop.
func (l *loop) connectUp(c *cconn) {
	ex := c.ex
	host := ex.up.host
	for list := l.pools[host]; len(list) > 0; list = l.pools[host] {
		u := list[len(list)-1]
		l.pools[host] = list[:len(list)-1]
		if !ex.replayable && !alive(u.fd) {
			// Not to be sent twice: checked first, as transport.Sync
			// does, for a close that is on its way.
			l.closeUp(u)
			continue
		}
		u.c, u.reused = c, true
		ex.u = u
		l.sendUp(c)
		return
	}
	u := &uconn{host: host, c: c, fd: -1}
	ex.u = u
	timeout := orDur(l.s.Upstream.DialTimeout, transport.DefaultDialTimeout)
	go func() {
		d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
		nc, err := d.Dial("tcp", host)
		fd := -1
		if err == nil {
			fd, err = detach(nc)
		}
		l.post(loopMsg{dial: u, dialFD: fd, dialErr: err})
	}()
}

// alive reports whether an idle upstream connection has neither closed
// nor sent anything.
func alive(fd int) bool {
	var b [1]byte
	_, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return errors.Is(err, unix.EAGAIN)
}

// detach returns a non-blocking duplicate of nc's descriptor and closes nc.
func detach(nc net.Conn) (int, error) {
	defer func() { _ = nc.Close() }()
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.Dup(int(s)) //nolint:gosec // a descriptor fits in int
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	return fd, nil
}

// dialed is a dial's outcome, back on the loop.
func (l *loop) dialed(u *uconn, fd int, err error) {
	c := u.c
	if c == nil || c.state != cUp || c.ex == nil || c.ex.u != u {
		// The exchange is over (the client left): keep the connection
		// for the next one.
		if err == nil {
			u.fd, u.c = fd, nil
			if l.stopping || l.watch(fd, u) != nil {
				_ = unix.Close(fd)
				return
			}
			u.last = l.now
			l.pools[u.host] = append(l.pools[u.host], u)
		}
		return
	}
	if err != nil {
		c.ex.u = nil
		kind, status, msg := classify(err)
		l.upstreamFailed(c, kind, status, msg, err)
		return
	}
	u.fd = fd
	if err := l.watch(fd, u); err != nil {
		_ = unix.Close(fd)
		c.ex.u = nil
		l.upstreamFailed(c, "other", http.StatusBadGateway, "bad gateway", err)
		return
	}
	l.sendUp(c)
}

// sendUp writes the request to the exchange's upstream connection.
func (l *loop) sendUp(c *cconn) {
	ex := c.ex
	u := ex.u
	u.out = ex.wire
	ex.sent = false
	l.writeUp(u)
}

// Upstream connections.

type uconn struct {
	fd       int
	host     string
	c        *cconn // the client whose exchange uses it; nil: idle
	in       []byte
	buf      []byte // the backing array of in, kept for the next response
	out      []byte
	reused   bool
	paused   bool // the client is behind: not read until it catches up
	outArmed bool // EPOLLOUT is asked for
	eof      bool
	last     time.Time
}

func (u *uconn) event(l *loop, ev uint32) {
	if u.c == nil {
		// Idle: anything from it (its close, or bytes no request asked
		// for) ends it.
		if ev&(unix.EPOLLIN|evEnd) != 0 {
			l.dropIdle(u)
		}
		return
	}
	if ev&unix.EPOLLOUT != 0 && len(u.out) > 0 {
		l.writeUp(u)
		if u.c == nil {
			return
		}
	}
	if ev&(unix.EPOLLIN|evEnd) != 0 && !u.paused {
		l.readUp(u, ev&evEnd != 0)
	}
}

func (l *loop) writeUp(u *uconn) {
	c := u.c
	for len(u.out) > 0 {
		n, err := unix.Write(u.fd, u.out)
		if n > 0 {
			u.out = u.out[n:]
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			l.armWrite(u.fd, &u.outArmed, true)
			return
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		l.upBroke(u, fmt.Errorf("write request: %w", err))
		return
	}
	l.armWrite(u.fd, &u.outArmed, false)
	if !c.ex.sent {
		// The response's arrival is an event of its own.
		c.ex.sent, c.ex.sentAt = true, l.now
	}
}

// readUp reads the upstream's response as far as the client keeps up;
// short reads and toEnd as in readClient.
func (l *loop) readUp(u *uconn, toEnd bool) {
	for u.c != nil && !u.paused && !u.eof {
		n, got, err := l.readSome(u.fd)
		switch got {
		case readAgain:
			return
		case readFailed:
			l.upBroke(u, err)
			return
		case readEOF:
			u.eof = true
			l.upEOF(u)
			continue
		}
		if len(u.in) == 0 {
			u.in = reuse(&u.buf)
		}
		u.in = append(u.in, l.rbuf[:n]...)
		l.response(u)
		if n < len(l.rbuf) && !toEnd {
			return
		}
	}
}

// upBroke handles a failed read or write on an upstream connection in use.
func (l *loop) upBroke(u *uconn, err error) {
	c := u.c
	ex := c.ex
	l.closeUp(u)
	ex.u = nil
	if !ex.headIn {
		l.beforeResponse(c, u, err)
		return
	}
	l.bodyBroke(c)
}

// upEOF: the upstream closed its side.
func (l *loop) upEOF(u *uconn) {
	c := u.c
	ex := c.ex
	if !ex.headIn {
		l.closeUp(u)
		ex.u = nil
		l.beforeResponse(c, u, errors.New("upstream closed the connection before the response"))
		return
	}
	if ex.framing == frameClose {
		l.closeUp(u)
		ex.u = nil
		l.bodyDone(c, false)
		return
	}
	l.upBroke(u, errors.New("unexpected EOF"))
}

// beforeResponse: the connection failed before any response came. A
// reused connection the upstream had closed is retried once on a new
// one for a request that may be sent twice, as transport.Sync does.
func (l *loop) beforeResponse(c *cconn, u *uconn, err error) {
	ex := c.ex
	if u.reused && ex.replayable && !ex.retried && len(u.in) == 0 {
		ex.retried = true
		l.connectUp(c)
		return
	}
	l.upstreamFailed(c, "other", http.StatusBadGateway, "bad gateway", err)
}

// response parses and relays what the upstream sent.
func (l *loop) response(u *uconn) {
	c := u.c
	ex := c.ex
	for !ex.headIn {
		end := h1.HeadEnd(u.in)
		if end < 0 {
			if len(u.in) > loopRespHeadMax {
				l.closeUp(u)
				ex.u = nil
				l.upstreamFailed(c, "other", http.StatusBadGateway, "bad gateway", errors.New("response head too large"))
			}
			return
		}
		l.hr.Reset(u.in[:end])
		l.br.Reset(&l.hr)
		if ex.x == nil && len(ex.header) == 0 && l.simpleHead(c, u.in[:end]) {
			u.in = u.in[end:]
			if ex.done {
				return
			}
			break
		}
		// Only the head is parsed here; the loop relays the body
		// itself, so the Response's Body (over the head's bytes) is
		// never read.
		resp, err := http.ReadResponse(l.br, ex.r) //nolint:bodyclose // see above
		l.br.Reset(nil)
		if err == nil && resp.StatusCode < 100 {
			err = fmt.Errorf("malformed HTTP status code %03d", resp.StatusCode)
		}
		if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
			err = errors.New("unexpected 101 Switching Protocols")
		}
		if err != nil {
			l.closeUp(u)
			ex.u = nil
			l.upstreamFailed(c, "other", http.StatusBadGateway, "bad gateway", err)
			return
		}
		u.in = u.in[end:]
		if resp.StatusCode < 200 {
			l.interim(c, resp)
			continue
		}
		l.responseHead(c, resp)
		if ex.done {
			return
		}
	}
	l.relay(c, u)
}

// interim passes a 1xx response on (RFC 9110 15.2), as the fast path.
func (l *loop) interim(c *cconn, resp *http.Response) {
	b := append(c.out, h1.StatusLine(resp.StatusCode)...)
	for k, vv := range c.ex.header {
		b = h1.AppendField(b, k, vv)
	}
	for k, vv := range resp.Header {
		b = h1.AppendField(b, k, vv)
	}
	c.out = append(b, "\r\n"...)
	l.flush(c)
}

// responseHead writes the response head the client gets: the
// upstream's fields less the hop-by-hop ones (ReverseProxy's rules, as
// serveFast), h1's framing.
func (l *loop) responseHead(c *cconn, resp *http.Response) {
	ex := c.ex
	ex.resp, ex.status, ex.headIn, ex.upClose = resp, resp.StatusCode, true, resp.Close
	conn := connectionTokens(resp.Header)
	var trailer []string
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		trailer = []string{strings.Join(names, ", ")}
	}
	// The header the client gets is the proxy's own fields (the limits')
	// and the upstream's less the hop-by-hop ones, as serveFast builds
	// it. A traffic item keeps that map; without one and without fields
	// of the proxy's, the head is written from the upstream's map as it
	// is filtered, and no map is built.
	h := resp.Header
	direct := ex.x == nil && len(ex.header) == 0
	if !direct {
		h = ex.header
		for k, vs := range resp.Header {
			if skipResponseHeader(k) || conn != nil && contains(conn, k) {
				continue
			}
			h[k] = vs
		}
		if trailer != nil {
			h["Trailer"] = trailer
		}
	}
	switch {
	case resp.Body == http.NoBody:
		ex.framing = frameNone
	case len(resp.TransferEncoding) > 0:
		ex.framing = frameChunked
	case resp.ContentLength >= 0:
		ex.framing, ex.remaining = frameLength, resp.ContentLength
	default:
		ex.framing = frameClose
	}
	ex.bodyless = ex.r.Method == http.MethodHead || !h1.BodyAllowed(ex.status)
	if ex.x != nil {
		ex.x.resp.sizeHint(h["Content-Length"])
	}
	clen := int64(-1)
	if vv := h["Content-Length"]; len(vv) > 0 {
		if v, err := strconv.ParseInt(vv[0], 10, 64); err == nil && v >= 0 {
			clen = v
		}
	}
	b := append(c.out, h1.StatusLine(ex.status)...)
	if _, ok := h["Date"]; !ok {
		b = append(b, h1.DateField()...)
	}
	for k, vv := range h {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Connection":
			continue
		case "Content-Type":
			if ex.status == http.StatusNotModified {
				continue
			}
		}
		if strings.HasPrefix(k, http.TrailerPrefix) ||
			direct && (skipResponseHeader(k) || conn != nil && contains(conn, k)) {
			continue
		}
		b = h1.AppendField(b, k, vv)
	}
	if direct && trailer != nil {
		b = h1.AppendField(b, "Trailer", trailer)
	}
	l.endHead(c, b, clen)
}

// endHead ends the client's response head in b (status line and fields
// written) with h1's framing for a declared length clen (-1: none), then
// ends a response without a body or starts sending.
func (l *loop) endHead(c *cconn, b []byte, clen int64) {
	ex := c.ex
	if l.stopping {
		c.closeNext = true // shutting down: the last response
	}
	ex.chunkedOut, b = framingFields(b, ex, clen)
	if c.closeNext {
		b = append(b, "Connection: close\r\n"...)
	}
	c.out = append(b, "\r\n"...)
	ex.headOut = true
	if ex.framing == frameNone {
		l.bodyDone(c, true)
		return
	}
	l.flush(c)
}

// simpleHead writes the client's head from an upstream head in the
// common form (parseSimpleHead) without http.ReadResponse and its header
// map, for an exchange that needs no map: reports false, having done
// nothing, for any other head.
func (l *loop) simpleHead(c *cconn, head []byte) bool {
	fields, sh, ok := parseSimpleHead(l.fields[:0], head)
	l.fields = fields[:0]
	if !ok {
		return false
	}
	ex := c.ex
	ex.status, ex.headIn, ex.upClose = sh.status, true, sh.close
	ex.bodyless = ex.r.Method == http.MethodHead || !h1.BodyAllowed(ex.status)
	switch {
	case ex.bodyless || sh.clen == 0 && !sh.chunked:
		ex.framing = frameNone
	case sh.chunked:
		ex.framing = frameChunked
	case sh.clen > 0:
		ex.framing, ex.remaining = frameLength, sh.clen
	default:
		ex.framing = frameClose
	}
	b := append(c.out, h1.StatusLine(ex.status)...)
	if !sh.hasDate {
		b = append(b, h1.DateField()...)
	}
	b = append(b, fields...)
	l.endHead(c, b, sh.clen)
	return true
}

// framingFields appends h1's framing for a response of declared length
// clen (-1: none): none where the status has no body, the length when
// declared, nothing for HEAD, else chunked (reported true).
func framingFields(b []byte, ex *lexchange, clen int64) (bool, []byte) {
	switch {
	case !h1.BodyAllowed(ex.status):
	case clen >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, clen, 10)
		b = append(b, "\r\n"...)
	case ex.r.Method == http.MethodHead:
	default:
		return true, append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	return false, b
}

// relay passes the body bytes in u.in on to the client.
func (l *loop) relay(c *cconn, u *uconn) {
	ex := c.ex
	if ex == nil || ex.done || ex.u != u {
		return
	}
	for len(u.in) > 0 && ex.u == u && !ex.done {
		var data []byte
		switch ex.framing {
		case frameLength:
			n := min(int64(len(u.in)), ex.remaining)
			data, u.in = u.in[:n], u.in[n:]
			ex.remaining -= n
		case frameClose:
			data, u.in = u.in, u.in[:0]
		case frameChunked:
			var used int
			var err error
			data, used, err = ex.chunk.next(u.in)
			u.in = u.in[used:]
			if err != nil {
				l.closeUp(u)
				ex.u = nil
				l.bodyBroke(c)
				return
			}
			if used == 0 && len(data) == 0 && !ex.chunk.done {
				// An incomplete size line or trailer: wait for more.
				goto out
			}
		}
		l.bodyData(c, data)
		if c.state == cGone {
			return
		}
		if ex.framing == frameLength && ex.remaining == 0 || ex.framing == frameChunked && ex.chunk.done {
			l.bodyDone(c, true)
			return
		}
	}
out:
	if ex.framing == frameLength && ex.remaining == 0 && !ex.done {
		l.bodyDone(c, true)
		return
	}
	if len(u.in) == 0 && cap(u.in) > loopReadSize {
		u.in = nil
	}
	if c.pending() > loopOutHigh {
		u.paused = true
	}
	l.flush(c)
}

// bodyData sends a piece of the response body to the client.
func (l *loop) bodyData(c *cconn, data []byte) {
	ex := c.ex
	if len(data) == 0 {
		return
	}
	if ex.x != nil {
		ex.x.resp.write(data)
	}
	if ex.bodyless {
		return
	}
	if ex.chunkedOut {
		c.out = strconv.AppendInt(c.out, int64(len(data)), 16)
		c.out = append(c.out, "\r\n"...)
		c.out = append(c.out, data...)
		c.out = append(c.out, "\r\n"...)
		return
	}
	c.out = append(c.out, data...)
}

// bodyDone ends a complete response; clean: the upstream connection may
// serve another request.
func (l *loop) bodyDone(c *cconn, clean bool) {
	ex := c.ex
	u := ex.u
	if ex.chunkedOut {
		c.out = append(c.out, "0\r\n"...)
		for k, vv := range ex.chunk.trailer {
			c.out = h1.AppendField(c.out, k, vv)
		}
		c.out = append(c.out, "\r\n"...)
	}
	if ex.x != nil {
		l.trailersToHeader(ex)
	}
	if u != nil {
		ex.u = nil
		if clean && !ex.upClose && len(u.in) == 0 && len(u.out) == 0 && !u.eof && !l.stopping &&
			len(l.pools[u.host]) < orInt(l.s.Upstream.MaxIdleConnsPerHost, transport.DefaultMaxIdleConnsPerHost) {
			u.c, u.last, u.paused = nil, l.now, false
			u.in = u.in[:0]
			l.pools[u.host] = append(l.pools[u.host], u)
		} else {
			l.closeUp(u)
		}
	}
	l.finish(c, true)
	l.flush(c)
	if c.state == cGone {
		return
	}
	// The next request may already be here (pipelined), or the
	// connection ends (process decides).
	l.process(c)
	if c.state == cIdle && c.readMore {
		c.readMore = false
		l.readClient(c, true)
	}
}

// trailersToHeader puts the trailers into the response header map the
// traffic item keeps, as serveFast leaves them there: under their names
// when the upstream announced them all, else all under
// http.TrailerPrefix.
func (l *loop) trailersToHeader(ex *lexchange) {
	t := ex.resp.Trailer // the announced names, without values
	if len(t) == 0 && len(ex.chunk.trailer) == 0 {
		return
	}
	merged := make(http.Header, len(t)+len(ex.chunk.trailer))
	for k := range t {
		merged[k] = nil
	}
	maps.Copy(merged, ex.chunk.trailer)
	if len(merged) == len(t) {
		for k, vv := range merged {
			for _, v := range vv {
				ex.header.Add(k, v)
			}
		}
		return
	}
	for k, vv := range merged {
		for _, v := range vv {
			ex.header.Add(http.TrailerPrefix+k, v)
		}
	}
}

func orInt(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// bodyBroke: the upstream broke the body off. As the fast path: counted,
// logged and recorded, and the client's response is cut off (its
// connection closed) rather than ended as if complete.
func (l *loop) bodyBroke(c *cconn) {
	ex := c.ex
	p := l.p
	if p.Observer != nil {
		p.Observer.UpstreamError("body")
	}
	p.Log.Warn().Str("method", ex.r.Method).Str("path", ex.r.URL.Path).Msg("upstream broke the response body")
	if ex.errText == "" {
		ex.errText = "upstream broke the response body"
	}
	l.finish(c, true)
	c.closeNext = true
	l.flush(c)
	if c.state != cGone {
		l.closeClient(c)
	}
}

// upstreamFailed answers an exchange whose upstream failed before its
// response with the fast path's sanitized 502 or 504.
func (l *loop) upstreamFailed(c *cconn, kind string, status int, msg string, err error) {
	ex := c.ex
	if u := ex.u; u != nil {
		l.closeUp(u)
		ex.u = nil
	}
	p := l.p
	ex.errText = msg
	if p.Observer != nil {
		p.Observer.UpstreamError(kind)
	}
	p.Log.Warn().Str("kind", kind).Str("method", ex.r.Method).Str("path", ex.r.URL.Path).Msg("upstream error")
	p.Log.Debug().Err(err).Msg("upstream error detail")
	l.answer(c, status, msg, false)
}

// refuse answers the exchange with one of the proxy's refusals.
func (l *loop) refuse(c *cconn, status int, msg string, closeAfter bool) {
	if l.p.Observer != nil {
		l.p.Observer.Refused(status)
	}
	l.answer(c, status, msg, closeAfter)
}

// answer writes the proxy's own JSON answer (writeError's) and ends the
// exchange.
func (l *loop) answer(c *cconn, status int, msg string, closeAfter bool) {
	ex := c.ex
	h := ex.hdr()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	ex.status = status
	if closeAfter || l.stopping {
		c.closeNext = true
	}
	body := appendErrorBody(make([]byte, 0, 48+len(msg)), status, msg)
	b := append(c.out, h1.StatusLine(status)...)
	b = append(b, h1.DateField()...)
	for k, vv := range h {
		if k == "Connection" || k == "Content-Length" {
			continue // written below
		}
		b = h1.AppendField(b, k, vv)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n"...)
	if c.closeNext {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	c.out = append(b, body...)
	ex.headOut = true
	if ex.x != nil && ex.refusal == 0 {
		ex.x.resp.write(body)
	}
	c.state = cUp
	l.finish(c, ex.refusal == 0)
	l.flush(c)
	if c.state == cGone {
		return
	}
	l.process(c)
}

// abort ends an exchange the loop cannot complete (the client left,
// the proxy is closing).
func (l *loop) abort(c *cconn, why string) {
	ex := c.ex
	if ex == nil {
		return
	}
	if u := ex.u; u != nil {
		ex.u = nil
		if u.fd >= 0 {
			l.closeUp(u)
		} else {
			u.c = nil // a dial in flight: its connection goes to the pool
		}
	}
	if ex.errText == "" && why != "" {
		ex.errText = why
	}
	if ex.errText == "" && !ex.done {
		ex.errText = "exchange aborted before the response was complete"
	}
	l.finish(c, true)
}

// finish counts the exchange and publishes its traffic item, once;
// captured: it passed the limits (refusals are not captured).
func (l *loop) finish(c *cconn, captured bool) {
	ex := c.ex
	if ex == nil || ex.done {
		return
	}
	ex.done = true
	c.ex = nil
	l.retired = append(l.retired, ex)
	c.state = cIdle
	c.headStart, c.last = l.now, l.now
	p := l.p
	status := ex.status
	if status == 0 {
		status = http.StatusOK
	}
	if p.Observer != nil {
		p.Observer.Request(status, time.Since(ex.start))
	}
	if ex.x == nil || !captured {
		return
	}
	x := ex.x
	x.errText = ex.errText
	r := ex.r
	p.Capture.Publish(newItem(p, x, r, status, ex.header, time.Now()))
}

func (l *loop) closeUp(u *uconn) {
	if u.fd < 0 {
		return
	}
	l.unwatch(u.fd)
	_ = unix.Close(u.fd)
	u.fd = -1
	u.c = nil
}

// dropIdle closes an idle pooled connection and takes it out of its pool.
func (l *loop) dropIdle(u *uconn) {
	list := l.pools[u.host]
	for i, v := range list {
		if v == u {
			l.pools[u.host] = append(list[:i], list[i+1:]...)
			break
		}
	}
	l.closeUp(u)
}
