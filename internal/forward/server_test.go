package forward_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/forward"
	"github.com/proxyctl/proxyctl/internal/h1"
	"github.com/rs/zerolog"
)

// paths are the ways a request is served that the behaviour tests run
// on: "fast" (h1 and the synchronous client), "reverseproxy" (h1 and
// httputil.ReverseProxy), and, where it exists, "loop" (the loop server
// in front of the fast path's h1; serveProxy starts it for tests whose
// name has "/loop/").
func paths() []string {
	if forward.LoopsSupported {
		return []string{"fast", "reverseproxy", "loop"}
	}
	return []string{"fast", "reverseproxy"}
}

// server is what serveProxy runs: h1, or the loop server.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// proxyServer serves a proxy the way forward http does: h1 for plain
// keep-alive requests, net/http for the connections h1 hands on
// (upgrades, Expect, HTTP/1.0, malformed heads).
type proxyServer struct {
	URL      string
	Listener net.Listener
	// Loop is the loop server, when the proxy runs on one.
	Loop *forward.LoopServer
	// stop shuts the server down, as when the test ends; close closes it.
	stop  func(ctx context.Context) error
	close func() error
}

// serveProxy starts h on 127.0.0.1 until the test ends. wrap, when set,
// wraps the listener.
func serveProxy(t testing.TB, h http.Handler, wrap func(net.Listener) net.Listener) *proxyServer {
	t.Helper()
	return startProxy(t, h, wrap, strings.Contains(t.Name(), "/loop/"))
}

// serveLoop starts p on the loop server (with h1 behind it) until the
// test ends.
func serveLoop(t testing.TB, p *forward.Proxy) *proxyServer {
	t.Helper()
	return startProxy(t, p, nil, true)
}

// serveLoops is serveLoop with n loops.
func serveLoops(t testing.TB, p *forward.Proxy, n int) *proxyServer {
	t.Helper()
	return startProxyN(t, p, nil, true, n)
}

func startProxy(t testing.TB, h http.Handler, wrap func(net.Listener) net.Listener, loop bool) *proxyServer {
	t.Helper()
	return startProxyN(t, h, wrap, loop, 1)
}

func startProxyN(t testing.TB, h http.Handler, wrap func(net.Listener) net.Listener, loop bool, loops int) *proxyServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		if wrapped := wrap(ln); !loop {
			// The loop server accepts on the TCP listener itself: it
			// keeps only what wrap did to the listening socket.
			ln = wrapped
		}
	}
	// A fuzz target's F must not be written to from its fuzz function.
	var logw io.Writer = zerolog.NewTestWriter(t)
	if _, ok := t.(*testing.F); ok {
		logw = io.Discard
	}
	errLog := log.New(logw, "", 0)
	s := &h1.Server{
		Handler:           h,
		Fallback:          &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          errLog,
	}
	var srv server = s
	var ls *forward.LoopServer
	if p, ok := h.(*forward.Proxy); ok && loop && forward.LoopsSupported {
		ls = &forward.LoopServer{Proxy: p, H1: s, Loops: loops, ReadHeaderTimeout: s.ReadHeaderTimeout, IdleTimeout: s.IdleTimeout}
		srv = ls
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		// Like httptest.Server.Close: connections closed, then wait for
		// the requests in flight to end.
		_ = srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("proxy server shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("proxy server: %v", err)
		}
	})
	return &proxyServer{URL: "http://" + ln.Addr().String(), Listener: ln, Loop: ls, stop: srv.Shutdown, close: srv.Close}
}

// serveRaw accepts connections on 127.0.0.1 until the test ends, and runs
// handle on each in a goroutine of its own, closing it after.
func serveRaw(tb testing.TB, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer func() { _ = c.Close() }()
				handle(c)
			})
		}
	})
	return ln.Addr().String()
}
