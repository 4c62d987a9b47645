package tape

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 15, 4, 5, 123456789, time.UTC)

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sampleExchanges(t testing.TB) []Exchange {
	t.Helper()
	return []Exchange{
		{
			ID: "x1", SessionID: "s1", Seq: 1, Time: t0, DurationMs: 12.5,
			Request: Request{
				Method: "POST", URL: "/v1/items?limit=10&tag=a&tag=b", Proto: "HTTP/1.1",
				Headers: http.Header{"Content-Type": {"application/json"}, "Accept": {"a/b", "c/d", "a/b"}},
				Body:    Body(`{"name":"caf\u00e9 <b>&</b>","n":1}`),
			},
			Response: &Response{
				Status:  201,
				Headers: http.Header{"Content-Type": {"application/json"}, "Set-Cookie": {"a=1", "b=2"}},
				Body:    Body("{\n  \"ok\": true\n}\n"),
			},
		},
		{
			ID: "x2", SessionID: "s1", Seq: 2, Time: t0.Add(time.Nanosecond), DurationMs: 3,
			Request: Request{
				Method: "POST", URL: "/form", Proto: "HTTP/1.1",
				Headers: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
				Body:    Body("a=1&b=%20two&c=%E2%82%AC"),
			},
			Response: &Response{Status: 204},
		},
		{
			ID: "x3", SessionID: "s2", Seq: 1, Time: t0, DurationMs: 250,
			Request: Request{Method: "PUT", URL: "/blob", Proto: "HTTP/2.0", Body: randomBytes(t, 1<<20)},
			Response: &Response{
				Status:   200,
				Headers:  http.Header{"Content-Type": {"application/octet-stream"}, "Trailer": {"X-Checksum"}},
				Trailers: http.Header{"X-Checksum": {"abc", "def"}},
				Body:     randomBytes(t, 1<<20),
			},
		},
		{
			ID: "x4", SessionID: "s2", Seq: 2, Time: t0,
			Request:  Request{Method: "GET", URL: "/empty"},
			Response: &Response{Status: 200, Body: Body{}},
			Stubbed:  true,
		},
		{
			ID: "x5", SessionID: "s2", Seq: 3, Time: t0,
			Request: Request{Method: "GET", URL: "/down"},
			Error:   "dial upstream: connection refused",
		},
		{
			ID: "x6", SessionID: "s2", Seq: 4, Time: t0,
			Request:  Request{Method: "POST", URL: "/ctl"},
			Response: &Response{Status: 200, Body: Body("\x00\x01\x02\x03abc")},
		},
	}
}

