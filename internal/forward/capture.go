package forward

import (
	"crypto/sha256"
	"hash"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/proxyctl/proxyctl/internal/capture"
)

// Publisher receives captured traffic items; *capture.Pipeline satisfies
// it. Publish must not block (the pipeline only appends to queues).
type Publisher interface {
	Publish(*capture.Item)
}

// exchange is the capture state of one proxied request: the bodies as they
// stream past (tee, never buffering the stream itself) and the facts the
// item needs. It exists only when Proxy.Capture is set.
type exchange struct {
	start   time.Time
	session string
	req     bodyTee
	resp    bodyTee
	reqBody *teeReadCloser
	errText string
	stubbed bool
}

// bodyTee keeps up to limit bytes of a body that streams past, and its
// size. Once the body outgrows limit it also hashes it (from the first
// byte), so a truncated capture still carries the original's SHA-256.
type bodyTee struct {
	limit int64 // < 0: keep everything
	data  []byte
	size  int64
	h     hash.Hash
}

func (t *bodyTee) write(p []byte) {
	if len(p) == 0 {
		return
	}
	t.size += int64(len(p))
	if t.h != nil {
		t.h.Write(p)
		return
	}
	room := t.limit - int64(len(t.data))
	if t.limit < 0 || int64(len(p)) <= room {
		t.data = append(t.data, p...)
		return
	}
	t.h = sha256.New()
	t.h.Write(t.data)
	t.h.Write(p)
	t.data = append(t.data, p[:room]...)
}

// sizeHint allocates room for a body of the announced length (up to the
// limit), so the copy does not grow step by step.
func (t *bodyTee) sizeHint(contentLength []string) {
	if len(contentLength) != 1 || t.data != nil {
		return
	}
	n, err := strconv.ParseInt(contentLength[0], 10, 64)
	if err != nil || n <= 0 {
		return
	}
	if t.limit >= 0 {
		n = min(n, t.limit)
	}
	t.data = make([]byte, 0, min(n, 1<<20))
}

// body returns the captured body. An untruncated body leaves Size and
// SHA256 for the sinks to fill in (off the proxy's hot path).
func (t *bodyTee) body() capture.Body {
	if t.h == nil {
		return capture.Body{Data: t.data}
	}
	b := capture.Body{Data: t.data, Size: t.size, Truncated: true}
	t.h.Sum(b.SHA256[:0])
	return b
}

// teeReadCloser copies what the upstream side reads from the request body
// into the exchange's request tee.
type teeReadCloser struct {
	rc  io.ReadCloser
	tee *bodyTee
}

func (r *teeReadCloser) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.tee.write(p[:n])
	return n, err
}

func (r *teeReadCloser) Close() error { return r.rc.Close() }

func (p *Proxy) captureLimit() int64 {
	switch {
	case p.CaptureBodyLimit == 0:
		return capture.DefaultMaxBody
	case p.CaptureBodyLimit < 0:
		return -1
	default:
		return p.CaptureBodyLimit
	}
}

// beginCapture sets up the capture of r for the session and wraps its body.
func (p *Proxy) beginCapture(w *responseWriter, r *http.Request, session string, start time.Time) *exchange {
	lim := p.captureLimit()
	x := &exchange{start: start, session: session}
	x.req.limit, x.resp.limit = lim, lim
	if r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > 0 && (lim < 0 || r.ContentLength <= lim) {
			x.req.data = make([]byte, 0, r.ContentLength)
		}
		x.reqBody = &teeReadCloser{rc: r.Body, tee: &x.req}
		r.Body = x.reqBody
	}
	w.x = x
	return x
}

// finishCapture publishes the exchange's item. It runs when the exchange
// is over (also when it ended with a panic such as http.ErrAbortHandler).
func (p *Proxy) finishCapture(x *exchange, w *responseWriter, r *http.Request) {
	end := time.Now()
	if w.body != nil {
		// A body that failed is the cause, whatever broke after it.
		if _, msg := w.body.failure(); msg != "" {
			x.errText = msg
		}
	}
	// The response header map itself, not a copy: nothing writes to it
	// once the exchange is over.
	p.Capture.Publish(newItem(p, x, r, w.status(), w.Header(), end))
}

// newItem builds the traffic item of a finished exchange (ServeHTTP's and
// the loop server's).
func newItem(p *Proxy, x *exchange, r *http.Request, status int, respHeader http.Header, end time.Time) *capture.Item {
	it := &capture.Item{
		SessionID:       x.session,
		Timestamp:       p.stamper.Stamp(x.session, x.start),
		ID:              capture.NewID(),
		Kind:            capture.KindHTTP,
		Method:          r.Method,
		Path:            r.RequestURI,
		Status:          status,
		RequestHeaders:  r.Header,
		ResponseHeaders: respHeader,
		RequestBody:     x.req.body(),
		ResponseBody:    x.resp.body(),
		Stubbed:         x.stubbed,
		DurationMs:      float64(end.Sub(x.start).Microseconds()) / 1000,
		Error:           x.errText,
	}
	if it.Path == "" {
		it.Path = r.URL.RequestURI()
	}
	return it
}

// exchangeOf returns the capture state behind rw, if any.
func exchangeOf(rw http.ResponseWriter) *exchange {
	if w, ok := rw.(*responseWriter); ok {
		return w.x
	}
	return nil
}
