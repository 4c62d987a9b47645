package testutil

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// WriteBig writes n bytes of "x" to w in 32 KiB pieces and returns the
// error of the write that failed (the proxy aborted the exchange), or nil
// when everything went out.
func WriteBig(w http.ResponseWriter, n int) error {
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	for sent := 0; sent < n; sent += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

// DialSmall dials addr with a 64 KiB receive buffer: a client that stops
// reading fills it, and the proxy's buffers behind it, soon.
func DialSmall(t testing.TB, addr string) *RawConn {
	t.Helper()
	c := DialRaw(t, addr)
	_ = c.Conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	return c
}

// WantAborted waits for a WriteBig result: it must be an error (the
// exchange was aborted) within 10 s. timeout names the send timeout for
// the failure message.
func WantAborted(t testing.TB, ended <-chan error, timeout string) {
	t.Helper()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the upstream wrote the whole response to a client that reads nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the upstream was still writing 10 s later: the exchange was not aborted (%s)", timeout)
	}
}

// WantCut reads, at last, what the proxy sent: the connection must be
// closed before the whole response (size bytes of body) went out.
func (c *RawConn) WantCut(t testing.TB, size int) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c.Conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the connection is still open")
	}
	if n >= int64(size) {
		t.Fatalf("the client read %d bytes: the whole response", n)
	}
}
