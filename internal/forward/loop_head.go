package forward

import (
	"bytes"
	"strconv"
)

// simpleHead is an upstream response head in the common form, parsed
// without net/http (loop server, no capture, no fields of the proxy's
// own: nothing needs an http.Header).
type simpleHead struct {
	status  int
	clen    int64 // the declared Content-Length; -1: none
	chunked bool  // Transfer-Encoding: chunked
	close   bool  // Connection: close
	hasDate bool
}

// parseSimpleHead parses head (the status line through the empty line)
// when it is in a form whose reading by http.ReadResponse leaves nothing
// to interpret: "HTTP/1.1", a final status from 200 to 599, every line
// ending in CRLF, field names of token characters, values of the bytes
// net/textproto accepts, no folded lines, at most one framing (a
// Content-Length, repeated only with the same value, or "chunked"), a
// Connection field of "close" and "keep-alive" only, and no Trailer
// field. It appends the fields the client gets to dst, as serveFast and
// h1 would send them: canonical names, values trimmed, the hop-by-hop
// fields and the framing ones left out (the caller writes the framing),
// Content-Type left out of a 304. ok false: anything else, which
// http.ReadResponse then decides (and may refuse).
func parseSimpleHead(dst, head []byte) (out []byte, h simpleHead, ok bool) {
	const proto = "HTTP/1.1 "
	line, rest, ok := cutCRLF(head)
	if !ok || len(line) < len(proto)+3 || string(line[:len(proto)]) != proto {
		return dst, h, false
	}
	code := line[len(proto):]
	if code[0] < '2' || code[0] > '5' || !isDigit(code[1]) || !isDigit(code[2]) || len(code) > 3 && code[3] != ' ' {
		return dst, h, false
	}
	h.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	h.clen = -1
	var clen []byte // the Content-Length value as it came
	start := len(dst)
	for {
		line, rest, ok = cutCRLF(rest)
		if !ok {
			return dst[:start], h, false
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return dst[:start], h, false
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		for _, c := range name {
			if !isTokenByte(c) {
				return dst[:start], h, false
			}
		}
		for _, c := range value {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return dst[:start], h, false
			}
		}
		switch {
		case equalFold(name, "Content-Length"):
			// Repeated only with the same value, as net/http compares
			// them: as strings.
			n, ok := parseLength(value)
			if !ok || clen != nil && !bytes.Equal(clen, value) {
				return dst[:start], h, false
			}
			h.clen, clen = n, value
			continue
		case equalFold(name, "Transfer-Encoding"):
			if h.chunked || !equalFold(value, "chunked") {
				return dst[:start], h, false
			}
			h.chunked = true
			continue
		case equalFold(name, "Connection"):
			if !connectionSimple(value, &h.close) {
				return dst[:start], h, false
			}
			continue
		case equalFold(name, "Trailer"), equalFold(name, "Close"):
			// Trailers need announcing; a field named by "Connection:
			// close" would be dropped. Both are net/http's to read.
			return dst[:start], h, false
		case equalFold(name, "Proxy-Connection"), equalFold(name, "Keep-Alive"), equalFold(name, "Proxy-Authenticate"),
			equalFold(name, "Proxy-Authorization"), equalFold(name, "Te"), equalFold(name, "Upgrade"):
			continue // hop-by-hop (skipResponseHeader)
		case equalFold(name, "Date"):
			h.hasDate = true
		case equalFold(name, "Content-Type"):
			if h.status == 304 {
				continue
			}
		}
		dst = appendCanonical(dst, name)
		dst = append(dst, ": "...)
		dst = append(dst, value...)
		dst = append(dst, "\r\n"...)
	}
	if len(rest) != 0 || h.chunked && h.clen >= 0 {
		return dst[:start], h, false
	}
	return dst, h, true
}

// cutCRLF cuts the line ending in CRLF at the start of b; false when
// there is none, or a bare CR or LF comes first.
func cutCRLF(b []byte) (line, rest []byte, ok bool) {
	for i, c := range b {
		switch c {
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				return b[:i], b[i+2:], true
			}
			return nil, nil, false
		case '\n':
			return nil, nil, false
		}
	}
	return nil, nil, false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isTokenByte reports an RFC 9110 token character (net/textproto's
// validHeaderFieldByte).
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares ASCII case-insensitively.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// parseLength parses a Content-Length value as net/http does
// (strconv.ParseUint, base 10, 63 bits).
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

// connectionSimple reads a Connection value made of "close" and
// "keep-alive" tokens only, noting a close.
func connectionSimple(v []byte, closing *bool) bool {
	for len(v) > 0 {
		tok := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		switch tok = trimOWS(tok); {
		case len(tok) == 0:
		case equalFold(tok, "close"):
			*closing = true
		case equalFold(tok, "keep-alive"):
		default:
			return false
		}
	}
	return true
}

// appendCanonical appends a token field name in its canonical form
// (net/textproto.CanonicalMIMEHeaderKey): upper case at the start and
// after each hyphen, lower case elsewhere.
func appendCanonical(dst, name []byte) []byte {
	upper := true
	for _, c := range name {
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		upper = c == '-'
	}
	return dst
}
