package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/testutil"
)

// Clients that stop reading their response, against --client-send-timeout
// in forward http, record http and replay. The response is far larger than
// every buffer between the proxy and a client that does not read, so the
// proxy's writes really wait for the client.

// bigSize is more than the kernel buffers of both connections can hold.
const bigSize = 64 << 20

// bigUpstream is a recording upstream that answers GET /big with bigSize
// bytes and reports how that ended: the error of the write that failed
// (the exchange was aborted), or nil when it all went out. Anything else
// gets "ok".
func bigUpstream(t *testing.T) (*testutil.Upstream, <-chan error) {
	t.Helper()
	ended := make(chan error, 1)
	up := testutil.NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(bigSize))
		ended <- testutil.WriteBig(w, bigSize)
	})
	return up, ended
}

// stalledReader asks for path with a small receive buffer and never reads.
func stalledReader(t *testing.T, proxy, path string) *testutil.RawConn {
	t.Helper()
	c := testutil.DialSmall(t, proxy)
	if err := c.Send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// wantSendTimeouts waits (up to 5 s) for an instance's /metrics to count n
// send timeouts, and checks that it counts no upstream error.
func wantSendTimeouts(t *testing.T, admin string, n int) {
	t.Helper()
	const name = `proxyctl_client_errors_total{kind="send_timeout"}`
	want := name + " " + strconv.Itoa(n)
	var got string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = metricLine(t, admin, name); got == want {
			break
		}
	}
	if got != want {
		t.Fatalf("metrics: %q, want %q", got, want)
	}
	if _, b := adminDo(t, http.MethodGet, "http://"+admin+"/metrics", ""); strings.Contains(string(b), "proxyctl_upstream_errors_total{") {
		t.Fatalf("counted as an upstream error:\n%s", b)
	}
}

// A client that asks for a large response and never reads it: after
// --client-send-timeout the proxy's write fails, the connection is closed,
// the upstream exchange is aborted (the upstream's write fails), the
// traffic item (and record's tape) has the error, /metrics counts a client
// error and no upstream error, and the proxy goes on serving. In forward
// http, record http and replay (whose tape answers in one write).
func TestSlowReaderSendTimeout(t *testing.T) {
	t.Run("forward", func(t *testing.T) {
		hostileNoLeaks(t)
		up, ended := bigUpstream(t)
		r := startProxyCmd(t, "forward", "--target", up.URL, "--store", "memory", "--client-send-timeout", "300ms")
		c := stalledReader(t, r.proxy, "/big")
		testutil.WantAborted(t, ended, "--client-send-timeout 300ms")
		waitTrafficError(t, r.admin, "response send timed out")
		c.WantCut(t, bigSize)
		wantSendTimeouts(t, r.admin, 1)
		stillServes(t, r.proxy, up)
	})
	t.Run("record", func(t *testing.T) {
		hostileNoLeaks(t)
		tp := filepath.Join(t.TempDir(), "slow.tape")
		up, ended := bigUpstream(t)
		r := startProxyCmd(t, "record", "--target", up.URL, "--store", "memory", "--client-send-timeout", "300ms", "--tape", tp)
		c := stalledReader(t, r.proxy, "/big")
		testutil.WantAborted(t, ended, "--client-send-timeout 300ms")
		waitTrafficError(t, r.admin, "response send timed out")
		c.WantCut(t, bigSize)
		stillServes(t, r.proxy, up)
		if code := r.wait(t); code != 0 {
			t.Fatalf("record exit %d: %s", code, r.stderr)
		}
		xs := readTape(t, tp)
		if len(xs) != 2 || xs[0].Request.URL != "/big" || xs[0].Response.Status != http.StatusOK || xs[0].Error != "response send timed out" {
			t.Fatalf("tape: %d exchanges, first %+v", len(xs), xs[0])
		}
	})
	t.Run("replay", func(t *testing.T) {
		hostileNoLeaks(t)
		const size = 16 << 20
		har := filepath.Join(t.TempDir(), "big.har")
		if err := os.WriteFile(har, []byte(bigHAR(size)), 0o600); err != nil {
			t.Fatal(err)
		}
		r := startReplayTuned(t, func(o *forwardHTTPOptions) { o.ClientSendTimeout = 300 * time.Millisecond }, har)
		c := stalledReader(t, r.proxy, "/big")
		waitTrafficError(t, r.admin, "response send timed out")
		c.WantCut(t, size)
		wantSendTimeouts(t, r.admin, 1)
		c = testutil.DialRaw(t, r.proxy)
		_ = c.Send("GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if resp, body := c.Response(t); resp.StatusCode != http.StatusOK || body != "ok" {
			t.Fatalf("replay no longer serves: %d %q", resp.StatusCode, body)
		}
	})
}

// bigHAR records GET /big answered with size bytes, and GET /small with "ok".
func bigHAR(size int) string {
	entry := func(path, text string) string {
		return `{"startedDateTime":"2026-11-23T15:04:05Z","time":1,
"request":{"method":"GET","url":"http://x` + path + `","httpVersion":"HTTP/1.1","headers":[],"queryString":[],"headersSize":-1,"bodySize":0},
"response":{"status":200,"statusText":"OK","httpVersion":"HTTP/1.1","headers":[],
  "content":{"size":` + strconv.Itoa(len(text)) + `,"mimeType":"text/plain","text":"` + text + `"},"redirectURL":"","headersSize":-1,"bodySize":` + strconv.Itoa(len(text)) + `},
"cache":{},"timings":{"send":0,"wait":1,"receive":0}}`
	}
	return `{"log":{"version":"1.2","creator":{"name":"test","version":"1"},"entries":[` +
		entry("/big", strings.Repeat("x", size)) + "," + entry("/small", "ok") + `]}}`
}

// A client that reads steadily (256 KiB every 100 ms, so 8 MiB take more
// than 3 s) with a 1 s timeout gets the whole response; an event stream
// whose upstream is silent for longer than the timeout between events
// arrives whole, event by event; and nothing is counted as a client error.
func TestSlowReaderSteadyAndIdleStreamsPass(t *testing.T) {
	hostileNoLeaks(t)
	const size = 8 << 20
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	next := make(chan struct{})
	up := testutil.NewUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(size))
			_, _ = w.Write(body)
		case "/events":
			testutil.ServeEvents(w, r, 3, next)
		}
	})
	r := startProxyCmd(t, "forward", "--target", up.URL, "--store", "memory", "--client-send-timeout", "1s")

	t.Run("steady reader", func(t *testing.T) {
		c := stalledReader(t, r.proxy, "/big")
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(&testutil.PacedReader{R: c.Conn, Chunk: 256 << 10, Gap: 100 * time.Millisecond}), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("read %d of %d bytes: %v", len(got), size, err)
		}
	})
	t.Run("idle event stream", func(t *testing.T) {
		c := testutil.DialRaw(t, r.proxy)
		_ = c.Send("GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c.Conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		events := bufio.NewReader(resp.Body)
		for i := range 3 {
			if i > 0 {
				time.Sleep(1500 * time.Millisecond)
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
			_, _ = events.ReadString('\n')
		}
	})
	wantSendTimeouts(t, r.admin, 0)
}
