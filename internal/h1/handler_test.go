package h1_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWireController runs exchanges whose handlers use
// http.ResponseController and the optional ResponseWriter interfaces.
func TestWireController(t *testing.T) {
	t.Parallel()
	cases := []wireCase{
		{
			name: "Flush",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "a")
				err := http.NewResponseController(w).Flush()
				_, _ = fmt.Fprintf(w, " flush: %v", err)
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name: "SetReadDeadline cuts a body read",
			handler: func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				err := rc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				b, rerr := io.ReadAll(r.Body)
				_, _ = fmt.Fprintf(w, "set: %v, read %q, deadline exceeded: %v", err, b, errors.Is(rerr, os.ErrDeadlineExceeded))
			},
			// 5 of the 10 bytes declared.
			send:    []string{"POST / HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 10\r\n\r\nhello"},
			methods: []string{"POST"},
			end:     "closed",
			check:   wantBody(`set: <nil>, read "hello", deadline exceeded: true`),
		},
		{
			name: "SetReadDeadline does not outlive the request",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/a" {
					_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				}
				echoPath(w, r)
			},
			send:    []string{get("/a"), get("/b")},
			pause:   200 * time.Millisecond,
			methods: []string{"GET", "GET"},
			end:     "open",
			check:   wantBody("path=/a", "path=/b"),
		},
		{
			name: "SetWriteDeadline does not outlive the request",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/a" {
					_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
				} else {
					time.Sleep(200 * time.Millisecond)
				}
				echoPath(w, r)
			},
			send:    []string{get("/a") + get("/b")},
			methods: []string{"GET", "GET"},
			end:     "open",
			check:   wantBody("path=/a", "path=/b"),
		},
		{
			// net/http supports full duplex; h1's writer does not.
			name: "EnableFullDuplex",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				_, _ = fmt.Fprintf(w, "full duplex: %v", http.NewResponseController(w).EnableFullDuplex())
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			// Hijacker and the deprecated http.CloseNotifier are the
			// documented differences.
			name: "ResponseWriter interfaces",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				_, flusher := w.(http.Flusher)
				_, stringWriter := w.(io.StringWriter)
				_, _ = fmt.Fprintf(w, "Flusher %v, io.StringWriter %v", flusher, stringWriter)
			},
			send: []string{get("/")},
			end:  "open",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runWire(t, tc)
		})
	}
}

// TestHijackNotSupported checks the documented difference: a request h1
// serves cannot be hijacked, and http.ResponseController says so.
func TestHijackNotSupported(t *testing.T) {
	t.Parallel()
	s := startServer(t, h1Kind, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _, err := http.NewResponseController(w).Hijack()
		_, _ = fmt.Fprintf(w, "ErrNotSupported: %v", errors.Is(err, http.ErrNotSupported))
	}), nil)
	c := dial(t, s.addr, 0)
	c.write(get("/"))
	if r := c.mustRead("GET"); string(r.Body) != "ErrNotSupported: true" || r.Via != string(h1Kind) {
		t.Errorf("body %q (served by %s), want ErrNotSupported: true from h1", r.Body, r.Via)
	}
	if got := c.state(); got != "open" {
		t.Errorf("connection %s, want open", got)
	}
}

// TestSetWriteDeadline checks that a write deadline set through
// http.ResponseController cuts the handler's writes.
func TestSetWriteDeadline(t *testing.T) {
	t.Parallel()
	for _, k := range bothKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			res := make(chan error, 1)
			s := startServer(t, k, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				rc := http.NewResponseController(w)
				if err := rc.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
					res <- fmt.Errorf("SetWriteDeadline: %w", err)
					return
				}
				_, err := io.WriteString(w, strings.Repeat("d", 64<<10))
				if err == nil {
					err = rc.Flush()
				}
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					res <- fmt.Errorf("write past the deadline: %w, want os.ErrDeadlineExceeded", err)
					return
				}
				res <- nil
			}), nil)
			c := dial(t, s.addr, 0)
			c.write(get("/"))
			if err := <-res; err != nil {
				t.Error(err)
			}
			if _, err := c.read("GET"); classify(err) != "closed" && classify(err) != "truncated" {
				t.Errorf("client after the write failed: %v, want the connection closed", err)
			}
		})
	}
}

