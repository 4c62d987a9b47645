package tape

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/proxyctl/proxyctl/internal/writeback"
)

// A tape longer than a few writeback chunks is dropped from the page cache
// behind its end (internal/writeback) and still reads back whole.
func TestLongTapeDropsCacheAndReadsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "long.tape.json")
	w, err := OpenFile(path, Header{Kind: KindHTTP})
	if err != nil {
		t.Fatal(err)
	}
	body := randomBytes(t, 256<<10) // base64 in the tape: ~341 KiB a line
	const n = 100                   // ~34 MiB: four chunks
	for i := range n {
		x := Exchange{
			ID: "x", SessionID: "s", Seq: uint64(i), Time: t0, DurationMs: 1,
			Request:  Request{Method: "GET", URL: "/blob", Proto: "HTTP/1.1"},
			Response: &Response{Status: 200, Headers: http.Header{"Content-Type": {"application/octet-stream"}}, Body: body},
		}
		if err := w.WriteExchange(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	dropped := w.trail.Dropped()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" && dropped < 2*writeback.Chunk {
		t.Errorf("%d bytes dropped from the page cache, want at least %d", dropped, 2*writeback.Chunk)
	}

	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	got := 0
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		x, ok := e.(*Exchange)
		if !ok || x.Seq != uint64(got) || x.Response == nil || !bytes.Equal(x.Response.Body, body) {
			t.Fatalf("entry %d does not read back as written", got)
		}
		got++
	}
	if got != n || len(r.Warnings()) > 0 {
		t.Fatalf("read %d entries (warnings %q), want %d", got, r.Warnings(), n)
	}
}
