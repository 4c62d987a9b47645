// Package forward implements proxyctl's HTTP reverse proxy: the guard chain
// (proxy token, service map, session guard, rate limits) in front of a
// streaming httputil.ReverseProxy.
package forward

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/ratelimit"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/transport"
)

// Header defaults.
const (
	DefaultSessionHeader = "X-Proxy-Session"
	DefaultServiceHeader = "X-Proxy-Service"
	DefaultUserHeader    = "X-User-Id"
)

// SessionResolver maps a request's session id to its session; see
// session.Manager.Resolve.
type SessionResolver interface {
	Resolve(ctx context.Context, id, defaultID string) (store.Session, error)
}

// Limiter decides whether a request may pass the rate limits.
type Limiter interface {
	Allow(k ratelimit.Keys) ratelimit.Decision
}

// StubServer answers requests with session-scoped stubs. ServeStub writes
// a matching stub's response and reports true, or reports false, having
// written nothing, when no stub of the session matches; it may read the
// request body to match it but must then leave r.Body reading the whole
// body again from the start.
type StubServer interface {
	ServeStub(w http.ResponseWriter, r *http.Request, sessionID string) (bool, error)
}

// Observer receives per-request facts for metrics. Implementations must be
// cheap and must not block.
type Observer interface {
	Request(status int, d time.Duration)
	UpstreamError(kind string)
	RateLimited(tier ratelimit.Tier)
	Refused(status int)
	// ClientError counts an exchange the client broke while its response
	// was being sent ("send_timeout": it stopped reading).
	ClientError(kind string)
}

// SessionErrors are the session manager's sentinel errors, which the proxy
// maps to status codes (400, 404, 403, 503).
type SessionErrors struct {
	Missing, Unknown, Ended, TooMany, Unavailable, InvalidID error
}

// Proxy is an http.Handler that checks every request against the guard
// chain and forwards what passes to the chosen upstream. Configure the
// exported fields before the first request; they must not change after.
type Proxy struct {
	// Target is the default upstream, used when a request names no service.
	Target *url.URL
	// Services is the service map: the only upstreams a request may pick
	// with ServiceHeader.
	Services map[string]*url.URL
	// ServiceHeader selects a service (default X-Proxy-Service). It is
	// removed before forwarding.
	ServiceHeader string
	// SessionHeader carries the session id (default X-Proxy-Session).
	SessionHeader string
	// UserHeader identifies the user for the user rate-limit tier
	// (default X-User-Id); without it the bearer token's hash is used.
	UserHeader string
	// ProxyToken, when set, must be presented as
	// "Proxy-Authorization: Bearer <token>" (407 otherwise). It is never
	// forwarded.
	ProxyToken string
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// MaxBodySize refuses request bodies larger than this with 413 (0: no limit).
	MaxBodySize int64
	// ClientBodyTimeout is the longest time between two successive reads
	// of a request body (nginx's client_body_timeout); a client that
	// stalls longer gets 408 if the response has not started, and the
	// upstream exchange is aborted. 0: no limit. Requests without a body
	// do not pay for it.
	ClientBodyTimeout time.Duration
	// ClientSendTimeout is the longest time a write of the response to the
	// client may block (nginx's send_timeout): the deadline is set again
	// before each write of the head and of the body (at most 32 KiB) and
	// each flush, so it bounds a client that stops reading, not a slow
	// response or an idle event stream. When it passes, the write fails,
	// the connection is closed, the upstream exchange is aborted, and the
	// traffic item records the error. Hijacked connections (WebSocket
	// upgrades) are not bounded. 0: no limit.
	ClientSendTimeout time.Duration

	Sessions      SessionResolver // nil: no sessions
	SessionErrors SessionErrors
	Limiter       Limiter // nil: no rate limits
	Observer      Observer
	// Transport reaches the upstreams (default: transport.New with defaults).
	Transport http.RoundTripper
	Log       zerolog.Logger

	// Capture, when set, receives one traffic item for every exchange that
	// passed the guard chain (refusals are counted in metrics and logged,
	// not captured). Bodies are copied as they stream past, never held
	// back from the client.
	Capture Publisher
	// CaptureBodyLimit is how many bytes of each body an item keeps
	// (0: capture.DefaultMaxBody; < 0: the whole body). Past it the item's
	// body is marked truncated with the original's size and SHA-256.
	CaptureBodyLimit int64
	// Stamper issues the items' per-session timestamps (nil: the Proxy's own).
	Stamper *capture.Stamper

	// Stubs, when set, may answer a request that passed the guard chain
	// instead of the upstream (DESIGN: "... rate limits (429) -> stubs ->
	// upstream"); the traffic item then says stubbed.
	Stubs StubServer
	// Backend, when set, answers what no stub answered and no service
	// header routed elsewhere, instead of Target: replay serves its tape
	// this way, behind the same guard chain, stubs and capture.
	Backend http.Handler

	once     sync.Once
	stamper  *capture.Stamper
	def      *upstream
	services map[string]*upstream
	bufs     transport.BufferPool
	writers  sync.Pool
	sendLazy time.Duration
	userHdr  string
	sessHdr  string
	svcHdr   string
}

