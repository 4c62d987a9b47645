package h1_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	// kib100 is a body too large for any server to hold back.
	kib100 = 100 << 10
	// overDiscard is more than the 256 KiB of unread request body that
	// the servers discard to keep a connection.
	overDiscard = 300 << 10
)

// TestWire runs raw exchanges against h1 and net/http and compares what
// the client sees.
func TestWire(t *testing.T) {
	t.Parallel()
	groups := []struct {
		name  string
		cases []wireCase
	}{
		{"KeepAlive", keepAliveCases()},
		{"Framing", framingCases()},
		{"Trailers", trailerCases()},
		{"Bodyless", bodylessCases()},
		{"RequestBody", requestBodyCases()},
		{"Connection", connectionCases()},
		{"Fallback", fallbackCases()},
		{"Parsing", parsingCases()},
		{"Headers", headerCases()},
		{"Request", requestCases()},
		{"FallbackSettings", fallbackSettingsCases()},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range g.cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					runWire(t, tc)
				})
			}
		})
	}
}

// wantBody checks every response's body against want, in order.
func wantBody(want ...string) func(*testing.T, kind, outcome) {
	return func(t *testing.T, k kind, o outcome) {
		t.Helper()
		if len(o.Responses) != len(want) {
			t.Errorf("%s: %d responses, want %d", k, len(o.Responses), len(want))
			return
		}
		for i, r := range o.Responses {
			if string(r.Body) != want[i] {
				t.Errorf("%s: response %d body %q, want %q", k, i, short(r.Body), short([]byte(want[i])))
			}
		}
	}
}

func short(b []byte) string {
	if len(b) > 80 {
		return fmt.Sprintf("%s... (%d bytes)", b[:40], len(b))
	}
	return string(b)
}

// wantFraming checks the framing of the first response: its declared
// length (-1: none) and whether it is chunked.
func wantFraming(clen int64, chunked bool) func(*testing.T, kind, outcome) {
	return func(t *testing.T, k kind, o outcome) {
		t.Helper()
		if len(o.Responses) == 0 {
			t.Errorf("%s: no response", k)
			return
		}
		r := o.Responses[0]
		if r.ContentLength != clen {
			t.Errorf("%s: ContentLength %d, want %d", k, r.ContentLength, clen)
		}
		if got := len(r.TransferEncoding) > 0; got != chunked {
			t.Errorf("%s: chunked %v, want %v (TransferEncoding %q)", k, got, chunked, r.TransferEncoding)
		}
	}
}

// wantTrailer checks the first response's trailer field.
func wantTrailer(name, value string) func(*testing.T, kind, outcome) {
	return func(t *testing.T, k kind, o outcome) {
		t.Helper()
		if len(o.Responses) == 0 {
			t.Errorf("%s: no response", k)
			return
		}
		if got := o.Responses[0].Trailer.Get(name); got != value {
			t.Errorf("%s: trailer %s %q, want %q", k, name, got, value)
		}
	}
}

func all(checks ...func(*testing.T, kind, outcome)) func(*testing.T, kind, outcome) {
	return func(t *testing.T, k kind, o outcome) {
		t.Helper()
		for _, c := range checks {
			c(t, k, o)
		}
	}
}

func keepAliveCases() []wireCase {
	return []wireCase{
		{
			name:    "two requests in turn",
			handler: echoPath,
			send:    []string{get("/a"), get("/b")},
			pause:   20 * time.Millisecond,
			methods: []string{"GET", "GET"},
			end:     "open",
			via:     []string{"h1", "h1"},
			check:   wantBody("path=/a", "path=/b"),
		},
		{
			name:    "pipelined in one write",
			handler: echoPath,
			send:    []string{get("/a") + get("/b") + get("/c")},
			methods: []string{"GET", "GET", "GET"},
			end:     "open",
			via:     []string{"h1", "h1", "h1"},
			check:   wantBody("path=/a", "path=/b", "path=/c"),
		},
		{
			name: "pipelined with a body between",
			handler: func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				_, _ = fmt.Fprintf(w, "%s %s", r.URL.Path, b)
			},
			send:    []string{request("POST", "/a", "hello") + get("/b")},
			methods: []string{"POST", "GET"},
			end:     "open",
			check:   wantBody("/a hello", "/b "),
		},
	}
}

