package forward_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/forward"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
	"github.com/proxyctl/proxyctl/internal/testutil"
	"github.com/proxyctl/proxyctl/internal/transport"
)

// TestSlowReader runs the ClientSendTimeout tests on both upstream paths:
// clients that stop reading their response, read it slowly, or wait long
// between events. The proxy's side of each client connection has a small
// send buffer, so that a response of a few MiB fills what the kernel
// buffers and the proxy's writes really wait for the client.
func TestSlowReader(t *testing.T) {
	for _, path := range paths() {
		t.Run(path, func(t *testing.T) {
			for name, fn := range map[string]func(*testing.T){
				"StalledReaderClosed":         testStalledReaderClosed,
				"SteadyReaderGetsAll":         testSteadyReaderGetsAll,
				"IdleEventStreamNotCut":       testIdleEventStreamNotCut,
				"WebSocketNotBounded":         testWebSocketNotBounded,
				"KeepAliveAfterLongResponses": testKeepAliveAfterLongResponses,
			} {
				t.Run(name, fn)
			}
		})
	}
}

// sendProxy is a proxy with capture, an observer and the given send
// timeout in front of a recording upstream that answers with respond (or
// no upstream, when respond is nil: configure sets a Backend). Its
// listener gives each accepted connection a 32 KiB send buffer.
func sendProxy(t *testing.T, timeout time.Duration, respond http.HandlerFunc, configure func(*forward.Proxy)) *hostileFixture {
	t.Helper()
	h := &hostileFixture{obs: &hostileObserver{}, c: make(collector, 16)}
	log := zerolog.New(zerolog.NewTestWriter(t))
	p := &forward.Proxy{
		Sessions:          session.NewManager(memstore.New(), session.Config{Mode: session.ModeAuto, CacheTTL: time.Second}, log),
		SessionErrors:     sessionErrors(),
		Transport:         transportFor(t, transport.Options{ResponseHeaderTimeout: 2 * time.Second}),
		Log:               log,
		ClientSendTimeout: timeout,
		Observer:          h.obs,
	}
	capturing(h.c, 0)(p)
	if respond != nil {
		h.up = testutil.NewUpstream(t, respond)
		p.Target, _ = url.Parse(h.up.URL)
	}
	if configure != nil {
		configure(p)
	}
	srv := serveProxy(t, p, func(ln net.Listener) net.Listener {
		// On the listening socket too, which accepted ones inherit: the
		// loop server accepts on it itself.
		if rc, err := ln.(*net.TCPListener).SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 32<<10) //nolint:gosec // a descriptor fits
			})
		}
		return smallSendBuffers{ln}
	})
	h.fixture = &fixture{proxy: p, srv: srv}
	h.addr = srv.Listener.Addr().String()
	return h
}

type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(32 << 10)
	}
	return c, err
}

// pattern is n bytes that show where a byte was lost or repeated.
func pattern(n int) []byte {
	b := make([]byte, 0, n+16)
	for i := 0; len(b) < n; i++ {
		b = strconv.AppendInt(b, int64(i), 36)
		b = append(b, ',')
	}
	return b[:n]
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("still not true after 5 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A client that asks for a large response and never reads it: once the
// buffers are full, the proxy's write waits ClientSendTimeout and fails;
// the connection is closed (the client, reading at last, gets a cut
// response, not the rest), the upstream exchange is aborted (the
// upstream's write fails), the item records the error, and the observer
// counts a client error, not an upstream one. With a Content-Length and
// without one (flushed as it streams).
func testStalledReaderClosed(t *testing.T) {
	for _, framing := range []string{"content-length", "streamed"} {
		t.Run(framing, func(t *testing.T) {
			const total = 64 << 20 // far more than every buffer between the two ends
			failed := make(chan error, 1)
			h := sendProxy(t, 300*time.Millisecond, func(w http.ResponseWriter, _ *http.Request) {
				if framing == "content-length" {
					w.Header().Set("Content-Length", strconv.Itoa(total))
				}
				failed <- testutil.WriteBig(w, total)
			}, nil)
			c := testutil.DialSmall(t, h.addr)
			_ = c.Send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")

			testutil.WantAborted(t, failed, "send timeout 300ms")
			it := h.c.next(t)
			if it.Status != http.StatusOK || it.Error != "response send timed out" {
				t.Fatalf("item status %d error %q, want 200 and the send timeout", it.Status, it.Error)
			}
			waitFor(t, "the client error is counted", func() bool {
				return slices.Equal(h.obs.clientErrs(), []string{"send_timeout"})
			})
			if up, ref := h.obs.counts(); len(up) != 0 || len(ref) != 0 {
				t.Fatalf("upstream errors %v, refusals %v: want none", up, ref)
			}

			// Reading at last: what was buffered, then the end, well short
			// of the whole response.
			c.WantCut(t, total)
		})
	}
}

// A client that reads steadily, 128 KiB every 100 ms, takes more than the
// 1 s timeout for 2 MiB, with the proxy's writes waiting for it all along:
// it gets the whole response, intact, and nothing is recorded as an error.
// Also when the proxy's own handler writes the body in one piece (replay
// and stubs do): the write is split, each piece under its own deadline.
func testSteadyReaderGetsAll(t *testing.T) {
	const size = 2 << 20
	body := pattern(size)
	whole := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(body)
	}
	for name, h := range map[string]*hostileFixture{
		"upstream": sendProxy(t, time.Second, whole, nil),
		"backend":  sendProxy(t, time.Second, nil, func(p *forward.Proxy) { p.Backend = http.HandlerFunc(whole) }),
	} {
		t.Run(name, func(t *testing.T) {
			c := testutil.DialSmall(t, h.addr)
			_ = c.Send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(&testutil.PacedReader{R: c.Conn, Chunk: 128 << 10, Gap: 100 * time.Millisecond}), nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("read %d of %d bytes (intact: %v): %v", len(got), size, bytes.Equal(got, body[:len(got)]), err)
			}
			if it := h.c.next(t); it.Error != "" || it.Status != http.StatusOK {
				t.Fatalf("item status %d error %q", it.Status, it.Error)
			}
			if ce := h.obs.clientErrs(); len(ce) != 0 {
				t.Fatalf("client errors counted: %v", ce)
			}
		})
	}
}

