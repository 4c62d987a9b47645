package jsonrpc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// Standard JSON-RPC 2.0 error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// maxDepth bounds nesting, as encoding/json does.
const maxDepth = 10000

// ErrNotMessage is returned by Peek for valid JSON that is neither an object
// nor an array.
var ErrNotMessage = errors.New("jsonrpc: not an object or a batch array")

// SyntaxError is returned by Peek for a message that is not valid JSON.
type SyntaxError struct {
	Offset int // byte offset of the problem
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("jsonrpc: invalid JSON at offset %d: %s", e.Offset, e.Msg)
}

// Envelope is what Peek reads of a message: the JSON-RPC fields that route
// it, never the payload. ID and Params alias the message passed to Peek.
type Envelope struct {
	JSONRPC   string          // the "jsonrpc" member when it is a string
	ID        json.RawMessage // raw id, nil when absent ("null" when null)
	Method    string          // the "method" member when it is a string
	HasMethod bool            // "method" present and a string
	Params    json.RawMessage // raw params, nil when absent
	HasResult bool
	HasError  bool
	IsBatch   bool // a JSON array: a batch, not inspected further
}

// IsRequest reports a call that expects a response.
func (e Envelope) IsRequest() bool { return e.HasMethod && e.ID != nil }

// IsNotification reports a call without an id.
func (e Envelope) IsNotification() bool { return e.HasMethod && e.ID == nil }

// IsResponse reports a result or an error.
func (e Envelope) IsResponse() bool { return !e.HasMethod && (e.HasResult || e.HasError) }

// Peek validates msg as one JSON value and reads its envelope in a single
// pass, without decoding the payload and without copying it. It returns a
// *SyntaxError for invalid JSON and ErrNotMessage for valid JSON that is not
// an object or an array.
func Peek(msg []byte) (Envelope, error) {
	var env Envelope
	i := skipWS(msg, 0)
	if i == len(msg) {
		return env, &SyntaxError{Offset: i, Msg: "empty message"}
	}
	var end int
	var err error
	switch msg[i] {
	case '{':
		end, err = peekObject(msg, i, &env, false)
	case '[':
		env.IsBatch = true
		end, err = skipValue(msg, i, 0)
	default:
		end, err = skipValue(msg, i, 0)
		if err == nil {
			err = ErrNotMessage
		}
	}
	if err != nil {
		return Envelope{}, err
	}
	if j := skipWS(msg, end); j != len(msg) {
		return Envelope{}, &SyntaxError{Offset: j, Msg: "data after the message"}
	}
	return env, nil
}

// PeekPrefix reads what it can of the envelope of a message of which only
// the first bytes are known (the Head of a TooLongError): the members that
// end before the cut. It never fails; missing members stay zero.
func PeekPrefix(head []byte) Envelope {
	var env Envelope
	i := skipWS(head, 0)
	if i < len(head) && head[i] == '{' {
		_, _ = peekObject(head, i, &env, true)
	}
	env.Params = nil // never complete enough to be useful
	return env
}

// IDFromPrefix returns the id of a message cut short, best effort (see
// PeekPrefix), as a copy; nil when it cannot be read.
func IDFromPrefix(head []byte) json.RawMessage {
	if id := PeekPrefix(head).ID; id != nil {
		return bytes.Clone(id)
	}
	return nil
}

// IDFromSuffix returns the id of a message of which only the last bytes are
// known, when "id" is its last member and a number or a plain string (the
// order JavaScript SDKs write requests in); nil otherwise.
func IDFromSuffix(tail []byte) json.RawMessage {
	t := bytes.TrimRight(tail, " \t\r\n")
	if len(t) == 0 || t[len(t)-1] != '}' {
		return nil
	}
	t = bytes.TrimRight(t[:len(t)-1], " \t\r\n")
	if len(t) == 0 {
		return nil
	}
	var start int
	if t[len(t)-1] == '"' {
		q := bytes.LastIndexByte(t[:len(t)-1], '"')
		if q < 0 || bytes.IndexByte(t[q:], '\\') >= 0 {
			return nil
		}
		start = q
	} else {
		start = len(t)
		for start > 0 && bytes.IndexByte([]byte("0123456789+-.eE"), t[start-1]) >= 0 {
			start--
		}
		if start == len(t) {
			return nil
		}
	}
	id := t[start:]
	if end, err := skipValue(id, 0, 0); err != nil || end != len(id) {
		return nil
	}
	rest := bytes.TrimRight(t[:start], " \t\r\n")
	if !bytes.HasSuffix(rest, []byte(":")) {
		return nil
	}
	rest = bytes.TrimRight(rest[:len(rest)-1], " \t\r\n")
	if !bytes.HasSuffix(rest, []byte(`"id"`)) {
		return nil
	}
	rest = bytes.TrimRight(rest[:len(rest)-4], " \t\r\n")
	if len(rest) == 0 || (rest[len(rest)-1] != ',' && rest[len(rest)-1] != '{') {
		return nil
	}
	return bytes.Clone(id)
}

