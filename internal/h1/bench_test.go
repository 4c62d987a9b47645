package h1_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/h1"
)

// BenchmarkServe compares h1 with net/http's server on what a proxy's
// listener mostly sees: keep-alive GETs answered with 1 KB of declared
// length. Each parallel client owns one connection and writes its next
// request once it has read the response; the client's own parsing is in
// both figures.
//
//	go test -run '^$' -bench Serve -benchmem ./internal/h1/
func BenchmarkServe(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"}
		w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
		_, _ = w.Write(body)
	})
	for _, tc := range []struct {
		name  string
		serve func(net.Listener) (stop func())
	}{
		{"net-http", func(ln net.Listener) func() {
			srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
			go func() { _ = srv.Serve(ln) }()
			return func() { _ = srv.Close() }
		}},
		{"h1", func(ln net.Listener) func() {
			srv := &h1.Server{Handler: handler, Fallback: &http.Server{Handler: handler}, ReadHeaderTimeout: 10 * time.Second}
			done := make(chan struct{})
			go func() { _ = srv.Serve(ln); close(done) }()
			return func() {
				_ = srv.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
				<-done
			}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			stop := tc.serve(ln)
			defer stop()
			req := []byte("GET /1k HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				br := bufio.NewReader(c)
				for pb.Next() {
					if _, err := c.Write(req); err != nil {
						b.Error(err)
						return
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 {
						b.Errorf("status %d, %v", resp.StatusCode, err)
						return
					}
				}
			})
		})
	}
}
