// Package jsonenc holds the pieces of a hand-rolled JSON encoder that writes
// exactly the bytes encoding/json writes, without reflection and without
// allocating (but to grow dst): string escaping, with or without HTML
// escaping, and float64 formatting. internal/tape and internal/capture
// build their encoders on it; their tests check the equivalence with
// encoding/json.
package jsonenc

import (
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// AppendFloat appends a finite f as encoding/json encodes a float64 (ES6
// number formatting; copied from encoding/json's floatEncoder). encoding/json
// refuses NaN and infinities; the caller must not pass them.
func AppendFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// escClass and escClassHTML classify a byte for appendString: escCopy bytes
// are copied as they are, escQuote bytes ('"' and '\\') after a backslash,
// and escSpecial bytes (ASCII control characters, non-ASCII bytes to be
// checked as UTF-8 and, in escClassHTML, '<', '>' and '&') are left to
// appendSpecial.
var (
	escClass     = newEscClass(false) //nolint:gochecknoglobals // read-only lookup table, built once
	escClassHTML = newEscClass(true)  //nolint:gochecknoglobals // read-only lookup table, built once
)

func newEscClass(html bool) (t [256]uint8) {
	for i := range t {
		switch {
		case i == '"' || i == '\\':
			t[i] = escQuote
		case i < 0x20 || i >= utf8.RuneSelf:
			t[i] = escSpecial
		case html && (i == '<' || i == '>' || i == '&'):
			t[i] = escSpecial
		default:
			t[i] = escCopy
		}
	}
	return t
}

const (
	escCopy    = 0
	escQuote   = 1
	escSpecial = 2
)

// EscChunk is how many bytes of s the string encoders' fast loop takes at a
// time; it grows dst by twice that first. Tests use it to straddle chunks.
const EscChunk = 1024

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string exactly as encoding/json does with
// SetEscapeHTML(false): '"' and '\\' backslash-escaped; \b \f \n \r \t by
// name; other control characters as \u00XX; each invalid UTF-8 byte as
// \ufffd; U+2028 and U+2029 as \u2028 and \u2029; everything else (DEL and
// "<>&" included) verbatim.
func AppendString[S string | []byte](dst []byte, s S) []byte {
	return appendString(dst, s, &escClass)
}

// AppendStringHTML appends s as a JSON string exactly as json.Marshal does
// (HTML escaping on): as AppendString, but with '<', '>' and '&' written as
// \u003c, \u003e and \u0026.
func AppendStringHTML[S string | []byte](dst []byte, s S) []byte {
	return appendString(dst, s, &escClassHTML)
}

func appendString[S string | []byte](dst []byte, s S, class *[256]uint8) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		// The fast loop copies plain bytes and escapes '"' and '\\' without
		// a data-dependent branch (JSON bodies are full of quotes): it
		// writes a backslash, then the byte either over it or after it.
		end := min(len(s), i+EscChunk)
		dst = slices.Grow(dst, 2*(end-i))
		buf := dst[:cap(dst)]
		n := len(dst)
		for ; i < end; i++ {
			b := s[i]
			k := int(class[b])
			if k == escSpecial {
				break
			}
			buf[n] = '\\'
			buf[n+k] = b
			n += 1 + k
		}
		dst = buf[:n]
		if i < end {
			dst, i = appendSpecial(dst, s, i)
		}
	}
	return append(dst, '"')
}

// appendSpecial appends the escSpecial byte s[i], or the UTF-8 sequence it
// starts, as appendString does, and returns the index after it.
func appendSpecial[S string | []byte](dst []byte, s S, i int) ([]byte, int) {
	b := s[i]
	if b < utf8.RuneSelf {
		switch b {
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default: // other control characters, and '<', '>', '&' when HTML-escaping
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
		}
		return dst, i + 1
	}
	// Converting at most utf8.UTFMax bytes keeps a []byte's conversion on
	// the stack (as encoding/json does).
	c, size := utf8.DecodeRuneInString(string(s[i:min(len(s), i+utf8.UTFMax)]))
	switch {
	case c == utf8.RuneError && size == 1:
		dst = append(dst, `\ufffd`...)
	case c == '\u2028' || c == '\u2029':
		dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xf])
	default:
		dst = append(dst, s[i:i+size]...)
	}
	return dst, i + size
}

// AppendStringLists appends h as encoding/json encodes a
// map[string][]string (http.Header): an object with keys in byte order, each
// value a list of strings (null for a nil list). html selects HTML escaping
// (json.Marshal's default) as for AppendStringHTML. Keys are sorted without
// allocating for maps of up to 16 keys.
func AppendStringLists(dst []byte, h map[string][]string, html bool) []byte {
	str := AppendString[string]
	if html {
		str = AppendStringHTML[string]
	}
	var small [16]string
	var keys []string
	if len(h) <= len(small) {
		keys = small[:0]
	} else {
		keys = make([]string, 0, len(h))
	}
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = str(dst, k)
		dst = append(dst, ':')
		vs := h[k]
		if vs == nil {
			dst = append(dst, "null"...)
			continue
		}
		dst = append(dst, '[')
		for j, v := range vs {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = str(dst, v)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}
