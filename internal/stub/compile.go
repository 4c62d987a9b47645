// Package stub matches requests against session-scoped stubs and answers
// them with the stubs' responses.
//
// A stub (store.Stub) is validated and compiled once (Compile): regular
// expressions are compiled, JSON is canonicalized, the response is decoded.
// The Engine keeps each session's compiled stubs in a short-lived cache in
// front of the store, so a request costs no store call while the cache is
// fresh, and picks the stub that answers a request.
//
// # Matching
//
// The candidates for a request of session S are S's stubs and the global
// ones (session "*") that have not expired (ExpiresAt is 0, or later than
// now in unix seconds). Of the candidates whose pattern matches, the one
// with the lowest Priority wins; a tie goes to the newest CreatedAt, then to
// the smaller StubID, then to S's own stub over a global one (Compare).
//
// A pattern matches when every field it sets matches:
//
//   - method: equal ignoring case; "" or "ANY" matches any method.
//   - url: the whole request target as sent ("/a/b?x=1"), byte for byte.
//   - urlPath: the target's path as sent (still escaped), whatever the query.
//   - urlPattern: a Go regular expression matching the whole target.
//   - query: each named parameter, decoded, is matched by its matcher; a
//     parameter with several values matches when any value does.
//   - headers: the same for headers, names case-insensitive ("Host" is the
//     request's host).
//   - body: the body, which the caller reads only when NeedsBody says so.
//
// A string matcher sets exactly one of: equalTo (exact), equalToJson (JSON
// compared semantically: key order and insignificant whitespace ignored,
// numbers compared as written, so 1 and 1.0 differ), contains, matches (a Go
// regular expression that must match the whole value), binaryEqualTo
// (bytes, base64 in JSON) and absent (the parameter or header is missing;
// not for the body).
package stub

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/proxyctl/proxyctl/internal/jsonrpc"
	"github.com/proxyctl/proxyctl/internal/store"
)

// Limits and defaults of stubs.
const (
	// DefaultPriority is the priority of a stub that does not set one (the
	// admin API applies it).
	DefaultPriority = 10
	// MaxDelay bounds response.delayMs.
	MaxDelay = 5 * time.Minute
	// MaxIDLen bounds a stub id.
	MaxIDLen = 128
	// maxExpiresAt is year 5138 in unix seconds: a larger expiresAt is
	// most likely milliseconds.
	maxExpiresAt = 100_000_000_000
)

// Compiled is a validated stub, ready to match requests. It is immutable
// and safe for concurrent use.
type Compiled struct {
	stub       store.Stub
	method     string // "" = any
	url        string // "" = not set
	urlPath    string // "" = not set
	urlPattern *regexp.Regexp
	query      []field
	headers    []field
	body       *matcher
	resp       response
}

// field is a query parameter or header matcher.
type field struct {
	name string // canonical for headers
	m    matcher
}

type matchKind uint8

const (
	kindEqualTo matchKind = iota + 1
	kindEqualToJSON
	kindContains
	kindMatches
	kindBinary
	kindAbsent
)

// matcher is a compiled store.StringMatcher.
type matcher struct {
	kind matchKind
	s    string         // equalTo, contains; canonical JSON; binary bytes
	re   *regexp.Regexp // matches
}

// Compile validates s and compiles it. Its errors name the offending field
// in the JSON form ("pattern.headers[\"X-Id\"].matches: ..."), for the
// admin API's 400 answers. Compile keeps a deep copy of s.
func Compile(s store.Stub) (*Compiled, error) {
	s = s.Clone()
	c := &Compiled{stub: s}
	if s.StubID != "" {
		if err := ValidID(s.StubID); err != nil {
			return nil, err
		}
	}
	if s.ExpiresAt < 0 || s.ExpiresAt >= maxExpiresAt {
		return nil, fmt.Errorf("expiresAt %d: want unix seconds (0 for never)", s.ExpiresAt)
	}
	if err := c.compilePattern(&s.Pattern); err != nil {
		return nil, err
	}
	resp, err := compileResponse(&s.Response)
	if err != nil {
		return nil, err
	}
	c.resp = resp
	return c, nil
}

// ValidID reports whether id can name a stub: 1 to MaxIDLen letters,
// digits and "-", "_", ".", "~" (so it needs no escaping in a URL).
func ValidID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("stubId: length %d, want 1 to %d", len(id), MaxIDLen)
	}
	for i := range len(id) {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
		default:
			return fmt.Errorf("stubId %q: want letters, digits, '-', '_', '.' and '~' only", id)
		}
	}
	return nil
}