var _ http.Handler = (*Proxy)(nil)

func (p *Proxy) init() {
	p.sessHdr = orString(p.SessionHeader, DefaultSessionHeader)
	p.svcHdr = orString(p.ServiceHeader, DefaultServiceHeader)
	p.userHdr = orString(p.UserHeader, DefaultUserHeader)
	p.sendLazy = min(p.ClientSendTimeout/16, sendLazyMax)
	p.stamper = p.Stamper
	if p.stamper == nil {
		p.stamper = new(capture.Stamper)
	}
	if p.Transport == nil {
		p.Transport = transport.NewSync(transport.Options{})
	}
	if p.Target != nil {
		p.def = p.newUpstream(p.Target)
	}
	p.services = make(map[string]*upstream, len(p.Services))
	for name, u := range p.Services {
		p.services[name] = p.newUpstream(u)
	}
}

func orString(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

func (p *Proxy) reverseProxy(target *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			p.setForwarded(pr)
			h := pr.Out.Header
			h.Del("Proxy-Authorization")
			h.Del(p.svcHdr)
		},
		Transport:    p.Transport,
		BufferPool:   &p.bufs,
		ErrorHandler: p.upstreamError,
		// http.ReadResponse takes any three digits as a status; below 100
		// WriteHeader would panic. A bad response: 502, as on the fast
		// path (transport.Sync refuses it). And the body is watched, so
		// that one the upstream breaks is counted and recorded as on the
		// fast path.
		ModifyResponse: func(res *http.Response) error {
			if res.StatusCode < 100 {
				return fmt.Errorf("malformed HTTP status code %03d", res.StatusCode)
			}
			if w, ok := res.Request.Context().Value(rpWriterKey{}).(*responseWriter); ok && res.Body != http.NoBody &&
				res.StatusCode != http.StatusSwitchingProtocols { // an upgrade's body is the connection: left as it is
				res.Body = &watchedBody{ReadCloser: res.Body, p: p, w: w, r: res.Request}
			}
			return nil
		},
		// FlushInterval 0: ReverseProxy already flushes immediately for
		// text/event-stream and for responses of unknown length.
	}
}

// setForwarded sets X-Forwarded-For/Host/Proto. An incoming
// X-Forwarded-For is kept (and appended to) only from a trusted proxy;
// from anyone else it is replaced, so clients cannot spoof their address.
func (p *Proxy) setForwarded(pr *httputil.ProxyRequest) {
	peer, ok := peerAddr(pr.In.RemoteAddr)
	if ok && p.trusted(peer) {
		// Rewrite drops the inbound X-Forwarded-For from Out; a trusted
		// proxy's chain is kept and our peer appended to it.
		if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
			pr.Out.Header["X-Forwarded-For"] = prior
		}
		pr.SetXForwarded()
		return
	}
	h := pr.Out.Header
	if ok {
		h.Set("X-Forwarded-For", peer.String())
	}
	h.Set("X-Forwarded-Host", pr.In.Host)
	if pr.In.TLS != nil {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
}

