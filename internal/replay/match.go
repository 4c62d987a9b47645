package replay

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/proxyctl/proxyctl/internal/jsonrpc"
)

// request is a request (live or recorded) as matching reads it: each part
// in a canonical form, and key, all of them in one string, so that two
// requests match exactly when their keys are equal. One string keeps a map
// probe to one hash and one comparison, whatever the number of exchanges.
type request struct {
	key     string
	method  string
	path    string   // as sent (still escaped)
	pairs   []pair   // the decoded query pairs, sorted
	body    bodyKey  // see bodyKeyOf
	headers []string // per match header: the values joined with ", ", or absent
}

type pair struct{ k, v string }

// bodyKey is the canonical form of a body.
type bodyKey struct {
	kind byte // one of the body kinds below
	// sum is the SHA-256 of the bytes (bodyRaw), of the canonical JSON
	// (bodyJSON) or of the canonical params (rpcReq, rpcNotif).
	sum [sha256.Size]byte
	rpc rpcCall
}

// rpcCall is what a JSON-RPC call over HTTP is matched on, besides its
// params.
type rpcCall struct {
	method string
	// id is the request's raw id (aliasing the body), nil for a
	// notification.
	id json.RawMessage
}

// Body kinds.
const (
	bodyEmpty = 'e'
	bodyRaw   = 'r'
	bodyJSON  = 'j'
	rpcReq    = 'q' // a JSON-RPC request
	rpcNotif  = 'n' // a JSON-RPC notification (no id)
)

func (b *bodyKey) isRPC() bool { return b.kind == rpcReq || b.kind == rpcNotif }

// absent stands for a match header the request does not carry. Header
// values cannot contain NUL, so no value is equal to it.
const absent = "\x00"

// parseRequest reads what matching needs of a request.
func parseRequest(method, target string, h http.Header, body []byte, names []string) request {
	r := request{method: method}
	path, rawQuery := splitTarget(target)
	r.path = path
	if rawQuery != "" {
		r.pairs = parseQuery(rawQuery)
	}
	r.body = bodyKeyOf(body)
	if len(names) > 0 {
		r.headers = make([]string, len(names))
		for i, n := range names {
			v, ok := headerValue(h, n)
			if !ok {
				v = absent
			}
			r.headers[i] = v
		}
	}
	r.key = r.makeKey()
	return r
}

// makeKey encodes every part of r into one string, unambiguously: free-form
// parts are length-prefixed, the query is escaped (so holds no NUL).
func (r *request) makeKey() string {
	var b strings.Builder
	n := 16 + len(r.method) + len(r.path) + 1 + len(r.body.sum) + len(r.body.rpc.method)
	for _, p := range r.pairs {
		n += len(p.k) + len(p.v) + 2
	}
	for _, v := range r.headers {
		n += 4 + len(v)
	}
	b.Grow(n)
	writePart(&b, r.method)
	writePart(&b, r.path)
	for _, p := range r.pairs {
		b.WriteString(url.QueryEscape(p.k))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p.v))
		b.WriteByte('&')
	}
	b.WriteByte(0)
	b.WriteByte(r.body.kind)
	if r.body.kind != bodyEmpty {
		b.Write(r.body.sum[:])
	}
	if r.body.isRPC() {
		writePart(&b, r.body.rpc.method)
	}
	for _, v := range r.headers {
		writePart(&b, v)
	}
	return b.String()
}

func writePart(b *strings.Builder, s string) {
	var tmp [20]byte
	b.Write(strconv.AppendInt(tmp[:0], int64(len(s)), 10))
	b.WriteByte(':')
	b.WriteString(s)
}

// splitTarget returns the path (as sent) and the raw query of a request
// target: origin form ("/a?b"), absolute form ("http://h/a?b", whose scheme
// and authority are dropped, as HAR import does) or "*".
func splitTarget(target string) (path, rawQuery string) {
	if i := strings.IndexByte(target, '#'); i >= 0 {
		target = target[:i]
	}
	if target != "" && target[0] != '/' && target != "*" {
		if i := strings.Index(target, "://"); i >= 0 {
			rest := target[i+3:]
			j := strings.IndexAny(rest, "/?")
			switch {
			case j < 0:
				target = "/"
			case rest[j] == '?':
				return "/", rest[j+1:]
			default:
				target = rest[j:]
			}
		}
	}
	path, rawQuery, _ = strings.Cut(target, "?")
	if path == "" {
		path = "/"
	}
	return path, rawQuery
}