func (c *Compiled) compilePattern(p *store.StubPattern) error {
	if m := p.Method; m != "" && !strings.EqualFold(m, "ANY") {
		if !isToken(m) {
			return fmt.Errorf("pattern.method %q is not an HTTP method", m)
		}
		c.method = m
	}
	n := 0
	for _, u := range []string{p.URL, p.URLPath, p.URLPattern} {
		if u != "" {
			n++
		}
	}
	if n > 1 {
		return errors.New("pattern: set at most one of url, urlPath and urlPattern")
	}
	c.url, c.urlPath = p.URL, p.URLPath
	if p.URLPattern != "" {
		re, err := compileWhole(p.URLPattern)
		if err != nil {
			return fmt.Errorf("pattern.urlPattern: %w", err)
		}
		c.urlPattern = re
	}
	var err error
	if c.query, err = compileFields("pattern.query", p.Query, false); err != nil {
		return err
	}
	if c.headers, err = compileFields("pattern.headers", p.Headers, true); err != nil {
		return err
	}
	if p.Body != nil {
		m, err := compileMatcher("pattern.body", *p.Body)
		if err != nil {
			return err
		}
		if m.kind == kindAbsent {
			return errors.New("pattern.body.absent: a body cannot be absent (match an empty body with equalTo \"\")")
		}
		c.body = &m
	}
	return nil
}

// compileFields compiles named matchers, sorted by name so matching is
// deterministic.
func compileFields(where string, in map[string]store.StringMatcher, header bool) ([]field, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]field, 0, len(in))
	seen := make(map[string]string, len(in))
	for name, sm := range in {
		at := fmt.Sprintf("%s[%q]", where, name)
		key := name
		if header {
			if !isToken(name) {
				return nil, fmt.Errorf("%s: not a valid header name", at)
			}
			key = textproto.CanonicalMIMEHeaderKey(name)
			if other, dup := seen[key]; dup {
				return nil, fmt.Errorf("%s: %q and %q name the same header", where, min(name, other), max(name, other))
			}
			seen[key] = name
		} else if name == "" {
			return nil, fmt.Errorf("%s: empty parameter name", at)
		}
		m, err := compileMatcher(at, sm)
		if err != nil {
			return nil, err
		}
		out = append(out, field{name: key, m: m})
	}
	slices.SortFunc(out, func(a, b field) int { return cmp.Compare(a.name, b.name) })
	return out, nil
}

func compileMatcher(at string, sm store.StringMatcher) (matcher, error) {
	var set []string
	var m matcher
	if sm.EqualTo != nil {
		set = append(set, "equalTo")
		m = matcher{kind: kindEqualTo, s: *sm.EqualTo}
	}
	if raw := bytes.TrimSpace(sm.EqualToJSON); len(raw) > 0 && string(raw) != "null" {
		set = append(set, "equalToJson")
		canon, err := canonicalMatcherJSON(raw)
		if err != nil {
			return m, fmt.Errorf("%s.equalToJson: %w", at, err)
		}
		m = matcher{kind: kindEqualToJSON, s: string(canon)}
	}
	if sm.Contains != nil {
		set = append(set, "contains")
		m = matcher{kind: kindContains, s: *sm.Contains}
	}
	if sm.Matches != nil {
		set = append(set, "matches")
		re, err := compileWhole(*sm.Matches)
		if err != nil {
			return m, fmt.Errorf("%s.matches: %w", at, err)
		}
		m = matcher{kind: kindMatches, re: re}
	}
	if sm.BinaryEqualTo != nil {
		set = append(set, "binaryEqualTo")
		m = matcher{kind: kindBinary, s: string(sm.BinaryEqualTo)}
	}
	if sm.Absent {
		set = append(set, "absent")
		m = matcher{kind: kindAbsent}
	}
	switch len(set) {
	case 0:
		return m, fmt.Errorf("%s: set one of equalTo, equalToJson, contains, matches, binaryEqualTo and absent", at)
	case 1:
		return m, nil
	default:
		return m, fmt.Errorf("%s: set only one matcher, not %s", at, strings.Join(set, " and "))
	}
}

// canonicalMatcherJSON canonicalizes an equalToJson value. A JSON string is
// taken as holding the JSON document (WireMock's form, "{\"a\":1}"); to
// match a body that is itself a JSON string, quote it twice.
func canonicalMatcherJSON(raw []byte) ([]byte, error) {
	if raw[0] == '"' {
		var doc string
		if err := json.Unmarshal(raw, &doc); err != nil {
			return nil, err
		}
		c, err := jsonrpc.CanonicalJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("the string does not hold a JSON document: %w", err)
		}
		return c, nil
	}
	return jsonrpc.CanonicalJSON(raw)
}

// compileWhole compiles a regular expression that must match a whole value.
func compileWhole(expr string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err // the user's expression in the message, not the wrapped one
	}
	return regexp.Compile(`\A(?:` + expr + `)\z`)
}

// isToken reports whether s is a non-empty RFC 9110 token (a method or a
// header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// response is a decoded store.StubResponse.
type response struct {
	status  int
	headers [][2]string // canonical name, value; sorted by name
	body    []byte
	delay   time.Duration
}

