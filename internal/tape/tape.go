// Package tape reads and writes proxyctl tapes: versioned JSON Lines files
// holding the HTTP exchanges or stdio JSON-RPC frames of one recording.
//
// The format is documented in docs/tape-format.md. Line 1 is a [Header];
// every following line is one entry, an [*Exchange] or a [*Frame]. A tape is
// written incrementally by a [Writer], so a recorder killed mid-write leaves a
// tape whose complete lines a [Reader] still returns (the cut last line is
// reported by [Reader.Warnings], not as an error).
package tape

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"time"
	"unicode/utf8"
)

// Version is the tape format version this package writes and reads.
const Version = 1

// MaxLineSize caps one tape line (header or entry, newline included) when
// reading. A longer line is an error.
const MaxLineSize = 1 << 30

// ErrClosed is returned by a [Writer] used after Close.
var ErrClosed = errors.New("tape writer closed")

// Kind says what a tape holds.
type Kind string

// Tape kinds.
const (
	KindHTTP  Kind = "http"
	KindStdio Kind = "stdio"
	KindMixed Kind = "mixed"
)

func (k Kind) valid() bool {
	return k == KindHTTP || k == KindStdio || k == KindMixed
}

// Header is line 1 of a tape.
type Header struct {
	// Version is the format version; 0 means [Version] when writing.
	Version int `json:"proxyctlTape"`
	// CreatedAt defaults to the current time when writing.
	CreatedAt time.Time `json:"createdAt"`
	// Kind defaults to [KindMixed] when writing.
	Kind Kind `json:"kind"`
	// Meta holds free-form string facts about the recording. The key
	// "target" is the upstream base URL (used by HAR export).
	Meta map[string]string `json:"meta,omitempty"`
}

// Target returns Meta["target"], the recorded upstream base URL, or "".
func (h Header) Target() string { return h.Meta["target"] }

// Entry is one tape entry after the header: an *Exchange or a *Frame.
type Entry interface {
	isEntry()
}

// Exchange is one recorded HTTP exchange.
type Exchange struct {
	ID        string `json:"id"`
	SessionID string `json:"sessionId"`
	// Seq is unique within a session and orders its exchanges.
	Seq        uint64    `json:"seq"`
	Time       time.Time `json:"time"`
	DurationMs float64   `json:"durationMs"`
	Request    Request   `json:"request"`
	// Response is nil when no response was received (see Error).
	Response *Response `json:"response,omitempty"`
	Stubbed  bool      `json:"stubbed,omitempty"`
	// Error describes an upstream failure or a body broken mid-way.
	Error string `json:"error,omitempty"`
}

// Request is the request half of an [Exchange].
type Request struct {
	Method string `json:"method"`
	// URL is the request target as sent: path and query (or the absolute
	// URL when the client sent the absolute form).
	URL     string      `json:"url"`
	Proto   string      `json:"proto,omitempty"`
	Headers http.Header `json:"headers,omitempty"`
	Body    Body        `json:"body,omitempty"`
}

// Response is the response half of an [Exchange].
type Response struct {
	Status   int         `json:"status"`
	Headers  http.Header `json:"headers,omitempty"`
	Trailers http.Header `json:"trailers,omitempty"`
	Body     Body        `json:"body,omitempty"`
}

// Direction is the direction of a stdio frame.
type Direction string

// Frame directions.
const (
	ClientToServer Direction = "client->server"
	ServerToClient Direction = "server->client"
)

// Frame is one recorded stdio JSON-RPC line.
type Frame struct {
	ID        string    `json:"id"`
	SessionID string    `json:"sessionId"`
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Direction Direction `json:"direction"`
	// Data is the exact raw line, without its line terminator.
	Data Body `json:"data,omitempty"`
}

func (*Exchange) isEntry() {}
func (*Frame) isEntry()    {}

func (x *Exchange) validate() error {
	if x.Request.Method == "" {
		return errors.New("exchange: missing request method")
	}
	return nil
}

func (f *Frame) validate() error {
	if f.Direction != ClientToServer && f.Direction != ServerToClient {
		return fmt.Errorf("frame: invalid direction %s", quoteShort(string(f.Direction)))
	}
	return nil
}

// Body is a binary-safe byte string. In JSON it is {"text": "..."} when the
// bytes are valid UTF-8 and mostly printable, else
// {"encoding": "base64", "data": "..."}. Decoding also accepts a plain JSON
// string as text.
type Body []byte

type bodyWire struct {
	Text     *string `json:"text,omitempty"`
	Encoding string  `json:"encoding,omitempty"`
	Data     *string `json:"data,omitempty"`
}

// MarshalJSON implements [json.Marshaler].
func (b Body) MarshalJSON() ([]byte, error) {
	if b == nil {
		return []byte("null"), nil
	}
	var w bodyWire
	if isText(b) {
		s := string(b)
		w.Text = &s
	} else {
		s := base64.StdEncoding.EncodeToString(b)
		w.Encoding, w.Data = "base64", &s
	}
	return marshalNoEscape(w)
}

// UnmarshalJSON implements [json.Unmarshaler].
func (b *Body) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if string(data) == "null" {
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*b = Body(s)
		return nil
	}
	var w bodyWire
	if err := json.Unmarshal(data, &w); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	switch w.Encoding {
	case "":
		if w.Data != nil {
			return errors.New(`body: "data" without "encoding"`)
		}
		if w.Text == nil {
			return errors.New(`body: missing "text"`)
		}
		*b = Body(*w.Text)
	case "base64":
		if w.Text != nil {
			return errors.New(`body: both "text" and "data"`)
		}
		if w.Data == nil {
			return errors.New(`body: missing "data"`)
		}
		d, err := base64.StdEncoding.DecodeString(*w.Data)
		if err != nil {
			return fmt.Errorf("body: invalid base64: %w", err)
		}
		*b = Body(d)
	default:
		return fmt.Errorf("body: unknown encoding %s", quoteShort(w.Encoding))
	}
	return nil
}

// isText reports whether b is stored as text: valid UTF-8 with at most one
// control character (other than tab, CR, LF) in ten runes.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	// In valid UTF-8 every byte but a continuation byte (10xxxxxx) starts a
	// rune, and the control characters counted are all ASCII, so bytes are
	// counted, eight at a time where possible (this runs on every body).
	var runes, ctrl int
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		runes += 8 - bits.OnesCount64(x&^(x<<1)&swarHigh)
		// Any byte < 0x20 or == 0x7f? (exact tests, see hasZeroByte)
		if (x-swarLow*0x20)&^x&swarHigh != 0 || hasZeroByte(x^(swarLow*0x7f)) {
			for _, c := range b[i : i+8] {
				if isCtrl(c) {
					ctrl++
				}
			}
		}
	}
	for _, c := range b[i:] {
		if c&0xc0 != 0x80 {
			runes++
		}
		if isCtrl(c) {
			ctrl++
		}
	}
	return ctrl*10 <= runes
}

const (
	swarLow  = 0x0101010101010101
	swarHigh = 0x8080808080808080
)

// hasZeroByte reports whether one of the eight bytes of x is 0.
func hasZeroByte(x uint64) bool { return (x-swarLow)&^x&swarHigh != 0 }

// isCtrl reports whether isText counts c (an ASCII byte) as a control
// character.
func isCtrl(c byte) bool {
	return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f
}

// marshalNoEscape is json.Marshal without HTML escaping (so "->" and "<"
// stay readable) and without the trailing newline.
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// quoteShort quotes s for an error message, cut to 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q...", s[:64])
	}
	return fmt.Sprintf("%q", s)
}
