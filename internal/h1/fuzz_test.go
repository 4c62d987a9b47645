package h1_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzServe sends arbitrary bytes to an h1 server, then half-closes the
// connection: the server must answer or close it, never hang, and never
// panic (neither h1 nor its fallback logs one).
func FuzzServe(f *testing.F) {
	for _, s := range []string{
		get("/"),
		get("/a") + get("/b"),
		request("POST", "/", "hello") + "\r\n" + get("/"),
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked("hello", 2, "X-T: 1"),
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhi",
		"GET / HTTP/1.0\r\n\r\n",
		get("/", "Expect: 100-continue", "Content-Length: 1") + "x",
		get("/", "Upgrade: websocket", "Connection: Upgrade"),
		"GET / HTTP/1.1\nHost: x\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GARBAGE\r\n\r\n",
		"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
	} {
		f.Add([]byte(s))
	}
	s := startServer(f, h1Kind, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}), func(s *http.Server) { s.ReadHeaderTimeout = time.Second })
	f.Fuzz(func(t *testing.T, in []byte) {
		conn, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			if _, err := conn.Write(in); err == nil {
				_ = conn.(*net.TCPConn).CloseWrite()
			}
		}()
		_, err = io.Copy(io.Discard, conn)
		<-wrote
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("server neither answered nor closed the connection after %q", in)
		}
		if l := s.log.String(); strings.Contains(l, "panic") {
			t.Fatalf("panic logged after %q:\n%s", in, l)
		}
	})
}
