package forward

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

func classify(err error) (kind string, status int, msg string) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if op.Timeout() {
			return "connect_timeout", http.StatusBadGateway, "upstream unreachable"
		}
		return "connect", http.StatusBadGateway, "upstream unreachable"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout", http.StatusGatewayTimeout, "upstream timed out"
	}
	return "other", http.StatusBadGateway, "bad gateway"
}

// writeError writes {"error": msg, "status": code}. msg is always one of
// the proxy's own fixed strings: never upstream text.
func writeError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(code)
	_, _ = w.Write(appendErrorBody(make([]byte, 0, 48+len(msg)), code, msg))
}

// appendErrorBody appends the body writeError sends (the loop server
// writes it too).
func appendErrorBody(b []byte, code int, msg string) []byte {
	b = append(b, `{"error":`...)
	b = strconv.AppendQuote(b, msg)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	return append(b, "}\n"...)
}

func (p *Proxy) refuse(w http.ResponseWriter, code int, msg string) {
	if p.Observer != nil {
		p.Observer.Refused(code)
	}
	writeError(w, code, msg)
}

// peerAddr parses the connection's remote address without allocating.
func peerAddr(remote string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		a, err2 := netip.ParseAddr(remote)
		return a.Unmap(), err2 == nil
	}
	return ap.Addr().Unmap(), true
}

func (p *Proxy) trusted(a netip.Addr) bool {
	for _, pfx := range p.TrustedProxies {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP is the peer's address, or, when the peer is a trusted proxy, the
// right-most address in X-Forwarded-For that is not itself trusted.
func (p *Proxy) clientIP(r *http.Request, peer netip.Addr) netip.Addr {
	if !peer.IsValid() || len(p.TrustedProxies) == 0 || !p.trusted(peer) {
		return peer
	}
	vals := r.Header.Values("X-Forwarded-For")
	client := peer
	for _, val := range slices.Backward(vals) {
		parts := strings.Split(val, ",")
		for _, part := range slices.Backward(parts) {
			a, err := netip.ParseAddr(strings.TrimSpace(part))
			if err != nil {
				return client
			}
			client = a.Unmap()
			if !p.trusted(client) {
				return client
			}
		}
	}
	return client
}

// responseWriter records the status code. It is pooled, and unwraps to the
// underlying writer so http.ResponseController (used by ReverseProxy for
// flushing SSE and hijacking upgraded connections) reaches the real one.
// It also bounds every write of the response with the send deadline.
type responseWriter struct {
	http.ResponseWriter
	code int
	x    *exchange   // capture state; nil when capture is off
	body *clientBody // the request body; nil when it has none
	send sendDeadline
}

func (p *Proxy) getWriter(rw http.ResponseWriter) *responseWriter {
	w, _ := p.writers.Get().(*responseWriter)
	if w == nil {
		w = new(responseWriter)
	}
	w.ResponseWriter, w.code, w.x, w.body = rw, 0, nil, nil
	w.send = sendDeadline{}
	if p.ClientSendTimeout > 0 {
		w.send = sendDeadline{dl: deadlinerOf(rw), timeout: p.ClientSendTimeout, lazy: p.sendLazy}
	}
	return w
}

func (p *Proxy) putWriter(w *responseWriter) {
	w.ResponseWriter, w.x, w.body = nil, nil, nil
	w.send = sendDeadline{}
	p.writers.Put(w)
}

func (w *responseWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 || code == http.StatusSwitchingProtocols {
		w.code = code
		if w.x != nil {
			w.x.resp.sizeHint(w.Header()["Content-Length"])
		}
	}
	// net/http writes a 1xx head at once, and a final one with the body.
	w.send.arm()
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.writeBody(b)
}

// writeBody writes b to the client, copying it to the capture first, at
// most sendChunk bytes under one send deadline.
func (w *responseWriter) writeBody(b []byte) (int, error) {
	if w.send.dl == nil {
		if w.x != nil {
			w.x.resp.write(b)
		}
		return w.ResponseWriter.Write(b)
	}
	var n int
	for {
		p := b[:min(len(b), sendChunk)]
		w.send.arm()
		if w.x != nil {
			w.x.resp.write(p)
		}
		m, err := w.ResponseWriter.Write(p)
		n += m
		if err != nil {
			w.sendFailed(err)
			return n, err
		}
		if b = b[len(p):]; len(b) == 0 {
			return n, nil
		}
	}
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush is implemented directly because some callers type-assert
// http.Flusher instead of using http.ResponseController.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError flushes under the send deadline and reports why it failed
// (http.ResponseController.Flush prefers it to Flush).
func (w *responseWriter) FlushError() error {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.send.arm()
	var err error
	switch f := w.ResponseWriter.(type) {
	case interface{ FlushError() error }:
		err = f.FlushError()
	case http.Flusher:
		f.Flush()
	default:
		err = http.NewResponseController(w.ResponseWriter).Flush()
	}
	if err != nil {
		w.sendFailed(err)
	}
	return err
}

// Hijack is implemented for callers that type-assert http.Hijacker. A
// hijacked connection (a WebSocket upgrade) is no longer a response: it
// leaves the send deadline behind.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.send.dl != nil {
		w.send.dl = nil
		_ = c.SetWriteDeadline(time.Time{})
	}
	return c, brw, err
}

func (w *responseWriter) status() int {
	if w.code == 0 {
		// Nothing written: the handler returned without a response (client
		// gone); net/http will send 200 with an empty body if anything.
		return http.StatusOK
	}
	return w.code
}
