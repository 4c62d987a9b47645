package main

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startReplay runs `replay` in-process with args plus free --listen and
// --admin-listen addresses.
func startReplay(t *testing.T, args ...string) *running {
	t.Helper()
	return startReplayTuned(t, func(*forwardHTTPOptions) {}, args...)
}

// answer is what a client saw, minus what may differ between runs.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

func (a answer) String() string {
	return fmt.Sprintf("%d %v %q", a.Status, a.Header, a.Body)
}

// roundTripRequests are varied exchanges: JSON, form, binary, gzip, SSE,
// and a call whose answer changes each time.
func roundTripRequests(base string) []*http.Request {
	mk := func(method, path, ctype, body string) *http.Request {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("X-Proxy-Session", "rt")
		return req
	}
	return []*http.Request{
		mk("POST", "/json?b=2&a=1", "application/json", `{"name":"ada","tags":["x","y"]}`),
		mk("POST", "/form", "application/x-www-form-urlencoded", "a=1&b=two+words"),
		mk("GET", "/bin", "", ""),
		mk("GET", "/gz", "", ""),
		mk("GET", "/sse", "", ""),
		mk("GET", "/counter", "", ""),
		mk("GET", "/counter", "", ""),
		mk("GET", "/counter", "", ""),
		mk("DELETE", "/items/7", "", ""),
	}
}

func roundTripUpstream(t *testing.T, bin []byte) *httptest.Server {
	var counter atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /json", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"got":%s,"query":%q}`, b, r.URL.RawQuery)
	})
	mux.HandleFunc("POST /form", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "text/plain")
		_, _ = fmt.Fprintf(w, "a=%s b=%s", r.PostForm.Get("a"), r.PostForm.Get("b"))
	})
	mux.HandleFunc("GET /bin", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(bin)
	})
	mux.HandleFunc("GET /gz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = io.WriteString(zw, strings.Repeat("compressed text ", 100))
		_ = zw.Close()
	})
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			_, _ = fmt.Fprintf(w, "id: %d\ndata: {\"n\":%d}\n\n", i, i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("GET /counter", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Count", fmt.Sprint(counter.Add(1)))
		_, _ = fmt.Fprintf(w, "call %d", counter.Load())
	})
	mux.HandleFunc("DELETE /items/{id}", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	up := httptest.NewServer(mux)
	t.Cleanup(up.Close)
	return up
}

func doAll(t *testing.T, reqs []*http.Request) []answer {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 10 * time.Second}
	var out []answer
	for _, req := range reqs {
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Method, req.URL, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		h := resp.Header.Clone()
		h.Del("Date")
		h.Del("Ratelimit-Limit")
		h.Del("Ratelimit-Remaining")
		h.Del("Ratelimit-Reset")
		out = append(out, answer{resp.StatusCode, h, b})
	}
	return out
}

// Record varied exchanges against a real upstream, stop it, replay: the
// same statuses, headers and byte-identical bodies; also through the HAR
// export of the tape.
func TestRecordThenReplayRoundTrip(t *testing.T) {
	bin := make([]byte, 300<<10)
	_, _ = rand.Read(bin)
	up := roundTripUpstream(t, bin)
	dir := t.TempDir()
	tp := filepath.Join(dir, "rt.tape")
	rec := startProxyCmd(t, "record", "--target", up.URL, "--tape", tp)
	recorded := doAll(t, roundTripRequests("http://"+rec.proxy))
	if code := rec.wait(t); code != 0 {
		t.Fatalf("record exit %d: %s", code, rec.stderr)
	}
	up.Close()

	var har bytes.Buffer
	if code := runEnv(t.Context(), []string{"tape", "export", "--format", "har", tp}, nil, &har, io.Discard, func(string) string { return "" }); code != 0 {
		t.Fatal("tape export failed")
	}
	harPath := filepath.Join(dir, "rt.har")
	if err := os.WriteFile(harPath, har.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, file := range []string{tp, harPath} {
		t.Run(filepath.Ext(file), func(t *testing.T) {
			rp := startReplay(t, file, "--strict")
			replayed := doAll(t, roundTripRequests("http://"+rp.proxy))
			for i := range recorded {
				if !slices.Equal(recorded[i].Body, replayed[i].Body) || recorded[i].Status != replayed[i].Status {
					t.Errorf("exchange %d: recorded %.200s\nreplayed %.200s", i, recorded[i], replayed[i])
				}
				for k, vs := range recorded[i].Header {
					if k == "Content-Length" && recorded[i].Header.Get("Content-Encoding") == "" {
						continue
					}
					if got := replayed[i].Header[k]; !slices.Equal(got, vs) {
						t.Errorf("exchange %d: header %s recorded %v, replayed %v", i, k, vs, got)
					}
				}
			}
			// Repeated calls: recorded order, then the last repeats.
			again := doAll(t, roundTripRequests("http://" + rp.proxy)[5:6])
			if string(again[0].Body) != "call 3" {
				t.Errorf("after the recorded calls the last must repeat, got %q", again[0].Body)
			}
			if code := rp.wait(t); code != 0 {
				t.Fatalf("replay --strict exit %d with no miss: %s", code, rp.stderr)
			}
			if !strings.Contains(rp.stderr.String(), "0 misses") {
				t.Errorf("no summary: %s", rp.stderr)
			}
		})
	}
}

// A miss names the closest recorded request and what differs; --strict
// then fails the run.
func TestReplayMissAndStrict(t *testing.T) {
	up := roundTripUpstream(t, []byte("x"))
	tp := filepath.Join(t.TempDir(), "m.tape")
	rec := startProxyCmd(t, "record", "--target", up.URL, "--tape", tp)
	doAll(t, roundTripRequests("http://" + rec.proxy)[:1])
	rec.wait(t)

	rp := startReplay(t, tp, "--strict")
	req, _ := http.NewRequest(http.MethodPost, "http://"+rp.proxy+"/json?b=2&a=9", strings.NewReader(`{"name":"ada","tags":["x","y"]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var miss struct {
		Error   string
		Closest struct{ Method, Target string }
		Differs []string
	}
	_ = json.NewDecoder(resp.Body).Decode(&miss)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || miss.Closest.Target != "/json?b=2&a=1" || !slices.ContainsFunc(miss.Differs, func(s string) bool { return strings.HasPrefix(s, "query") }) {
		t.Fatalf("miss: %d %+v", resp.StatusCode, miss)
	}
	if code := rp.wait(t); code != 1 || !strings.Contains(rp.stderr.String(), "--strict") {
		t.Fatalf("replay --strict after a miss: exit %d, %s", code, rp.stderr)
	}
}

// --fallback sends misses upstream.
func TestReplayFallback(t *testing.T) {
	up := roundTripUpstream(t, []byte("x"))
	tp := filepath.Join(t.TempDir(), "f.tape")
	rec := startProxyCmd(t, "record", "--target", up.URL, "--tape", tp)
	doAll(t, roundTripRequests("http://" + rec.proxy)[5:6]) // one /counter call
	rec.wait(t)
	rp := startReplay(t, tp, "--fallback", up.URL)
	got := doAll(t, roundTripRequests("http://" + rp.proxy)[1:2]) // /form: not on the tape
	if got[0].Status != 200 || string(got[0].Body) != "a=1 b=two words" {
		t.Fatalf("fallback answer %s", got[0])
	}
}
