package h1

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// requestBody is a request's body as the handler sees it. Close does not
// read on (net/http's does, for a server's request, up to 256 KiB): the
// server decides after the handler what to discard. It is safe for one
// reader and a concurrent Close.
type requestBody struct {
	mu sync.Mutex
	rc io.ReadCloser // http.ReadRequest's body
	// orig is the request http.ReadRequest returned, req the handler's
	// copy of it (with its context): the body sets trailers it did not
	// declare on orig, and they are passed on to req at the end.
	orig, req *http.Request
	remaining int64 // of a declared length; -1: chunked
	closed    bool
	eof       bool
	err       error // a read error other than io.EOF
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if b.remaining > 0 {
		b.remaining -= int64(n)
	}
	switch {
	case err == io.EOF:
		b.atEOF()
	case err != nil:
		b.err = err
	}
	return n, err
}

func (b *requestBody) atEOF() {
	b.eof = true
	if b.req != nil && b.req.Trailer == nil && b.orig.Trailer != nil {
		b.req.Trailer = b.orig.Trailer
	}
}

func (b *requestBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// discard reads what is left of the body, at most
// maxPostHandlerReadBytes, and reports whether the connection can carry
// another request (the body was read to its end without error).
func (b *requestBody) discard() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.eof {
		return true
	}
	if b.err != nil || b.remaining >= maxPostHandlerReadBytes {
		return false
	}
	n, err := io.CopyN(io.Discard, b.rc, maxPostHandlerReadBytes+1)
	b.closed = true
	if errors.Is(err, io.EOF) && n <= maxPostHandlerReadBytes {
		b.atEOF()
		return true
	}
	if err != nil && !errors.Is(err, io.EOF) {
		b.err = err
	}
	return false
}

// response is the http.ResponseWriter of one request served here.
type response struct {
	c      *conn
	req    *http.Request
	body   *requestBody
	header http.Header
	cancel context.CancelFunc

	status      int
	wroteHeader bool  // a final status is set (and the header map read)
	headSent    bool  // the head is written to the buffer
	clen        int64 // the declared Content-Length; -1: none
	written     int64 // body bytes the handler wrote
	chunked     bool
	bodyless    bool // HEAD, or a status without a body
	closeAfter  bool // the connection ends after this response
	fullDuplex  bool // the handler reads the body while it writes
	handlerDone bool
	err         error // the first write error; the connection is done
	buf         []byte

	// What the header map said when the status was set (net/http takes
	// its copy there too: later changes are not sent). fields holds the
	// handler's fields, serialised, without the framing ones.
	fields    []byte
	trailers  bool     // trailer fields are declared
	teChunked bool     // the handler asked for chunked encoding
	hasDate   bool     // the handler set Date (possibly to nothing)
	connVals  []string // the handler's Connection field
}

// Header returns the response's header map.
func (w *response) Header() http.Header { return w.header }

// WriteHeader sends a 1xx interim response at once, and sets the final
// status for the head sent at the first Write or Flush.
func (w *response) WriteHeader(code int) {
	if w.handlerDone || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("h1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.writeInterim(code)
		return
	}
	w.setStatus(code)
}

// setStatus fixes the final status and takes what the head needs from the
// header map.
func (w *response) setStatus(code int) {
	w.wroteHeader = true
	w.status = code
	f := w.c.fields[:0]
	for k, vv := range w.header {
		switch k {
		case "Content-Length":
			if len(vv) > 0 {
				if v, err := strconv.ParseInt(vv[0], 10, 64); err == nil && v >= 0 {
					w.clen = v
				}
			}
			continue // written with the framing
		case "Transfer-Encoding":
			w.teChunked = hasToken(vv, "chunked")
			continue
		case "Connection":
			if len(vv) > 0 {
				w.connVals = append([]string(nil), vv...)
			}
			continue
		case "Content-Type":
			if code == http.StatusNotModified {
				continue // as net/http: only a 304 drops it (RFC 9110 15.4.5)
			}
		case "Date":
			w.hasDate = true
		case "Trailer":
			w.trailers = w.trailers || len(vv) > 0
		default:
			if strings.HasPrefix(k, http.TrailerPrefix) {
				w.trailers = true
				continue
			}
		}
		f = appendField(f, k, vv)
	}
	w.fields = f
	w.c.fields = f
}

