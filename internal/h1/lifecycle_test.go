package h1_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/h1"
)

// TestPanic checks that a handler's panic closes its connection, is
// logged (but for http.ErrAbortHandler), and leaves the server serving.
func TestPanic(t *testing.T) {
	t.Parallel()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/late":
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic("late boom")
		}
		_, _ = io.WriteString(w, "ok")
	})
	for _, k := range bothKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			s := startServer(t, k, handler, nil)

			c := dial(t, s.addr, 0)
			c.write(get("/panic"))
			if _, err := c.read("GET"); classify(err) != "closed" {
				t.Errorf("after a panic: %v, want the connection closed without a response", err)
			}
			if l := s.log.String(); !strings.Contains(l, "boom") || !strings.Contains(l, "panic serving") {
				t.Errorf("log %q, want the panic", l)
			}

			c = dial(t, s.addr, 0)
			c.write(get("/") + get("/panic"))
			if r := c.mustRead("GET"); string(r.Body) != "ok" {
				t.Errorf("request after a panic: %s %q", r.Status, r.Body)
			}
			if _, err := c.read("GET"); classify(err) != "closed" {
				t.Errorf("after a panic on a kept-alive connection: %v, want it closed", err)
			}

			before := s.log.String()
			c = dial(t, s.addr, 0)
			c.write(get("/abort"))
			if _, err := c.read("GET"); classify(err) != "closed" {
				t.Errorf("after ErrAbortHandler: %v, want the connection closed without a response", err)
			}
			if l := s.log.String(); l != before {
				t.Errorf("ErrAbortHandler logged: %q", strings.TrimPrefix(l, before))
			}

			c = dial(t, s.addr, 0)
			c.write(get("/late"))
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("head of a response flushed before a panic: %v", err)
			}
			b, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if string(b) != "partial" || classify(err) != "truncated" {
				t.Errorf("body %q, %v; want %q cut short", b, err, "partial")
			}
		})
	}
}

// TestIdleTimeout checks that an idle keep-alive connection is closed
// after IdleTimeout, and that IdleTimeout, not ReadHeaderTimeout, bounds
// the wait between requests.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	for _, k := range bothKinds() {
		t.Run(string(k)+"/closes idle", func(t *testing.T) {
			t.Parallel()
			s := startServer(t, k, http.HandlerFunc(echoPath), func(s *http.Server) {
				s.IdleTimeout = 200 * time.Millisecond
			})
			c := dial(t, s.addr, 3*time.Second)
			c.write(get("/"))
			c.mustRead("GET")
			if _, err := c.br.Peek(1); classify(err) != "closed" {
				t.Errorf("idle connection: %v, want closed", err)
			}
		})
		t.Run(string(k)+"/longer than ReadHeaderTimeout", func(t *testing.T) {
			t.Parallel()
			s := startServer(t, k, http.HandlerFunc(echoPath), func(s *http.Server) {
				s.ReadHeaderTimeout = 100 * time.Millisecond
				s.IdleTimeout = 10 * time.Second
			})
			c := dial(t, s.addr, 0)
			c.write(get("/a"))
			c.mustRead("GET")
			time.Sleep(400 * time.Millisecond)
			c.write(get("/b"))
			if r, err := c.read("GET"); err != nil || string(r.Body) != "path=/b" {
				t.Errorf("request after an idle spell longer than ReadHeaderTimeout: %q, %v", r.Body, err)
			}
		})
		// net/http: IdleTimeout 0 means ReadTimeout, and both 0 no limit;
		// ReadHeaderTimeout does not apply between requests.
		t.Run(string(k)+"/unset, with ReadHeaderTimeout", func(t *testing.T) {
			t.Parallel()
			s := startServer(t, k, http.HandlerFunc(echoPath), func(s *http.Server) {
				s.ReadHeaderTimeout = 100 * time.Millisecond
			})
			c := dial(t, s.addr, 0)
			c.write(get("/a"))
			c.mustRead("GET")
			time.Sleep(400 * time.Millisecond)
			if got := c.state(); got != "open" {
				t.Errorf("connection idle for 4×ReadHeaderTimeout without IdleTimeout: %s, want open (as net/http)", got)
			}
		})
	}
}

// TestReadHeaderTimeout checks that a client sending half a head is cut
// off after ReadHeaderTimeout, on the first request and on a later one.
func TestReadHeaderTimeout(t *testing.T) {
	t.Parallel()
	for _, k := range bothKinds() {
		for _, later := range []bool{false, true} {
			name := string(k) + "/first request"
			if later {
				name = string(k) + "/second request"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				s := startServer(t, k, http.HandlerFunc(echoPath), func(s *http.Server) {
					s.ReadHeaderTimeout = 200 * time.Millisecond
					s.IdleTimeout = 10 * time.Second
				})
				c := dial(t, s.addr, 3*time.Second)
				if later {
					c.write(get("/a"))
					c.mustRead("GET")
				}
				c.write("GET /slow HTTP/1.1\r\nHost: " + host + "\r\n")
				if _, err := c.br.Peek(1); classify(err) != "closed" {
					t.Errorf("half a head: %v, want the connection closed without a response", err)
				}
			})
		}
	}
}

// blocking is a handler that answers "/block" only when released, and
// everything else at once.
type blocking struct {
	started chan struct{} // one value per blocked request
	release chan struct{}
	once    sync.Once
}

func newBlocking() *blocking {
	b := &blocking{started: make(chan struct{}, 4), release: make(chan struct{})}
	return b
}

func (b *blocking) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/block" {
		b.started <- struct{}{}
		<-b.release
	}
	_, _ = io.WriteString(w, "done "+r.URL.Path)
}