func framingCases() []wireCase {
	return []wireCase{
		{
			name: "declared Content-Length",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", "5")
				_, _ = io.WriteString(w, "hello")
			},
			send:  []string{get("/")},
			end:   "open",
			via:   []string{"h1"},
			check: all(wantBody("hello"), wantFraming(5, false)),
		},
		{
			name:    "small body without Content-Length",
			handler: text("hello"),
			send:    []string{get("/")},
			end:     "open",
			check:   all(wantBody("hello"), wantFraming(5, false)),
		},
		{
			name: "small body in several writes",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				for range 10 {
					_, _ = io.WriteString(w, strings.Repeat("x", 100))
				}
			},
			send:  []string{get("/")},
			end:   "open",
			check: wantFraming(1000, false),
		},
		{
			name:    "handler writes nothing",
			handler: func(http.ResponseWriter, *http.Request) {},
			send:    []string{get("/")},
			end:     "open",
			check: all(func(t *testing.T, k kind, o outcome) {
				t.Helper()
				wantStatus(t, k, o, "200 OK")
			}, wantBody(""), wantFraming(0, false)),
		},
		{
			name: "handler sets headers only",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("X-A", "1")
			},
			send:    []string{get("/") + get("/")},
			methods: []string{"GET", "GET"},
			end:     "open",
		},
		{
			name: "handler calls WriteHeader only",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusCreated)
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name:    "100 KB body without Content-Length",
			handler: text(strings.Repeat("0123456789", kib100/10)),
			send:    []string{get("/")},
			end:     "open",
			check:   all(wantBody(strings.Repeat("0123456789", kib100/10)), wantFraming(-1, true)),
		},
		{
			// net/http holds back 2 KiB before it decides on chunking,
			// h1 4 KiB (bodyBufSize).
			name:             "3000 byte body without Content-Length",
			framingMayDiffer: true,
			handler:          text(strings.Repeat("x", 3000)),
			send:             []string{get("/")},
			end:              "open",
		},
		{
			name: "100 KB body with Content-Length",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", fmt.Sprint(kib100))
				_, _ = w.Write(bytes.Repeat([]byte("y"), kib100))
			},
			send:  []string{get("/")},
			end:   "open",
			check: wantFraming(kib100, false),
		},
		{
			name: "flush then write",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				_, _ = io.WriteString(w, "a")
				w.(http.Flusher).Flush()
				_, _ = io.WriteString(w, "b")
			},
			send:  []string{get("/")},
			end:   "open",
			check: all(wantBody("ab"), wantFraming(-1, true)),
		},
		{
			name: "flush without body",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.(http.Flusher).Flush()
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name: "declared length not reached",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", "10")
				_, _ = io.WriteString(w, "hello")
			},
			send: []string{get("/")},
		},
		{
			name: "write beyond declared length",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", "3")
				if _, err := io.WriteString(w, "toolong"); !errors.Is(err, http.ErrContentLength) {
					w.Header().Set("X-Error", fmt.Sprint(err))
				}
			},
			send: []string{get("/")},
		},
		{
			name:             "invalid Content-Length from the handler",
			framingMayDiffer: true,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", "abc")
				_, _ = io.WriteString(w, "hi")
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name:             "handler sets Transfer-Encoding chunked",
			framingMayDiffer: true,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Transfer-Encoding", "chunked")
				_, _ = io.WriteString(w, "hi")
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name: "WriteHeader twice",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusAccepted)
				w.WriteHeader(http.StatusTeapot)
				_, _ = io.WriteString(w, "x")
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name: "unknown status code",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(299)
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name: "status code 999",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(999)
			},
			send: []string{get("/")},
			end:  "open",
		},
	}
}