func (w *response) writeInterim(code int) {
	if w.err != nil {
		return
	}
	bw := w.c.bw
	_, _ = bw.WriteString(statusLine(code))
	f := w.c.fields[:0]
	for k, vv := range w.header {
		if k == "Content-Length" || k == "Transfer-Encoding" || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		f = appendField(f, k, vv)
	}
	w.c.fields = f
	_, _ = bw.Write(f)
	_, _ = bw.WriteString("\r\n")
	w.fail(bw.Flush())
}

// appendField appends the field k with values vv as net/http writes
// them: an invalid name dropped, line breaks in values turned into
// spaces, blanks around values trimmed.
func appendField(dst []byte, k string, vv []string) []byte {
	if !isToken(k) {
		return dst
	}
	for _, v := range vv {
		dst = append(dst, k...)
		dst = append(dst, ": "...)
		dst = appendValue(dst, v)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

// Write writes body bytes: held back while they fit the body buffer and
// no head is sent, so a small body gets a Content-Length.
func (w *response) Write(p []byte) (int, error) {
	if w.handlerDone {
		return 0, http.ErrHandlerTimeout
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.clen >= 0 && w.written+int64(len(p)) > w.clen {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.req.Method == http.MethodHead {
		// Nothing is sent, but past the body buffer the head goes
		// without a length, as net/http's does.
		if !w.headSent && w.clen < 0 && w.written > bodyBufSize {
			w.sendHead(false)
		}
		return len(p), nil
	}
	if !w.headSent {
		if w.clen < 0 && len(w.buf)+len(p) <= bodyBufSize {
			if w.buf == nil {
				w.buf = getBodyBuf()
			}
			w.buf = append(w.buf, p...)
			return len(p), nil
		}
		w.sendHead(false)
		if w.err != nil {
			return 0, w.err
		}
	}
	return w.writeBody(p)
}

// WriteString is Write for a string, which io.WriteString uses.
func (w *response) WriteString(s string) (int, error) {
	// Small strings only come from error and stub bodies: the copy is
	// cheaper than a second path.
	return w.Write([]byte(s))
}

func (w *response) writeBody(p []byte) (int, error) {
	bw := w.c.bw
	if w.chunked {
		if bw.Available() < 18 {
			_ = bw.Flush()
		}
		h := strconv.AppendInt(bw.AvailableBuffer(), int64(len(p)), 16)
		_, _ = bw.Write(append(h, '\r', '\n'))
	}
	n, err := bw.Write(p)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	w.fail(err)
	if err != nil {
		return n, err
	}
	return n, nil
}

// Flush sends the head and whatever body is buffered.
func (w *response) Flush() { _ = w.FlushError() }

// FlushError is Flush that reports the write error
// (http.ResponseController prefers it).
func (w *response) FlushError() error {
	if w.handlerDone {
		return http.ErrHandlerTimeout
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent {
		w.sendHead(false)
	}
	if w.err != nil {
		return w.err
	}
	w.fail(w.c.bw.Flush())
	return w.err
}

// EnableFullDuplex lets the handler read the request body after it has
// started the response (http.ResponseController.EnableFullDuplex).
func (w *response) EnableFullDuplex() error {
	w.fullDuplex = true
	return nil
}

// SetReadDeadline sets the connection's read deadline, for
// http.ResponseController (the request body's reads).
func (w *response) SetReadDeadline(t time.Time) error {
	if w.handlerDone {
		return http.ErrHandlerTimeout
	}
	w.c.readDL.Store(true)
	return w.c.rwc.SetReadDeadline(t)
}

// SetWriteDeadline sets the connection's write deadline, for
// http.ResponseController; it is cleared after the request.
func (w *response) SetWriteDeadline(t time.Time) error {
	if w.handlerDone {
		return http.ErrHandlerTimeout
	}
	w.c.writeDL.Store(true)
	return w.c.rwc.SetWriteDeadline(t)
}

// fail records the first write error: the client is gone or stuck, the
// connection is done, and the request's context is cancelled (the
// handler's upstream exchange is aborted, as net/http does when its write
// fails).
func (w *response) fail(err error) {
	if err == nil || w.err != nil {
		return
	}
	w.err = err
	w.closeAfter = true
	w.cancel()
}

// sendHead decides the framing and writes the status line and header
// fields to the write buffer, then any body held back. final: the handler
// has returned, so the held-back body is the whole body.
func (w *response) sendHead(final bool) {
	w.headSent = true
	// Before the head: the unread request body (net/http discards up to
	// 256 KiB of it to keep the connection, or closes after the response),
	// unless the handler reads it while it answers.
	if b := w.body; b != nil && !w.closeAfter && !w.fullDuplex && !b.discard() {
		w.closeAfter = true
	}
	// The handler's header map is never changed: the handler (and what it
	// handed the map to, such as a traffic item) may still read it. The
	// framing fields are decided here and written in place of the map's.
	isHead := w.req.Method == http.MethodHead
	w.bodyless = isHead || !bodyAllowed(w.status)
	length := int64(-1) // the Content-Length to send
	switch {
	case !bodyAllowed(w.status):
	case w.clen >= 0:
		length = w.clen
	case final && !w.trailers && !w.teChunked && (!isHead || w.written > 0):
		// The whole body is held back: declare its length (for HEAD, the
		// length of what the handler wrote, as net/http does).
		length = w.written
	case isHead:
	default:
		w.chunked = true
	}
	if !w.closeAfter && hasToken(w.connVals, "close") || w.c.srv.closing.Load() {
		w.closeAfter = true
	}
	bw := w.c.bw
	_, _ = bw.WriteString(statusLine(w.status))
	if !w.hasDate {
		_, _ = bw.Write(dateField())
	}
	_, _ = bw.Write(w.fields)
	if length >= 0 {
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.Write(strconv.AppendInt(bw.AvailableBuffer(), length, 10))
		_, _ = bw.WriteString("\r\n")
	}
	if w.chunked {
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case w.closeAfter:
		_, _ = bw.WriteString("Connection: close\r\n")
	case len(w.connVals) > 0:
		for _, v := range w.connVals {
			_, _ = bw.WriteString("Connection: ")
			_, _ = bw.Write(appendValue(nil, v))
			_, _ = bw.WriteString("\r\n")
		}
	}
	_, err := bw.WriteString("\r\n")
	w.fail(err)
	if len(w.buf) > 0 && !w.bodyless {
		buf := w.buf
		w.buf = w.buf[:0]
		_, _ = w.writeBody(buf)
	}
}

// finish completes the response after the handler returned, and reports
// whether the connection may carry another request.
func (w *response) finish() bool {
	if !w.wroteHeader {
		w.setStatus(http.StatusOK)
	}
	if !w.headSent {
		w.sendHead(true)
	}
	bw := w.c.bw
	if w.chunked && w.err == nil {
		_, _ = bw.WriteString("0\r\n")
		w.writeTrailers()
		_, err := bw.WriteString("\r\n")
		w.fail(err)
	}
	if w.err == nil {
		w.fail(bw.Flush())
	}
	if w.clen >= 0 && w.written != w.clen && !w.bodyless {
		// The handler wrote less than it declared: the client cannot
		// know where this response ends but by the connection's end.
		w.closeAfter = true
	}
	if w.body != nil && !w.closeAfter && !w.body.discard() {
		w.closeAfter = true
	}
	keep := w.err == nil && !w.closeAfter
	if !keep && w.err == nil && w.body != nil && !w.body.eof {
		// Unread request body: half-close and let the client read the
		// response before the reset.
		w.c.closeWriteAndWait()
	}
	return keep
}

// writeTrailers writes the trailer fields: those the Trailer header
// declared and those set with http.TrailerPrefix.
func (w *response) writeTrailers() {
	f := w.c.fields[:0]
	for _, decl := range w.header["Trailer"] {
		for name := range strings.SplitSeq(decl, ",") {
			k := http.CanonicalHeaderKey(strings.TrimSpace(name))
			switch k {
			case "", "Content-Length", "Transfer-Encoding", "Trailer":
				continue
			}
			f = appendField(f, k, w.header[k])
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			f = appendField(f, name, vv)
		}
	}
	w.c.fields = f
	_, _ = w.c.bw.Write(f)
}

func (c *conn) closeWriteAndWait() {
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	time.Sleep(rstAvoidanceDelay)
}

// bodyAllowed reports whether a response with status may have a body
// (net/http's bodyAllowedForStatus).
func bodyAllowed(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == http.StatusNoContent, status == http.StatusNotModified:
		return false
	}
	return true
}

// hasToken reports whether a comma-separated header value lists token.
func hasToken(vals []string, token string) bool {
	for _, v := range vals {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// isToken reports whether b is an HTTP token (a valid field name or
// method).
func isToken[T string | []byte](b T) bool {
	if len(b) == 0 {
		return false
	}
	for i := range len(b) {
		if !tokenBytes[b[i]] {
			return false
		}
	}
	return true
}

// tokenBytes marks the bytes of an HTTP token (RFC 9110 section 5.6.2).
var tokenBytes = func() (t [256]bool) { //nolint:gochecknoglobals // read-only lookup table, built once
	for b := '0'; b <= '9'; b++ {
		t[b] = true
	}
	for b := 'a'; b <= 'z'; b++ {
		t[b], t[b-'a'+'A'] = true, true
	}
	for _, b := range []byte("!#$%&'*+-.^_`|~") {
		t[b] = true
	}
	return t
}()

// appendValue appends a field value with CR and LF replaced by spaces
// and surrounding blanks trimmed (net/http's Header.Write).
func appendValue(dst []byte, v string) []byte {
	v = strings.Trim(v, " \t")
	if !strings.ContainsAny(v, "\r\n") {
		return append(dst, v...)
	}
	for i := 0; i < len(v); i++ {
		b := v[i]
		if b == '\r' || b == '\n' {
			b = ' '
		}
		dst = append(dst, b)
	}
	return dst
}

// statusLines holds the status lines of the codes with a name.
var statusLines = func() (lines [600]string) { //nolint:gochecknoglobals // read-only lookup table, built once
	for code := 100; code < len(lines); code++ {
		if text := http.StatusText(code); text != "" {
			lines[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
		}
	}
	return lines
}()

// statusLine returns the status line for code, ending in CRLF.
func statusLine(code int) string {
	if code < len(statusLines) && statusLines[code] != "" {
		return statusLines[code]
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " status code " + strconv.Itoa(code) + "\r\n"
}

// date is the Date field of the current second, shared by all
// connections.
type date struct {
	unix  int64
	field []byte
}

var curDate atomic.Pointer[date] //nolint:gochecknoglobals // one clock for all connections, as net/http's

func dateField() []byte {
	now := time.Now()
	if d := curDate.Load(); d != nil && d.unix == now.Unix() {
		return d.field
	}
	b := make([]byte, 0, 40)
	b = append(b, "Date: "...)
	b = now.UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, '\r', '\n')
	curDate.Store(&date{unix: now.Unix(), field: b})
	return b
}

func getBodyBuf() []byte {
	if p, _ := bodyPool.Get().(*[]byte); p != nil {
		return (*p)[:0]
	}
	return make([]byte, 0, bodyBufSize)
}
