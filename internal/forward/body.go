package forward

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// clientBody is a request body as it arrives from the client. It bounds
// the time between two successive reads (nginx's client_body_timeout) with
// a read deadline on the client's connection, refreshed before each read,
// and it remembers why reading failed, so that a stalled, malformed or cut
// body is answered as the client's fault (408, 400) instead of being
// blamed on the upstream (502).
//
// The deadline is armed when the request arrives, so it also bounds what
// net/http reads of an unread body before it answers (it discards up to
// 256 KiB to keep the connection), and it is cleared at EOF: from then on
// net/http watches the idle connection itself, and a deadline left behind
// would cancel a long response (server-sent events after a POST).
type clientBody struct {
	rc      io.ReadCloser
	ctl     *http.ResponseController
	timeout time.Duration // 0: no deadline, only the error is kept
	// eof: a read returned io.EOF (only the goroutine reading the body
	// touches it). Later reads answer io.EOF themselves: net/http closes
	// the request body once the response starts, and http.Transport reads
	// once more after the last byte of a body of known length (to check
	// there is no more). That read, racing with an upstream that already
	// answers, failed, and the transport cut the response it was reading.
	eof bool

	mu sync.Mutex
	// done: the body reached EOF or failed, or the handler returned. The
	// connection is no longer this request's: never touch its deadline.
	done     bool
	err      error     // the first read error other than io.EOF
	reading  bool      // a read is in flight
	deadline time.Time // the last deadline set
}

// newClientBody wraps r's body; rw must be the server's own ResponseWriter
// (the deadline is set through it, also after the pooled writer is reused).
func newClientBody(rw http.ResponseWriter, r *http.Request, timeout time.Duration) *clientBody {
	b := &clientBody{rc: r.Body, timeout: timeout}
	if timeout > 0 {
		b.ctl = http.NewResponseController(rw)
		b.arm()
	}
	return b
}

// arm sets the deadline for the next read; b.mu is held or b not shared.
func (b *clientBody) arm() {
	if b.ctl != nil && !b.done {
		b.deadline = time.Now().Add(b.timeout)
		_ = b.ctl.SetReadDeadline(b.deadline)
	}
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.ctl != nil {
		b.mu.Lock()
		b.arm()
		b.reading = true
		b.mu.Unlock()
	}
	n, err := b.rc.Read(p)
	b.eof = err == io.EOF
	if b.ctl != nil || err != nil {
		b.mu.Lock()
		b.reading = false
		if err != nil && !b.done {
			if err == io.EOF {
				if b.ctl != nil {
					_ = b.ctl.SetReadDeadline(time.Time{})
				}
			} else {
				b.err = err
			}
			b.done = true
		}
		b.mu.Unlock()
	}
	return n, err
}

// Close bounds net/http's discarding of what is left of the body.
func (b *clientBody) Close() error {
	b.finish()
	return b.rc.Close()
}

// finish runs when the handler returns (and on Close): a last deadline for
// net/http's discard of the unread rest, then hands the connection back.
func (b *clientBody) finish() {
	b.mu.Lock()
	b.arm()
	b.done = true
	b.mu.Unlock()
}

// failure is how the proxy answers a body that could not be read: 408
// when the client stalled, 400 when the body was malformed or cut short,
// and 0 when there was no failure or the client is gone (nothing to answer).
func (b *clientBody) failure() (code int, msg string) {
	b.mu.Lock()
	err := b.err
	// A read past its deadline is failing right now; net/http cancels the
	// request's context before the read returns, so the upstream side may
	// report that first.
	stalled := err == nil && b.reading && !time.Now().Before(b.deadline)
	b.mu.Unlock()
	if stalled {
		return http.StatusRequestTimeout, "request body timed out"
	}
	if err == nil {
		return 0, ""
	}
	if ne, ok := errors.AsType[net.Error](err); ok {
		if ne.Timeout() {
			return http.StatusRequestTimeout, "request body timed out"
		}
		return 0, "client went away"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return http.StatusBadRequest, "request body cut short"
	}
	return http.StatusBadRequest, "malformed request body"
}

// bodyOf returns the client body behind rw's request, if it has one.
func bodyOf(rw http.ResponseWriter) *clientBody {
	if w, ok := rw.(*responseWriter); ok {
		return w.body
	}
	return nil
}