func trailerCases() []wireCase {
	setTrailer := func(prefix bool, flush bool, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			if !prefix {
				w.Header().Set("Trailer", "X-T")
			}
			if flush {
				w.(http.Flusher).Flush()
			}
			_, _ = io.WriteString(w, body)
			if prefix {
				w.Header().Set(http.TrailerPrefix+"X-T", "tv")
			} else {
				w.Header().Set("X-T", "tv")
			}
		}
	}
	return []wireCase{
		{
			name:    "declared, set after a small body",
			handler: setTrailer(false, false, "body"),
			send:    []string{get("/")},
			end:     "open",
			check:   all(wantBody("body"), wantTrailer("X-T", "tv")),
		},
		{
			name:    "declared, empty body",
			handler: setTrailer(false, false, ""),
			send:    []string{get("/")},
			end:     "open",
			check:   wantTrailer("X-T", "tv"),
		},
		{
			name:    "declared, after a flush",
			handler: setTrailer(false, true, "body"),
			send:    []string{get("/")},
			end:     "open",
			check:   all(wantBody("body"), wantTrailer("X-T", "tv")),
		},
		{
			name:    "declared, 100 KB body",
			handler: setTrailer(false, false, strings.Repeat("z", kib100)),
			send:    []string{get("/")},
			end:     "open",
			check:   wantTrailer("X-T", "tv"),
		},
		{
			name:    "TrailerPrefix, after a flush",
			handler: setTrailer(true, true, "body"),
			send:    []string{get("/")},
			end:     "open",
			check:   all(wantBody("body"), wantTrailer("X-T", "tv")),
		},
		{
			name: "TrailerPrefix set before a small body",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set(http.TrailerPrefix+"X-T", "tv")
				_, _ = io.WriteString(w, "body")
			},
			send:  []string{get("/")},
			end:   "open",
			check: wantTrailer("X-T", "tv"),
		},
		{
			name: "declared, two names, one unset",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Trailer", "X-A, X-B")
				w.(http.Flusher).Flush()
				w.Header().Set("X-A", "a")
			},
			send: []string{get("/")},
			end:  "open",
		},
	}
}

func bodylessCases() []wireCase {
	return []wireCase{
		{
			name:    "HEAD with a small body written",
			handler: text("hello"),
			send:    []string{request("HEAD", "/", "") + get("/")},
			methods: []string{"HEAD", "GET"},
			end:     "open",
			via:     []string{"h1", "h1"},
			check:   wantBody("", "hello"),
		},
		{
			name:    "HEAD with a 100 KB body written",
			handler: text(strings.Repeat("h", kib100)),
			send:    []string{request("HEAD", "/", "") + get("/x")},
			methods: []string{"HEAD", "GET"},
			end:     "open",
		},
		{
			name: "HEAD with a declared length",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", "100")
			},
			send:    []string{request("HEAD", "/", "") + get("/")},
			methods: []string{"HEAD", "GET"},
			// The GET gets 0 of its 100 bytes.
		},
		{
			name:    "HEAD with nothing written",
			handler: func(http.ResponseWriter, *http.Request) {},
			send:    []string{request("HEAD", "/", "") + get("/")},
			methods: []string{"HEAD", "GET"},
			end:     "open",
		},
		{
			name: "HEAD with a flush",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.(http.Flusher).Flush()
				_, _ = io.WriteString(w, "hello")
			},
			send:    []string{request("HEAD", "/", "") + get("/")},
			methods: []string{"HEAD", "GET"},
			end:     "open",
		},
		{
			name: "204 with a declared length and a write",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Length", "5")
				w.WriteHeader(http.StatusNoContent)
				if _, err := io.WriteString(w, "hello"); !errors.Is(err, http.ErrBodyNotAllowed) {
					panic(fmt.Sprintf("Write on 204: %v", err))
				}
			},
			send:    []string{get("/") + get("/")},
			methods: []string{"GET", "GET"},
			end:     "open",
		},
		{
			// net/http drops Content-Type only from a 304, not from a
			// 204 (found by FuzzFastSameAsReverseProxy).
			name: "204 with Content-Type, empty and not",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", r.URL.Query().Get("ct"))
				w.WriteHeader(http.StatusNoContent)
			},
			send:    []string{get("/?ct=text/plain") + get("/?ct=")},
			methods: []string{"GET", "GET"},
			end:     "open",
		},
		{
			name: "304 with Content-Length and Content-Type",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.Header().Set("Content-Length", "100")
				w.Header().Set("Etag", `"x"`)
				w.WriteHeader(http.StatusNotModified)
			},
			send:    []string{get("/") + get("/")},
			methods: []string{"GET", "GET"},
			end:     "open",
		},
		{
			name: "304 plain",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Etag", `"x"`)
				w.WriteHeader(http.StatusNotModified)
			},
			send:    []string{get("/") + get("/")},
			methods: []string{"GET", "GET"},
			end:     "open",
		},
		{
			name: "103 Early Hints then 200",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Link", "</style.css>; rel=preload; as=style")
				w.Header().Set("Content-Length", "2") // not on the 103
				w.WriteHeader(http.StatusEarlyHints)
				w.Header().Set("Content-Type", "text/plain")
				_, _ = io.WriteString(w, "ok")
			},
			send:    []string{get("/")},
			methods: []string{"GET", "GET"},
			end:     "open",
			check: func(t *testing.T, k kind, o outcome) {
				t.Helper()
				if len(o.Responses) != 2 || o.Responses[0].Status != "103 Early Hints" ||
					o.Responses[0].Header.Get("Link") == "" || o.Responses[1].Status != "200 OK" {
					t.Errorf("%s: want a 103 with Link, then a 200:\n%s", k, o)
				}
			},
		},
		{
			name: "two 1xx then 200",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusEarlyHints)
				w.WriteHeader(http.StatusProcessing)
				_, _ = io.WriteString(w, "ok")
			},
			send:    []string{get("/")},
			methods: []string{"GET", "GET", "GET"},
			end:     "open",
		},
	}
}

