package tape

import (
	"encoding/base64"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// This file is a hand-rolled encoder for tape entries. It writes exactly the
// bytes that marshalNoEscape writes for
//
//	struct {
//		Type string `json:"type"`
//		*Exchange // or *Frame
//	}{"exchange", x}
//
// (the line format of [Writer.WriteExchange] and [Writer.WriteFrame]), without
// reflection and without allocating (but to grow dst). encode_test.go checks
// the equivalence against encoding/json; a change to the entry structs (a new
// field, a tag) must be mirrored here (TestEncoderKnowsFields points at it).

// canAppendExchange reports whether encoding/json can encode x, that is
// whether appendExchange may be used: encoding/json refuses a NaN or
// infinite duration and a time not representable in RFC 3339 (year outside
// [0,9999], zone offset of 24 hours or more).
func canAppendExchange(x *Exchange) bool {
	return !math.IsNaN(x.DurationMs) && !math.IsInf(x.DurationMs, 0) && timeEncodable(x.Time)
}

// canAppendFrame reports whether encoding/json can encode f, that is
// whether appendFrame may be used.
func canAppendFrame(f *Frame) bool {
	return timeEncodable(f.Time)
}

// timeEncodable reports whether t.MarshalJSON succeeds.
func timeEncodable(t time.Time) bool {
	// AppendText runs the same strict RFC 3339 check as MarshalJSON.
	var a [64]byte
	_, err := t.AppendText(a[:0])
	return err == nil
}

// appendExchange appends the tape line of x (without its newline) to dst.
// x must satisfy canAppendExchange.
func appendExchange(dst []byte, x *Exchange) []byte {
	dst = append(dst, `{"type":"exchange","id":`...)
	dst = appendString(dst, x.ID)
	dst = append(dst, `,"sessionId":`...)
	dst = appendString(dst, x.SessionID)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, x.Seq, 10)
	dst = append(dst, `,"time":`...)
	dst = appendTime(dst, x.Time)
	dst = append(dst, `,"durationMs":`...)
	dst = appendFloat(dst, x.DurationMs)

	dst = append(dst, `,"request":{"method":`...)
	dst = appendString(dst, x.Request.Method)
	dst = append(dst, `,"url":`...)
	dst = appendString(dst, x.Request.URL)
	if x.Request.Proto != "" {
		dst = append(dst, `,"proto":`...)
		dst = appendString(dst, x.Request.Proto)
	}
	if len(x.Request.Headers) > 0 {
		dst = append(dst, `,"headers":`...)
		dst = appendHeader(dst, x.Request.Headers)
	}
	if len(x.Request.Body) > 0 {
		dst = append(dst, `,"body":`...)
		dst = appendBody(dst, x.Request.Body)
	}
	dst = append(dst, '}')

	if r := x.Response; r != nil {
		dst = append(dst, `,"response":{"status":`...)
		dst = strconv.AppendInt(dst, int64(r.Status), 10)
		if len(r.Headers) > 0 {
			dst = append(dst, `,"headers":`...)
			dst = appendHeader(dst, r.Headers)
		}
		if len(r.Trailers) > 0 {
			dst = append(dst, `,"trailers":`...)
			dst = appendHeader(dst, r.Trailers)
		}
		if len(r.Body) > 0 {
			dst = append(dst, `,"body":`...)
			dst = appendBody(dst, r.Body)
		}
		dst = append(dst, '}')
	}
	if x.Stubbed {
		dst = append(dst, `,"stubbed":true`...)
	}
	if x.Error != "" {
		dst = append(dst, `,"error":`...)
		dst = appendString(dst, x.Error)
	}
	return append(dst, '}')
}

// appendFrame appends the tape line of f (without its newline) to dst.
// f must satisfy canAppendFrame.
func appendFrame(dst []byte, f *Frame) []byte {
	dst = append(dst, `{"type":"frame","id":`...)
	dst = appendString(dst, f.ID)
	dst = append(dst, `,"sessionId":`...)
	dst = appendString(dst, f.SessionID)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, f.Seq, 10)
	dst = append(dst, `,"time":`...)
	dst = appendTime(dst, f.Time)
	dst = append(dst, `,"direction":`...)
	dst = appendString(dst, string(f.Direction))
	if len(f.Data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = appendBody(dst, f.Data)
	}
	return append(dst, '}')
}

// appendTime appends t as time.Time.MarshalJSON does. t must be encodable
// (timeEncodable); AppendFormat with RFC3339Nano writes the same bytes as
// MarshalJSON's strict formatter, without its range check.
func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// appendFloat appends a finite f as encoding/json encodes a float64 (ES6
// number formatting; copied from encoding/json's floatEncoder).
func appendFloat(dst []byte, f float64) []byte {
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

// appendHeader appends h as encoding/json encodes an http.Header: an object
// with keys in byte order, each value a list of strings (null for a nil
// list).
func appendHeader(dst []byte, h http.Header) []byte {
	// Sort the keys without allocating for the usual small header.
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
		dst = appendString(dst, k)
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
			dst = appendString(dst, v)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// appendBody appends a non-empty b as Body.MarshalJSON encodes it.
func appendBody(dst []byte, b Body) []byte {
	if isText(b) {
		dst = append(dst, `{"text":`...)
		dst = appendString(dst, []byte(b))
		return append(dst, '}')
	}
	dst = append(dst, `{"encoding":"base64","data":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, `"}`...)
}

// escClass classifies a byte for appendString: escCopy bytes are copied as
// they are, escQuote bytes ('"' and '\\') after a backslash, and escSpecial
// bytes (ASCII control characters, and non-ASCII bytes to be checked as
// UTF-8) are left to appendSpecial.
var escClass = func() (t [256]uint8) { //nolint:gochecknoglobals // read-only lookup table, built once
	for i := range t {
		switch {
		case i == '"' || i == '\\':
			t[i] = escQuote
		case i < 0x20 || i >= utf8.RuneSelf:
			t[i] = escSpecial
		default:
			t[i] = escCopy
		}
	}
	return t
}()

const (
	escCopy    = 0
	escQuote   = 1
	escSpecial = 2
)

// escChunk is how many bytes of s appendString's fast loop takes at a time;
// it grows dst by twice that first.
const escChunk = 1024

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string exactly as encoding/json does with
// SetEscapeHTML(false): '"' and '\\' backslash-escaped; \b \f \n \r \t by
// name; other control characters as \u00XX; each invalid UTF-8 byte as
// \ufffd; U+2028 and U+2029 as \u2028 and \u2029; everything else (DEL and
// "<>&" included) verbatim.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		// The fast loop copies plain bytes and escapes '"' and '\\' without
		// a data-dependent branch (JSON bodies are full of quotes): it
		// writes a backslash, then the byte either over it or after it.
		end := min(len(s), i+escChunk)
		dst = slices.Grow(dst, 2*(end-i))
		buf := dst[:cap(dst)]
		n := len(dst)
		for ; i < end; i++ {
			b := s[i]
			k := int(escClass[b])
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
		default:
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
