package forward_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/h1"
	"github.com/rs/zerolog"
)

// proxyServer serves a proxy the way forward http does: h1 for plain
// keep-alive requests, net/http for the connections h1 hands on
// (upgrades, Expect, HTTP/1.0, malformed heads).
type proxyServer struct {
	URL      string
	Listener net.Listener
}

// serveProxy starts h on 127.0.0.1 until the test ends. wrap, when set,
// wraps the listener.
func serveProxy(t testing.TB, h http.Handler, wrap func(net.Listener) net.Listener) *proxyServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		ln = wrap(ln)
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
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		// Like httptest.Server.Close: connections closed, then wait for
		// the requests in flight to end.
		_ = s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("proxy server shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("proxy server: %v", err)
		}
	})
	return &proxyServer{URL: "http://" + ln.Addr().String(), Listener: ln}
}
