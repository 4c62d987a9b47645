package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/demo"
)

// startForward runs `forward http` in-process with args (plus a free
// --listen and --admin-listen) and returns the proxy address, a cancel
// func standing in for SIGINT/SIGTERM, and a channel with the exit code.
func startForward(t *testing.T, args ...string) (proxy string, stop func(), done <-chan int) {
	t.Helper()
	r := startProxyCmd(t, "forward", args...)
	codes := make(chan int, 1)
	go func() { <-r.done; codes <- r.code }()
	return r.proxy, r.stop, codes
}

// SIGINT/SIGTERM let in-flight requests finish, then exit 0.
func TestGracefulShutdown(t *testing.T) {
	up := httptest.NewServer(demo.Handler())
	defer up.Close()
	proxy, stop, done := startForward(t, "--target", up.URL, "--shutdown-timeout", "5s")

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+proxy+"/slow?ms=700", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{resp.StatusCode, string(b), err}
	}()
	time.Sleep(200 * time.Millisecond) // the request is in flight
	stop()
	r := <-res
	if r.err != nil || r.code != 200 || r.body != "slept 700 ms\n" {
		t.Fatalf("in-flight request: %d %q %v", r.code, r.body, r.err)
	}
	if code := <-done; code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	// New connections are refused once shut down.
	if _, err := http.Get("http://" + proxy + "/hello"); err == nil { //nolint:noctx // test
		t.Fatal("proxy still accepting after shutdown")
	}
}

// A listen address in use is a runtime error (exit 1), reported once.
func TestListenInUse(t *testing.T) {
	up := httptest.NewServer(demo.Handler())
	defer up.Close()
	busy := strings.TrimPrefix(up.URL, "http://")
	var stderr bytes.Buffer
	code := runEnv(t.Context(), []string{"forward", "http", "--target", up.URL, "--listen", busy, "--admin-listen", "off"},
		strings.NewReader(""), io.Discard, &stderr, func(string) string { return "" })
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if n := strings.Count(stderr.String(), "proxyctl: "); n != 1 || !strings.Contains(stderr.String(), "--listen "+busy) {
		t.Fatalf("stderr %q: want one 'proxyctl:' line naming --listen", stderr.String())
	}
}