// ServeHTTP runs the guard chain in the DESIGN order: proxy token (407),
// service map (403), session guard (400/404/403), rate limits (429), then
// the upstream.
func (p *Proxy) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	p.once.Do(p.init)
	start := time.Now()
	w := p.getWriter(rw)
	defer func() {
		if w.body != nil {
			w.body.finish()
		}
		w.finishSend()
		if w.send.timedOut {
			p.Log.Debug().Str("method", r.Method).Str("path", r.URL.Path).Msg("client stopped reading the response")
		}
		if p.Observer != nil {
			if w.send.timedOut {
				p.Observer.ClientError("send_timeout")
			}
			p.Observer.Request(w.status(), time.Since(start))
		}
		p.putWriter(w)
	}()

	if r.Method == http.MethodConnect {
		// A reverse proxy opens no tunnels, to the target or anywhere else.
		w.Header().Set("Connection", "close")
		p.refuse(w, http.StatusMethodNotAllowed, "CONNECT is not supported by a reverse proxy")
		return
	}
	if mayHideFraming(r) {
		w.Header().Set("Connection", "close")
	}
	if r.Body != nil && r.Body != http.NoBody {
		w.body = newClientBody(rw, r, p.ClientBodyTimeout)
		r.Body = w.body
	}

	if p.ProxyToken != "" && !p.tokenOK(r.Header.Get("Proxy-Authorization")) {
		w.Header().Set("Proxy-Authenticate", `Bearer realm="proxyctl"`)
		p.refuse(w, http.StatusProxyAuthRequired, "proxy authentication required")
		return
	}
	r.Header.Del("Proxy-Authorization")

	var up *upstream
	if p.Backend == nil || r.Header.Get(p.svcHdr) != "" {
		var ok bool
		if up, ok = p.pickUpstream(w, r); !ok {
			return
		}
	}

	peer, _ := peerAddr(r.RemoteAddr)
	var sessionID string
	if p.Sessions != nil {
		sess, err := p.Sessions.Resolve(r.Context(), r.Header.Get(p.sessHdr), defaultSessionID(peer))
		if err != nil {
			p.sessionError(w, err, sess.State)
			return
		}
		sessionID = sess.ID
	}

	if p.Limiter != nil {
		d := p.Limiter.Allow(p.keys(r, peer, sessionID))
		d.SetHeaders(w.Header())
		if !d.Allowed {
			if p.Observer != nil {
				p.Observer.RateLimited(d.Tier)
			}
			p.refuse(w, http.StatusTooManyRequests, "rate limit exceeded ("+string(d.Tier)+")")
			return
		}
	}

	if p.Capture != nil {
		x := p.beginCapture(w, r, sessionID, start)
		defer func() {
			if v := recover(); v != nil {
				// http.ErrAbortHandler: the upstream broke the body
				// (ReverseProxy) or the client went away mid-response.
				if x.errText == "" {
					x.errText = "exchange aborted before the response was complete"
				}
				p.finishCapture(x, w, r)
				panic(v)
			}
			p.finishCapture(x, w, r)
		}()
	}

	if p.MaxBodySize > 0 && r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > p.MaxBodySize {
			p.refuse(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, p.MaxBodySize)
	}
	if p.Stubs != nil {
		served, err := p.Stubs.ServeStub(w, r, sessionID)
		if err != nil {
			p.Log.Warn().Err(err).Msg("stub lookup failed; forwarding")
		}
		if served {
			if w.x != nil {
				w.x.stubbed = true
			}
			return
		}
	}
	if up == nil {
		p.Backend.ServeHTTP(w, r)
		return
	}
	if up.sync != nil && fastEligible(r) {
		p.serveFast(w, r, up, peer)
		return
	}
	// The responseWriter rides in the context to ModifyResponse (this path
	// allocates plenty already; the fast path does not need it).
	up.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), rpWriterKey{}, w)))
}

// mayHideFraming reports whether net/http may have removed a framing
// header the handler can no longer see: a chunked HTTP/1.1 request may
// also have carried Content-Length (dropped in favour of chunked), and an
// HTTP/1.0 request may have carried Transfer-Encoding (ignored). RFC 9112
// 6.1 requires the connection to be closed after such a request, so that
// bytes a front end may have framed differently are never read as a
// request of their own (request smuggling); net/http does not yet
// (golang/go#80942). Only these requests lose keep-alive.
func mayHideFraming(r *http.Request) bool {
	return r.ProtoMajor == 1 && (len(r.TransferEncoding) > 0 || r.ProtoMinor == 0 && !r.Close)
}

func (p *Proxy) tokenOK(h string) bool {
	const prefix = "Bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(h[len(prefix):])), []byte(p.ProxyToken)) == 1
}