// peekObject walks the top-level object at d[i] and fills env. With partial
// set, d may be cut anywhere and a member counts only if the byte after its
// value was read.
func peekObject(d []byte, i int, env *Envelope, partial bool) (int, error) {
	i = skipWS(d, i+1)
	if i < len(d) && d[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(d) || d[i] != '"' {
			return i, synErr(d, i, "expected a member name")
		}
		kend, err := skipString(d, i)
		if err != nil {
			return kend, err
		}
		key := d[i+1 : kend-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var s string
			if json.Unmarshal(d[i:kend], &s) == nil {
				key = []byte(s)
			}
		}
		i = skipWS(d, kend)
		if i >= len(d) || d[i] != ':' {
			return i, synErr(d, i, "expected ':'")
		}
		i = skipWS(d, i+1)
		vstart := i
		vend, err := skipValue(d, i, 1)
		if err != nil {
			return vend, err
		}
		i = skipWS(d, vend)
		if partial && i >= len(d) {
			return i, synErr(d, i, "cut")
		}
		val := d[vstart:vend]
		switch string(key) {
		case "jsonrpc":
			env.JSONRPC, _ = stringValue(val)
		case "id":
			env.ID = val
		case "method":
			env.Method, env.HasMethod = stringValue(val)
		case "params":
			env.Params = val
		case "result":
			env.HasResult = true
		case "error":
			env.HasError = true
		}
		if i >= len(d) {
			return i, synErr(d, i, "unterminated object")
		}
		switch d[i] {
		case ',':
			i = skipWS(d, i+1)
		case '}':
			return i + 1, nil
		default:
			return i, synErr(d, i, "expected ',' or '}'")
		}
	}
}

func stringValue(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	if string(v) == `"2.0"` {
		return "2.0", true // the "jsonrpc" member of every message: no allocation
	}
	if bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v) {
		return string(v[1 : len(v)-1]), true
	}
	// Escapes or invalid UTF-8 (which, like encoding/json, becomes U+FFFD).
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

func synErr(d []byte, i int, msg string) error {
	if i >= len(d) {
		msg = "unexpected end of message"
	}
	return &SyntaxError{Offset: i, Msg: msg}
}