func requestBodyCases() []wireCase {
	big := strings.Repeat("b", overDiscard)
	return []wireCase{
		{
			name:    "Content-Length body read",
			handler: dump,
			send:    []string{request("POST", "/", "hello world") + get("/")},
			methods: []string{"POST", "GET"},
			end:     "open",
			via:     []string{"h1", "h1"},
		},
		{
			name:    "chunked body with a declared trailer",
			handler: dump,
			send: []string{"POST / HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n" +
				chunked("hello world", 4, "X-T: tv")},
			methods: []string{"POST"},
			end:     "open",
		},
		{
			name:    "chunked body with an undeclared trailer",
			handler: dump,
			send: []string{"POST / HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: chunked\r\n\r\n" +
				chunked("hello world", 4, "X-T: tv")},
			methods: []string{"POST"},
			end:     "open",
			check: func(t *testing.T, k kind, o outcome) {
				t.Helper()
				if len(o.Responses) == 0 || !strings.Contains(string(o.Responses[0].Body), `trailer X-T: ["tv"]`) {
					t.Errorf("%s: the handler did not see the trailer:\n%s", k, o)
				}
			},
		},
		{
			name:    "small body not read",
			handler: text("ok"),
			send:    []string{request("POST", "/", "hello") + get("/")},
			methods: []string{"POST", "GET"},
			end:     "open",
		},
		{
			name:    "small chunked body not read",
			handler: text("ok"),
			send: []string{"POST / HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: chunked\r\n\r\n" +
				chunked("hello world", 4) + get("/")},
			methods: []string{"POST", "GET"},
			end:     "open",
		},
		{
			name: "body partly read",
			handler: func(w http.ResponseWriter, r *http.Request) {
				b := make([]byte, 10)
				n, _ := io.ReadFull(r.Body, b)
				_, _ = fmt.Fprintf(w, "read %q", b[:n])
			},
			send:    []string{request("POST", "/", strings.Repeat("p", 1000)) + get("/")},
			methods: []string{"POST", "GET"},
			end:     "open",
		},
		{
			name:    "small body closed by the handler",
			handler: closeBody,
			send:    []string{request("POST", "/", "hello") + get("/")},
			methods: []string{"POST", "GET"},
			end:     "open",
		},
		{
			name:    "body over 256 KiB not read",
			handler: text("ok"),
			send:    []string{request("POST", "/", big)},
			methods: []string{"POST"},
			end:     "closed",
			check:   wantBody("ok"),
		},
		{
			name:    "chunked body over 256 KiB not read",
			handler: text("ok"),
			send: []string{"POST / HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: chunked\r\n\r\n" +
				chunked(big, 16<<10)},
			methods: []string{"POST"},
			end:     "closed",
			check:   wantBody("ok"),
		},
		{
			name:    "body over 256 KiB closed by the handler",
			handler: closeBody,
			send:    []string{request("POST", "/", big)},
			methods: []string{"POST"},
			end:     "closed",
			check:   wantBody("closed"),
		},
		{
			name:    "body over 256 KiB not read, 100 KB response",
			handler: text(strings.Repeat("r", kib100)),
			send:    []string{request("POST", "/", big)},
			methods: []string{"POST"},
			end:     "closed",
			check:   wantBody(strings.Repeat("r", kib100)),
		},
		{
			// net/http closes when 256 KiB or more is unread.
			name:    "body of exactly 256 KiB not read",
			handler: text("ok"),
			send:    []string{request("POST", "/", strings.Repeat("e", 256<<10))},
			methods: []string{"POST"},
			end:     "closed",
		},
		{
			name: "body read after the response is flushed",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.(http.Flusher).Flush()
				b, err := io.ReadAll(r.Body)
				_, _ = fmt.Fprintf(w, "late read %q %v", b, err)
			},
			send:    []string{request("POST", "/", "hello") + get("/")},
			methods: []string{"POST", "GET"},
			end:     "open",
		},
		{
			name:    "truncated chunked body",
			handler: dump,
			send:    []string{"POST / HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX"},
			methods: []string{"POST"},
			end:     "closed",
		},
	}
}