// TestFlushStreams checks that what a handler flushes reaches the client
// before the handler returns, chunked.
func TestFlushStreams(t *testing.T) {
	t.Parallel()
	for _, k := range bothKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			var once sync.Once
			s := startServer(t, k, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				_, _ = io.WriteString(w, "first")
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, "second")
			}), nil)
			t.Cleanup(func() { once.Do(func() { close(release) }) })
			c := dial(t, s.addr, 0)
			c.write(get("/"))
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("response head before the handler finished: %v", err)
			}
			defer func() { _ = resp.Body.Close() }()
			if len(resp.TransferEncoding) == 0 {
				t.Errorf("TransferEncoding %q, want chunked", resp.TransferEncoding)
			}
			first := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
				t.Fatalf("first part: %q, %v", first, err)
			}
			once.Do(func() { close(release) })
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != "second" {
				t.Errorf("rest: %q, %v; want %q", rest, err, "second")
			}
			if got := c.state(); got != "open" {
				t.Errorf("connection %s, want open", got)
			}
		})
	}
}

// TestExpectContinue checks that a client that waits for 100 Continue
// before it sends its body gets it (h1 hands such requests on).
func TestExpectContinue(t *testing.T) {
	t.Parallel()
	for _, k := range bothKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			s := startServer(t, k, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				_, _ = fmt.Fprintf(w, "got %q %v", b, err)
			}), nil)
			c := dial(t, s.addr, 0)
			c.write(get("/") + "POST /upload HTTP/1.1\r\nHost: " + host + "\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
			if r := c.mustRead("GET"); r.Status != "200 OK" {
				t.Fatalf("first response %s", r.Status)
			}
			if r := c.mustRead("POST"); r.Status != "100 Continue" {
				t.Fatalf("interim response %q, want 100 Continue", r.Status)
			}
			c.write("hello")
			r := c.mustRead("POST")
			if r.Status != "200 OK" || string(r.Body) != `got "hello" <nil>` {
				t.Errorf("final response %s %q", r.Status, r.Body)
			}
			if r.Via != string(stdKind) {
				t.Errorf("served by %q, want the fallback", r.Via)
			}
			if got := c.state(); got != "open" {
				t.Errorf("connection %s, want open", got)
			}
		})
	}
}

// TestUpgradeHijack checks that an upgrade, as the first request of a
// connection or after one h1 served, reaches a handler that can hijack
// the connection.
func TestUpgradeHijack(t *testing.T) {
	t.Parallel()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			_, _ = io.WriteString(w, "plain")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer func() { _ = conn.Close() }()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = brw.WriteString("echo: " + line)
			_ = brw.Flush()
		}
	})
	for _, k := range bothKinds() {
		for _, first := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/after a plain request %v", k, first), func(t *testing.T) {
				t.Parallel()
				s := startServer(t, k, handler, nil)
				c := dial(t, s.addr, 0)
				if first {
					c.write(get("/"))
					if r := c.mustRead("GET"); string(r.Body) != "plain" {
						t.Fatalf("plain response %s %q", r.Status, r.Body)
					}
				}
				c.write(get("/ws", "Connection: Upgrade", "Upgrade: echo"))
				if r := c.mustRead("GET"); r.Status != "101 Switching Protocols" {
					t.Fatalf("upgrade response %s %q", r.Status, r.Body)
				}
				for _, msg := range []string{"ping", "pong"} {
					c.write(msg + "\n")
					line, err := c.br.ReadString('\n')
					if err != nil || line != "echo: "+msg+"\n" {
						t.Fatalf("echo %q, %v", line, err)
					}
				}
			})
		}
	}
}

// TestRequestContext checks that the request's context is live while the
// handler runs and cancelled after it returns.
func TestRequestContext(t *testing.T) {
	t.Parallel()
	for _, k := range bothKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			ctxs := make(chan context.Context, 1)
			s := startServer(t, k, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctxs <- r.Context()
				_, _ = fmt.Fprintf(w, "err: %v", r.Context().Err())
			}), nil)
			c := dial(t, s.addr, 0)
			c.write(get("/"))
			if r := c.mustRead("GET"); string(r.Body) != "err: <nil>" {
				t.Errorf("body %q, want a live context in the handler", r.Body)
			}
			ctx := <-ctxs
			select {
			case <-ctx.Done():
			case <-time.After(connTimeout):
				t.Error("request context not cancelled after the handler returned")
			}
		})
	}
}

