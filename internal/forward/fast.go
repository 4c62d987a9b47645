package forward

import (
	"bufio"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/proxyctl/proxyctl/internal/transport"
)

// upstream is one destination: the general ReverseProxy, and, for plain
// http:// targets without a base path, the fast path's pooled client.
type upstream struct {
	target *url.URL
	rp     *httputil.ReverseProxy
	sync   *transport.Sync // nil: always use rp
	host   string          // host:port for sync
}

func (p *Proxy) newUpstream(target *url.URL) *upstream {
	u := &upstream{target: target, rp: p.reverseProxy(target)}
	if s, ok := p.Transport.(*transport.Sync); ok && target.Scheme == "http" &&
		(target.Path == "" || target.Path == "/") && target.RawQuery == "" {
		u.sync = s
		u.host = target.Host
		if target.Port() == "" {
			u.host += ":80"
		}
	}
	return u
}

// fastEligible reports whether r can be proxied by the fast path: an
// origin-form request with no body or a small body of known length, not
// an upgrade, not waiting for 100-continue.
func fastEligible(r *http.Request) bool {
	if r.ContentLength < 0 || r.ContentLength > transport.SyncBodyLimit ||
		r.ContentLength == 0 && r.Body != nil && r.Body != http.NoBody {
		return false
	}
	if len(r.RequestURI) == 0 || r.RequestURI[0] != '/' || r.Method == http.MethodConnect {
		return false
	}
	h := r.Header
	return h["Upgrade"] == nil && h["Expect"] == nil && len(r.TransferEncoding) == 0 && len(r.Trailer) == 0 &&
		!uncleanQuery(r.URL.RawQuery)
}

// uncleanQuery reports whether ReverseProxy would rewrite the query
// before sending it (a ";" or a malformed escape: it keeps only what
// url.ParseQuery accepts, golang/go#25192). Such requests take
// ReverseProxy, so that both paths send the same.
func uncleanQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return true
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return true
			}
			i += 2
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func replayableMethod(r *http.Request) bool {
	if r.ContentLength > 0 {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// hopHeaders are removed in both directions (RFC 9110 7.6.1), plus the
// ones the proxy sets itself or consumes.
func skipRequestHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Host", "Content-Length", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	return false
}

func skipResponseHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// connectionTokens lists the header names a Connection header marks as
// hop-by-hop (nil, without allocating, in the usual case of none).
func connectionTokens(h http.Header) []string {
	var out []string
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				out = append(out, textproto.CanonicalMIMEHeaderKey(tok))
			}
		}
	}
	return out
}

func contains(list []string, k string) bool {
	return slices.Contains(list, k)
}

// writeHead writes the outbound request head straight from the inbound
// request: same rules as the ReverseProxy path (hop-by-hop headers and the
// proxy's own headers dropped, X-Forwarded-* set), no clone of the headers.
func (p *Proxy) writeHead(w *bufio.Writer, r *http.Request, up *upstream, peer netip.Addr) error {
	_, _ = w.WriteString(r.Method)
	_ = w.WriteByte(' ')
	if plainTarget(r.RequestURI) {
		_, _ = w.WriteString(r.RequestURI)
	} else {
		// Characters a URI may not hold (non-ASCII, a quote: found by
		// the differential fuzz target): re-encoded, as ReverseProxy
		// sends URL.RequestURI(), never passed on raw.
		_, _ = w.WriteString(r.URL.RequestURI())
	}
	_, _ = w.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = w.WriteString(up.target.Host)
	_, _ = w.WriteString("\r\n")
	conn := connectionTokens(r.Header)
	for k, vs := range r.Header {
		if skipRequestHeader(k) || k == p.svcHdr || conn != nil && contains(conn, k) {
			continue
		}
		if k == "User-Agent" {
			// As http.Request.Write: the first value, none when empty.
			if len(vs) > 0 && vs[0] != "" {
				writeField(w, k, vs[0])
			}
			continue
		}
		for _, v := range vs {
			writeField(w, k, v)
		}
	}
	if wantsTrailers(r.Header["Te"]) {
		// As ReverseProxy (golang/go#21096): TE is hop-by-hop, but a
		// client that accepts trailers has the upstream told so.
		_, _ = w.WriteString("Te: trailers\r\n")
	}
	_, _ = w.WriteString("X-Forwarded-For: ")
	if peer.IsValid() && p.trusted(peer) {
		for _, v := range r.Header["X-Forwarded-For"] {
			_, _ = w.WriteString(v)
			_, _ = w.WriteString(", ")
		}
	}
	if peer.IsValid() {
		_, _ = w.Write(peer.AppendTo(w.AvailableBuffer())) // no allocation
	}
	_, _ = w.WriteString("\r\n")
	writeField(w, "X-Forwarded-Host", r.Host)
	if r.TLS != nil {
		_, _ = w.WriteString("X-Forwarded-Proto: https\r\n")
	} else {
		_, _ = w.WriteString("X-Forwarded-Proto: http\r\n")
	}
	if r.ContentLength > 0 {
		_, _ = w.WriteString("Content-Length: ")
		_, _ = w.Write(strconv.AppendInt(w.AvailableBuffer(), r.ContentLength, 10))
		_, _ = w.WriteString("\r\n")
	} else if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		_, _ = w.WriteString("Content-Length: 0\r\n")
	}
	_, err := w.WriteString("\r\n")
	return err
}