// closeBody closes the request body unread.
func closeBody(w http.ResponseWriter, r *http.Request) {
	_ = r.Body.Close()
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "closed")
}

func connectionCases() []wireCase {
	return []wireCase{
		{
			name:    "client sends Connection: close",
			handler: text("ok"),
			send:    []string{get("/", "Connection: close")},
			end:     "closed",
			via:     []string{"h1"},
			check: func(t *testing.T, k kind, o outcome) {
				t.Helper()
				if len(o.Responses) != 1 || !o.Responses[0].Close {
					t.Errorf("%s: want one response with Connection: close:\n%s", k, o)
				}
			},
		},
		{
			name:    "client sends Connection: close with a pipelined request",
			handler: echoPath,
			send:    []string{get("/a", "Connection: close") + get("/b")},
			end:     "closed",
		},
		{
			name:    "client sends Connection: close with a body not read",
			handler: text("ok"),
			send:    []string{request("POST", "/", "hello", "Connection: close")},
			methods: []string{"POST"},
			end:     "closed",
		},
		{
			name: "handler sets Connection: close",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Connection", "close")
				_, _ = io.WriteString(w, "bye")
			},
			send: []string{get("/")},
			end:  "closed",
		},
		{
			name: "handler sets Connection: keep-alive",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Connection", "keep-alive")
				_, _ = io.WriteString(w, "hi")
			},
			send: []string{get("/")},
			end:  "open",
		},
	}
}