// TestContextCanceledOnWriteError checks that a handler writing to a
// client that went away finds its context cancelled once a write fails
// (h1 notices the client only then, as documented).
func TestContextCanceledOnWriteError(t *testing.T) {
	t.Parallel()
	for _, k := range bothKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			started, gone, res := make(chan struct{}), make(chan struct{}), make(chan error, 1)
			s := startServer(t, k, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-gone
				chunk := strings.Repeat("w", 64<<10)
				var err error
				for i := 0; i < 200 && err == nil; i++ {
					if _, err = io.WriteString(w, chunk); err == nil {
						err = http.NewResponseController(w).Flush()
					}
				}
				if err == nil {
					res <- errors.New("writes to a closed connection never failed")
					return
				}
				select {
				case <-r.Context().Done():
					res <- nil
				case <-time.After(connTimeout):
					res <- fmt.Errorf("a write failed (%w) but the request context is live", err)
				}
			}), nil)
			c := dial(t, s.addr, 0)
			c.write(get("/"))
			<-started
			_ = c.conn.Close()
			close(gone)
			select {
			case err := <-res:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(2 * connTimeout):
				t.Fatal("handler did not finish")
			}
		})
	}
}

// TestRemoteAddr checks r.RemoteAddr against the client's address.
func TestRemoteAddr(t *testing.T) {
	t.Parallel()
	for _, k := range bothKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			s := startServer(t, k, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, r.RemoteAddr)
			}), nil)
			c := dial(t, s.addr, 0)
			c.write(get("/") + "GET / HTTP/1.0\r\n\r\n") // h1, then the fallback
			for range 2 {
				if r := c.mustRead("GET"); string(r.Body) != c.conn.LocalAddr().String() {
					t.Errorf("RemoteAddr %q, want %q", r.Body, c.conn.LocalAddr())
				}
			}
		})
	}
}

// TestFullDuplex checks a handler that echoes the request body while it
// streams the response, after EnableFullDuplex.
func TestFullDuplex(t *testing.T) {
	t.Parallel()
	for _, k := range bothKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			s := startServer(t, k, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				_ = rc.EnableFullDuplex()
				w.WriteHeader(http.StatusOK)
				_ = rc.Flush()
				buf := make([]byte, 64)
				for {
					n, err := r.Body.Read(buf)
					if n > 0 {
						_, _ = w.Write(buf[:n])
						_ = rc.Flush()
					}
					if err != nil {
						return
					}
				}
			}), nil)
			c := dial(t, s.addr, 2*time.Second)
			c.write("POST / HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("response head while the body is still coming: %v (%s)", err, classify(err))
			}
			defer func() { _ = resp.Body.Close() }()
			first := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "hello" {
				t.Fatalf("first echo %q, %v", first, err)
			}
			c.write("5\r\nworld\r\n0\r\n\r\n")
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != "world" {
				t.Errorf("second echo %q, %v", rest, err)
			}
		})
	}
}

// TestMultipartFormRemoved checks that the temporary files of a parsed
// multipart form are removed after the handler returns.
func TestMultipartFormRemoved(t *testing.T) {
	t.Parallel()
	var body strings.Builder
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("f", "f.txt")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(fw, strings.Repeat("m", 1000))
	_ = mw.Close()
	for _, k := range bothKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			s := startServer(t, k, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// maxMemory 0: file parts go to disk.
				if err := r.ParseMultipartForm(0); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				f, err := r.MultipartForm.File["f"][0].Open()
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				defer func() { _ = f.Close() }()
				osf, ok := f.(*os.File)
				if !ok {
					http.Error(w, "form file in memory", http.StatusInternalServerError)
					return
				}
				_, _ = io.WriteString(w, osf.Name())
			}), nil)
			c := dial(t, s.addr, 0)
			c.write(request("POST", "/", body.String(), "Content-Type: "+mw.FormDataContentType()))
			r := c.mustRead("POST")
			if r.Status != "200 OK" {
				t.Fatalf("%s %s", r.Status, r.Body)
			}
			name := string(r.Body)
			t.Cleanup(func() { _ = os.Remove(name) })
			for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(name); errors.Is(err, os.ErrNotExist) {
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("temporary file %s of the multipart form still exists after the request", name)
					return
				}
			}
		})
	}
}
