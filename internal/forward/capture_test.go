package forward_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/forward"
	"github.com/proxyctl/proxyctl/internal/session"
)

// collector is a forward.Publisher that hands items to the test.
type collector chan *capture.Item

func (c collector) Publish(it *capture.Item) { c <- it }

func (c collector) next(t *testing.T) *capture.Item {
	t.Helper()
	select {
	case it := <-c:
		return it
	case <-time.After(5 * time.Second):
		t.Fatal("no traffic item published")
		return nil
	}
}

func (c collector) none(t *testing.T) {
	t.Helper()
	select {
	case it := <-c:
		t.Fatalf("unexpected item %s %s %d", it.Method, it.Path, it.Status)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestCapture(t *testing.T) {
	for _, path := range paths() {
		t.Run(path, func(t *testing.T) {
			for name, fn := range map[string]func(*testing.T){
				"Exchange":            testCaptureExchange,
				"Truncates":           testCaptureTruncates,
				"FullBinaryBodies":    testCaptureFullBinaryBodies,
				"UpstreamError":       testCaptureUpstreamError,
				"BrokenBody":          testCaptureBrokenBody,
				"RefusalsNotCaptured": testCaptureRefusalsNotCaptured,
				"LargeDownloadFlat":   testCaptureLargeDownloadFlat,
			} {
				t.Run(name, fn)
			}
		})
	}
}

func capturing(c collector, limit int64) func(p *forward.Proxy) {
	return func(p *forward.Proxy) {
		p.Capture = c
		p.CaptureBodyLimit = limit
	}
}

func echoUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Upstream", "yes")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(append([]byte("echo:"), b...))
	}))
	t.Cleanup(up.Close)
	return up
}

func testCaptureExchange(t *testing.T) {
	c := make(collector, 16)
	f := newProxy(t, echoUpstream(t), session.ModeAuto, capturing(c, 0))
	var stamps []int64
	for i := range 3 {
		body := strings.Repeat("x", i+1)
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.srv.URL+"/items?b=2&a=1", strings.NewReader(body))
		req.Header.Set("X-Proxy-Session", "s1")
		req.Header.Set("X-Custom", "v")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		it := c.next(t)
		if it.SessionID != "s1" || it.Kind != capture.KindHTTP || it.Method != "POST" || it.Path != "/items?b=2&a=1" || it.Status != 201 || it.ID == "" {
			t.Fatalf("item %+v", it)
		}
		if string(it.RequestBody.Data) != body || !bytes.Equal(it.ResponseBody.Data, got) || it.RequestBody.Truncated {
			t.Fatalf("bodies %q %q, client got %q", it.RequestBody.Data, it.ResponseBody.Data, got)
		}
		if it.RequestHeaders["X-Custom"][0] != "v" || it.ResponseHeaders["X-Upstream"][0] != "yes" {
			t.Fatalf("headers %v %v", it.RequestHeaders, it.ResponseHeaders)
		}
		if it.DurationMs <= 0 || it.Error != "" || it.Stubbed {
			t.Fatalf("duration %v error %q stubbed %v", it.DurationMs, it.Error, it.Stubbed)
		}
		stamps = append(stamps, it.Timestamp)
	}
	for i := 1; i < len(stamps); i++ {
		if stamps[i] <= stamps[i-1] {
			t.Fatalf("timestamps not unique and increasing: %v", stamps)
		}
	}
}

func testCaptureTruncates(t *testing.T) {
	c := make(collector, 4)
	f := newProxy(t, echoUpstream(t), session.ModeAuto, capturing(c, 10))
	body := strings.Repeat("0123456789", 10)
	resp, err := http.Post(f.srv.URL+"/t", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "echo:"+body {
		t.Fatalf("client got %q: capture must not change the stream", got)
	}
	it := c.next(t)
	rb := it.RequestBody
	if !rb.Truncated || rb.Size != 100 || string(rb.Data) != body[:10] || rb.SHA256 != sha256.Sum256([]byte(body)) {
		t.Fatalf("request body %+v", rb)
	}
	sb := it.ResponseBody
	if !sb.Truncated || sb.Size != 105 || sb.SHA256 != sha256.Sum256(got) {
		t.Fatalf("response body %+v", sb)
	}
}

func testCaptureFullBinaryBodies(t *testing.T) {
	c := make(collector, 4)
	f := newProxy(t, echoUpstream(t), session.ModeAuto, capturing(c, -1))
	body := make([]byte, 1<<20)
	_, _ = rand.Read(body)
	resp, err := http.Post(f.srv.URL+"/bin", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	it := c.next(t)
	if !bytes.Equal(it.RequestBody.Data, body) || it.RequestBody.Truncated {
		t.Fatalf("request body: %d bytes captured of %d", len(it.RequestBody.Data), len(body))
	}
	if !bytes.Equal(it.ResponseBody.Data, got) || len(got) != len(body)+5 {
		t.Fatalf("response body: %d bytes captured, client got %d", len(it.ResponseBody.Data), len(got))
	}
}

func testCaptureUpstreamError(t *testing.T) {
	c := make(collector, 4)
	f := newProxy(t, nil, session.ModeAuto, func(p *forward.Proxy) {
		p.Target = &url.URL{Scheme: "http", Host: "127.0.0.1:1"}
		capturing(c, 0)(p)
	})
	resp, body := get(t, f.srv.URL+"/x", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d", resp.StatusCode)
	}
	it := c.next(t)
	if it.Status != 502 || it.Error != "upstream unreachable" || string(it.ResponseBody.Data) != body {
		t.Fatalf("item status %d error %q body %q", it.Status, it.Error, it.ResponseBody.Data)
	}
}

func testCaptureBrokenBody(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100000")
		_, _ = w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
	}))
	defer up.Close()
	c := make(collector, 4)
	f := newProxy(t, up, session.ModeAuto, capturing(c, 0))
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+"/", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	it := c.next(t)
	if it.Error == "" {
		t.Fatalf("a broken body must be marked in the item: %+v", it)
	}
}

func testCaptureRefusalsNotCaptured(t *testing.T) {
	c := make(collector, 4)
	f := newProxy(t, echoUpstream(t), session.ModeStrict, capturing(c, 0))
	resp, _ := get(t, f.srv.URL+"/", nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c.none(t)
}

func testCaptureLargeDownloadFlat(t *testing.T) {
	const size = 100 << 20
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.Copy(w, &zeroReader{n: size})
	}))
	defer up.Close()
	c := make(collector, 4)
	f := newProxy(t, up, session.ModeAuto, capturing(c, 0))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+"/big", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("got %d bytes, %v", n, err)
	}
	it := c.next(t)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Fatalf("allocated %d MB while capturing a 100 MB stream", grew>>20)
	}
	if b := it.ResponseBody; !b.Truncated || b.Size != size || len(b.Data) != capture.DefaultMaxBody {
		t.Fatalf("response body: truncated %v size %d kept %d", b.Truncated, b.Size, len(b.Data))
	}
}
