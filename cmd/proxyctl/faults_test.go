package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The upstream goes away and comes back on the same address: while it is
// gone requests get a sanitized 502 (never a hang), and once it is back
// requests succeed again without restarting proxyctl (pooled connections
// to the dead upstream are not reused), with the traffic items saying what
// happened to each.
func TestUpstreamRestartRecovers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener, gen string) *http.Server {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, gen)
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		return srv
	}
	first := serve(ln, "first")
	r := startProxyCmd(t, "forward", "--target", "http://"+addr, "--upstream-timeout", "5s")
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	get := func(i int) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("http://%s/r/%d", r.proxy, i), nil)
		req.Header.Set("X-Proxy-Session", "restart")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for i := range 5 { // fills the proxy's connection pool
		if code, body := get(i); code != http.StatusOK || body != "first" {
			t.Fatalf("before the restart: %d %q", code, body)
		}
	}
	_ = first.Close() // closes the listener and the pooled connections
	for i := 5; i < 8; i++ {
		code, body := get(i)
		if code != http.StatusBadGateway {
			t.Fatalf("upstream down: %d %q, want 502", code, body)
		}
		if strings.Contains(body, addr) {
			t.Errorf("the 502 reveals the upstream address: %s", body)
		}
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	second := serve(ln2, "second")
	for i := 8; i < 13; i++ {
		if code, body := get(i); code != http.StatusOK || body != "second" {
			t.Fatalf("after the restart: %d %q", code, body)
		}
	}

	// Every request is in the traffic: 10 answered, 3 with the upstream error.
	var page struct {
		Items []struct {
			Path   string
			Status int
			Error  string
		}
	}
	pollUntil(t, 5*time.Second, "13 traffic items", func() bool {
		_, b := adminDo(t, http.MethodGet, "http://"+r.admin+"/api/sessions/restart/traffic", "")
		return json.Unmarshal(b, &page) == nil && len(page.Items) == 13
	})
	var failed int
	for _, it := range page.Items {
		if it.Status == http.StatusBadGateway {
			failed++
			if it.Error == "" {
				t.Errorf("item %s: 502 without the error", it.Path)
			}
		}
	}
	if failed != 3 {
		t.Errorf("%d items record a 502, want 3", failed)
	}
	// Stop what this test started after the command, so that the command's
	// goroutine check (launch) sees only the command's own.
	_ = second.Close()
	client.CloseIdleConnections()
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit %d: %s", code, r.stderr)
	}
}
