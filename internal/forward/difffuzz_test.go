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

	"github.com/proxyctl/proxyctl/internal/capture"
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
	// Each proxy also captures its exchanges: the traffic items (what
	// tapes and the store keep) must not depend on the path either.
	var items [2]itemLog
	proxy := func(rt http.RoundTripper, c *itemLog) string {
		p := &forward.Proxy{Target: target, Transport: rt, Log: zerolog.Nop(), ClientSendTimeout: time.Minute, Capture: c}
		return serveProxy(f, p, nil).Listener.Addr().String()
	}
	fast, ref := proxy(transport.NewSync(opts), &items[0]), proxy(transport.New(opts), &items[1])
	// The fast path once more, served by net/http's server instead of h1:
	// how the proxy's writes reach the client must not depend on which.
	fastStd := serveStd(f, &forward.Proxy{Target: target, Transport: transport.NewSync(opts), Log: zerolog.Nop(), ClientSendTimeout: time.Minute})
	// And the loop server, which writes the response itself: it must
	// give the client, and the traffic item, what the fast path on h1
	// gives.
	var loopItems itemLog
	loop := serveLoop(f, &forward.Proxy{Target: target, Transport: transport.NewSync(opts), Log: zerolog.Nop(),
		ClientSendTimeout: time.Minute, Capture: &loopItems}).Listener.Addr().String()
	// Without capture the loop writes the head from the upstream's map
	// without building one of its own: the same again.
	loopBare := serveLoop(f, &forward.Proxy{Target: target, Transport: transport.NewSync(opts), Log: zerolog.Nop(),
		ClientSendTimeout: time.Minute}).Listener.Addr().String()
	f.Fuzz(func(t *testing.T, resp []byte) {
		up.answer.Store(&resp)
		var got, want, std, looped, bare string
		var wg sync.WaitGroup
		wg.Go(func() { got = through(fast) })
		wg.Go(func() { want = through(ref) })
		wg.Go(func() { std = through(fastStd) })
		wg.Go(func() { looped = through(loop) })
		wg.Go(func() { bare = through(loopBare) })
		wg.Wait()
		if got != want {
			t.Errorf("upstream answer %q\n=== through httputil.ReverseProxy:\n%s=== through the fast path:\n%s", resp, want, got)
		}
		if looped != got {
			t.Errorf("upstream answer %q\n=== through the fast path on h1:\n%s=== through the loop server:\n%s", resp, got, looped)
		}
		if bare != got {
			t.Errorf("upstream answer %q\n=== through the fast path on h1:\n%s=== through the loop server without capture:\n%s", resp, got, bare)
		}
		gi, wi, li := items[0].take(), items[1].take(), loopItems.take()
		if gi != wi {
			t.Errorf("upstream answer %q\n=== traffic item through httputil.ReverseProxy:\n%s\n=== through the fast path:\n%s", resp, wi, gi)
		}
		if li != gi {
			t.Errorf("upstream answer %q\n=== traffic item through the fast path on h1:\n%s\n=== through the loop server:\n%s", resp, gi, li)
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

// itemLog keeps the traffic items a proxy publishes.
type itemLog struct {
	mu    sync.Mutex
	items []*capture.Item
}

func (c *itemLog) Publish(it *capture.Item) {
	c.mu.Lock()
	c.items = append(c.items, it)
	c.mu.Unlock()
}

// take waits (2 s at most) for the one item an exchange publishes when it
// ends, which may be after the client has its response, and describes it
// without what differs between any two exchanges (id, time, duration).
func (c *itemLog) take() string {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		c.mu.Lock()
		n := len(c.items)
		c.mu.Unlock()
		if n > 0 {
			break
		}
	}
	return c.all()
}

// dropLastItem removes the last item from a description by all.
func dropLastItem(s string) string {
	i := strings.LastIndex(s, "\n"+itemSep)
	if i < 0 {
		return ""
	}
	return s[:i+1]
}

// itemSep starts each item in a description by all.
const itemSep = "item "

// all describes and forgets every item published so far.
func (c *itemLog) all() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, it := range c.items {
		fmt.Fprintf(&b, "%s%s %s %d error=%q stubbed=%v\n", itemSep, it.Method, it.Path, it.Status, it.Error, it.Stubbed)
		for _, k := range slices.Sorted(maps.Keys(it.RequestHeaders)) {
			fmt.Fprintf(&b, "request %s: %q\n", k, it.RequestHeaders[k])
		}
		for _, k := range slices.Sorted(maps.Keys(it.ResponseHeaders)) {
			if k != "Date" {
				fmt.Fprintf(&b, "response %s: %q\n", k, it.ResponseHeaders[k])
			}
		}
		fmt.Fprintf(&b, "request body %q truncated=%v, response body %q truncated=%v\n",
			it.RequestBody.Data, it.RequestBody.Truncated, it.ResponseBody.Data, it.ResponseBody.Truncated)
	}
	c.items = nil
	return b.String()
}

// rawUpstream answers every request with the bytes in answer, then
// closes the connection.
type rawUpstream struct {
	addr   string
	answer atomic.Pointer[[]byte]
}

func newRawUpstream(tb testing.TB) *rawUpstream {
	u := &rawUpstream{}
	u.addr = serveRaw(tb, func(c net.Conn) {
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

// FuzzFastRequestSameAsReverseProxy sends the same arbitrary client bytes
// to a proxy on the fast path and to one on httputil.ReverseProxy, and
// requires the upstream to receive the same requests from both: method,
// target, header fields (X-Forwarded-For and the rest the proxy sets),
// body and framing. The fast path writes the outbound head itself instead
// of through ReverseProxy's Rewrite and http.Request.Write.
func FuzzFastRequestSameAsReverseProxy(f *testing.F) {
	for _, s := range []string{
		"GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Hop, keep-alive\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nForwarded: for=1.2.3.4\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Bearer t\r\nProxy-Connection: keep-alive\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: \r\nAccept-Encoding: gzip\r\n\r\n",
		"HEAD /h HTTP/1.1\r\nHost: x\r\nA: 1\r\nA: 2\r\n\r\n",
		"DELETE /d HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"GET //double/../x HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	type seen struct {
		mu   sync.Mutex
		reqs []string
	}
	var upSeen [3]seen
	// busy counts the handlers running, the proxies' and the upstreams',
	// so that an exchange still winding down (a cut body) is recorded in
	// its own run, not the next.
	var busy atomic.Int64
	upstream := func(i int) *url.URL {
		var self string // the upstream's address: the Host both proxies send
		s := serveStd(f, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			busy.Add(1)
			defer busy.Add(-1)
			body, err := io.ReadAll(r.Body)
			host := r.Host
			if host == self {
				host = "(the upstream)"
			}
			var b strings.Builder
			fmt.Fprintf(&b, "%s %s %s host=%q len=%d te=%q close=%v\n", r.Method, r.RequestURI, r.Proto, host, r.ContentLength, r.TransferEncoding, r.Close)
			for _, k := range slices.Sorted(maps.Keys(r.Header)) {
				fmt.Fprintf(&b, "%s: %q\n", k, r.Header[k])
			}
			fmt.Fprintf(&b, "body %q err %v\n", body, err)
			for _, k := range slices.Sorted(maps.Keys(r.Trailer)) {
				fmt.Fprintf(&b, "trailer %s: %q\n", k, r.Trailer[k])
			}
			upSeen[i].mu.Lock()
			upSeen[i].reqs = append(upSeen[i].reqs, b.String())
			upSeen[i].mu.Unlock()
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "ok")
		}))
		self = s
		u, _ := url.Parse("http://" + s)
		return u
	}
	opts := transport.Options{ResponseHeaderTimeout: 2 * time.Second, DialTimeout: 2 * time.Second}
	proxies := [3]string{}
	var items [3]itemLog
	for i, rt := range []http.RoundTripper{transport.NewSync(opts), transport.New(opts), transport.NewSync(opts)} {
		p := &forward.Proxy{Target: upstream(i), Transport: rt, Log: zerolog.Nop(), ClientSendTimeout: time.Minute, Capture: &items[i]}
		if i == 2 {
			// The loop server: it runs the exchange itself, so only the
			// upstream's handler is counted busy.
			proxies[i] = serveLoop(f, p).Listener.Addr().String()
			continue
		}
		counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			busy.Add(1)
			defer busy.Add(-1)
			p.ServeHTTP(w, r)
		})
		proxies[i] = serveProxy(f, counted, nil).Listener.Addr().String()
	}
	// settle waits (2 s at most) until no handler has run for 3 ms.
	settle := func() {
		for quiet, deadline := 0, time.Now().Add(2*time.Second); quiet < 3 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
			if busy.Load() == 0 {
				quiet++
			} else {
				quiet = 0
			}
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var answers [3]string
		var wg sync.WaitGroup
		for i := range proxies {
			upSeen[i].mu.Lock()
			upSeen[i].reqs = nil
			upSeen[i].mu.Unlock()
			wg.Go(func() { answers[i] = sendRaw(proxies[i], in) })
		}
		wg.Wait()
		settle()
		// Every handler has ended (settle): its item is published. A
		// connection net/http serves (h1 hands it HTTP/1.0, an empty
		// Host...) cancels the request in flight when the client
		// half-closes: whether that last request got to the upstream,
		// and so what it was answered (the upstream's response, or
		// net/http's empty one after the handler gave up), is timing.
		// Its item says "client went away" on the side that lost the
		// race; then the last exchange is left out everywhere.
		gi, wi, li := items[0].all(), items[1].all(), items[2].all()
		reqs := [3][]string{upSeen[0].reqs, upSeen[1].reqs, upSeen[2].reqs}
		const gone = `error="client went away"`
		if strings.Contains(gi, gone) || strings.Contains(wi, gone) || strings.Contains(li, gone) {
			gi, wi, li = dropLastItem(gi), dropLastItem(wi), dropLastItem(li)
			n := min(len(reqs[0]), len(reqs[1]), len(reqs[2]))
			for i := range reqs {
				if len(reqs[i]) > n {
					reqs[i] = reqs[i][:n]
				}
				answers[i] = dropLastAnswer(answers[i])
			}
		}
		// A cut request body: ReverseProxy sends the head upstream
		// before it meets the cut, the fast path sends nothing; both
		// answer the client the same. The request the upstream saw
		// last on one side only is left out then.
		fastR, refR := trimPair(reqs[0], reqs[1], answers[0] == answers[1])
		fastL, loopR := trimPair(reqs[0], reqs[2], answers[0] == answers[2])
		if got, want := strings.Join(fastR, "---\n"), strings.Join(refR, "---\n"); got != want {
			t.Errorf("client sent %q\n=== upstream got through httputil.ReverseProxy:\n%s=== through the fast path:\n%s", in, want, got)
		}
		if answers[0] != answers[1] {
			t.Errorf("client sent %q\n=== client got through httputil.ReverseProxy:\n%s=== through the fast path:\n%s", in, answers[1], answers[0])
		}
		if gi != wi {
			t.Errorf("client sent %q\n=== traffic items through httputil.ReverseProxy:\n%s=== through the fast path:\n%s", in, wi, gi)
		}
		// The loop server against the fast path on h1 (the same client
		// of the upstream), for all three: the requests, the answers,
		// the items.
		if l, g := strings.Join(loopR, "---\n"), strings.Join(fastL, "---\n"); l != g {
			t.Errorf("client sent %q\n=== upstream got through the fast path on h1:\n%s=== through the loop server:\n%s", in, g, l)
		}
		if answers[2] != answers[0] {
			t.Errorf("client sent %q\n=== client got through the fast path on h1:\n%s=== through the loop server:\n%s", in, answers[0], answers[2])
		}
		if li != gi {
			t.Errorf("client sent %q\n=== traffic items through the fast path on h1:\n%s=== through the loop server:\n%s", in, gi, li)
		}
	})
}

// trimPair leaves out the last request of the longer of a and b when
// they differ by that one and the client got the same answers (same).
func trimPair(a, b []string, same bool) ([]string, []string) {
	if same && max(len(a), len(b)) == min(len(a), len(b))+1 {
		n := min(len(a), len(b))
		return a[:n], b[:n]
	}
	return a, b
}

// dropLastAnswer removes the last response's line from a description by
// sendRaw, keeping how the connection ended.
func dropLastAnswer(s string) string {
	lines := strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) < 2 {
		return s
	}
	return strings.Join(lines[:len(lines)-2], "") + lines[len(lines)-1] + "\n"
}

// sendRaw writes in to the proxy at addr, half-closes, and returns the
// status lines of what comes back until the proxy closes.
func sendRaw(addr string, in []byte) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(in); err != nil {
		return "write: " + ending(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(c)
	var b strings.Builder
	for range 16 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.WriteString(ending(err) + "\n")
			break
		}
		_, berr := io.Copy(io.Discard, resp.Body)
		fmt.Fprintf(&b, "%s (body %s)\n", resp.Status, ending(berr))
	}
	return b.String()
}