func sampleFrames() []Frame {
	lines := []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`,
		`  {"jsonrpc" : "2.0",	"id":2 , "result":{"text":"h\u00e9llo \u2028 wörld 🎉"}}  `,
		"{\"jsonrpc\":\"2.0\",\"method\":\"notify\",\"params\":{\"s\":\"a->b <c> & d\"}}\r",
		`not json at all`,
		"\x00\xff\xfe binary \x01",
		"",
	}
	out := make([]Frame, 0, len(lines))
	for i, l := range lines {
		dir := ClientToServer
		if i%2 == 1 {
			dir = ServerToClient
		}
		out = append(out, Frame{
			ID: fmt.Sprintf("f%d", i), SessionID: "s1", Seq: uint64(i + 1),
			Time: t0.Add(time.Duration(i) * time.Millisecond), Direction: dir, Data: Body(l),
		})
	}
	return out
}

// normalize maps the empty-vs-nil distinctions a tape does not keep.
func normalizeExchange(x Exchange) Exchange {
	if len(x.Request.Body) == 0 {
		x.Request.Body = nil
	}
	if x.Response != nil && len(x.Response.Body) == 0 {
		r := *x.Response
		r.Body = nil
		x.Response = &r
	}
	return x
}

func TestRoundTrip(t *testing.T) {
	exchanges := sampleExchanges(t)
	frames := sampleFrames()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{CreatedAt: t0, Kind: KindMixed, Meta: map[string]string{"target": "http://api.example"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range exchanges {
		if err := w.WriteExchange(exchanges[i]); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFrame(frames[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), `\u003e`) {
		t.Error("tape HTML-escapes '>'")
	}
	if !strings.Contains(buf.String(), `"direction":"client->server"`) {
		t.Error(`tape lacks readable "direction":"client->server"`)
	}

	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if h := r.Header(); h.Version != 1 || !h.CreatedAt.Equal(t0) || h.Kind != KindMixed || h.Target() != "http://api.example" {
		t.Errorf("header = %+v", h)
	}
	entries, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Warnings()) != 0 {
		t.Errorf("warnings: %q", r.Warnings())
	}
	if got, want := len(entries), 2*len(exchanges); got != want {
		t.Fatalf("got %d entries, want %d", got, want)
	}
	for i := range exchanges {
		x, ok := entries[2*i].(*Exchange)
		if !ok {
			t.Fatalf("entry %d is %T, want *Exchange", 2*i, entries[2*i])
		}
		if got, want := normalizeExchange(*x), normalizeExchange(exchanges[i]); !reflect.DeepEqual(got, want) {
			t.Errorf("exchange %d:\n got %+v\nwant %+v", i, got, want)
		}
		f, ok := entries[2*i+1].(*Frame)
		if !ok {
			t.Fatalf("entry %d is %T, want *Frame", 2*i+1, entries[2*i+1])
		}
		if !bytes.Equal(f.Data, frames[i].Data) {
			t.Errorf("frame %d data = %q, want %q", i, f.Data, frames[i].Data)
		}
		f.Data, frames[i].Data = nil, nil
		if !reflect.DeepEqual(*f, frames[i]) {
			t.Errorf("frame %d:\n got %+v\nwant %+v", i, *f, frames[i])
		}
	}
}

func TestBodyEncoding(t *testing.T) {
	for _, tc := range []struct {
		body Body
		want string
	}{
		{Body("hello"), `{"text":"hello"}`},
		{Body("a\tb\r\nc"), `{"text":"a\tb\r\nc"}`},
		{Body("<&>"), `{"text":"<&>"}`},
		{Body{0xff, 0x00}, `{"encoding":"base64","data":"/wA="}`},
		{Body("\x00\x01\x02abc"), `{"encoding":"base64","data":"AAECYWJj"}`},
		{Body{}, `{"text":""}`},
	} {
		got, err := tc.body.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("marshal %q = %s, want %s", tc.body, got, tc.want)
		}
		var back Body
		if err := back.UnmarshalJSON(got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, tc.body) {
			t.Errorf("round trip %q = %q", tc.body, back)
		}
	}
	for _, bad := range []string{`{"encoding":"gzip","data":"x"}`, `{"encoding":"base64","data":"!!"}`, `{}`, `{"data":"AA=="}`, `{"text":"a","encoding":"base64","data":"AA=="}`, `12`} {
		var b Body
		if err := b.UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("unmarshal %s: no error", bad)
		}
	}
	var b Body
	if err := b.UnmarshalJSON([]byte(`"plain"`)); err != nil || string(b) != "plain" {
		t.Errorf(`unmarshal "plain" = %q, %v`, b, err)
	}
}

// writeTape returns a tape with n exchanges.
func writeTape(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{Kind: KindHTTP})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := w.WriteExchange(Exchange{ID: fmt.Sprint(i), Seq: uint64(i), Time: t0, Request: Request{Method: "GET", URL: "/"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTruncatedLastLine(t *testing.T) {
	full := writeTape(t, 3)
	lastNL := bytes.LastIndexByte(full[:len(full)-1], '\n')
	for _, cut := range []int{lastNL + 2, lastNL + 10, len(full) - 2} {
		r, err := NewReader(bytes.NewReader(full[:cut]))
		if err != nil {
			t.Fatal(err)
		}
		entries, err := r.ReadAll()
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if len(entries) != 2 {
			t.Errorf("cut at %d: got %d entries, want 2", cut, len(entries))
		}
		if w := r.Warnings(); len(w) != 1 || !strings.Contains(w[0], "line 4: truncated last line") {
			t.Errorf("cut at %d: warnings = %q", cut, w)
		}
	}
	// Without only the final newline, the last line is complete JSON: kept.
	r, err := NewReader(bytes.NewReader(full[:len(full)-1]))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := r.ReadAll()
	if err != nil || len(entries) != 3 || len(r.Warnings()) != 0 {
		t.Errorf("missing final newline: %d entries, %v, warnings %q", len(entries), err, r.Warnings())
	}
}

func TestKilledRecorder(t *testing.T) {
	// What a SIGKILL leaves: flushed lines plus a partial line.
	path := filepath.Join(t.TempDir(), "api.tape.json")
	w, err := OpenFile(path, Header{Kind: KindHTTP})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := w.WriteExchange(Exchange{Seq: uint64(i), Request: Request{Method: "GET", URL: "/"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"type":"exchange","id":"","sessionId":"","seq":9,"request":{"meth`); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	entries, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 5 {
		t.Errorf("got %d entries, want 5", len(entries))
	}
	want := "tape " + path + ": line 7: truncated last line"
	if w := r.Warnings(); len(w) != 1 || !strings.HasPrefix(w[0], want) {
		t.Errorf("warnings = %q, want prefix %q", w, want)
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next after end = %v, want io.EOF", err)
	}
}

