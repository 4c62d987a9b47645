//go:build linux

package forward_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/forward"
	"github.com/proxyctl/proxyctl/internal/metrics"
	"github.com/proxyctl/proxyctl/internal/ratelimit"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
	"github.com/proxyctl/proxyctl/internal/transport"
)

// loopProxy serves a proxy with a session manager (auto mode) in front
// of up on the loop server.
func loopProxy(t *testing.T, up *httptest.Server, configure func(*forward.Proxy)) *proxyServer {
	t.Helper()
	u, _ := url.Parse(up.URL)
	log := zerolog.New(zerolog.NewTestWriter(t))
	p := &forward.Proxy{
		Target:        u,
		Sessions:      session.NewManager(memstore.New(), session.Config{Mode: session.ModeAuto, CacheTTL: time.Minute}, log),
		SessionErrors: sessionErrors(),
		Transport:     transport.NewSync(transport.Options{ResponseHeaderTimeout: 2 * time.Second}),
		Log:           log,
	}
	if configure != nil {
		configure(p)
	}
	return serveLoop(t, p)
}

// roundTrip writes req on c and reads the response whole.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, req string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// dialProxy connects to srv, with a 10 s deadline, until the test ends.
func dialProxy(t *testing.T, srv *proxyServer) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// A keep-alive connection: its first request needs the session store (a
// new client's default session) and goes to h1; the connection comes
// back, and the loop serves the rest itself.
func TestLoopServesAfterHandOff(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "path=%s", r.URL.Path)
	}))
	defer up.Close()
	srv := loopProxy(t, up, nil)
	c := dialProxy(t, srv)
	br := bufio.NewReader(c)
	for i := range 5 {
		resp, body := roundTrip(t, c, br, fmt.Sprintf("GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n", i))
		if resp.StatusCode != http.StatusOK || body != fmt.Sprintf("path=/r%d", i) || resp.Close {
			t.Fatalf("request %d: %d %q close=%v", i, resp.StatusCode, body, resp.Close)
		}
	}
	st := srv.Loop.Stats()
	if st.Handed != 1 || st.Served != 4 {
		t.Fatalf("stats %+v, want 1 handed (the session's first lookup) and 4 served", st)
	}
}

// Requests sent together are answered in order, each once.
func TestLoopPipelined(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	}))
	defer up.Close()
	srv := loopProxy(t, up, func(p *forward.Proxy) { p.Sessions = nil })
	c := dialProxy(t, srv)
	var all strings.Builder
	for i := range 20 {
		if i%3 == 0 {
			fmt.Fprintf(&all, "POST /p%d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nb%02d", i, i)
		} else {
			fmt.Fprintf(&all, "GET /g%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		}
	}
	if _, err := io.WriteString(c, all.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i := range 20 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		want := fmt.Sprintf("GET /g%d ", i)
		if i%3 == 0 {
			want = fmt.Sprintf("POST /p%d b%02d", i, i)
		}
		if string(b) != want {
			t.Fatalf("response %d: %q, want %q", i, b, want)
		}
	}
	if st := srv.Loop.Stats(); st.Served != 20 || st.Handed != 0 {
		t.Fatalf("stats %+v, want all 20 served by the loop", st)
	}
}

// An upstream that closes its idle keep-alive connections: a request
// that finds its pooled connection closed is sent on a new one (a GET
// retried, a POST checked before it is sent), never answered 502.
func TestLoopUpstreamClosesIdleConns(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Method)
	}))
	up.Config.IdleTimeout = 20 * time.Millisecond
	up.Start()
	defer up.Close()
	srv := loopProxy(t, up, func(p *forward.Proxy) { p.Sessions = nil })
	for i := range 6 {
		method := http.MethodGet
		if i%2 == 1 {
			method = http.MethodPost
		}
		req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+"/", strings.NewReader(""))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != method {
			t.Fatalf("%s %d: %d %q", method, i, resp.StatusCode, b)
		}
		time.Sleep(60 * time.Millisecond) // the upstream closes the idle connection
	}
}

