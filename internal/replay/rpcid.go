package replay

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/proxyctl/proxyctl/internal/jsonrpc"
)

// rewriteID returns the recorded response body with the JSON-RPC id old
// (the recorded request's) replaced by id (the caller's): in a JSON body,
// and in every data line of an event stream, that is a JSON-RPC response
// carrying old. Only the id's bytes change. body itself is never modified;
// it is returned as is when nothing was replaced.
func rewriteID(body []byte, sse bool, old, id json.RawMessage) []byte {
	if !sse {
		if out, ok := replaceID(body, old, id); ok {
			return out
		}
		return body
	}
	var out []byte // nil until a line changes
	last := 0      // body[last:] is not yet in out
	for i := 0; i < len(body); {
		end, next := lineEnd(body, i)
		if v, ok := bytes.CutPrefix(body[i:end], []byte("data:")); ok {
			start := i + len("data:")
			if len(v) > 0 && v[0] == ' ' {
				v, start = v[1:], start+1
			}
			if nv, ok := replaceID(v, old, id); ok {
				if out == nil {
					out = make([]byte, 0, len(body)+len(id))
				}
				out = append(out, body[last:start]...)
				out = append(out, nv...)
				last = end
			}
		}
		i = next
	}
	if out == nil {
		return body
	}
	return append(out, body[last:]...)
}

// replaceID returns a copy of msg with its top-level "id" value replaced by
// id, when msg is a JSON-RPC response whose id is old.
func replaceID(msg []byte, old, id json.RawMessage) ([]byte, bool) {
	env, err := jsonrpc.Peek(msg)
	if err != nil || env.IsBatch || !env.IsResponse() || !bytes.Equal(env.ID, old) {
		return nil, false
	}
	start, end, ok := memberSpan(msg, "id")
	if !ok {
		return nil, false
	}
	out := make([]byte, 0, len(msg)-(end-start)+len(id))
	out = append(out, msg[:start]...)
	out = append(out, id...)
	return append(out, msg[end:]...), true
}

// memberSpan returns where the value of the top-level member name of the
// JSON object msg is (the last one, as decoders keep it). msg must be valid
// JSON (Peek checked it).
func memberSpan(msg []byte, name string) (start, end int, ok bool) {
	i := skipWS(msg, 0)
	if i >= len(msg) || msg[i] != '{' {
		return 0, 0, false
	}
	i = skipWS(msg, i+1)
	for i < len(msg) && msg[i] == '"' {
		kend := skipString(msg, i)
		k := msg[i+1 : kend-1]
		match := string(k) == name
		if !match && bytes.IndexByte(k, '\\') >= 0 {
			var s string
			match = json.Unmarshal(msg[i:kend], &s) == nil && s == name
		}
		i = skipWS(msg, kend)
		i = skipWS(msg, i+1) // the ':'
		vend := skipValue(msg, i)
		if match {
			start, end, ok = i, vend, true
		}
		i = skipWS(msg, vend)
		if i >= len(msg) || msg[i] != ',' {
			break
		}
		i = skipWS(msg, i+1)
	}
	return start, end, ok
}

func skipWS(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the offset after the string starting at the quote d[i].
func skipString(d []byte, i int) int {
	for i++; i < len(d); i++ {
		switch d[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(d)
}

// skipValue returns the offset after the (valid) JSON value at d[i].
func skipValue(d []byte, i int) int {
	if i >= len(d) {
		return i
	}
	switch d[i] {
	case '"':
		return skipString(d, i)
	case '{', '[':
		depth := 0
		for i < len(d) {
			switch d[i] {
			case '"':
				i = skipString(d, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(d) {
		switch d[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// lineEnd returns where the line starting at b[i] ends and where the next
// one starts. Lines end with "\r\n", "\n" or "\r" (the event stream rules).
func lineEnd(b []byte, i int) (end, next int) {
	j := bytes.IndexAny(b[i:], "\r\n")
	if j < 0 {
		return len(b), len(b)
	}
	end = i + j
	if b[end] == '\r' && end+1 < len(b) && b[end+1] == '\n' {
		return end, end + 2
	}
	return end, end + 1
}

// writeEvents writes an event stream one event at a time (an event ends
// with an empty line), flushing after each, as the server did.
func writeEvents(w http.ResponseWriter, body []byte) {
	rc := http.NewResponseController(w)
	start := 0
	for i := 0; i < len(body); {
		end, next := lineEnd(body, i)
		if end == i {
			if _, err := w.Write(body[start:next]); err != nil { //nolint:gosec // G705: as in serve
				return
			}
			_ = rc.Flush()
			start = next
		}
		i = next
	}
	if start < len(body) {
		if _, err := w.Write(body[start:]); err != nil { //nolint:gosec // G705: as in serve
			return
		}
	}
	_ = rc.Flush()
}