func skipWS(d []byte, i int) int {
	for i < len(d) {
		switch d[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue validates the JSON value at d[i] and returns the offset after it.
func skipValue(d []byte, i, depth int) (int, error) {
	if i >= len(d) {
		return i, synErr(d, i, "")
	}
	switch c := d[i]; {
	case c == '"':
		return skipString(d, i)
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return i, synErr(d, i, "nested too deeply")
		}
		return skipContainer(d, i, depth+1)
	case c == 't':
		return skipLiteral(d, i, "true")
	case c == 'f':
		return skipLiteral(d, i, "false")
	case c == 'n':
		return skipLiteral(d, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(d, i)
	default:
		return i, synErr(d, i, fmt.Sprintf("unexpected character %q", c))
	}
}

func skipContainer(d []byte, i, depth int) (int, error) {
	isObj := d[i] == '{'
	closer := byte(']')
	if isObj {
		closer = '}'
	}
	i = skipWS(d, i+1)
	if i < len(d) && d[i] == closer {
		return i + 1, nil
	}
	for {
		if isObj {
			if i >= len(d) || d[i] != '"' {
				return i, synErr(d, i, "expected a member name")
			}
			end, err := skipString(d, i)
			if err != nil {
				return end, err
			}
			i = skipWS(d, end)
			if i >= len(d) || d[i] != ':' {
				return i, synErr(d, i, "expected ':'")
			}
			i = skipWS(d, i+1)
		}
		end, err := skipValue(d, i, depth)
		if err != nil {
			return end, err
		}
		i = skipWS(d, end)
		if i >= len(d) {
			return i, synErr(d, i, "")
		}
		switch d[i] {
		case ',':
			i = skipWS(d, i+1)
		case closer:
			return i + 1, nil
		default:
			return i, synErr(d, i, "expected ',' or a closing bracket")
		}
	}
}

// skipString validates the string starting at the quote d[i].
func skipString(d []byte, i int) (int, error) {
	i++
	if i+8 <= len(d) { // most strings (member names) end in their first word
		if m := special(binary.LittleEndian.Uint64(d[i:])); m != 0 {
			if j := i + bits.TrailingZeros64(m)/8; d[j] == '"' {
				return j + 1, nil
			}
		}
	}
	q, bs := -1, -1 // see plainEnd
	for i < len(d) {
		i = plainEnd(d, i, &q, &bs)
		if i >= len(d) {
			break
		}
		switch d[i] {
		case '"':
			return i + 1, nil
		case '\\':
			if i+1 >= len(d) {
				return i + 1, synErr(d, i+1, "")
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) {
					return len(d), synErr(d, len(d), "")
				}
				for _, h := range d[i+2 : i+6] {
					if !isHex(h) {
						return i, synErr(d, i, "invalid \\u escape")
					}
				}
				i += 6
			default:
				return i, synErr(d, i, "invalid escape")
			}
		default:
			return i, synErr(d, i, "control character in string")
		}
	}
	return i, synErr(d, i, "")
}

// plainEnd returns the offset of the first byte from d[i] on that ends the
// plain part of a string ('"', '\\' or a control character), or len(d).
// The first bytes go a word at a time (member names and short values end
// there), the last few of d a byte at a time. A longer run goes a window at
// a time, so that the data stays in cache: bytes.IndexByte (vectorized)
// finds '"', then '\\' before it, and a light word scan the control
// characters before both. *q and *bs keep where the last searches for '"'
// and '\\' stopped (the byte found, the window's end, or for '\\' the
// quote), so that a string with many escapes is still scanned in linear
// time, and so are many strings: the search for '\\' never runs past the
// end of the string.
func plainEnd(d []byte, i int, q, bs *int) int {
	for k := 0; k < 8 && i+8 <= len(d); k++ {
		if m := special(binary.LittleEndian.Uint64(d[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
		i += 8
	}
	if len(d)-i < 8 {
		// The last bytes of the data (the end of a message is near).
		for i < len(d) && d[i] >= 0x20 && d[i] != '"' && d[i] != '\\' {
			i++
		}
		return i
	}
	for {
		if *q <= i {
			*q = indexWindow(d, i, '"')
		}
		if *bs <= i {
			// Only up to the quote: past it is another string's business.
			*bs = indexWindow(d[:*q], i, '\\')
		}
		end := min(*q, *bs)
		if c := indexControl(d[i:end]); c >= 0 {
			return i + c
		}
		i = end
		if i >= len(d) || d[i] == '"' || d[i] == '\\' {
			return i
		}
	}
}

// indexWindow is the offset of the first c in d from i on, looking at most
// searchWindow bytes: the end of those (or len(d)) when there is none.
func indexWindow(d []byte, i int, c byte) int {
	const searchWindow = 16 << 10
	w := d[i:min(len(d), i+searchWindow)]
	if j := bytes.IndexByte(w, c); j >= 0 {
		return i + j
	}
	return i + len(w)
}

// indexControl returns the offset of the first byte < 0x20 in w, or -1.
func indexControl(w []byte) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	const ctl = lo * 0x20
	v := w
	for len(v) >= 64 {
		a, b := binary.LittleEndian.Uint64(v[0:8]), binary.LittleEndian.Uint64(v[8:16])
		c, d := binary.LittleEndian.Uint64(v[16:24]), binary.LittleEndian.Uint64(v[24:32])
		e, f := binary.LittleEndian.Uint64(v[32:40]), binary.LittleEndian.Uint64(v[40:48])
		g, h := binary.LittleEndian.Uint64(v[48:56]), binary.LittleEndian.Uint64(v[56:64])
		if ((a-ctl)&^a|(b-ctl)&^b|(c-ctl)&^c|(d-ctl)&^d|(e-ctl)&^e|(f-ctl)&^f|(g-ctl)&^g|(h-ctl)&^h)&hi != 0 {
			break
		}
		v = v[64:]
	}
	for len(v) >= 32 {
		a, b := binary.LittleEndian.Uint64(v[0:8]), binary.LittleEndian.Uint64(v[8:16])
		c, d := binary.LittleEndian.Uint64(v[16:24]), binary.LittleEndian.Uint64(v[24:32])
		if ((a-ctl)&^a|(b-ctl)&^b|(c-ctl)&^c|(d-ctl)&^d)&hi != 0 {
			break
		}
		v = v[32:]
	}
	for i, c := range v {
		if c < 0x20 {
			return len(w) - len(v) + i
		}
	}
	return -1
}

// special flags (with their high bit) the bytes of a little-endian word
// that end the fast string scan: '"', '\\' and control characters (< 0x20).
// SWAR: the lowest flag is exact, the first such byte (a borrow can flag a
// byte above a match, never one below).
func special(x uint64) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	less := (x - lo*0x20) &^ x
	q := x ^ (lo * '"')
	quote := (q - lo) &^ q
	b := x ^ (lo * '\\')
	bs := (b - lo) &^ b
	return (less | quote | bs) & hi
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func skipLiteral(d []byte, i int, lit string) (int, error) {
	if len(d)-i < len(lit) {
		if string(d[i:]) == lit[:len(d)-i] {
			return len(d), synErr(d, len(d), "")
		}
		return i, synErr(d, i, "invalid literal")
	}
	if string(d[i:i+len(lit)]) != lit {
		return i, synErr(d, i, "invalid literal")
	}
	return i + len(lit), nil
}

func skipNumber(d []byte, i int) (int, error) {
	if d[i] == '-' {
		i++
	}
	switch {
	case i >= len(d):
		return i, synErr(d, i, "")
	case d[i] == '0':
		i++
	case d[i] >= '1' && d[i] <= '9':
		i = skipDigits(d, i)
	default:
		return i, synErr(d, i, "invalid number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		j := skipDigits(d, i)
		if j == i {
			return j, synErr(d, j, "invalid number")
		}
		i = j
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := skipDigits(d, i)
		if j == i {
			return j, synErr(d, j, "invalid number")
		}
		i = j
	}
	return i, nil
}

func skipDigits(d []byte, i int) int {
	for i < len(d) && d[i] >= '0' && d[i] <= '9' {
		i++
	}
	return i
}
