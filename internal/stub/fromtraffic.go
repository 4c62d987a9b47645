package stub

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/textproto"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/tape"
)

// ErrTruncated reports a captured exchange whose response body was cut by
// the capture limit (or dropped by redaction): a stub must not serve a cut
// body.
var ErrTruncated = errors.New("the captured response body is incomplete")

// FromTraffic returns a stub of sessionID that answers the captured
// exchange's request with its response (StubID and CreatedAt left for the
// caller, Priority DefaultPriority):
//
//   - pattern: the method and url (it.Path, the target as sent, reduced to
//     path and query when it was absolute-form), and the request body when
//     there was one: equalToJson when it is JSON, equalTo when it is text,
//     binaryEqualTo otherwise. A request body that was cut by the capture
//     limit, or that holds redacted values, is not matched (the captured
//     bytes are not what was sent).
//   - response: the status, the response headers but hop-by-hop ones,
//     Content-Length, Date and those with redacted values (several values
//     are joined with ", "), and the body (bodyBase64 when it is not UTF-8).
//
// It fails for a stdio frame, an exchange with no response status, and
// with ErrTruncated when the response body is incomplete.
func FromTraffic(it capture.Item, sessionID string) (store.Stub, error) {
	if it.Kind != "" && it.Kind != capture.KindHTTP {
		return store.Stub{}, fmt.Errorf("traffic item %s is a %s frame, not an HTTP exchange", it.ID, it.Kind)
	}
	if it.Status == 0 {
		return store.Stub{}, fmt.Errorf("traffic item %s has no response", it.ID)
	}
	if it.ResponseBody.Truncated {
		return store.Stub{}, fmt.Errorf("traffic item %s: %w", it.ID, ErrTruncated)
	}
	target := Target(it.Path)
	if target == "" {
		return store.Stub{}, fmt.Errorf("traffic item %s: request target %q cannot be matched", it.ID, it.Path)
	}
	s := store.Stub{
		SessionID: sessionID,
		Priority:  DefaultPriority,
		Pattern:   store.StubPattern{Method: it.Method, URL: target},
		Response:  store.StubResponse{Status: it.Status},
	}
	if rb := it.RequestBody; len(rb.Data) > 0 && !rb.Truncated && !bytes.Contains(rb.Data, []byte(tape.Redacted)) {
		s.Pattern.Body = bodyMatcher(rb.Data)
	}
	s.Response.Headers = responseHeaders(it.ResponseHeaders)
	if b := it.ResponseBody.Data; utf8.Valid(b) {
		s.Response.Body = string(b)
	} else {
		s.Response.BodyBase64 = base64.StdEncoding.EncodeToString(b)
	}
	return s, nil
}

func bodyMatcher(data []byte) *store.StringMatcher {
	switch {
	case json.Valid(data):
		return &store.StringMatcher{EqualToJSON: json.RawMessage(bytes.Clone(data))}
	case utf8.Valid(data):
		return &store.StringMatcher{EqualTo: new(string(data))}
	default:
		return &store.StringMatcher{BinaryEqualTo: bytes.Clone(data)}
	}
}

func responseHeaders(h map[string][]string) map[string]string {
	var connection []string // names listed in Connection are hop-by-hop too
	for k, vs := range h {
		if textproto.CanonicalMIMEHeaderKey(k) == "Connection" {
			for _, v := range vs {
				for name := range strings.SplitSeq(v, ",") {
					connection = append(connection, textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name)))
				}
			}
		}
	}
	out := make(map[string]string, len(h))
	for k, vs := range h {
		key := textproto.CanonicalMIMEHeaderKey(k)
		if skipResponseHeader(key) || key == "Date" || slices.Contains(connection, key) ||
			len(vs) == 0 || slices.Contains(vs, tape.Redacted) || !isToken(k) {
			continue
		}
		out[key] = strings.Join(vs, ", ")
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