// Shutdown lets an exchange in flight finish, tells its client the
// connection closes, and then returns.
func TestLoopShutdownDrains(t *testing.T) {
	started := make(chan struct{})
	var once atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if once.CompareAndSwap(false, true) {
			close(started)
		}
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "late")
	}))
	defer up.Close()
	srv := loopProxy(t, up, func(p *forward.Proxy) { p.Sessions = nil })
	type result struct {
		resp *http.Response
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/slow") //nolint:noctx // bounded by the upstream
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		res <- result{resp: resp, body: string(b), err: err}
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.stop(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	r := <-res
	if r.err != nil || r.resp.StatusCode != http.StatusOK || r.body != "late" || !r.resp.Close {
		t.Fatalf("in-flight request: %+v", r)
	}
	if _, err := net.DialTimeout("tcp", srv.Listener.Addr().String(), time.Second); err == nil {
		t.Fatal("the listener still accepts after shutdown")
	}
}

// What the loop does not serve reaches h1 or net/http, and a connection
// that may go on comes back: a body larger than the fast path sends (h1
// and ReverseProxy), then a GET the loop serves; an HTTP/1.0 request
// (net/http, which then owns the connection).
func TestLoopHandsOnWhatItDoesNotServe(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Method, r.Proto, len(body))
	}))
	defer up.Close()
	srv := loopProxy(t, up, func(p *forward.Proxy) { p.Sessions = nil })
	dial := func() (net.Conn, *bufio.Reader) {
		c := dialProxy(t, srv)
		return c, bufio.NewReader(c)
	}
	c, br := dial()
	big := strings.Repeat("b", transport.SyncBodyLimit+1)
	resp, body := roundTrip(t, c, br, fmt.Sprintf("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(big), big))
	if want := fmt.Sprintf("POST HTTP/1.1 %d", len(big)); body != want || resp.Close {
		t.Fatalf("large upload: %q close=%v, want %q", body, resp.Close, want)
	}
	if _, body = roundTrip(t, c, br, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n"); body != "GET HTTP/1.1 0" {
		t.Fatalf("after: %q", body)
	}
	if st := srv.Loop.Stats(); st.Handed != 1 || st.Served != 1 {
		t.Fatalf("stats %+v, want the upload handed and the GET served", st)
	}
	c, br = dial()
	resp, body = roundTrip(t, c, br, "GET /old HTTP/1.0\r\nHost: x\r\n\r\n")
	if resp.StatusCode != http.StatusOK || body != "GET HTTP/1.1 0" {
		t.Fatalf("HTTP/1.0: %d %q", resp.StatusCode, body)
	}
}

// Two loops share the listener: many clients at once are all answered,
// each on its own connection, by one loop or the other.
func TestLoopsShareTheListener(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	srv := serveLoops(t, &forward.Proxy{Target: u, Transport: transport.NewSync(transport.Options{}),
		Log: zerolog.New(zerolog.NewTestWriter(t))}, 2)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for j := range 50 {
				path := fmt.Sprintf("/c%d/r%d", i, j)
				if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
					errs <- err
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				if string(b) != path {
					errs <- fmt.Errorf("%s: got %q", path, b)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := srv.Loop.Stats(); st.Served != 16*50 {
		t.Fatalf("stats %+v, want %d served", st, 16*50)
	}
}

// Close does not wait for a request lent to h1 (a large upload to a slow
// upstream): it returns, and the client's connection ends.
func TestLoopCloseWithLentRequest(t *testing.T) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		close(arrived)
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	}))
	defer up.Close()
	defer close(release)
	srv := loopProxy(t, up, func(p *forward.Proxy) { p.Sessions = nil })
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := strings.Repeat("b", transport.SyncBodyLimit+1)
	if _, err := fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(big), big); err != nil {
		t.Fatal(err)
	}
	<-arrived
	done := make(chan error, 1)
	go func() { done <- srv.close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the lent request")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the client's connection did not end: %v", err)
	}
}

// BenchmarkLoopServer measures one proxied keep-alive GET of a 1 KB body
// through the loop server, end to end over loopback: a client and an
// upstream that allocate nothing (they scan heads by hand), so allocs/op
// are the proxy's own. "direct" is the same client against the upstream
// alone.
func BenchmarkLoopServer(b *testing.B) {
	up := rawFixedUpstream(b)
	u, _ := url.Parse("http://" + up)
	for _, bc := range []struct {
		name    string
		limits  []string
		capture bool
		direct  bool
	}{
		{name: "direct", direct: true},
		{name: "loop"},
		{name: "loop+ratelimit", limits: []string{"ip=1000000/s", "global=1000000/s"}},
		{name: "loop+capture", capture: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			addr := up
			if !bc.direct {
				mgr := session.NewManager(memstore.New(), session.Config{CacheTTL: time.Minute}, zerolog.Nop())
				// h1's client (the first request is h1's): its idle
				// connection must not keep the upstream waiting.
				sc := transport.NewSync(transport.Options{})
				b.Cleanup(sc.CloseIdleConnections)
				p := &forward.Proxy{
					Target: u, Sessions: mgr, SessionErrors: sessionErrors(),
					Observer: metrics.New(), Transport: sc, Log: zerolog.Nop(),
					ClientSendTimeout: 60 * time.Second,
				}
				if bc.limits != nil {
					specs, _ := ratelimit.ParseSpecs(bc.limits)
					p.Limiter = ratelimit.New(specs, ratelimit.Options{})
				}
				if bc.capture {
					p.Capture = discardPublisher{}
				}
				addr = serveLoop(b, p).Listener.Addr().String()
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReaderSize(c, 16<<10)
			req := []byte("GET /1k.txt HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
			roundTrip := func() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				n, err := readHead(br)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := br.Discard(n); err != nil {
					b.Fatal(err)
				}
			}
			roundTrip() // the session's first request, which h1 serves
			b.ReportAllocs()
			b.SetBytes(1024)
			for b.Loop() {
				roundTrip()
			}
		})
	}
}

