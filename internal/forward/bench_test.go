package forward_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/forward"
	"github.com/proxyctl/proxyctl/internal/metrics"
	"github.com/proxyctl/proxyctl/internal/ratelimit"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
	"github.com/proxyctl/proxyctl/internal/transport"
)

// discardWriter is a reusable http.ResponseWriter that drops the body, so
// the benchmark counts the proxy's allocations, not a recorder's. Like
// net/http's, it sets write deadlines on a TCP connection (an idle
// loopback one), so the send timeout costs here what it costs in a server.
type discardWriter struct {
	h    http.Header
	code int
	conn net.Conn
}

func (d *discardWriter) SetWriteDeadline(t time.Time) error { return d.conn.SetWriteDeadline(t) }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(c int)           { d.code = c }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) Flush()                      {}

// BenchmarkServeHTTP measures one proxied GET of a 1 KB body, end to end
// through the guard chain and a real loopback upstream, with the default
// settings of `forward http` (auto sessions, metrics, the 60 s send
// timeout) and optionally a two-tier rate limit.
func BenchmarkServeHTTP(b *testing.B) {
	body := make([]byte, 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	conn := loopbackConn(b)
	for _, bc := range []struct {
		name   string
		path   func(transport.Options) http.RoundTripper
		limits []string
		cap    bool
	}{
		{"fast", func(o transport.Options) http.RoundTripper { return transport.NewSync(o) }, nil, false},
		{"fast+ratelimit", func(o transport.Options) http.RoundTripper { return transport.NewSync(o) }, []string{"ip=1000000/s", "global=1000000/s"}, false},
		{"fast+capture", func(o transport.Options) http.RoundTripper { return transport.NewSync(o) }, nil, true},
		{"reverseproxy", func(o transport.Options) http.RoundTripper { return transport.New(o) }, nil, false},
		{"reverseproxy+capture", func(o transport.Options) http.RoundTripper { return transport.New(o) }, nil, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			mgr := session.NewManager(memstore.New(), session.Config{CacheTTL: time.Minute}, zerolog.Nop())
			p := &forward.Proxy{
				Target: target, Sessions: mgr, SessionErrors: sessionErrors(),
				Observer: metrics.New(), Transport: bc.path(transport.Options{}), Log: zerolog.Nop(),
				ClientSendTimeout: 60 * time.Second,
			}
			if bc.limits != nil {
				specs, _ := ratelimit.ParseSpecs(bc.limits)
				p.Limiter = ratelimit.New(specs, ratelimit.Options{})
			}
			if bc.cap {
				p.Capture = discardPublisher{}
			}
			req := httptest.NewRequest(http.MethodGet, "/1k.txt", nil)
			req.RemoteAddr = "127.0.0.1:40000"
			req.Header.Set("User-Agent", "bench")
			req.Header.Set("Accept", "*/*")
			w := &discardWriter{h: http.Header{}, conn: conn}
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				clear(w.h)
				p.ServeHTTP(w, req)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

var _ io.Writer = (*discardWriter)(nil)

// loopbackConn is one end of a loopback TCP connection, closed with b.
func loopbackConn(b *testing.B) net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	peer := <-accepted
	b.Cleanup(func() {
		_ = c.Close()
		if peer != nil {
			_ = peer.Close()
		}
	})
	return c
}

// discardPublisher drops items: the capture benchmarks count the proxy's
// own capture work (tees, the item), not a pipeline's.
type discardPublisher struct{}

func (discardPublisher) Publish(*capture.Item) {}