// pathOf returns the path of a request target, for logs (never the query,
// which may hold secrets).
func pathOf(target string) string {
	p, _ := splitTarget(target)
	return p
}

// parseQuery returns the decoded key=value pairs of a raw query, sorted.
// "a" is the same as "a="; a part that does not decode is kept as sent.
func parseQuery(raw string) []pair {
	ps := make([]pair, 0, strings.Count(raw, "&")+1)
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		ps = append(ps, pair{unescape(k), unescape(v)})
	}
	slices.SortFunc(ps, func(a, b pair) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	return ps
}

func unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// bodyKeyOf returns the canonical form of a body. The same rules apply to
// the recorded and the live request, so a body is compared as JSON exactly
// when both parse as JSON (whatever their Content-Type: a JSON Content-Type
// on a body that does not parse leaves nothing but a byte comparison).
// A JSON-RPC call is matched on its method, whether it has an id, and its
// params (jsonrpc.CanonicalParams: without the top-level _meta, an empty
// object counting as absent), never on the id's value.
func bodyKeyOf(b []byte) bodyKey {
	if len(b) == 0 {
		return bodyKey{kind: bodyEmpty}
	}
	env, err := jsonrpc.Peek(b)
	switch {
	case err == nil && !env.IsBatch && env.JSONRPC != "" && env.HasMethod:
		if p, err := jsonrpc.CanonicalParams(env.Params); err == nil {
			if string(p) == "{}" {
				// No params, an empty object, or only _meta: the same call
				// (MCP clients differ in which they send).
				p = []byte("null")
			}
			k := bodyKey{kind: rpcNotif, sum: sha256.Sum256(p), rpc: rpcCall{method: env.Method, id: env.ID}}
			if env.ID != nil {
				k.kind = rpcReq
			}
			return k
		}
	case err == nil || errors.Is(err, jsonrpc.ErrNotMessage):
		if c, err := jsonrpc.CanonicalJSON(b); err == nil {
			return bodyKey{kind: bodyJSON, sum: sha256.Sum256(c)}
		}
	}
	return bodyKey{kind: bodyRaw, sum: sha256.Sum256(b)}
}

// headerValue returns the values of the header named canon (canonical
// form), joined with ", ", looked up case-insensitively: callers and
// hand-written tapes may use keys that are not canonical.
func headerValue(h http.Header, canon string) (string, bool) {
	vs, ok := h[canon]
	var other []string
	for k := range h {
		if k != canon && strings.EqualFold(k, canon) {
			other = append(other, k)
		}
	}
	if len(other) > 0 {
		slices.Sort(other)
		vs = slices.Clone(vs)
		for _, k := range other {
			vs = append(vs, h[k]...)
		}
		ok = true
	}
	if !ok {
		return "", false
	}
	return strings.Join(vs, ", "), true
}

// differs names what differs between a live request and a recorded one.
func differs(in, rec *request, names []string) []string {
	var d []string
	if in.method != rec.method {
		d = append(d, "method")
	}
	if in.path != rec.path {
		d = append(d, "path")
	}
	if !slices.Equal(in.pairs, rec.pairs) {
		d = append(d, queryDiffs(in.pairs, rec.pairs)...)
	}
	if ib, rb := &in.body, &rec.body; ib.kind != rb.kind || ib.sum != rb.sum || ib.rpc.method != rb.rpc.method {
		if ib.isRPC() && rb.isRPC() {
			if ib.rpc.method != rb.rpc.method {
				d = append(d, "jsonrpc.method")
			}
			if ib.sum != rb.sum {
				d = append(d, "jsonrpc.params")
			}
			if ib.kind != rb.kind {
				d = append(d, "jsonrpc.id")
			}
		} else {
			d = append(d, "body")
		}
	}
	if !slices.Equal(in.headers, rec.headers) {
		for i, n := range names {
			if in.headers[i] != rec.headers[i] {
				d = append(d, "header."+strings.ToLower(n))
			}
		}
	}
	return d
}

// queryDiffs returns "query.KEY" for every key whose values differ between
// two sorted pair lists, in key order.
func queryDiffs(a, b []pair) []string {
	var d []string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var k string
		switch {
		case j >= len(b) || i < len(a) && a[i].k < b[j].k:
			k = a[i].k
		default:
			k = b[j].k
		}
		ei, ej := i, j
		for ei < len(a) && a[ei].k == k {
			ei++
		}
		for ej < len(b) && b[ej].k == k {
			ej++
		}
		if !slices.Equal(a[i:ei], b[j:ej]) {
			d = append(d, "query."+k)
		}
		i, j = ei, ej
	}
	return d
}
