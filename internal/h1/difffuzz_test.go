package h1_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzSameAsNetHTTP sends the same arbitrary bytes to h1 and to net/http's
// server, both with the same handler, then half-closes, and requires the
// same responses, read the same way, from both: what TestWire checks for
// its hand-written cases, for whatever the fuzzer makes of them.
func FuzzSameAsNetHTTP(f *testing.F) {
	for _, s := range []string{
		get("/"),
		get("/a?b=c") + get("/d"),
		request("POST", "/", "hello") + get("/"),
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked("hello", 2, "X-T: 1"),
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
		"GET http://x/y HTTP/1.1\r\nHost: x\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	cfg := func(s *http.Server) { s.ReadHeaderTimeout = 2 * time.Second }
	// The input's last byte picks the handler, so that the fuzzer explores
	// each of h1's response paths: dump reads the body and answers with a
	// known length; ignore leaves the body unread (h1 discards up to 256
	// KiB of it before answering); big streams an answer of unknown length
	// larger than h1's buffer (chunked); headers sets headers after
	// writing (ignored) and a trailer.
	handlers := []http.HandlerFunc{
		dump,
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "ignored "+r.Method)
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			for range 5 {
				_, _ = io.WriteString(w, strings.Repeat(r.Method, 1000))
				w.(http.Flusher).Flush()
			}
		},
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Trailer", "X-Sum")
			w.WriteHeader(http.StatusAccepted)
			w.Header().Set("X-Late", "1")
			_, _ = io.WriteString(w, "path="+r.URL.Path)
			w.Header().Set("X-Sum", "42")
		},
	}
	servers := make([][]*testServer, len(handlers))
	for i, h := range handlers {
		servers[i] = startBoth(f, h, cfg)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		pair := servers[0]
		if len(in) > 0 {
			pair = servers[int(in[len(in)-1])%len(servers)]
		}
		outs := make([]outcome, len(pair))
		var wg sync.WaitGroup
		for i, s := range pair {
			wg.Go(func() { outs[i] = sendAll(s.addr, in) })
		}
		wg.Wait()
		std, got := outs[0], outs[1]
		ignoreSniffing(std, got)
		std, got = ignoreCutHead400(std), ignoreCutHead400(got)
		ignoreLastClose(std, got)
		if std.String() != got.String() {
			t.Errorf("h1 differs from net/http for %q\n=== net/http:\n%s=== h1:\n%s", in, std, got)
		}
	})
}

// sendAll writes in, half-closes, and reads responses until the server
// closes the connection.
func sendAll(addr string, in []byte) outcome {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return outcome{Err: "dial: " + err.Error()}
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(connTimeout))
	if _, err := conn.Write(in); err != nil {
		return outcome{Err: "write: " + classify(err)}
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	// Read each answer for the method of its request (a HEAD answer has
	// no body), as net/http's own parser splits the input into requests.
	var methods []string
	for rb := bufio.NewReader(bytes.NewReader(in)); len(methods) < 64; {
		req, err := http.ReadRequest(rb)
		if err != nil {
			break
		}
		methods = append(methods, req.Method)
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			break
		}
	}
	br := bufio.NewReader(conn)
	var o outcome
	for i := range 64 {
		method := http.MethodGet
		if i < len(methods) {
			method = methods[i]
		}
		r, err := readResult(br, method)
		if err != nil {
			o.Err = classify(err)
			break
		}
		o.Responses = append(o.Responses, r)
	}
	return o
}

// ignoreLastClose drops "Connection: close" from the last response of both
// outcomes when both servers then closed the connection: whether a server
// announced the close it made is invisible to a client that sent nothing
// more. (h1 announces it after a request body that broke off; net/http
// just closes.)
func ignoreLastClose(a, b outcome) {
	if a.Err != "closed" || b.Err != "closed" || len(a.Responses) != len(b.Responses) || len(a.Responses) == 0 {
		return
	}
	for _, o := range []outcome{a, b} {
		r := &o.Responses[len(o.Responses)-1]
		r.Close = false
		delete(r.Header, "Connection")
	}
}

// ignoreCutHead400 drops a last "400 Bad Request" that ends the
// connection: net/http answers a request head the client's EOF cut short
// with it, or closes without a word when its background read had already
// taken the bytes (timing), and h1 closes without a word. Either way the
// client, which has stopped sending, gets no answer to a request.
func ignoreCutHead400(o outcome) outcome {
	if n := len(o.Responses); n > 0 && o.Err == "closed" {
		if r := o.Responses[n-1]; r.Status == "400 Bad Request" && string(r.Body) == "400 Bad Request" {
			o.Responses = o.Responses[:n-1]
		}
	}
	return o
}
