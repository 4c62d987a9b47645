package tape

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Redacted is the marker that replaces secret values.
const Redacted = "[REDACTED]"

// RedactHeaders replaces, in place, every value of the Authorization,
// Proxy-Authorization, Cookie, Set-Cookie and X-Api-Key headers and of the
// extra header names with [Redacted]. Names match case-insensitively,
// whatever the case of h's keys. The number of values is kept.
func RedactHeaders(h http.Header, extra []string) {
	for name, values := range h {
		if !secretHeader(name, extra) {
			continue
		}
		for i := range values {
			values[i] = Redacted
		}
	}
}

func secretHeader(name string, extra []string) bool {
	for _, s := range [...]string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key"} {
		if strings.EqualFold(name, s) {
			return true
		}
	}
	for _, s := range extra {
		if strings.EqualFold(name, strings.TrimSpace(s)) {
			return true
		}
	}
	return false
}

// RedactJSON replaces with the string [Redacted] every value of body found at
// one of the dotted paths, and reports whether anything was replaced.
//
// A path is a list of segments separated by ".", matched from the top-level
// value: a segment matches an object key exactly (case-sensitive) or, when it
// is a decimal number, an array index; "*" matches any key or any index;
// "**" matches any number of levels, none included. Examples: "password",
// "params.arguments.token", "items.*.secret", "items.0.secret",
// "**.apiKey" (an apiKey member anywhere). Keys containing "." cannot be
// addressed.
//
// When body is not a single JSON value, or nothing matched, body is returned
// unchanged. Otherwise the result is compact JSON with object keys sorted;
// numbers are kept as written.
func RedactJSON(body []byte, paths []string) ([]byte, bool) {
	if len(paths) == 0 {
		return body, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return body, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return body, false // trailing data: not one JSON value
	}
	changed := false
	for _, p := range paths {
		if p == "" {
			continue
		}
		var ok bool
		v, ok = redactPath(v, strings.Split(p, "."))
		changed = changed || ok
	}
	if !changed {
		return body, false
	}
	out, err := marshalNoEscape(v)
	if err != nil {
		return body, false
	}
	return out, true
}

// redactPath returns v with the values at segs replaced.
func redactPath(v any, segs []string) (any, bool) {
	if len(segs) == 0 {
		return Redacted, true
	}
	seg, rest := segs[0], segs[1:]
	changed := false
	if seg == "**" {
		// Any depth, this level included.
		if nv, ok := redactPath(v, rest); ok {
			if s, isStr := nv.(string); isStr && s == Redacted {
				return nv, true
			}
			v, changed = nv, true
		}
		switch t := v.(type) {
		case map[string]any:
			for k, child := range t {
				if nv, ok := redactPath(child, segs); ok {
					t[k], changed = nv, true
				}
			}
		case []any:
			for i, child := range t {
				if nv, ok := redactPath(child, segs); ok {
					t[i], changed = nv, true
				}
			}
		}
		return v, changed
	}
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			if seg == "*" || seg == k {
				nv, ok := redactPath(child, rest)
				if ok {
					t[k] = nv
					changed = true
				}
			}
		}
	case []any:
		idx := -1
		if seg != "*" {
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || n >= len(t) {
				return v, false
			}
			idx = n
		}
		for i, child := range t {
			if idx >= 0 && i != idx {
				continue
			}
			nv, ok := redactPath(child, rest)
			if ok {
				t[i] = nv
				changed = true
			}
		}
	}
	return v, changed
}
