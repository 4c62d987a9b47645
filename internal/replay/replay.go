// Package replay serves recorded HTTP exchanges: it indexes the exchanges of
// tapes (or HAR files) by what a request must match and answers requests
// with the recorded responses.
//
// Matching follows the tape rules of proxyctl replay: the method and the path
// must be equal; the query must hold the same multiset of (decoded)
// key=value pairs, in any order; a JSON body must be semantically equal
// (object keys in any order, insignificant whitespace ignored, numbers as
// written); any other body must be byte for byte equal; headers are compared
// only when named in [Options.MatchHeaders]. A JSON-RPC call over HTTP (MCP
// streamable HTTP) matches on its method and params (ignoring params._meta
// and the id), and its recorded response is served with the caller's id.
//
// When the same request was recorded several times, the responses are
// served in recorded order and the last one then repeats forever.
//
// An [Index] is built once and is safe for concurrent use. Its lookups cost
// the same whatever the number of exchanges: one hash of the request's
// matched parts and one map access. Only a miss looks further, over a
// bounded number of exchanges, to name the closest recorded request.
package replay

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/tape"
)

// Latency modes.
const (
	// LatencyNone answers at once (the default).
	LatencyNone = "none"
	// LatencyRecorded waits the recorded durationMs before answering.
	LatencyRecorded = "recorded"
)

// maxClosestScan bounds how many exchanges a miss compares to find the
// closest one.
const maxClosestScan = 4096

// Options configures an [Index].
type Options struct {
	// MatchHeaders names request headers (case-insensitive) whose values
	// must also be equal for a request to match (--match-header). The values
	// of a header are compared joined with ", " (several field lines are the
	// same as one comma-separated line); a header absent on one side only
	// does not match.
	MatchHeaders []string
	// Latency is LatencyNone ("" means the same) or LatencyRecorded.
	Latency string
	// Redact, when set, is applied to a request's body before it is
	// matched (not to what a fallback receives): the recorder's
	// --redact-json, so that a request matches its recording although the
	// recorded secret was replaced by the redaction marker.
	Redact func(body []byte) []byte
	// Log receives the index's debug and warning events and the Handler's
	// miss lines. The zero Logger discards them.
	Log zerolog.Logger
}

// Index maps requests to recorded exchanges. Build it with [NewIndex]; it is
// safe for concurrent use.
type Index struct {
	log      zerolog.Logger
	names    []string // canonical MatchHeaders, sorted, deduplicated
	needHost bool     // "Host" is a match header (net/http keeps it out of Header)
	latency  bool
	redact   func([]byte) []byte

	buckets  map[string]*bucket
	records  []*record // every answerable exchange, in input order
	byPath   map[string][]*record
	byMethod map[string][]*record

	hits, misses atomic.Int64
}

// bucket holds the exchanges recorded for one key, in recorded order.
type bucket struct {
	recs []*record
	// calls counts the lookups served from this bucket: call n gets
	// recs[min(n, len(recs)-1)], so recs[i] was served iff calls > i.
	calls atomic.Int64
}

// Miss describes a request no recorded exchange matches.
type Miss struct {
	Method, Target string
	// Closest is the recorded exchange most like the request, nil when
	// there is none to compare (an empty index).
	Closest *tape.Exchange
	// Differs names what differs between the request and Closest: "method",
	// "path", "query.KEY", "body" (or "jsonrpc.method", "jsonrpc.params",
	// "jsonrpc.id" when both are JSON-RPC calls), "header.NAME" (lower case).
	Differs []string
}

// Stats counts what an [Index] served.
type Stats struct {
	Hits, Misses int64
	// Unused lists the exchanges never served, in input order.
	Unused []*tape.Exchange
}