func fallbackCases() []wireCase {
	bigHeader := "X-Big: " + strings.Repeat("a", 20<<10)
	return []wireCase{
		{
			name:    "HTTP/1.0",
			handler: echoPath,
			send:    []string{"GET /old HTTP/1.0\r\nHost: " + host + "\r\n\r\n"},
			end:     "closed",
			via:     []string{"net/http"},
			check:   wantBody("path=/old"),
		},
		{
			name:    "HTTP/1.0 keep-alive",
			handler: echoPath,
			send:    []string{"GET /old HTTP/1.0\r\nHost: " + host + "\r\nConnection: keep-alive\r\n\r\n"},
			end:     "open",
			via:     []string{"net/http"},
		},
		{
			name:    "Expect: 100-continue sent with its body",
			handler: dump,
			send:    []string{request("POST", "/", "hello", "Expect: 100-continue")},
			methods: []string{"POST", "POST"},
			end:     "open",
			via:     []string{"", "net/http"},
		},
		{
			name:    "unknown Expect",
			handler: dump,
			send:    []string{get("/", "Expect: something")},
			end:     "closed",
		},
		{
			name:    "Upgrade not taken",
			handler: text("no upgrade"),
			send:    []string{get("/", "Connection: Upgrade", "Upgrade: websocket")},
			end:     "open",
			via:     []string{"net/http"},
		},
		{
			name:    "CONNECT",
			handler: dump,
			send:    []string{"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"},
			via:     []string{"net/http"},
		},
		{
			name:    "missing Host",
			handler: text("ok"),
			send:    []string{"GET / HTTP/1.1\r\n\r\n"},
			end:     "closed",
			check:   func(t *testing.T, k kind, o outcome) { t.Helper(); wantStatus(t, k, o, "400 Bad Request") },
		},
		{
			name:    "two Host headers",
			handler: text("ok"),
			send:    []string{"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"},
			end:     "closed",
			check:   func(t *testing.T, k kind, o outcome) { t.Helper(); wantStatus(t, k, o, "400 Bad Request") },
		},
		{
			name:    "two Host headers, different case",
			handler: text("ok"),
			send:    []string{"GET / HTTP/1.1\r\nhost: a.example\r\nHOST: b.example\r\n\r\n"},
			end:     "closed",
		},
		{
			name:    "invalid Host",
			handler: text("ok"),
			send:    []string{"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n"},
			end:     "closed",
			check:   func(t *testing.T, k kind, o outcome) { t.Helper(); wantStatus(t, k, o, "400 Bad Request") },
		},
		{
			name:    "empty Host",
			handler: dump,
			send:    []string{"GET / HTTP/1.1\r\nHost:\r\n\r\n"},
			end:     "open",
		},
		{
			name:    "Host with an odd but valid byte",
			handler: dump,
			send:    []string{"GET / HTTP/1.1\r\nHost: a~b!c.example\r\n\r\n"},
			end:     "open",
		},
		{
			name:    "20 KB header",
			handler: text("ok"),
			send:    []string{get("/", bigHeader)},
			end:     "open",
			via:     []string{"net/http"},
			check:   wantBody("ok"),
		},
		{
			name:    "20 KB header over MaxHeaderBytes",
			handler: text("ok"),
			cfg:     func(s *http.Server) { s.MaxHeaderBytes = 4 << 10 },
			send:    []string{get("/", bigHeader)},
			end:     "closed",
			check: func(t *testing.T, k kind, o outcome) {
				t.Helper()
				wantStatus(t, k, o, "431 Request Header Fields Too Large")
			},
		},
		{
			// net/http refuses heads over MaxHeaderBytes+4096 bytes; h1
			// serves every head that fits its 8 KiB buffer.
			name:    "6 KB header over a small MaxHeaderBytes",
			handler: text("ok"),
			cfg:     func(s *http.Server) { s.MaxHeaderBytes = 1 << 10 },
			send:    []string{get("/", "X-Big: "+strings.Repeat("a", 6<<10))},
			end:     "closed",
		},
		{
			name:    "head split across writes",
			handler: dump,
			send:    []string{"GE", "T /split HTTP/1.1\r\nHo", "st: " + host + "\r\nX-A: 1\r", "\n", "\r\n"},
			pause:   30 * time.Millisecond,
			end:     "open",
			via:     []string{"h1"},
		},
		{
			name:    "head split across writes, second request",
			handler: echoPath,
			send:    []string{get("/a"), "GET /b HTTP/1.1\r\n", "Host: " + host + "\r\n", "\r\n"},
			pause:   30 * time.Millisecond,
			methods: []string{"GET", "GET"},
			end:     "open",
			via:     []string{"h1", "h1"},
		},
		{
			name:    "served, then HTTP/1.0",
			handler: echoPath,
			send:    []string{get("/a") + "GET /b HTTP/1.0\r\nHost: " + host + "\r\n\r\n"},
			methods: []string{"GET", "GET"},
			end:     "closed",
			via:     []string{"h1", "net/http"},
			check:   wantBody("path=/a", "path=/b"),
		},
		{
			name:    "served, then a 20 KB header",
			handler: echoPath,
			send:    []string{get("/a"), get("/b", bigHeader)},
			pause:   20 * time.Millisecond,
			methods: []string{"GET", "GET"},
			end:     "open",
			via:     []string{"h1", "net/http"},
		},
		{
			name:    "served, then a 20 KB header pipelined",
			handler: echoPath,
			send:    []string{get("/a") + get("/b", bigHeader) + get("/c")},
			methods: []string{"GET", "GET", "GET"},
			end:     "open",
			via:     []string{"h1", "net/http", "net/http"},
		},
		{
			name:    "served, then missing Host",
			handler: echoPath,
			send:    []string{get("/a") + "GET /b HTTP/1.1\r\n\r\n"},
			methods: []string{"GET", "GET"},
			end:     "closed",
		},
		{
			name: "served POST, then Expect",
			handler: func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				_, _ = fmt.Fprintf(w, "%s", b)
			},
			send:    []string{request("POST", "/", "one") + request("POST", "/", "two", "Expect: 100-continue")},
			methods: []string{"POST", "POST", "POST"},
			end:     "open",
			via:     []string{"h1", "", "net/http"},
		},
		{
			name:    "HTTP/2 preface",
			handler: text("handler"),
			send:    []string{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
		},
	}
}

func wantStatus(t *testing.T, k kind, o outcome, status string) {
	t.Helper()
	if len(o.Responses) == 0 || !strings.HasPrefix(o.Responses[0].Status, status) {
		t.Errorf("%s: want status %q:\n%s", k, status, o)
	}
}

