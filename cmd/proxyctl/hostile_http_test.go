package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/goleak"

	"github.com/proxyctl/proxyctl/internal/testutil"
)

// Hostile clients against the proxy listener that forward http, record http
// and replay share (runForwardHTTP), each over raw TCP. The upstream records
// every request and every byte that reaches it; after each test the command
// is stopped and no goroutine it started may be left.

// hostileNoLeaks checks, once the test is over, that no goroutine started
// during it is still running. Call it first: cleanups run last-in first-out,
// so the check runs after the command has stopped and the upstream closed.
func hostileNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// hostileForward starts `forward http` (or record http: group) in front of
// a recording upstream, on the memory store.
func hostileForward(t *testing.T, group string, args ...string) (*testutil.Upstream, *running) {
	t.Helper()
	hostileNoLeaks(t)
	up := testutil.NewUpstream(t, nil)
	r := startProxyCmd(t, group, append([]string{"--target", up.URL, "--store", "memory"}, args...)...)
	return up, r
}

// stillServes sends an ordinary request on a new connection: the proxy must
// answer it from the upstream.
func stillServes(t *testing.T, proxy string, up *testutil.Upstream) {
	t.Helper()
	c := testutil.DialRaw(t, proxy)
	_ = c.Send("GET /still-serving HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, body := c.Response(t)
	// Not necessarily the last one recorded: the upstream records a request
	// cut by the hostile client once its body read fails, which may be later.
	reqs := up.Requests()
	served := slices.ContainsFunc(reqs, func(r testutil.UpstreamRequest) bool { return r.URI == "/still-serving" })
	if resp.StatusCode != http.StatusOK || body != "ok" || !served {
		t.Fatalf("the proxy no longer serves: %d %q", resp.StatusCode, body)
	}
	_ = c.Close()
}

func uris(reqs []testutil.UpstreamRequest) []string {
	out := []string{}
	for _, r := range reqs {
		out = append(out, r.Method+" "+r.URI+" "+r.Body)
	}
	return out
}

// Conflicting or odd framing: refused before the upstream, or forwarded as
// the one request net/http framed, with one framing, and the connection
// closed after it; what follows on the connection ("GET /smuggled") never
// reaches the upstream.
func TestHostileHTTPFraming(t *testing.T) {
	up, r := hostileForward(t, "forward")
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
		status    int
		forwarded []string // method, URI and body of the whole requests the upstream must receive
	}{
		{"Content-Length then chunked", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200, []string{"POST /a "}},
		{"chunked then Content-Length", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, []string{"POST /a abc"}},
		{"two different Content-Lengths", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc", 400, nil},
		{"Content-Length list", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 40\r\n\r\nabc", 400, nil},
		{"signed Content-Length", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400, nil},
		{"chunked, identity", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 501, nil},
		{"identity", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc", 501, nil},
		{"gzip, chunked", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, nil},
		{"two Transfer-Encoding fields", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, nil},
		{"xchunked", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501, nil},
		{"space before the colon", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", 400, nil},
		{"bad chunk size", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, nil},
		{"chunk size overflow", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400, nil},
		{"chunk longer than its size", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", 400, nil},
		{"HTTP/1.0 with Transfer-Encoding", "POST /a HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", 200, []string{"POST /a hello"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up.Reset()
			c := testutil.DialRaw(t, r.proxy)
			_ = c.Send(tc.raw + smuggled)
			resp, body := c.Response(t)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, body, tc.status)
			}
			testutil.NoTrace(t, body)
			if !c.ClosedWithin(t, 5*time.Second) {
				t.Fatal("connection still open: the bytes after the request could be read as a request")
			}
			if got := uris(up.Complete()); !slices.Equal(got, append([]string{}, tc.forwarded...)) {
				t.Fatalf("upstream received %q, want %q", got, tc.forwarded)
			}
			wire := strings.ToLower(up.Wire())
			if strings.Contains(wire, "smuggled") {
				t.Fatalf("smuggled bytes reached the upstream: %q", wire)
			}
			if strings.Contains(wire, "transfer-encoding") && strings.Contains(wire, "content-length") {
				t.Fatalf("the upstream got both framings: %q", wire)
			}
			stillServes(t, r.proxy, up)
		})
	}
}

// sendBig writes s while the response is read: net/http answers an
// oversized header block before it has all been sent.
func sendBig(c *testutil.RawConn, s string) (wait func()) {
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Send(s) }()
	return func() { _ = c.Close(); <-done }
}

// Header blocks over --max-header-size (default 1MiB) get 431 and are never
// forwarded; the flag takes size units.
func TestHostileHTTPOversizedHeaders(t *testing.T) {
	t.Run("default 1MiB", func(t *testing.T) {
		up, r := hostileForward(t, "forward")
		c := testutil.DialRaw(t, r.proxy)
		wait := sendBig(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 1<<20+64<<10)+"\r\n\r\n")
		resp, body := c.Response(t)
		wait()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d %q, want 431", resp.StatusCode, body)
		}
		testutil.NoTrace(t, body)
		if up.Wire() != "" {
			t.Fatal("the oversized request reached the upstream")
		}
		stillServes(t, r.proxy, up)
	})
	t.Run("--max-header-size 16KiB", func(t *testing.T) {
		up, r := hostileForward(t, "forward", "--max-header-size", "16KiB")
		c := testutil.DialRaw(t, r.proxy)
		wait := sendBig(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 32<<10)+"\r\n\r\n")
		resp, _ := c.Response(t)
		wait()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || up.Wire() != "" {
			t.Fatalf("32 KiB of headers: status %d, upstream saw %d bytes", resp.StatusCode, len(up.Wire()))
		}
		c = testutil.DialRaw(t, r.proxy)
		_ = c.Send("GET /fits HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n")
		if resp, body := c.Response(t); resp.StatusCode != http.StatusOK {
			t.Fatalf("8 KiB of headers: %d %q", resp.StatusCode, body)
		}
		if got := up.Requests(); len(got) != 1 || len(got[0].Header.Get("X-Big")) != 8<<10 {
			t.Fatalf("upstream received %d requests", len(got))
		}
	})
}