func (p *Proxy) pickUpstream(w http.ResponseWriter, r *http.Request) (*upstream, bool) {
	name := r.Header.Get(p.svcHdr)
	if name == "" {
		if p.def == nil {
			p.refuse(w, http.StatusBadRequest, "missing "+p.svcHdr+" header")
			return nil, false
		}
		return p.def, true
	}
	up, ok := p.services[name]
	if !ok {
		// Never echo the name or list the map: the error reveals nothing.
		p.refuse(w, http.StatusForbidden, "service not allowed")
		return nil, false
	}
	return up, true
}

// sessionError maps a Resolve error to a refusal; state is the session's
// stored state, which Resolve returns alongside ErrEnded.
func (p *Proxy) sessionError(w http.ResponseWriter, err error, state store.SessionState) {
	e := p.SessionErrors
	switch {
	case e.Missing != nil && errors.Is(err, e.Missing):
		p.refuse(w, http.StatusBadRequest, "missing "+p.sessHdr+" header")
	case e.InvalidID != nil && errors.Is(err, e.InvalidID):
		p.refuse(w, http.StatusBadRequest, "invalid session id")
	case e.Unknown != nil && errors.Is(err, e.Unknown):
		p.refuse(w, http.StatusNotFound, "unknown session")
	case e.Ended != nil && errors.Is(err, e.Ended):
		msg := "session is not active"
		switch state {
		case store.StateClosed:
			msg = "session is closed"
		case store.StateExpired:
			msg = "session has expired"
		}
		p.refuse(w, http.StatusForbidden, msg)
	case e.TooMany != nil && errors.Is(err, e.TooMany):
		p.refuse(w, http.StatusServiceUnavailable, "too many sessions")
	default:
		p.Log.Warn().Err(err).Msg("session lookup failed")
		p.refuse(w, http.StatusServiceUnavailable, "session store unavailable")
	}
}

func (p *Proxy) keys(r *http.Request, peer netip.Addr, sessionID string) ratelimit.Keys {
	ip := p.clientIP(r, peer)
	k := ratelimit.Keys{Session: sessionID, Endpoint: r.Method + " " + r.URL.Path}
	if ip.IsValid() {
		k.IP = ip.String()
	}
	k.User = userKey(r.Header, p.userHdr)
	if k.User == "" {
		// No identity: anonymous callers are limited per address under the user tier.
		k.User = "anon:" + k.IP
	}
	return k
}

// userKey is the --user-header value, else a hash of the bearer token
// (never the token itself), else "".
func userKey(h http.Header, userHdr string) string {
	if u := h.Get(userHdr); u != "" {
		return "user:" + u
	}
	auth := h.Get("Authorization")
	const prefix = "Bearer "
	if len(auth) > len(prefix) && strings.EqualFold(auth[:len(prefix)], prefix) {
		sum := sha256.Sum256([]byte(strings.TrimSpace(auth[len(prefix):])))
		return "token:" + hex.EncodeToString(sum[:12])
	}
	return ""
}

func defaultSessionID(peer netip.Addr) string {
	if !peer.IsValid() {
		return "client-unknown"
	}
	return "client-" + peer.String()
}

// upstreamError answers a failed upstream exchange with a short sanitized
// JSON error: 504 when the upstream did not answer in time, 502 when it
// could not be reached or broke the exchange. The upstream's address and the
// raw error never reach the client (they are logged at debug level).
func (p *Proxy) upstreamError(rw http.ResponseWriter, r *http.Request, err error) {
	x := exchangeOf(rw)
	if b := bodyOf(rw); b != nil {
		// The client's body failed first: not the upstream's fault.
		if code, msg := b.failure(); msg != "" {
			if x != nil {
				x.errText = msg
			}
			if code != 0 {
				rw.Header().Set("Connection", "close")
				p.refuse(rw, code, msg)
			}
			return
		}
	}
	if r.Context().Err() != nil {
		// The client went away; nothing to answer.
		if x != nil {
			x.errText = "client went away"
		}
		return
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		if x != nil {
			x.errText = "request body too large"
		}
		p.refuse(rw, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	kind, status, msg := classify(err)
	if x != nil {
		x.errText = msg
	}
	if p.Observer != nil {
		p.Observer.UpstreamError(kind)
	}
	p.Log.Warn().Str("kind", kind).Str("method", r.Method).Str("path", r.URL.Path).Msg("upstream error")
	p.Log.Debug().Err(err).Msg("upstream error detail")
	writeError(rw, status, msg)
}
