package stub

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	"github.com/proxyctl/proxyctl/internal/jsonrpc"
)

// Request is what matching looks at.
type Request struct {
	Method string
	// Target is the request target as sent: path and query ("/a/b?x=1").
	Target string
	// Path is Target's path as sent (still escaped); derived from Target
	// when empty.
	Path string
	// Query holds the decoded query parameters; parsed from Target when
	// nil.
	Query url.Values
	// Host is what a "Host" header matcher sees when Header has no Host
	// (net/http moves it to http.Request.Host).
	Host   string
	Header http.Header
	Body   []byte
	// BodyUnread says the caller did not read the body (NeedsBody said it
	// need not): stubs with a body matcher do not match then.
	BodyUnread bool
}

// NewRequest returns the Request for r. body is r's body when the caller
// read it, nil when it did not (BodyUnread is then set); an empty body that
// was read is a non-nil empty slice.
//
// Target is r.RequestURI as sent; an absolute-form target
// ("http://host/a?b", a forward-proxy request) is reduced to its path and
// query, so that a stub's url reads the same whichever form the client used.
func NewRequest(r *http.Request, body []byte) *Request {
	target := Target(r.RequestURI)
	if target == "" {
		target = r.URL.RequestURI()
	}
	return &Request{
		Method:     r.Method,
		Target:     target,
		Query:      r.URL.Query(),
		Host:       r.Host,
		Header:     r.Header,
		Body:       body,
		BodyUnread: body == nil,
	}
}

// Target returns the origin-form (path and query) of a request target as
// sent: itself when it already is, the path and query of an absolute-form
// target, and "" when it cannot be parsed.
func Target(requestURI string) string {
	if requestURI == "" || requestURI[0] == '/' || requestURI == "*" {
		return requestURI
	}
	u, err := url.ParseRequestURI(requestURI)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.RequestURI()
}

// prepared is a Request with its derived values filled in, plus a memo of
// the body's canonical JSON, shared by all the stubs tried on one request.
type prepared struct {
	*Request
	target string
	path   string
	query  url.Values
	canon  string
	json   int8 // 0 not computed yet, 1 canon holds the body's JSON, -1 not JSON
}

func prepare(r *Request) prepared {
	p := prepared{Request: r, target: r.Target, path: r.Path, query: r.Query}
	if p.target == "" {
		p.target = r.Path
		if len(r.Query) > 0 {
			p.target += "?" + r.Query.Encode()
		}
	}
	if p.path == "" {
		p.path, _, _ = strings.Cut(p.target, "?")
	}
	if p.query == nil {
		if _, q, ok := strings.Cut(p.target, "?"); ok {
			p.query, _ = url.ParseQuery(q) // what parses of a malformed query
		}
	}
	return p
}

// bodyJSON returns the body's canonical JSON, computed once per request.
func (p *prepared) bodyJSON() (string, bool) {
	if p.json == 0 {
		p.json = -1
		if c, err := jsonrpc.CanonicalJSON(p.Body); err == nil {
			p.canon, p.json = string(c), 1
		}
	}
	return p.canon, p.json == 1
}

// Match reports whether r matches c's pattern. It does not look at expiry
// (the Engine does).
func (c *Compiled) Match(r *Request) bool {
	p := prepare(r)
	return c.match(&p)
}

func (c *Compiled) match(p *prepared) bool {
	if c.method != "" && !strings.EqualFold(c.method, p.Method) {
		return false
	}
	switch {
	case c.url != "" && c.url != p.target:
		return false
	case c.urlPath != "" && c.urlPath != p.path:
		return false
	case c.urlPattern != nil && !c.urlPattern.MatchString(p.target):
		return false
	}
	for i := range c.query {
		f := &c.query[i]
		if !f.m.matchValues(p.query[f.name]) {
			return false
		}
	}
	for i := range c.headers {
		f := &c.headers[i]
		vs := p.Header[f.name]
		if vs == nil && f.name == "Host" && p.Host != "" {
			vs = []string{p.Host}
		}
		if vs == nil {
			vs = nonCanonical(p.Header, f.name)
		}
		if !f.m.matchValues(vs) {
			return false
		}
	}
	if c.body != nil {
		if p.BodyUnread {
			return false
		}
		return c.body.matchBody(p)
	}
	return true
}

// nonCanonical finds a header stored under a non-canonical key (a
// hand-made map); net/http canonicalizes the keys it parses.
func nonCanonical(h http.Header, canonical string) []string {
	for k, vs := range h {
		if k != canonical && textproto.CanonicalMIMEHeaderKey(k) == canonical {
			return vs
		}
	}
	return nil
}

// matchValues matches a parameter or header: absent when there is no
// value, otherwise any value matching.
func (m *matcher) matchValues(vs []string) bool {
	if m.kind == kindAbsent {
		return len(vs) == 0
	}
	return slices.ContainsFunc(vs, m.matchString)
}

func (m *matcher) matchString(v string) bool {
	switch m.kind {
	case kindEqualTo, kindBinary:
		return v == m.s
	case kindContains:
		return strings.Contains(v, m.s)
	case kindMatches:
		return m.re.MatchString(v)
	case kindEqualToJSON:
		c, err := jsonrpc.CanonicalJSON([]byte(v))
		return err == nil && string(c) == m.s
	}
	return false
}

func (m *matcher) matchBody(p *prepared) bool {
	switch m.kind {
	case kindEqualTo, kindBinary:
		return string(p.Body) == m.s
	case kindContains:
		return bytes.Contains(p.Body, []byte(m.s))
	case kindMatches:
		return m.re.Match(p.Body)
	case kindEqualToJSON:
		c, ok := p.bodyJSON()
		return ok && c == m.s
	}
	return false
}
