package dynamostore

import (
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
)

// Close closes the connections the SDK's client keeps alive (each holds
// two goroutines until IdleConnTimeout), and the store stays usable.
func TestCloseClosesConnections(t *testing.T) {
	t.Parallel()
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		const body = `{}` // GetItem: no such item
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(body))), 10))
		_, _ = io.WriteString(w, body)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	defer srv.Close()
	st, err := Open(t.Context(), "dynamodb://?region=us-east-1&endpoint="+url.QueryEscape(srv.URL), Options{LoadOptions: []func(*config.LoadOptions) error{staticCredentials()}})
	if err != nil {
		t.Fatal(err)
	}
	waitOpen := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for open.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d connections open, want %d", open.Load(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// pooled makes calls until one leaves its connection in the pool. Any
	// answer will do; but net/http does not reuse a connection whose
	// request write it has not seen finish within 50 ms (a loaded CI
	// machine), and closes it instead.
	pooled := func() {
		t.Helper()
		for range 50 {
			_, _ = st.GetSession(t.Context(), "s-1")
			time.Sleep(100 * time.Millisecond)
			if open.Load() == 1 {
				return
			}
		}
		t.Fatalf("no call left its connection pooled: %d open", open.Load())
	}
	for range 2 {
		pooled()
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		waitOpen(0) // and again: Close leaves the store usable
	}
}
