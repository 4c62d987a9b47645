// Package record turns captured traffic into what the sinks keep: the
// redaction every sink applies, the tape sink, the store sink, and stdio
// frames as traffic items.
package record

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/tape"
)

// DefaultRedactHeaders returns the headers that are always redacted
// (DESIGN, Safety rules).
func DefaultRedactHeaders() []string {
	return []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key"}
}

// Redactor replaces secrets in traffic items before any sink keeps or
// sends them: the values of the default secret headers and of Headers,
// and the JSON values at JSONPaths in bodies (for stdio frames the paths
// are also tried under "params." and "result.", so "token" finds
// params.token). Its zero value redacts the default headers.
//
// A body that should be redacted but cannot be parsed (a JSON body cut by
// the capture limit, or broken JSON) is dropped from the item, keeping its
// size and hash: a secret is never kept because it could not be found.
type Redactor struct {
	names []string // canonical header names
	paths []string
	stdio []string // paths for stdio frames
}

// NewRedactor returns a Redactor for the default headers plus headers, and
// for the JSON paths.
func NewRedactor(headers, jsonPaths []string) *Redactor {
	r := &Redactor{paths: jsonPaths}
	seen := map[string]bool{}
	for _, h := range append(DefaultRedactHeaders(), headers...) {
		c := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(h))
		if c != "" && !seen[c] {
			seen[c] = true
			r.names = append(r.names, c)
		}
	}
	for _, p := range jsonPaths {
		r.stdio = append(r.stdio, p, "params."+p, "result."+p)
	}
	return r
}

// Headers returns the extra header names (for tape.RedactHeaders).
func (r *Redactor) Headers() []string { return r.names }

// JSONPaths returns the JSON paths.
func (r *Redactor) JSONPaths() []string { return r.paths }

// Item returns it with secrets replaced: it itself when it holds none,
// else a copy (items are shared between sinks and never modified).
func (r *Redactor) Item(it *capture.Item) *capture.Item {
	var c *capture.Item
	clone := func() *capture.Item {
		if c == nil {
			cp := *it
			c = &cp
		}
		return c
	}
	if h, ok := r.headers(it.RequestHeaders); ok {
		clone().RequestHeaders = h
	}
	if h, ok := r.headers(it.ResponseHeaders); ok {
		clone().ResponseHeaders = h
	}
	if len(r.paths) > 0 {
		paths := r.paths
		if it.Kind == capture.KindStdio {
			paths = r.stdio
		}
		if b, ok := redactBody(it.RequestBody, paths); ok {
			clone().RequestBody = b
		}
		if b, ok := redactBody(it.ResponseBody, paths); ok {
			clone().ResponseBody = b
		}
	}
	if c == nil {
		return it
	}
	return c
}

// headers returns a copy of h with the secret values replaced, and true,
// when h holds any; else h and false. The copy shares the unchanged values.
func (r *Redactor) headers(h map[string][]string) (map[string][]string, bool) {
	found := false
	for _, n := range r.names {
		if _, ok := h[n]; ok {
			found = true
			break
		}
	}
	if !found {
		// net/http canonicalizes header keys; a key that starts with a
		// lower-case letter (a hand-made map, a non-token name) is checked
		// the slow way.
		for k := range h {
			if k != "" && 'a' <= k[0] && k[0] <= 'z' && r.secret(k) {
				found = true
				break
			}
		}
		if !found {
			return h, false
		}
	}
	out := make(map[string][]string, len(h))
	for k, vs := range h {
		if r.secret(k) {
			red := make([]string, len(vs))
			for i := range red {
				red[i] = tape.Redacted
			}
			out[k] = red
			continue
		}
		out[k] = vs
	}
	return out, true
}

func (r *Redactor) secret(name string) bool {
	for _, n := range r.names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// redactBody redacts a JSON body. ok is false when nothing changed.
func redactBody(b capture.Body, paths []string) (capture.Body, bool) {
	d := bytes.TrimSpace(b.Data)
	if len(d) == 0 || d[0] != '{' && d[0] != '[' {
		return b, false
	}
	out, changed := tape.RedactJSON(b.Data, paths)
	if changed {
		nb := capture.NewBody(b.Data) // size and hash of the original...
		if b.Size > 0 || b.Truncated {
			nb.Size, nb.SHA256 = b.Size, b.SHA256 // ...or the publisher's, when it set them
		}
		nb.Data, nb.Truncated = out, b.Truncated
		return nb, true
	}
	if b.Truncated || !json.Valid(b.Data) {
		// Cannot look inside: keep no bytes rather than risk a secret.
		nb := b
		if nb.Size == 0 && !nb.Truncated {
			nb = capture.NewBody(b.Data)
		}
		nb.Data, nb.Truncated = nil, true
		return nb, true
	}
	return b, false
}

// IsSecretHeader reports whether name is one of the headers r redacts.
func (r *Redactor) IsSecretHeader(name string) bool { return r.secret(name) }

// Header redacts an http.Header in place (tape rewriting, logs).
func (r *Redactor) Header(h http.Header) { tape.RedactHeaders(h, r.names) }
