package forward_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/forward"
	"github.com/proxyctl/proxyctl/internal/transport"
)

// FuzzFastSameAsReverseProxy gives the same upstream response, arbitrary
// bytes, to a proxy on the fast path (transport.Sync) and to one on
// httputil.ReverseProxy over http.Transport, the reference the fast path
// replaces for plain requests, and requires the client to see the same
// through both: status, headers, body, trailers and how the response ends.
func FuzzFastSameAsReverseProxy(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\nuntil the upstream closes",
		"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ncut",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.0 200 OK\r\n\r\nold",
		"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
		"garbage",
	} {
		f.Add([]byte(s))
	}
	up := newRawUpstream(f)
	target, _ := url.Parse("http://" + up.addr)
	opts := transport.Options{ResponseHeaderTimeout: 2 * time.Second, DialTimeout: 2 * time.Second}
	proxy := func(rt http.RoundTripper) string {
		p := &forward.Proxy{Target: target, Transport: rt, Log: zerolog.Nop(), ClientSendTimeout: time.Minute}
		return serveProxy(f, p, nil).Listener.Addr().String()
	}
	fast, ref := proxy(transport.NewSync(opts)), proxy(transport.New(opts))
	// The fast path once more, served by net/http's server instead of h1:
	// how the proxy's writes reach the client must not depend on which.
	fastStd := serveStd(f, &forward.Proxy{Target: target, Transport: transport.NewSync(opts), Log: zerolog.Nop(), ClientSendTimeout: time.Minute})
	f.Fuzz(func(t *testing.T, resp []byte) {
		up.answer.Store(&resp)
		var got, want, std string
		var wg sync.WaitGroup
		wg.Go(func() { got = through(fast) })
		wg.Go(func() { want = through(ref) })
		wg.Go(func() { std = through(fastStd) })
		wg.Wait()
		if got != want {
			t.Errorf("upstream answer %q\n=== through httputil.ReverseProxy:\n%s=== through the fast path:\n%s", resp, want, got)
		}
		if !bytes.Contains(bytes.ToLower(resp), []byte("content-type")) {
			// net/http sniffs a Content-Type the upstream did not send;
			// h1 does not (documented).
			std, got = dropLines(std, "Content-Type:"), dropLines(got, "Content-Type:")
		}
		if got != std {
			t.Errorf("upstream answer %q\n=== fast path on net/http's server:\n%s=== fast path on h1:\n%s", resp, std, got)
		}
	})
}

// serveStd serves h with net/http's server alone on 127.0.0.1 until the
// test ends, and returns its address.
func serveStd(tb testing.TB, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = s.Serve(ln) }()
	tb.Cleanup(func() { _ = s.Close() })
	return ln.Addr().String()
}

// dropLines removes the lines of s that start with prefix.
func dropLines(s, prefix string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !strings.HasPrefix(line, prefix) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// rawUpstream answers every request with the bytes in answer, then
// closes the connection.
type rawUpstream struct {
	addr   string
	answer atomic.Pointer[[]byte]
}

func newRawUpstream(tb testing.TB) *rawUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u := &rawUpstream{addr: ln.Addr().String()}
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
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				if b := u.answer.Load(); b != nil {
					_, _ = c.Write(*b)
				}
			})
		}
	})
	return u
}

// through sends a GET to the proxy at addr and describes what came back.
func through(addr string) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: proxy\r\n\r\n"); err != nil {
		return "write: " + err.Error()
	}
	br := bufio.NewReader(c)
	var b strings.Builder
	head := func(resp *http.Response) {
		fmt.Fprintf(&b, "%s %s\n", resp.Proto, resp.Status)
		// Date differs by the clock. How the body is delimited
		// (Content-Length or chunked) is not compared: ReverseProxy
		// flushes the head of a body of unknown length from a timer, so
		// an empty one goes out either way; the body itself is compared.
		h := resp.Header.Clone()
		h.Del("Date")
		h.Del("Content-Length")
		for _, k := range slices.Sorted(maps.Keys(h)) {
			fmt.Fprintf(&b, "%s: %q\n", k, h[k])
		}
	}
	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodGet})
		if err != nil {
			return b.String() + aborted(err)
		}
		if resp.StatusCode < 100 || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		head(resp) // an informational response, then the next
	}
	body, berr := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if berr != nil {
		return b.String() + aborted(berr)
	}
	head(resp)
	fmt.Fprintf(&b, "close %v\n", resp.Close)
	fmt.Fprintf(&b, "body %q\n", body)
	for _, k := range slices.Sorted(maps.Keys(resp.Trailer)) {
		fmt.Fprintf(&b, "trailer %s: %q\n", k, resp.Trailer[k])
	}
	return b.String()
}

// aborted describes a response that did not arrive whole. Whether its
// head got out before the connection was cut depends on timing, in both
// paths (an aborted handler's connection is closed at once), so only the
// fact is compared.
func aborted(err error) string {
	if e := ending(err); e != "cut" && e != "closed" {
		return "failed: " + e + "\n"
	}
	return "aborted\n"
}

// ending names how a read ended.
func ending(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "end"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "cut"
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return "closed"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return err.Error()
}