// An event stream whose upstream is silent for twice the timeout between
// events: every event arrives as it is sent (the proxy still flushes
// event by event), the stream ends cleanly, and the connection, idle for
// longer than the timeout, serves the next request.
func testIdleEventStreamNotCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	next := make(chan struct{})
	h := sendProxy(t, timeout, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/events" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		testutil.ServeEvents(w, r, 3, next)
	}, nil)
	c := testutil.DialSmall(t, h.addr)
	br := bufio.NewReader(c.Conn)
	_ = c.Send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	events := bufio.NewReader(resp.Body)
	for i := range 3 {
		if i > 0 {
			// The upstream sends the next event only now: this one
			// arrived while it waited, that is, flushed on its own.
			time.Sleep(2 * timeout)
			select {
			case next <- struct{}{}:
			case <-time.After(5 * time.Second):
				t.Fatalf("the upstream is no longer waiting to send event %d", i)
			}
		}
		line, err := events.ReadString('\n')
		if want := fmt.Sprintf("data: %d\n", i); line != want || err != nil {
			t.Fatalf("event %d: %q %v, want %q", i, line, err, want)
		}
		if blank, err := events.ReadString('\n'); blank != "\n" || err != nil {
			t.Fatalf("event %d: %q %v", i, blank, err)
		}
	}
	if rest, err := io.ReadAll(events); len(rest) != 0 || err != nil {
		t.Fatalf("after the events: %q %v", rest, err)
	}
	_ = resp.Body.Close()
	if it := h.c.next(t); it.Error != "" || strings.Count(string(it.ResponseBody.Data), "data: ") != 3 {
		t.Fatalf("item error %q body %q", it.Error, it.ResponseBody.Data)
	}

	time.Sleep(2 * timeout)
	_ = c.Send("GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("next request on the connection: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(b) != "ok" {
		t.Fatalf("next request on the connection: %d %q", resp.StatusCode, b)
	}
	if ce := h.obs.clientErrs(); len(ce) != 0 {
		t.Fatalf("client errors counted: %v", ce)
	}
}

// A WebSocket connection is hijacked: the send timeout does not apply to
// it. Idle for several timeouts, it still carries a large message.
func testWebSocketNotBounded(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := sendProxy(t, timeout, func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer func() { _ = c.Close() }()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	}, nil)
	c, resp, err := websocket.DefaultDialer.DialContext(t.Context(), "ws://"+h.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	_ = resp.Body.Close()
	for _, m := range [][]byte{[]byte("one"), pattern(4 << 20)} {
		time.Sleep(3 * timeout)
		if err := c.WriteMessage(websocket.BinaryMessage, m); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, got, err := c.ReadMessage()
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("echo of %d bytes: got %d, %v", len(m), len(got), err)
		}
	}
}

// Responses that take longer than the timeout, one after the other on a
// keep-alive connection with idle gaps longer than the timeout: the
// deadline left by one response never cuts the next.
func testKeepAliveAfterLongResponses(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := sendProxy(t, timeout, func(w http.ResponseWriter, _ *http.Request) {
		rc := http.NewResponseController(w)
		for range 3 {
			_, _ = io.WriteString(w, "tick\n")
			_ = rc.Flush()
			time.Sleep(timeout)
		}
	}, nil)
	c := testutil.DialSmall(t, h.addr)
	br := bufio.NewReader(c.Conn)
	for i := range 3 {
		if i > 0 {
			time.Sleep(2 * timeout)
		}
		_ = c.Send("GET /" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: x\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(b) != "tick\ntick\ntick\n" || err != nil || resp.Close {
			t.Fatalf("request %d: %d %q %v close=%v", i, resp.StatusCode, b, err, resp.Close)
		}
	}
}