func parsingCases() []wireCase {
	return []wireCase{
		{
			name:    "malformed request line",
			handler: text("ok"),
			send:    []string{"GARBAGE\r\nHost: " + host + "\r\n\r\n"},
			end:     "closed",
			check:   func(t *testing.T, k kind, o outcome) { t.Helper(); wantStatus(t, k, o, "400 Bad Request") },
		},
		{
			// net/http answers as soon as the request line is read; h1
			// waits for a whole head that never comes.
			name:     "request line alone (HTTP/0.9 style)",
			handler:  text("ok"),
			send:     []string{"GET /\r\n"},
			deadline: 2 * time.Second,
		},
		{
			name:     "malformed request line, head never ends",
			handler:  text("ok"),
			send:     []string{"GARBAGE\r\nHost: " + host + "\r\n"},
			deadline: 2 * time.Second,
		},
		{
			name:    "unsupported HTTP version",
			handler: text("ok"),
			send:    []string{"GET / HTTP/3.0\r\nHost: " + host + "\r\n\r\n"},
			end:     "closed",
		},
		{
			name:    "HTTP/1.2",
			handler: dump,
			send:    []string{"GET / HTTP/1.2\r\nHost: " + host + "\r\n\r\n"},
			end:     "open",
		},
		{
			name:    "bare LF line endings",
			handler: dump,
			send:    []string{"GET /lf HTTP/1.1\nHost: " + host + "\nX-A: 1\n\n"},
			end:     "open",
			via:     []string{"h1"},
		},
		{
			name:    "bare LF pipelined",
			handler: echoPath,
			send:    []string{"GET /a HTTP/1.1\nHost: " + host + "\n\nGET /b HTTP/1.1\r\nHost: " + host + "\n\r\n"},
			methods: []string{"GET", "GET"},
			end:     "open",
		},
		{
			name:    "CRLF after a POST body",
			handler: dump,
			send:    []string{request("POST", "/a", "hello") + "\r\n" + get("/b")},
			methods: []string{"POST", "GET"},
			end:     "open",
			via:     []string{"h1", "h1"},
		},
		{
			name:    "LF after a POST body",
			handler: echoPath,
			send:    []string{request("POST", "/a", "hello") + "\n" + get("/b")},
			methods: []string{"POST", "GET"},
			end:     "open",
		},
		{
			name:    "CRLF after a POST body, sent apart",
			handler: echoPath,
			send:    []string{request("POST", "/a", "hello"), "\r\n", get("/b")},
			pause:   30 * time.Millisecond,
			methods: []string{"POST", "GET"},
			end:     "open",
		},
		{
			name:    "CRLF after a GET",
			handler: echoPath,
			send:    []string{get("/a") + "\r\n" + get("/b")},
			methods: []string{"GET", "GET"},
			end:     "closed",
		},
		{
			name:    "leading CRLF",
			handler: echoPath,
			send:    []string{"\r\n" + get("/a")},
			end:     "closed",
		},
		{
			name:    "folded header line",
			handler: dump,
			send:    []string{get("/", "X-Fold: a", " b")},
			end:     "open",
		},
		{
			name:    "invalid header name",
			handler: dump,
			send:    []string{get("/", "Bad Name: x")},
			end:     "closed",
		},
		{
			name:    "control byte in a header value",
			handler: dump,
			send:    []string{get("/", "X-A: a\x01b")},
			end:     "closed",
		},
		{
			name:    "invalid Content-Length",
			handler: dump,
			send:    []string{get("/", "Content-Length: abc")},
			end:     "closed",
		},
		{
			name:    "two different Content-Lengths",
			handler: dump,
			send:    []string{get("/", "Content-Length: 1", "Content-Length: 2")},
			end:     "closed",
		},
		{
			name:    "Content-Length and chunked",
			handler: dump,
			send:    []string{"POST / HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked("abc", 2)},
			methods: []string{"POST"},
		},
		{
			name:    "unsupported Transfer-Encoding",
			handler: dump,
			send:    []string{"POST / HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: gzip\r\n\r\n"},
			methods: []string{"POST"},
			end:     "closed",
		},
	}
}

func headerCases() []wireCase {
	return []wireCase{
		{
			name: "CRLF in a header value",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("X-Bad", "a\r\nX-Injected: 1")
				w.Header()["X-Bad2"] = []string{"b\nX-Injected2: 2\r\n"}
				_, _ = io.WriteString(w, "ok")
			},
			send: []string{get("/")},
			end:  "open",
			check: func(t *testing.T, k kind, o outcome) {
				t.Helper()
				for _, r := range o.Responses {
					if r.Header.Get("X-Injected") != "" || r.Header.Get("X-Injected2") != "" {
						t.Errorf("%s: injected header on the wire:\n%s", k, o)
					}
				}
			},
		},
		{
			name: "invalid header names",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header()["Bad Name"] = []string{"x"}
				w.Header()["X:Colon"] = []string{"x"}
				w.Header()["X-Good"] = []string{"ok"}
				_, _ = io.WriteString(w, "ok")
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name: "header values with blanks around",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("X-Blank", " \t v \t ")
				w.Header()["X-Empty"] = []string{""}
				w.Header()["X-Two"] = []string{"1", "2"}
				_, _ = io.WriteString(w, "ok")
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name: "Date set by the handler",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Date", "Mon, 02 Jan 2006 15:04:05 GMT")
				_, _ = io.WriteString(w, "ok")
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name: "Date suppressed by the handler",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header()["Date"] = nil
				_, _ = io.WriteString(w, "ok")
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			// net/http sends the header as it was at WriteHeader.
			name: "header set after WriteHeader",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusOK)
				w.Header().Set("X-Late", "1")
				_, _ = io.WriteString(w, "hi")
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name: "header set after the first Write",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "hi")
				w.Header().Set("X-Late", "1")
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name: "Content-Length set after WriteHeader, 100 KB body",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusOK)
				w.Header().Set("Content-Length", fmt.Sprint(kib100))
				_, _ = w.Write(bytes.Repeat([]byte("c"), kib100))
			},
			send: []string{get("/")},
			end:  "open",
		},
		{
			name: "no Content-Type",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "<html>hi</html>")
			},
			send: []string{get("/")},
			end:  "open",
			check: func(t *testing.T, k kind, o outcome) {
				t.Helper()
				// The documented difference: h1 does not sniff.
				if k == h1Kind && len(o.Responses) == 1 && o.Responses[0].Header.Get("Content-Type") != "" {
					t.Errorf("h1: Content-Type %q, want none", o.Responses[0].Header.Get("Content-Type"))
				}
			},
		},
	}
}