func compileResponse(r *store.StubResponse) (response, error) {
	out := response{status: r.Status, delay: time.Duration(r.DelayMs) * time.Millisecond}
	if out.status == 0 {
		out.status = http.StatusOK
	}
	if out.status < 200 || out.status > 599 {
		return out, fmt.Errorf("response.status %d: want 200 to 599 (an informational status cannot end an exchange)", r.Status)
	}
	if r.DelayMs < 0 || out.delay > MaxDelay {
		return out, fmt.Errorf("response.delayMs %d: want 0 to %d", r.DelayMs, MaxDelay.Milliseconds())
	}
	jsonBody := bytes.TrimSpace(r.JSONBody)
	if string(jsonBody) == "null" {
		jsonBody = nil
	}
	var set []string
	if r.Body != "" {
		set = append(set, "body")
		out.body = []byte(r.Body)
	}
	if r.BodyBase64 != "" {
		set = append(set, "bodyBase64")
		b, err := base64.StdEncoding.DecodeString(r.BodyBase64)
		if err != nil {
			return out, fmt.Errorf("response.bodyBase64: %w", err)
		}
		out.body = b
	}
	if len(jsonBody) > 0 {
		set = append(set, "jsonBody")
		if !json.Valid(jsonBody) {
			return out, errors.New("response.jsonBody: not valid JSON")
		}
		out.body = jsonBody
	}
	if len(set) > 1 {
		return out, fmt.Errorf("response: set only one of body, bodyBase64 and jsonBody, not %s", strings.Join(set, " and "))
	}
	if len(out.body) > 0 && !bodyAllowed(out.status) {
		return out, fmt.Errorf("response.%s: a %d response has no body", set[0], out.status)
	}
	hasType := false
	seen := make(map[string]string, len(r.Headers))
	for name, value := range r.Headers {
		at := fmt.Sprintf("response.headers[%q]", name)
		if !isToken(name) {
			return out, fmt.Errorf("%s: not a valid header name", at)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return out, fmt.Errorf("%s: the value holds a line break or NUL", at)
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		if other, dup := seen[key]; dup {
			return out, fmt.Errorf("response.headers: %q and %q name the same header", min(name, other), max(name, other))
		}
		seen[key] = name
		if key == "Content-Type" {
			hasType = true
		}
		if skipResponseHeader(key) {
			continue // the proxy frames the body itself
		}
		out.headers = append(out.headers, [2]string{key, value})
	}
	if len(jsonBody) > 0 && !hasType {
		out.headers = append(out.headers, [2]string{"Content-Type", "application/json"})
	}
	slices.SortFunc(out.headers, func(a, b [2]string) int { return cmp.Compare(a[0], b[0]) })
	return out, nil
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// skipResponseHeader reports the headers a stub's response does not copy:
// hop-by-hop headers and Content-Length, which the server sets from the
// body.
func skipResponseHeader(canonical string) bool {
	switch canonical {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length":
		return true
	}
	return false
}

// Stub returns the stub c was compiled from. It is shared: the caller must
// not modify it.
func (c *Compiled) Stub() *store.Stub { return &c.stub }

// NeedsBody reports whether matching c looks at the request body.
func (c *Compiled) NeedsBody() bool { return c.body != nil }

// live reports whether c has not expired at now (unix seconds).
func (c *Compiled) live(now int64) bool {
	return c.stub.ExpiresAt == 0 || now < c.stub.ExpiresAt
}

// Compare orders stubs by precedence: lower Priority first, then newer
// CreatedAt, then smaller StubID. The first stub in this order that matches
// a request answers it.
func Compare(a, b store.Stub) int { return compare(&a, &b) }

func compare(a, b *store.Stub) int {
	if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
		return c
	}
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return cmp.Compare(a.StubID, b.StubID)
}

// Prepare completes a stub about to be stored, as the admin API and the
// CLI do: a random stubId when absent, status 200 when absent, createdAt
// now. It returns an error, fit for the user, when the stub does not
// compile or has already expired.
func Prepare(st store.Stub, now time.Time) (store.Stub, error) {
	if st.StubID == "" {
		st.StubID = NewID()
	}
	if st.Response.Status == 0 {
		st.Response.Status = http.StatusOK
	}
	st.CreatedAt = now.UTC()
	if _, err := Compile(st); err != nil {
		return st, err
	}
	if st.ExpiresAt != 0 && st.ExpiresAt <= now.Unix() {
		return st, fmt.Errorf("%w: expiresAt %d is in the past", ErrExpired, st.ExpiresAt)
	}
	return st, nil
}

// ErrExpired is Prepare's error for a stub whose expiresAt has passed.
var ErrExpired = errors.New("stub already expired")

// NewID returns a random stub id (32 hex digits).
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}
