package replay

import (
	"maps"
	"mime"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"github.com/proxyctl/proxyctl/internal/tape"
)

// record is an indexed exchange with what serving it needs, worked out once.
type record struct {
	x      *tape.Exchange
	req    request
	bucket *bucket
	pos    int // index in bucket.recs

	header   http.Header // response headers to send: canonical, hop-by-hop, Content-Length and Date removed
	hasType  bool        // the recorded response has a Content-Type
	length   string      // the recorded Content-Length, sent as is for HEAD
	trailer  string      // the Trailer header announcing the recorded trailers, "" when none
	trailers http.Header // canonical
	sse      bool        // text/event-stream: written event by event
	noBody   bool        // a status that has no body (204, 304)
}

func newRecord(x *tape.Exchange, names []string) *record {
	r := &record{x: x}
	r.req = parseRequest(x.Request.Method, x.Request.URL, x.Request.Headers, x.Request.Body, names)
	resp := x.Response
	r.header = responseHeader(resp.Headers)
	if vs := headerValues(resp.Headers, "Content-Length"); len(vs) > 0 {
		r.length = vs[0]
	}
	_, r.hasType = r.header["Content-Type"]
	if ct := r.header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == "text/event-stream" {
			r.sse = true
		}
	}
	if len(resp.Trailers) > 0 {
		r.trailers = make(http.Header, len(resp.Trailers))
		for k, vs := range resp.Trailers {
			ck := textproto.CanonicalMIMEHeaderKey(k)
			r.trailers[ck] = append(r.trailers[ck], vs...)
		}
		r.trailer = strings.Join(slices.Sorted(maps.Keys(r.trailers)), ", ")
	}
	r.noBody = resp.Status == http.StatusNoContent || resp.Status == http.StatusNotModified
	return r
}

// responseHeader returns the recorded response headers to send, canonical,
// without the hop-by-hop ones (RFC 9110 7.6.1, and those the Connection
// header names), Content-Length (recomputed) and Date (refreshed). Every
// value slice is capped so that appending to it never writes into the tape.
func responseHeader(h http.Header) http.Header {
	var conn []string
	for k, vs := range h {
		if !strings.EqualFold(k, "Connection") {
			continue
		}
		for _, v := range vs {
			for tok := range strings.SplitSeq(v, ",") {
				if tok = textproto.TrimString(tok); tok != "" {
					conn = append(conn, textproto.CanonicalMIMEHeaderKey(tok))
				}
			}
		}
	}
	out := make(http.Header, len(h))
	for k, vs := range h {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		switch ck {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
			"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Date":
			continue
		}
		if slices.Contains(conn, ck) {
			continue
		}
		out[ck] = append(out[ck], vs...)
	}
	for k, vs := range out {
		out[k] = slices.Clip(vs)
	}
	return out
}

// headerValues returns the values of canon in h, case-insensitively.
func headerValues(h http.Header, canon string) []string {
	if vs, ok := h[canon]; ok {
		return vs
	}
	for k, vs := range h {
		if strings.EqualFold(k, canon) {
			return vs
		}
	}
	return nil
}

// contentLength returns the Content-Length to send for the recorded
// response with body: none when the response has no body by its status,
// streams (event streams) or carries trailers (chunked); the recorded one
// for HEAD.
func (r *record) contentLength(method string, body []byte) string {
	switch {
	case method == http.MethodHead:
		return r.length
	case r.noBody, r.sse, r.trailer != "":
		return ""
	}
	return strconv.Itoa(len(body))
}
