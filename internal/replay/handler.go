package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"time"
)

// DefaultMaxBody is the largest request body a Handler reads for matching
// when MaxBody is zero (16 MiB).
const DefaultMaxBody = 16 << 20

// errTooLarge is returned when a request body exceeds the Handler's limit.
var errTooLarge = errors.New("request body too large")

// missMessage is the "error" of the 404 answered on a miss.
const missMessage = "no recorded exchange matches"

// Handler serves an [Index] over HTTP. On a hit it writes the recorded
// status, headers (without hop-by-hop ones, with Content-Length recomputed
// and Date refreshed), body (byte for byte, Content-Encoding as recorded;
// an event stream event by event, flushing after each) and trailers; on a
// miss it calls Fallback, or answers 404 with a JSON body naming the closest
// recorded request and what differs. Every miss is logged on one line.
type Handler struct {
	// Index is the recorded exchanges served; it must be set.
	Index *Index
	// Fallback, when set, handles the requests no exchange matches (a
	// reverse proxy to --fallback URL). It gets the request with its body
	// still readable.
	Fallback http.Handler
	// MaxBody caps the request bodies read for matching: a larger one is
	// answered 413. Zero means DefaultMaxBody; negative means no limit.
	MaxBody int64
}

var _ http.Handler = (*Handler)(nil)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ix := h.Index
	body, err := readBody(r, h.maxBody())
	if err != nil {
		ne, isNet := errors.AsType[net.Error](err)
		switch {
		case errors.Is(err, errTooLarge):
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
		case isNet && ne.Timeout():
			// The proxy's --client-body-timeout: the client stalled.
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, "request body timed out")
		default:
			writeError(w, http.StatusBadRequest, "cannot read the request body")
		}
		return
	}
	target := r.RequestURI
	if target == "" {
		target = r.URL.RequestURI()
	}
	header := r.Header
	if ix.needHost && r.Host != "" && len(header.Values("Host")) == 0 {
		header = header.Clone()
		header.Set("Host", r.Host)
	}
	match := body
	if ix.redact != nil && len(body) > 0 {
		match = ix.redact(body)
	}
	rec, callerID, miss := ix.lookup(r.Method, target, header, match)
	if rec == nil {
		h.logMiss(miss)
		if h.Fallback != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			h.Fallback.ServeHTTP(w, r)
			return
		}
		writeMiss(w, miss)
		return
	}
	if ix.latency && rec.x.DurationMs > 0 {
		t := time.NewTimer(time.Duration(rec.x.DurationMs * float64(time.Millisecond)))
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	ix.log.Debug().Str("method", r.Method).Str("path", pathOf(target)).Str("id", rec.x.ID).
		Int("status", rec.x.Response.Status).Msg("replay: served")
	serve(w, r.Method, rec, callerID)
}

func (h *Handler) maxBody() int64 {
	if h.MaxBody == 0 {
		return DefaultMaxBody
	}
	return h.MaxBody
}

// readBody reads the whole request body, at most limit bytes (no limit
// when negative).
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if limit >= 0 && r.ContentLength > limit {
		return nil, errTooLarge
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	src := io.Reader(r.Body)
	if limit >= 0 {
		src = io.LimitReader(r.Body, limit+1)
	}
	if _, err := buf.ReadFrom(src); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, errTooLarge
		}
		return nil, err
	}
	if limit >= 0 && int64(buf.Len()) > limit {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// serve writes the recorded response of rec, with the JSON-RPC id of the
// caller (callerID) when the recorded request had another.
func serve(w http.ResponseWriter, method string, rec *record, callerID json.RawMessage) {
	resp := rec.x.Response
	body := []byte(resp.Body)
	if old := rec.req.body.rpc.id; old != nil && callerID != nil && !bytes.Equal(old, callerID) {
		body = rewriteID(body, rec.sse, old, callerID)
	}
	h := w.Header()
	maps.Copy(h, rec.header)
	h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	if !rec.hasType {
		h["Content-Type"] = nil // no sniffing: served as recorded
	}
	if n := rec.contentLength(method, body); n != "" {
		h["Content-Length"] = []string{n}
	}
	if rec.trailer != "" {
		h["Trailer"] = []string{rec.trailer}
	}
	w.WriteHeader(resp.Status)
	if len(body) > 0 && !rec.noBody && method != http.MethodHead {
		if rec.sse {
			writeEvents(w, body)
		} else {
			_, _ = w.Write(body) //nolint:gosec // G705: the recorded response; only the JSON-RPC id is the caller's, echoed as the protocol requires
		}
	} else if rec.sse {
		_ = http.NewResponseController(w).Flush()
	}
	maps.Copy(h, rec.trailers)
}

type reqRef struct {
	Method string `json:"method"`
	Target string `json:"target"`
}

type missBody struct {
	Error   string   `json:"error"`
	Request reqRef   `json:"request"`
	Closest *reqRef  `json:"closest"`
	Differs []string `json:"differs"`
}

// writeMiss answers a miss: 404 with what was asked, the closest recorded
// request and what differs.
func writeMiss(w http.ResponseWriter, m *Miss) {
	b := missBody{
		Error:   missMessage,
		Request: reqRef{Method: m.Method, Target: m.Target},
		Differs: m.Differs,
	}
	if b.Differs == nil {
		b.Differs = []string{}
	}
	if c := m.Closest; c != nil {
		b.Closest = &reqRef{Method: c.Request.Method, Target: c.Request.URL}
	}
	out, err := json.Marshal(b)
	if err != nil { // cannot happen: strings only
		writeError(w, http.StatusNotFound, missMessage)
		return
	}
	writeJSON(w, http.StatusNotFound, append(out, '\n'))
}

// writeError writes {"error": msg, "status": code}; msg is always one of
// the package's own fixed strings.
func writeError(w http.ResponseWriter, code int, msg string) {
	b := make([]byte, 0, 48+len(msg))
	b = append(b, `{"error":`...)
	b = strconv.AppendQuote(b, msg)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, "}\n"...)
	writeJSON(w, code, b)
}

func writeJSON(w http.ResponseWriter, code int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// logMiss logs a miss on one line: method and path (never the query or
// header values, which may hold secrets), the closest recorded request's,
// and the names of what differs.
func (h *Handler) logMiss(m *Miss) {
	ev := h.Index.log.Warn().Str("method", m.Method).Str("path", pathOf(m.Target)).
		Bool("fallback", h.Fallback != nil)
	if c := m.Closest; c != nil {
		ev = ev.Str("closestMethod", c.Request.Method).Str("closestPath", pathOf(c.Request.URL)).
			Strs("differs", m.Differs)
	}
	ev.Msg("replay: no recorded exchange matches")
}