func requestCases() []wireCase {
	return []wireCase{
		{
			name:    "request fields",
			handler: dump,
			send: []string{"GET /p/a%20th?q=1&r=%2F HTTP/1.1\r\nHost: Example.COM:8080\r\nX-A: 1\r\nx-a: 2\r\n" +
				"x-lower: v\r\nCookie: a=b\r\nPragma: no-cache\r\nUser-Agent: test\r\n\r\n"},
			end: "open",
			via: []string{"h1"},
		},
		{
			name:    "absolute-form target",
			handler: dump,
			send:    []string{"GET http://target.example:81/p?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n"},
			end:     "open",
			via:     []string{"h1"},
		},
		{
			name:    "Host with port and underscore",
			handler: dump,
			send:    []string{"GET / HTTP/1.1\r\nHost: my_host.example:8080\r\n\r\n"},
			end:     "open",
			via:     []string{"h1"},
		},
		{
			name:    "IPv6 Host",
			handler: dump,
			send:    []string{"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"},
			end:     "open",
			via:     []string{"h1"},
		},
		{
			name: "context values",
			handler: func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				_, _ = fmt.Fprintf(w, "local addr set: %v, server set: %v",
					ctx.Value(http.LocalAddrContextKey) != nil, ctx.Value(http.ServerContextKey) != nil)
			},
			send: []string{get("/")},
			end:  "open",
		},
	}
}

// fallbackSettingsCases run with settings of the Fallback (net/http's
// server) that shape what net/http does with every request.
func fallbackSettingsCases() []wireCase {
	return []wireCase{
		{
			name:    "OPTIONS *",
			handler: text("handler"),
			send:    []string{"OPTIONS * HTTP/1.1\r\nHost: " + host + "\r\n\r\n"},
			end:     "open",
		},
		{
			name:    "OPTIONS * with DisableGeneralOptionsHandler",
			cfg:     func(s *http.Server) { s.DisableGeneralOptionsHandler = true },
			handler: text("handler"),
			send:    []string{"OPTIONS * HTTP/1.1\r\nHost: " + host + "\r\n\r\n"},
			end:     "open",
		},
		{
			// Over MaxHeaderBytes but within net/http's 4096 bytes of slack:
			// h1 hands it on, and the fallback serves it.
			name:    "3 KB header over a small MaxHeaderBytes",
			cfg:     func(s *http.Server) { s.MaxHeaderBytes = 1 << 10 },
			handler: text("ok"),
			send:    []string{get("/", "X-Big: "+strings.Repeat("a", 3<<10))},
			end:     "open",
			via:     []string{"net/http"},
		},
	}
}