// plainTarget reports whether a request target holds only the characters
// RFC 3986 allows in a path and query (unreserved, sub-delims, ":", "@",
// "/", "?" and "%"): then URL.RequestURI(), which ReverseProxy sends, is
// the target as it came, and it is sent without building that string.
func plainTarget(t string) bool {
	for i := range len(t) {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:@/?%", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// wantsTrailers reports whether TE field values list "trailers".
func wantsTrailers(te []string) bool {
	for _, v := range te {
		for tok := range strings.SplitSeq(v, ",") {
			// A token may carry parameters (";q=..."); "trailers" has none.
			if strings.EqualFold(textproto.TrimString(tok), "trailers") {
				return true
			}
		}
	}
	return false
}

func writeField(w *bufio.Writer, k, v string) {
	_, _ = w.WriteString(k)
	_, _ = w.WriteString(": ")
	_, _ = w.WriteString(v)
	_, _ = w.WriteString("\r\n")
}

// serveFast proxies r on the synchronous path. The response handling
// mirrors httputil.ReverseProxy: hop-by-hop headers removed, trailers
// announced and forwarded, event streams and unknown-length bodies flushed
// as they arrive, and an upstream that breaks mid-body aborts the client's
// response (http.ErrAbortHandler) instead of ending it as if complete.
func (p *Proxy) serveFast(w *responseWriter, r *http.Request, up *upstream, peer netip.Addr) {
	resp, err := up.sync.Exchange(r, up.host, replayableMethod(r), func(bw *bufio.Writer) error {
		return p.writeHead(bw, r, up, peer)
	}, w.interim)
	if err != nil {
		p.upstreamError(w, r, err)
		return
	}
	defer func() { _ = resp.Body.Close() }()

	h := w.Header()
	conn := connectionTokens(resp.Header)
	for k, vs := range resp.Header {
		if skipResponseHeader(k) || conn != nil && contains(conn, k) {
			continue
		}
		h[k] = vs
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	flush := resp.ContentLength == -1 || isEventStream(resp.Header.Get("Content-Type"))
	if flush || len(resp.Trailer) > 0 {
		// As ReverseProxy: the head of a stream goes out at once, before
		// its first event, which may be long in coming (an EventSource
		// opens on the head); and with trailers it goes out before the
		// body, so that one which breaks off arrives cut, not missing.
		w.Flush()
	}
	buf := p.bufs.Get()
	err = copyBody(w, resp.Body, buf, flush)
	p.bufs.Put(buf)
	if err != nil {
		if errors.Is(err, errUpstreamBody) && r.Context().Err() == nil {
			p.brokenBody(w, r)
			panic(http.ErrAbortHandler)
		}
		return
	}
	if len(resp.Trailer) == announced {
		// As ReverseProxy's copyHeader: values added, and a trailer
		// announced but never sent leaves no empty entry behind.
		for k, vs := range resp.Trailer {
			for _, v := range vs {
				h.Add(k, v)
			}
		}
		return
	}
	// Trailers the upstream did not announce (its own Trailer field
	// named fewer, or none): sent as net/http allows for those, as
	// ReverseProxy does.
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			h.Add(http.TrailerPrefix+k, v)
		}
	}
}

// brokenBody counts, logs and records an upstream response body that
// failed part-way (on both paths; the caller aborts the response).
func (p *Proxy) brokenBody(w *responseWriter, r *http.Request) {
	if p.Observer != nil {
		p.Observer.UpstreamError("body")
	}
	p.Log.Warn().Str("method", r.Method).Str("path", r.URL.Path).Msg("upstream broke the response body")
	if w.x != nil && w.x.errText == "" {
		w.x.errText = "upstream broke the response body"
	}
}

// rpWriterKey is the context key under which a request on the
// ReverseProxy path carries its responseWriter, so that ModifyResponse
// can watch the upstream body for it.
type rpWriterKey struct{}

// watchedBody is an upstream response body on the ReverseProxy path: a
// read that fails (not EOF) is reported as on the fast path, where
// copyBody tells upstream failures from client ones itself.
type watchedBody struct {
	io.ReadCloser
	p      *Proxy
	w      *responseWriter
	r      *http.Request
	failed bool
}

func (b *watchedBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	if err != nil && !errors.Is(err, io.EOF) && !b.failed && b.r.Context().Err() == nil {
		b.failed = true
		b.p.brokenBody(b.w, b.r)
	}
	return n, err
}

// interim passes on a 1xx informational response (103 Early Hints, 102
// Processing) from the upstream, as RFC 9110 15.2 asks of a proxy and as
// httputil.ReverseProxy does: its fields as they came, then the handler's
// own header map as it was (ReverseProxy empties it instead).
func (w *responseWriter) interim(code int, hdr http.Header) error {
	h := w.Header()
	saved := h.Clone()
	for k, vs := range hdr {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	w.WriteHeader(code)
	clear(h)
	maps.Copy(h, saved)
	return nil
}

func isEventStream(ct string) bool {
	return strings.HasPrefix(ct, "text/event-stream")
}

var errUpstreamBody = errors.New("read upstream body")

// copyBody copies src to w with buf, flushing after each write when flush
// is set. A failure to read src is wrapped in errUpstreamBody.
func copyBody(w *responseWriter, src io.Reader, buf []byte, flush bool) error {
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := w.writeBody(buf[:n]); werr != nil {
				return werr
			}
			if flush {
				w.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return errors.Join(errUpstreamBody, rerr)
		}
	}
}