// NewIndex indexes xs, in recorded order (the order of a tape's lines).
// Exchanges without a response (an upstream error was recorded instead) or
// with a status outside 200..599 cannot be answered and are left out.
func NewIndex(xs []*tape.Exchange, o Options) (*Index, error) {
	ix := &Index{
		log:      o.Log,
		redact:   o.Redact,
		buckets:  make(map[string]*bucket),
		byPath:   make(map[string][]*record),
		byMethod: make(map[string][]*record),
	}
	switch o.Latency {
	case "", LatencyNone:
	case LatencyRecorded:
		ix.latency = true
	default:
		return nil, fmt.Errorf("latency %q: want %q or %q", o.Latency, LatencyNone, LatencyRecorded)
	}
	for _, n := range o.MatchHeaders {
		if !isToken(n) {
			return nil, fmt.Errorf("match header %q: not a valid header name", n)
		}
		ix.names = append(ix.names, textproto.CanonicalMIMEHeaderKey(n))
	}
	slices.Sort(ix.names)
	ix.names = slices.Compact(ix.names)
	ix.needHost = slices.Contains(ix.names, "Host")

	redacted := make(map[string]bool) // match headers with a redacted value
	carried := make(map[string]bool)  // match headers some recorded request has
	for i, x := range xs {
		if x == nil {
			return nil, fmt.Errorf("exchange %d: nil", i)
		}
		if x.Response == nil {
			ix.log.Debug().Str("id", x.ID).Str("method", x.Request.Method).Str("path", pathOf(x.Request.URL)).
				Msg("replay: exchange without a response skipped")
			continue
		}
		if s := x.Response.Status; s < 200 || s > 599 {
			ix.log.Warn().Str("id", x.ID).Str("method", x.Request.Method).Str("path", pathOf(x.Request.URL)).
				Int("status", s).Msg("replay: exchange with a status that cannot be replayed skipped")
			continue
		}
		r := newRecord(x, ix.names)
		for i, n := range ix.names {
			if v := r.req.headers[i]; v != absent {
				carried[n] = true
				redacted[n] = redacted[n] || strings.Contains(v, tape.Redacted)
			}
		}
		b := ix.buckets[r.req.key]
		if b == nil {
			b = &bucket{}
			ix.buckets[r.req.key] = b
		}
		r.bucket, r.pos = b, len(b.recs)
		b.recs = append(b.recs, r)
		ix.records = append(ix.records, r)
		ix.byPath[r.req.path] = append(ix.byPath[r.req.path], r)
		ix.byMethod[r.req.method] = append(ix.byMethod[r.req.method], r)
	}
	for _, n := range ix.names {
		switch {
		case len(ix.records) > 0 && !carried[n]:
			ix.log.Warn().Str("header", n).
				Msg("replay: no recorded request has the match header: only requests without it match")
		case redacted[n]:
			ix.log.Warn().Str("header", n).
				Msg("replay: match header is redacted on the tape: only requests sending the redaction marker match it")
		}
	}
	return ix, nil
}

// Lookup finds the recorded exchange answering a request: method, target
// (path and query as sent, or an absolute URL), header and the full body.
// Each hit advances the sequence of the request's key. It returns the
// exchange, or a *Miss when none matches.
func (ix *Index) Lookup(method, target string, header http.Header, body []byte) (*tape.Exchange, *Miss) {
	r, _, miss := ix.lookup(method, target, header, body)
	if r == nil {
		return nil, miss
	}
	return r.x, nil
}

// lookup is Lookup returning the record and, for a JSON-RPC request, the
// caller's id (aliasing body).
func (ix *Index) lookup(method, target string, header http.Header, body []byte) (*record, json.RawMessage, *Miss) {
	in := parseRequest(method, target, header, body, ix.names)
	if b := ix.buckets[in.key]; b != nil {
		ix.hits.Add(1)
		n := b.calls.Add(1) - 1
		return b.recs[min(n, int64(len(b.recs)-1))], in.body.rpc.id, nil
	}
	ix.misses.Add(1)
	miss := &Miss{Method: method, Target: target}
	if c := ix.closest(&in); c != nil {
		miss.Closest = c.x
		miss.Differs = differs(&in, &c.req, ix.names)
	}
	return nil, nil, miss
}

// closest returns the record most like in: among the records with the same
// path, then with the same method, then (only when there were none) any, at
// most maxClosestScan of them. Ties go to the earliest recorded.
func (ix *Index) closest(in *request) *record {
	var best *record
	bestScore, seen := 0, 0
	consider := func(r *record) bool {
		s := score(differs(in, &r.req, ix.names))
		if best == nil || s < bestScore {
			best, bestScore = r, s
		}
		seen++
		return seen < maxClosestScan
	}
	for _, r := range ix.byPath[in.path] {
		if !consider(r) {
			return best
		}
	}
	for _, r := range ix.byMethod[in.method] {
		if r.req.path != in.path && !consider(r) {
			return best
		}
	}
	if best == nil {
		for _, r := range ix.records {
			if !consider(r) {
				break
			}
		}
	}
	return best
}

// score weighs what differs: the smaller, the closer.
func score(diff []string) int {
	s := 0
	for _, d := range diff {
		switch {
		case d == "path":
			s += 1000
		case d == "method":
			s += 500
		case d == "jsonrpc.method":
			s += 200
		case d == "body", d == "jsonrpc.params":
			s += 100
		case d == "jsonrpc.id":
			s += 50
		case strings.HasPrefix(d, "query."):
			s += 10
		default: // header.
			s++
		}
	}
	return s
}

// Stats returns the hit and miss counts and the exchanges never served.
func (ix *Index) Stats() Stats {
	st := Stats{Hits: ix.hits.Load(), Misses: ix.misses.Load()}
	for _, r := range ix.records {
		if r.bucket.calls.Load() <= int64(r.pos) {
			st.Unused = append(st.Unused, r.x)
		}
	}
	return st
}

// Len returns how many exchanges the index can answer with.
func (ix *Index) Len() int { return len(ix.records) }

// isToken reports whether s is a valid header field name (RFC 9110 token).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