func TestReaderErrors(t *testing.T) {
	good := string(writeTape(t, 3))
	lines := strings.SplitAfter(good, "\n")
	hdr := lines[0]
	entry := lines[1]
	for _, tc := range []struct {
		name, tape, want string
	}{
		{"malformed middle", hdr + entry + "{not json\n" + entry, "tape: line 3: invalid entry: "},
		{"malformed middle blank lines", hdr + "\n" + entry + "   \n" + `{"type":"exchange","request":{"method":"GET"},"time":"yesterday"}` + "\n" + entry, "tape: line 5: invalid entry: "},
		{"unknown type", hdr + `{"type":"bogus"}` + "\n", `tape: line 2: invalid entry: unknown entry type "bogus"`},
		{"missing type", hdr + `{"id":"x"}` + "\n", `tape: line 2: invalid entry: missing "type"`},
		{"missing method", hdr + `{"type":"exchange","request":{}}` + "\n", "tape: line 2: invalid entry: exchange: missing request method"},
		{"bad direction", hdr + `{"type":"frame","direction":"up"}` + "\n", `tape: line 2: invalid entry: frame: invalid direction "up"`},
		{"bad body", hdr + `{"type":"exchange","request":{"method":"GET","body":{"encoding":"rot13","data":""}}}` + "\n", `unknown encoding "rot13"`},
		{"complete but invalid last line", hdr + entry + `{"type":"bogus"}`, "tape: line 3: invalid entry: unknown entry type"},
		{"empty", "", "tape: line 1: empty tape: missing header"},
		{"unknown version", `{"proxyctlTape":2,"createdAt":"2026-01-01T00:00:00Z","kind":"http"}` + "\n", "tape: line 1: unsupported tape version 2 (this build reads version 1)"},
		{"not a tape", `{"foo":1}` + "\n", `tape: line 1: not a proxyctl tape: missing "proxyctlTape" version`},
		{"bad kind", `{"proxyctlTape":1,"kind":"ftp"}` + "\n", `tape: line 1: invalid header: unknown kind "ftp"`},
		{"garbage header", "GET / HTTP/1.1\r\n", "tape: line 1: invalid header: "},
		{"truncated header", `{"proxyctlTape":1,"kin`, "tape: line 1: invalid header: truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(strings.NewReader(tc.tape))
			if err == nil {
				_, err = r.ReadAll()
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want it to contain %q", err, tc.want)
			}
			if _, ok := errors.AsType[*LineError](err); !ok {
				t.Errorf("error %T is not a *LineError", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestOpenNamesTape(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.tape.json")
	good := writeTape(t, 20)
	lines := bytes.SplitAfter(good, []byte("\n"))
	lines[16] = []byte("{\"type\":\"exchange\",\n")
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	entries, err := r.ReadAll()
	want := "tape " + path + ": line 17: invalid entry: "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want prefix %q", err, want)
	}
	if len(entries) != 15 {
		t.Errorf("got %d entries before the error, want 15", len(entries))
	}
	// The error is sticky.
	if _, err2 := r.Next(); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second Next = %v, want %v", err2, err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Open of a missing file: no error")
	}
}

func TestLineLimit(t *testing.T) {
	tapeBytes := writeTape(t, 1)
	var buf bytes.Buffer
	buf.Write(tapeBytes)
	buf.WriteString(`{"type":"exchange","request":{"method":"GET","body":{"text":"` + strings.Repeat("a", 200<<10) + `"}}}` + "\n")
	r, err := newReader(bytes.NewReader(buf.Bytes()), "big", 100<<10)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.ReadAll()
	if want := "tape big: line 3: line longer than 102400 bytes"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	// Large lines under the limit read fine (bufio.Scanner's 64 KiB is no limit here).
	r, err = NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := r.ReadAll()
	if err != nil || len(entries) != 2 || len(entries[1].(*Exchange).Request.Body) != 200<<10 {
		t.Errorf("large line: %d entries, %v", len(entries), err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 8, 50
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				var err error
				if g%2 == 0 {
					err = w.WriteExchange(Exchange{SessionID: fmt.Sprint(g), Seq: uint64(i), Request: Request{Method: "POST", URL: "/", Body: Body(strings.Repeat("x", 10_000+g*997+i))}})
				} else {
					err = w.WriteFrame(Frame{SessionID: fmt.Sprint(g), Seq: uint64(i), Direction: ClientToServer, Data: Body(strings.Repeat("y", 5000+i))})
				}
				if err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					if err := w.Flush(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != goroutines*each {
		t.Fatalf("got %d entries, want %d", len(entries), goroutines*each)
	}
	next := map[string]uint64{}
	for _, e := range entries {
		var sid string
		var seq uint64
		switch e := e.(type) {
		case *Exchange:
			sid, seq = e.SessionID, e.Seq
		case *Frame:
			sid, seq = e.SessionID, e.Seq
		}
		if seq != next[sid] {
			t.Fatalf("session %s: seq %d, want %d", sid, seq, next[sid])
		}
		next[sid]++
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("disk full")
	}
	f.n--
	return len(p), nil
}

func TestStickyWriteError(t *testing.T) {
	w, err := NewWriter(&failWriter{n: 1}, Header{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFrame(Frame{Direction: ServerToClient, Data: Body("x")}); err != nil {
		t.Fatal(err) // buffered
	}
	err = w.Flush()
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Flush = %v, want disk full", err)
	}
	for _, c := range []struct {
		name string
		f    func() error
	}{
		{"WriteFrame", func() error { return w.WriteFrame(Frame{Direction: ServerToClient}) }},
		{"WriteExchange", func() error { return w.WriteExchange(Exchange{Request: Request{Method: "GET"}}) }},
		{"Flush", w.Flush},
		{"Close", w.Close}, // last
	} {
		if got := c.f(); !errors.Is(got, err) {
			t.Errorf("%s = %v, want %v", c.name, got, err)
		}
	}
	if err := w.WriteFrame(Frame{Direction: ServerToClient}); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close = %v, want ErrClosed", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}

	if _, err := NewWriter(&failWriter{}, Header{}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("NewWriter on a failing writer = %v", err)
	}
}

func TestWriterValidation(t *testing.T) {
	var buf bytes.Buffer
	if _, err := NewWriter(&buf, Header{Version: 2}); err == nil {
		t.Error("version 2 header: no error")
	}
	if _, err := NewWriter(&buf, Header{Kind: "ftp"}); err == nil {
		t.Error("kind ftp: no error")
	}
	hw, err := NewWriter(&buf, Header{Kind: KindHTTP})
	if err != nil {
		t.Fatal(err)
	}
	if err := hw.WriteFrame(Frame{Direction: ClientToServer}); err == nil {
		t.Error("frame on an http tape: no error")
	}
	if err := hw.WriteExchange(Exchange{}); err == nil {
		t.Error("exchange without method: no error")
	}
	// Validation errors are not sticky.
	if err := hw.WriteExchange(Exchange{Request: Request{Method: "GET"}}); err != nil {
		t.Errorf("valid exchange after a refused one: %v", err)
	}
	sw, err := NewWriter(&buf, Header{Kind: KindStdio})
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.WriteExchange(Exchange{Request: Request{Method: "GET"}}); err == nil {
		t.Error("exchange on a stdio tape: no error")
	}
	if err := sw.WriteFrame(Frame{Direction: "sideways"}); err == nil {
		t.Error("bad direction: no error")
	}
	if h := sw.Header(); h.Version != Version || h.CreatedAt.IsZero() {
		t.Errorf("defaults not applied: %+v", h)
	}
}

func TestOpenFile(t *testing.T) {
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		_, err := OpenFile(dir, Header{})
		if want := "open tape " + dir + ": is a directory"; err == nil || err.Error() != want {
			t.Errorf("got %v, want %q", err, want)
		}
	})
	t.Run("read-only directory", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("running as root: directory permissions do not apply")
		}
		dir := filepath.Join(t.TempDir(), "ro")
		if err := os.Mkdir(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
		path := filepath.Join(dir, "t.tape.json")
		_, err := OpenFile(path, Header{})
		if want := "open tape " + path + ": permission denied (is the location writable?)"; err == nil || err.Error() != want {
			t.Errorf("got %v, want %q", err, want)
		}
	})
	t.Run("missing parent", func(t *testing.T) {
		// Missing directories are created (0750), as go-vcr does.
		path := filepath.Join(t.TempDir(), "nope", "deeper", "t.tape.json")
		w, err := OpenFile(path, Header{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
			t.Errorf("parent directory: %v, %v", fi, err)
		}
	})
	t.Run("truncates", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "t.tape.json")
		// An existing tape is replaced (re-recording is normal).
		old := `{"proxyctlTape":1,"createdAt":"2026-11-23T15:04:05Z","kind":"http"}` + "\n" +
			strings.Repeat(`{"type":"exchange","sessionId":"s","seq":1,"request":{"method":"GET","url":"/old"}}`+"\n", 1000)
		if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
			t.Fatal(err)
		}
		w, err := OpenFile(path, Header{Kind: KindStdio})
		if err != nil {
			t.Fatal(err)
		}
		// The header is on disk before any Flush.
		r, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Next(); !errors.Is(err, io.EOF) {
			t.Errorf("fresh tape Next = %v, want io.EOF", err)
		}
		_ = r.Close()
		if err := w.WriteFrame(Frame{Direction: ClientToServer, Data: Body("{}")}); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", fi.Mode().Perm())
		}
		r, err = Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		entries, err := r.ReadAll()
		if err != nil || len(entries) != 1 {
			t.Errorf("got %d entries, %v; want 1", len(entries), err)
		}
	})
}