// readHead reads a response head whose status is 200 and returns its
// Content-Length, without allocating.
func readHead(br *bufio.Reader) (int, error) {
	n, status := -1, false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if !status {
			if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
				return 0, fmt.Errorf("status line %q", line)
			}
			status = true
			continue
		}
		if len(line) <= 2 {
			if n < 0 {
				return 0, errors.New("no Content-Length")
			}
			return n, nil
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n = 0
			for _, d := range bytes.TrimSpace(v) {
				n = n*10 + int(d-'0')
			}
		}
	}
}

// rawFixedUpstream answers every request with the same 1 KB response,
// on 127.0.0.1 until the benchmark ends, allocating nothing per request.
func rawFixedUpstream(b *testing.B) string {
	resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n"), bytes.Repeat([]byte("x"), 1024)...)
	return serveRaw(b, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) <= 2 {
					break
				}
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
}

// Requests sent ahead beyond what the loop holds (64 KiB): the loop
// stops reading, and reads on when it needs the rest, though no new
// data (no new edge) comes.
func TestLoopPipelinedBeyondItsBuffer(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d", r.URL.Path, len(body))
	}))
	defer up.Close()
	srv := loopProxy(t, up, func(p *forward.Proxy) { p.Sessions = nil })
	c := dialProxy(t, srv)
	const n, size = 5, 40 << 10
	body := strings.Repeat("p", size)
	var all strings.Builder
	for i := range n {
		fmt.Fprintf(&all, "POST /p%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", i, size, body)
	}
	go func() { _, _ = io.WriteString(c, all.String()) }()
	br := bufio.NewReader(c)
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("/p%d %d", i, size); string(b) != want {
			t.Fatalf("response %d: %q, want %q", i, b, want)
		}
	}
	if st := srv.Loop.Stats(); st.Served != n {
		t.Fatalf("stats %+v, want %d served", st, n)
	}
}

// A request the loop hands to h1 while its own response before it is
// still going out (a slow client, requests sent ahead) waits for that
// output: the client gets both responses whole and in order.
func TestLoopHandOffWaitsForOutput(t *testing.T) {
	// Less than the loop holds back for a slow client (256 KiB), so the
	// exchange ends with most of it still to go out.
	big := strings.Repeat("B", 200<<10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = io.WriteString(w, big)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "upload %d", n)
	}))
	defer up.Close()
	srv := loopProxy(t, up, func(p *forward.Proxy) { p.Sessions = nil })
	// Small socket buffers both ways (the proxy's accepted sockets take
	// the listener's): the sockets take little of /big.
	if rc, err := srv.Listener.(*net.TCPListener).SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 16<<10) //nolint:gosec // a descriptor fits
		})
	}
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) //nolint:gosec // a descriptor fits
		})
	}}
	c, err := d.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	upload := strings.Repeat("u", transport.SyncBodyLimit+1) // h1's
	go func() {
		_, _ = fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\nPOST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s",
			len(upload), upload)
	}()
	time.Sleep(300 * time.Millisecond) // the loop's output for /big fills the socket
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if len(b) != len(big) {
		t.Fatalf("/big: %d bytes, want %d", len(b), len(big))
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if want := fmt.Sprintf("upload %d", len(upload)); string(b) != want {
		t.Fatalf("second response %q, want %q", b, want)
	}
	if st := srv.Loop.Stats(); st.Served != 1 || st.Handed != 1 {
		t.Fatalf("stats %+v, want the GET served and the upload handed", st)
	}
}
