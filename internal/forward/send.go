package forward

import (
	"errors"
	"net/http"
	"os"
	"time"
)

// errSendTimeout is the traffic item's error when the client stopped
// reading its response for longer than ClientSendTimeout.
const errSendTimeout = "response send timed out"

// sendChunk is the most the proxy writes to the client under one deadline:
// a larger write (a replayed or stubbed body is written whole) is split,
// so that a slow but steady reader is judged by its progress, not by the
// size of the body. It is the size of the copy buffers.
const sendChunk = 32 << 10

// sendLazyMax bounds how long a deadline set for an earlier write is kept
// for the next one instead of being set again (nginx keeps a timer that
// would move by less than 300 ms for the same reason: setting it costs
// more than the write of a small response).
const sendLazyMax = 300 * time.Millisecond

// writeDeadliner is what net/http's ResponseWriter implements for
// http.ResponseController.SetWriteDeadline.
type writeDeadliner interface {
	SetWriteDeadline(time.Time) error
}

// deadlinerOf finds SetWriteDeadline on rw or on what it unwraps to, as
// http.ResponseController does, without allocating a controller.
func deadlinerOf(rw http.ResponseWriter) writeDeadliner {
	for {
		switch t := rw.(type) {
		case writeDeadliner:
			return t
		case interface{ Unwrap() http.ResponseWriter }:
			rw = t.Unwrap()
		default:
			return nil
		}
	}
}

// sendDeadline bounds each write of a response to the client (nginx's
// send_timeout) with a write deadline on the client's connection, set
// before each write of the head and the body and before each flush: a
// write that cannot make progress for timeout fails, and with it the
// connection (net/http closes a connection whose write failed, and cancels
// the request's context, which aborts the upstream exchange).
//
// Between writes the deadline may pass harmlessly: it only bounds a write
// in progress, and the next write sets it again first, so an event stream
// that waits minutes for its upstream's next event is not cut. When the
// handler returns, a last deadline bounds net/http's final flush; net/http
// then clears it before the connection waits for its next request. A
// hijacked connection (WebSocket) is the handler's: its deadline is
// cleared and never set again.
type sendDeadline struct {
	dl       writeDeadliner // nil: no deadline (timeout 0, not supported, hijacked)
	timeout  time.Duration
	lazy     time.Duration // a deadline set less than lazy ago is kept
	set      time.Time     // when the deadline was last set
	timedOut bool          // a write failed at its deadline
}

// arm sets the deadline for the next write, unless the one set for the
// previous write is recent enough (at most lazy older than a new one).
func (s *sendDeadline) arm() {
	if s.dl == nil {
		return
	}
	now := time.Now()
	if now.Sub(s.set) < s.lazy {
		return
	}
	s.set = now
	_ = s.dl.SetWriteDeadline(now.Add(s.timeout))
}

// sendFailed notes a failed write or flush of the response: one that
// failed at its deadline marks the exchange.
func (w *responseWriter) sendFailed(err error) {
	if w.send.dl == nil || w.send.timedOut || !errors.Is(err, os.ErrDeadlineExceeded) {
		return
	}
	w.send.timedOut = true
	if w.x != nil && w.x.errText == "" {
		w.x.errText = errSendTimeout
	}
}

// finishSend runs when the handler returns: a last deadline for what
// net/http writes after it (the buffered rest, the last chunk, trailers).
func (w *responseWriter) finishSend() {
	if !w.send.timedOut {
		w.send.arm()
	}
}