func (b *blocking) unblock() { b.once.Do(func() { close(b.release) }) }

// TestShutdown checks a graceful shutdown with an idle connection and a
// request in flight, served by h1 or by its fallback.
func TestShutdown(t *testing.T) {
	t.Parallel()
	for _, k := range bothKinds() {
		for _, fallback := range []bool{false, true} {
			name := string(k) + "/in flight here"
			if fallback {
				name = string(k) + "/in flight in the fallback"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				b := newBlocking()
				s := startServer(t, k, b, nil)
				t.Cleanup(b.unblock)

				idle := dial(t, s.addr, 0)
				idle.write(get("/idle"))
				idle.mustRead("GET")

				busy := dial(t, s.addr, 0)
				if fallback {
					busy.write("GET /block HTTP/1.0\r\nHost: " + host + "\r\n\r\n")
				} else {
					busy.write(get("/block"))
				}
				<-b.started

				shut := make(chan error, 1)
				go func() { shut <- s.Shutdown(t.Context()) }()
				if _, err := idle.br.Peek(1); classify(err) != "closed" {
					t.Errorf("idle connection during Shutdown: %v, want closed", err)
				}
				select {
				case err := <-shut:
					t.Fatalf("Shutdown returned %v with a request in flight", err)
				default:
				}
				b.unblock()
				r := busy.mustRead("GET")
				if string(r.Body) != "done /block" || !r.Close {
					t.Errorf("in-flight response %s %q (close %v), want it whole with Connection: close", r.Status, r.Body, r.Close)
				}
				if _, err := busy.br.Peek(1); classify(err) != "closed" {
					t.Errorf("connection after the in-flight response: %v, want closed", err)
				}
				select {
				case err := <-shut:
					if err != nil {
						t.Errorf("Shutdown: %v", err)
					}
				case <-time.After(connTimeout):
					t.Fatal("Shutdown did not return")
				}
				if err := s.wait(); !errors.Is(err, http.ErrServerClosed) {
					t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
				}
				if c, err := net.Dial("tcp", s.addr); err == nil {
					_ = c.Close()
					t.Error("listener still accepts after Shutdown")
				}
			})
		}
	}
}

// TestShutdownTimeout checks that Shutdown gives up when its context
// ends, leaving the request in flight to Close.
func TestShutdownTimeout(t *testing.T) {
	t.Parallel()
	for _, k := range bothKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			b := newBlocking()
			s := startServer(t, k, b, nil)
			t.Cleanup(b.unblock)
			busy := dial(t, s.addr, 0)
			busy.write(get("/block"))
			<-b.started
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown: %v, want context.DeadlineExceeded", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if _, err := busy.br.Peek(1); classify(err) != "closed" {
				t.Errorf("connection in flight after Close: %v, want closed", err)
			}
		})
	}
}

// TestClose checks that Close closes idle and active connections at once.
func TestClose(t *testing.T) {
	t.Parallel()
	for _, k := range bothKinds() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			b := newBlocking()
			s := startServer(t, k, b, nil)
			t.Cleanup(b.unblock)

			idle := dial(t, s.addr, 0)
			idle.write(get("/idle"))
			idle.mustRead("GET")
			busy := dial(t, s.addr, 0)
			busy.write(get("/block"))
			<-b.started
			fb := dial(t, s.addr, 0)
			fb.write("GET /block HTTP/1.0\r\nHost: " + host + "\r\n\r\n")
			<-b.started

			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			for name, c := range map[string]*client{"idle": idle, "busy": busy, "fallback": fb} {
				if _, err := c.br.Peek(1); classify(err) != "closed" {
					t.Errorf("%s connection after Close: %v, want closed", name, err)
				}
			}
			if err := s.wait(); !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
			}
		})
	}
}

func TestServeWithoutFallback(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	s := &h1.Server{Handler: http.NotFoundHandler()}
	if err := s.Serve(ln); !errors.Is(err, h1.ErrMissingFallback) {
		t.Errorf("Serve without Fallback: %v, want ErrMissingFallback", err)
	}
}

// TestServeRefusesFallbackSettings: settings of the fallback that h1
// would not apply to the requests it serves are refused, by name.
func TestServeRefusesFallbackSettings(t *testing.T) {
	t.Parallel()
	for field, set := range map[string]func(*http.Server){
		"ReadTimeout":  func(s *http.Server) { s.ReadTimeout = time.Second },
		"WriteTimeout": func(s *http.Server) { s.WriteTimeout = time.Second },
		"ConnState":    func(s *http.Server) { s.ConnState = func(net.Conn, http.ConnState) {} },
		"BaseContext": func(s *http.Server) {
			s.BaseContext = func(net.Listener) context.Context { return context.Background() }
		},
		"ConnContext": func(s *http.Server) {
			s.ConnContext = func(ctx context.Context, _ net.Conn) context.Context { return ctx }
		},
	} {
		t.Run(field, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = ln.Close() }()
			fb := &http.Server{}
			set(fb)
			s := &h1.Server{Handler: http.NotFoundHandler(), Fallback: fb}
			err = s.Serve(ln)
			if err == nil || !strings.Contains(err.Error(), "Fallback."+field) {
				t.Errorf("Serve with Fallback.%s set: %v, want an error naming it", field, err)
			}
		})
	}
}

func TestServeAfterShutdown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	s := &h1.Server{Handler: http.NotFoundHandler(), Fallback: &http.Server{}}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown before Serve: %v", err)
	}
	if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v, want http.ErrServerClosed", err)
	}
}