// Malformed request lines and header fields get a 4xx (505 for versions
// other than 1.x) with no stack trace, never reach the upstream, and the
// proxy goes on serving. An absolute-form target goes to the configured
// upstream, never to the host it names; CONNECT opens no tunnel.
func TestHostileHTTPRequestLines(t *testing.T) {
	up, r := hostileForward(t, "forward")
	other := testutil.NewUpstream(t, nil) // a host a client may name
	otherHost := strings.TrimPrefix(other.URL, "http://")
	targetHost := strings.TrimPrefix(up.URL, "http://")
	for _, tc := range []struct {
		name, raw string
		status    int
		forwarded []string
	}{
		{"method with a space", "GE T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, nil},
		{"method with a control byte", "G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, nil},
		{"method with NUL", "GET\x00 / HTTP/1.1\r\nHost: x\r\n\r\n", 400, nil},
		{"method with a tab", "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, nil},
		{"empty method", " / HTTP/1.1\r\nHost: x\r\n\r\n", 400, nil},
		{"garbage request line", "\x16\x03\x01\x00\xa5garbage\r\n\r\n", 400, nil},
		{"HTTP/0.9 style", "GET /\r\n\r\n", 400, nil},
		{"lower-case version", "GET / http/1.1\r\nHost: x\r\n\r\n", 400, nil},
		{"HTTP/3.0", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505, nil},
		{"HTTP/2.0 without the preface", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, nil},
		{"control byte in the target", "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400, nil},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, nil},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, nil},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, nil},
		{"header name with a space", "GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", 400, nil},
		{"header name with NUL", "GET / HTTP/1.1\r\nHost: x\r\nX\x00A: b\r\n\r\n", 400, nil},
		{"header name with CR", "GET / HTTP/1.1\r\nHost: x\r\nX\rA: b\r\n\r\n", 400, nil},
		{"header value with NUL", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, nil},
		{"header value with a bare CR", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400, nil},
		{"header value with a bare LF", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nb\r\n\r\n", 400, nil},
		{"CONNECT to another host", "CONNECT " + otherHost + " HTTP/1.1\r\nHost: " + otherHost + "\r\n\r\n", 405, nil},
		{"CONNECT to the upstream", "CONNECT " + targetHost + " HTTP/1.1\r\nHost: " + targetHost + "\r\n\r\n", 405, nil},
		{"absolute form naming another host", "GET http://" + otherHost + "/x?q=1 HTTP/1.1\r\nHost: " + otherHost + "\r\nConnection: close\r\n\r\n", 200, []string{"GET /x?q=1 "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up.Reset()
			c := testutil.DialRaw(t, r.proxy)
			_ = c.Send(tc.raw)
			resp, body := c.Response(t)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, body, tc.status)
			}
			testutil.NoTrace(t, body)
			if resp.StatusCode >= 400 && !c.ClosedWithin(t, 5*time.Second) {
				t.Fatal("connection still open after the error")
			}
			if got := uris(up.Complete()); !slices.Equal(got, append([]string{}, tc.forwarded...)) {
				t.Fatalf("upstream received %q, want %q", got, tc.forwarded)
			}
			if tc.forwarded == nil && up.Wire() != "" {
				t.Fatalf("bytes reached the upstream: %q", up.Wire())
			}
			if reqs := up.Requests(); tc.forwarded != nil && reqs[0].Host != targetHost {
				t.Fatalf("forwarded with Host %q, want the upstream's %q", reqs[0].Host, targetHost)
			}
			if other.Wire() != "" {
				t.Fatalf("the proxy contacted the host the client named: %q", other.Wire())
			}
			stillServes(t, r.proxy, up)
		})
	}
	// A folded header line (obs-fold) is unfolded, as RFC 9112 5.2 allows,
	// and forwarded as one field.
	up.Reset()
	c := testutil.DialRaw(t, r.proxy)
	_ = c.Send("GET /folded HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n")
	if resp, body := c.Response(t); resp.StatusCode != http.StatusOK {
		t.Fatalf("folded header: %d %q", resp.StatusCode, body)
	}
	if got := up.Requests(); len(got) != 1 || got[0].Header.Get("X-Folded") != "a b" {
		t.Fatalf("folded header forwarded as %q", got[0].Header.Values("X-Folded"))
	}
}

// Slowloris: a client that trickles its headers for longer than
// --read-header-timeout is disconnected, and the upstream never hears of it.
func TestSlowHeadersClosedAfterReadHeaderTimeout(t *testing.T) {
	up, r := hostileForward(t, "forward", "--read-header-timeout", "300ms")
	c := testutil.DialRaw(t, r.proxy)
	stop := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		if c.Send("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ") != nil {
			return
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if c.Send("a") != nil {
				return
			}
		}
	}()
	closed := c.ClosedWithin(t, 5*time.Second)
	close(stop)
	<-trickled
	if !closed {
		t.Fatal("a client trickling its headers was still connected 5 s later (--read-header-timeout 300ms)")
	}
	if up.Wire() != "" {
		t.Fatal("the upstream saw the slow request")
	}
	stillServes(t, r.proxy, up)
}

// An idle keep-alive connection is closed after --idle-timeout.
func TestSlowIdleConnectionClosedAfterIdleTimeout(t *testing.T) {
	up, r := hostileForward(t, "forward", "--idle-timeout", "300ms")
	c := testutil.DialRaw(t, r.proxy)
	_ = c.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c.Response(t); resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("status %d, close %v: want a kept-alive 200", resp.StatusCode, resp.Close)
	}
	if !c.ClosedWithin(t, 5*time.Second) {
		t.Fatal("an idle keep-alive connection was still open 5 s later (--idle-timeout 300ms)")
	}
	stillServes(t, r.proxy, up)
}

// slowBody sends the headers and 10 of the 100 bytes a request announces,
// then nothing: --client-body-timeout answers 408 and closes.
func slowBody(t *testing.T, proxy string) {
	t.Helper()
	c := testutil.DialRaw(t, proxy)
	_ = c.Send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	resp, body := c.Response(t)
	if want := `{"error":"request body timed out","status":408}` + "\n"; resp.StatusCode != http.StatusRequestTimeout || body != want {
		t.Fatalf("got %d %q, want 408 %q", resp.StatusCode, body, want)
	}
	if !resp.Close || !c.ClosedWithin(t, 5*time.Second) {
		t.Fatal("connection still open after the 408")
	}
}

// A request body that stalls longer than --client-body-timeout between two
// reads: 408 before the response started, the upstream exchange aborted
// (no whole request reaches it), the traffic item records the error; in
// forward http, record http (the tape keeps the error) and replay.
func TestSlowClientBody408(t *testing.T) {
	t.Run("forward", func(t *testing.T) {
		up, r := hostileForward(t, "forward", "--client-body-timeout", "300ms")
		slowBody(t, r.proxy)
		if got := up.Complete(); len(got) != 0 {
			t.Fatalf("the upstream received a whole request: %q", uris(got))
		}
		waitTrafficError(t, r.admin, "request body timed out")
		stillServes(t, r.proxy, up)
	})
	t.Run("record", func(t *testing.T) {
		tp := filepath.Join(t.TempDir(), "slow.tape")
		up, r := hostileForward(t, "record", "--client-body-timeout", "300ms", "--tape", tp)
		slowBody(t, r.proxy)
		stillServes(t, r.proxy, up)
		if code := r.wait(t); code != 0 {
			t.Fatalf("record exit %d: %s", code, r.stderr)
		}
		xs := readTape(t, tp)
		if len(xs) != 2 || xs[0].Request.URL != "/upload" || xs[0].Error != "request body timed out" {
			t.Fatalf("tape: %d exchanges, first %+v", len(xs), xs[0])
		}
		if len(up.Complete()) != 1 { // /still-serving
			t.Fatalf("the upstream received %q", uris(up.Complete()))
		}
	})
	t.Run("replay", func(t *testing.T) {
		hostileNoLeaks(t)
		har := filepath.Join(t.TempDir(), "api.har")
		if err := os.WriteFile(har, []byte(hostileHAR), 0o600); err != nil {
			t.Fatal(err)
		}
		r := startReplayTuned(t, func(o *forwardHTTPOptions) { o.ClientBodyTimeout = 300 * time.Millisecond }, har)
		slowBody(t, r.proxy)
		waitTrafficError(t, r.admin, "request body timed out")
		c := testutil.DialRaw(t, r.proxy)
		_ = c.Send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
		if resp, body := c.Response(t); resp.StatusCode != http.StatusOK || body != "ok" {
			t.Fatalf("replay no longer serves: %d %q", resp.StatusCode, body)
		}
	})
}

const hostileHAR = `{"log":{"version":"1.2","creator":{"name":"test","version":"1"},"entries":[{
"startedDateTime":"2026-11-23T15:04:05Z","time":1,
"request":{"method":"POST","url":"http://x/upload","httpVersion":"HTTP/1.1","headers":[],"queryString":[],
  "postData":{"mimeType":"text/plain","text":"hello"},"headersSize":-1,"bodySize":5},
"response":{"status":200,"statusText":"OK","httpVersion":"HTTP/1.1","headers":[],
  "content":{"size":2,"mimeType":"text/plain","text":"ok"},"redirectURL":"","headersSize":-1,"bodySize":2},
"cache":{},"timings":{"send":0,"wait":1,"receive":0}}]}}`

// startReplayTuned runs `replay` in-process like startReplay, with its HTTP
// options adjusted (replay has no flags for the client-side limits).
func startReplayTuned(t *testing.T, tune func(*forwardHTTPOptions), args ...string) *running {
	t.Helper()
	return launch(t, func(f *factory, ready chan<- addrs) *cobra.Command {
		root := newRootCmd(f)
		for _, c := range root.Commands() {
			if c.Name() == "replay" {
				root.RemoveCommand(c)
			}
		}
		root.AddCommand(newReplayCmd(f, func(ctx context.Context, f *factory, o *replayOptions) error {
			o.Ready = func(p, a string) { ready <- addrs{p, a} }
			tune(o.HTTP)
			return runReplay(ctx, f, o)
		}))
		return root
	}, append([]string{"replay", "--store", "memory"}, args...))
}

// waitTrafficError waits (up to 5 s) for the default session of 127.0.0.1
// to hold a traffic item with the error msg.
func waitTrafficError(t *testing.T, admin, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+admin+"/api/sessions/client-127.0.0.1/traffic", nil)
		req.Close = true
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			last = string(b)
			var page struct {
				Items []struct {
					Error string `json:"error"`
				} `json:"items"`
			}
			if json.Unmarshal(b, &page) == nil && slices.ContainsFunc(page.Items, func(it struct {
				Error string `json:"error"`
			}) bool {
				return it.Error == msg
			}) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no traffic item with error %q: %s", msg, last)
}

