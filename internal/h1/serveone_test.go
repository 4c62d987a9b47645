package h1_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/h1"
)

// ServeOne serves one request of a connection an event loop lent it, and
// gives the connection back with the bytes read past that request; what
// h1 does not serve (HTTP/1.0) goes on to the fallback, which keeps it.
func TestServeOne(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path)
	})
	s := &h1.Server{Handler: h, Fallback: &http.Server{Handler: h, ReadHeaderTimeout: time.Second}}
	t.Cleanup(func() { _ = s.Close() })
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}

	cases := []struct {
		name, in, wantBody, wantRest string
		wantBack                     bool
	}{
		{"served, the next request kept", "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\n", "GET /a", "GET /b HTTP/1.1\r\n", true},
		{"Connection: close", "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET /c", "", false},
		{"HTTP/1.0: the fallback's", "GET /d HTTP/1.0\r\nHost: x\r\n\r\n", "GET /d", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			_ = client.SetDeadline(time.Now().Add(5 * time.Second))
			type result struct {
				rest []byte
				back bool
			}
			res := make(chan result, 1)
			go func() {
				rest, back := s.ServeOne(server, []byte(tc.in), addr)
				if back {
					_ = server.Close()
				}
				res <- result{rest, back}
			}()
			resp, err := http.ReadResponse(bufio.NewReader(client), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != tc.wantBody {
				t.Fatalf("body %q, want %q", body, tc.wantBody)
			}
			if !tc.wantBack {
				_ = client.Close() // the fallback may be waiting for more
			}
			r := <-res
			if r.back != tc.wantBack || string(r.rest) != tc.wantRest {
				t.Fatalf("back=%v rest=%q, want back=%v rest=%q", r.back, r.rest, tc.wantBack, tc.wantRest)
			}
		})
	}
}