// The new limits are flags like the others: environment and config file.
func TestClientLimitFlagsFromEnvAndConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "proxyctl.yaml")
	if err := os.WriteFile(cfg, []byte("max-header-size: 64KiB\nclient-send-timeout: 45s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		env         map[string]string
		args        []string
		body, send  time.Duration
		headerBytes int
	}{
		{"defaults", nil, nil, 60 * time.Second, 60 * time.Second, 1 << 20},
		{"flags", nil, []string{"--client-body-timeout", "0", "--client-send-timeout", "0", "--max-header-size", "512KB"}, 0, 0, 512000},
		{"environment", map[string]string{"PROXYCTL_CLIENT_BODY_TIMEOUT": "5s", "PROXYCTL_CLIENT_SEND_TIMEOUT": "7s", "PROXYCTL_MAX_HEADER_SIZE": "2MiB"}, nil, 5 * time.Second, 7 * time.Second, 2 << 20},
		{"config file", nil, []string{"--config", cfg}, 60 * time.Second, 45 * time.Second, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, group := range []string{"forward", "record"} {
				var got *forwardHTTPOptions
				f := &factory{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(k string) string { return tc.env[k] }}
				root := withHTTPRun(f, group, func(_ context.Context, _ *factory, o *forwardHTTPOptions) error { got = o; return nil })
				args := []string{group, "http", "--target", "http://127.0.0.1:1", "--store", "memory"}
				if group == "record" {
					args = append(args, "--tape", filepath.Join(t.TempDir(), "t.tape"))
				}
				root.SetArgs(append(args, tc.args...))
				if err := root.ExecuteContext(t.Context()); err != nil {
					t.Fatalf("%s http: %v", group, err)
				}
				if got.ClientBodyTimeout != tc.body || got.ClientSendTimeout != tc.send || got.MaxHeaderBytes != tc.headerBytes {
					t.Fatalf("%s http: client body timeout %v, send timeout %v, max header bytes %d; want %v, %v, %d",
						group, got.ClientBodyTimeout, got.ClientSendTimeout, got.MaxHeaderBytes, tc.body, tc.send, tc.headerBytes)
				}
			}
		})
	}
}
