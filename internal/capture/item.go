package capture

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// Limits applied when a caller passes a zero or negative value.
const (
	// DefaultMaxBody is the body size kept in the store and the live stream
	// (--max-capture-body).
	DefaultMaxBody = 350_000
	// DefaultItemBudget is the encoded size a stored item is fitted to:
	// DynamoDB's 400 KB item limit minus room for key attributes and
	// attribute names.
	DefaultItemBudget = 390_000
)

// Item kinds and stdio directions.
const (
	KindHTTP  = "http"
	KindStdio = "stdio"

	DirClientToServer = "client->server"
	DirServerToClient = "server->client"
)

// Item is one captured exchange (HTTP) or frame (stdio): the traffic item of
// the DESIGN. Once published, an Item is shared read-only by every sink:
// neither the publisher nor a sink may modify it (transforms such as
// Truncate and FitTo return copies).
type Item struct {
	SessionID       string              `json:"sessionId"`
	Timestamp       int64               `json:"timestamp"` // unix microseconds, unique within a session (see Stamper)
	ID              string              `json:"id"`
	Kind            string              `json:"kind"`           // KindHTTP or KindStdio
	Method          string              `json:"method"`         // HTTP method, or JSON-RPC method for stdio
	Path            string              `json:"path,omitempty"` // request target as sent (path and query)
	Status          int                 `json:"status,omitempty"`
	Direction       string              `json:"direction,omitempty"` // stdio: DirClientToServer or DirServerToClient
	RequestHeaders  map[string][]string `json:"requestHeaders,omitempty"`
	ResponseHeaders map[string][]string `json:"responseHeaders,omitempty"`
	RequestBody     Body                `json:"requestBody"`
	ResponseBody    Body                `json:"responseBody"`
	Stubbed         bool                `json:"stubbed"`
	DurationMs      float64             `json:"duration"`
	Error           string              `json:"error,omitempty"`
}

// NewID returns a new item id: 28 hex digits, the current time in unix
// milliseconds (12 digits) then 8 random bytes. Ids made later sort later
// (to the millisecond), so a store's id index grows at its end instead of
// at random places: bolt then rewrites a few pages per batch rather than
// one per item (BenchmarkAppendTrafficIDs in internal/store/boltstore).
// 64 random bits keep ids made in the same millisecond, by any instance,
// apart.
func NewID() string {
	var b [14]byte
	ms := uint64(time.Now().UnixMilli()) //nolint:gosec // after 1970
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b[:])
}

// Body is a captured body: the bytes as captured plus truncation facts.
//
// Size and SHA256 always describe the original, full body. A publisher may
// leave them zero and set only Data (keeping hashing off the proxy's hot
// path): Truncate, FitTo and MarshalJSON fill them in from Data first.
type Body struct {
	Data      []byte
	Size      int64
	SHA256    [32]byte
	Truncated bool
}

// NewBody returns a body holding data with its size and hash filled in.
func NewBody(data []byte) Body {
	b := Body{Data: data}
	b.complete()
	return b
}

// complete fills Size and SHA256 from Data when the publisher left them zero.
func (b *Body) complete() {
	if b.Size == 0 && len(b.Data) > 0 && !b.Truncated {
		b.Size = int64(len(b.Data))
		b.SHA256 = sha256.Sum256(b.Data)
	}
}

// bodyJSON is the wire form of a Body.
type bodyJSON struct {
	Text      *string `json:"text,omitempty"`
	Base64    *string `json:"base64,omitempty"`
	Truncated bool    `json:"truncated"`
	Size      int64   `json:"size"`
	SHA256    string  `json:"sha256,omitempty"`
}

// MarshalJSON encodes the body as {"text": ...} when Data is valid UTF-8 and
// {"base64": ...} otherwise, plus "truncated", "size" (of the original) and
// "sha256" (hex of the original, present whenever size > 0).
func (b Body) MarshalJSON() ([]byte, error) {
	b.complete()
	var w bodyJSON
	if utf8.Valid(b.Data) {
		s := string(b.Data)
		w.Text = &s
	} else {
		s := base64.StdEncoding.EncodeToString(b.Data)
		w.Base64 = &s
	}
	w.Truncated = b.Truncated
	w.Size = b.Size
	if b.Size > 0 {
		w.SHA256 = hex.EncodeToString(b.SHA256[:])
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (b *Body) UnmarshalJSON(data []byte) error {
	var w bodyJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	var out Body
	switch {
	case w.Text != nil && w.Base64 != nil:
		return errors.New("body has both text and base64")
	case w.Base64 != nil:
		d, err := base64.StdEncoding.DecodeString(*w.Base64)
		if err != nil {
			return fmt.Errorf("body base64: %w", err)
		}
		out.Data = d
	case w.Text != nil:
		out.Data = []byte(*w.Text)
	}
	if len(out.Data) == 0 {
		out.Data = nil
	}
	out.Truncated = w.Truncated
	out.Size = w.Size
	if w.SHA256 != "" {
		h, err := hex.DecodeString(w.SHA256)
		if err != nil || len(h) != sha256.Size {
			return fmt.Errorf("body sha256 %q: not 64 hex digits", w.SHA256)
		}
		copy(out.SHA256[:], h)
	}
	*b = out
	return nil
}

// cut returns the body with Data cut to at most n bytes (never splitting a
// UTF-8 sequence of a text body), marked Truncated when anything was cut.
// The returned Data shares the original's array; it is never written to.
func (b Body) cut(n int) Body {
	if n < 0 {
		n = 0
	}
	if len(b.Data) <= n {
		return b // Size and SHA256 stay for the encoder to fill in
	}
	b.complete()
	d := b.Data[:n]
	if utf8.Valid(b.Data) {
		// Back off to a rune boundary so a text body stays text.
		for len(d) > 0 && !utf8.RuneStart(b.Data[len(d)]) {
			d = d[:len(d)-1]
		}
	}
	if len(d) == 0 {
		d = nil
	}
	b.Data = slices.Clip(d)
	b.Truncated = true
	return b
}

// Truncate returns the item with bodies cut to at most limit bytes
// (DefaultMaxBody when limit <= 0) and marked Truncated; Size and SHA256
// keep describing the originals. When nothing needs cutting it returns it
// itself (items are immutable); otherwise a copy sharing header maps and
// the bodies' backing arrays with it, so it costs no body copy.
func (it *Item) Truncate(limit int) *Item {
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	if len(it.RequestBody.Data) <= limit && len(it.ResponseBody.Data) <= limit {
		return it
	}
	c := *it
	c.RequestBody = c.RequestBody.cut(limit)
	c.ResponseBody = c.ResponseBody.cut(limit)
	return &c
}

// EncodedSize returns the length of the item's JSON encoding.
func (it *Item) EncodedSize() int {
	b, err := json.Marshal(it)
	if err != nil {
		return 0 // unreachable: every field encodes
	}
	return len(b)
}

// FitTo returns the item (itself when it fits, else a copy) whose JSON
// encoding is at most budget
// bytes (DefaultItemBudget when budget <= 0). It cuts the larger body first,
// then the other, then header values, then long strings (path, error), so
// a stored item always fits DynamoDB's item limit whatever its bodies. Cut
// bodies are marked Truncated and keep the original Size and SHA256; header
// values that are cut lose their tail with no marker. A budget smaller than
// an item with no bodies, headers, path or error cannot be met; the copy is
// then as small as FitTo can make it.
func (it *Item) FitTo(budget int) *Item {
	if budget <= 0 {
		budget = DefaultItemBudget
	}
	if it.encodedBound() <= budget {
		return it // the usual case: no copy, no encoding
	}
	c := *it
	c.RequestBody.complete()
	c.ResponseBody.complete()
	size := c.EncodedSize()
	if size <= budget {
		return &c
	}
	// Bodies, larger (by encoded size) first.
	first, second := &c.RequestBody, &c.ResponseBody
	if bodyDataLen(*second) > bodyDataLen(*first) {
		first, second = second, first
	}
	for _, b := range []*Body{first, second} {
		size = fitBody(&c, b, size, budget)
		if size <= budget {
			return &c
		}
	}
	// Header values: halve the longest allowed value until it fits.
	if len(c.RequestHeaders) > 0 || len(c.ResponseHeaders) > 0 {
		longest := max(longestValue(c.RequestHeaders), longestValue(c.ResponseHeaders))
		for limit := longest / 2; ; limit /= 2 {
			c.RequestHeaders = cutHeaders(it.RequestHeaders, limit)
			c.ResponseHeaders = cutHeaders(it.ResponseHeaders, limit)
			if size = c.EncodedSize(); size <= budget {
				return &c
			}
			if limit == 0 {
				break
			}
		}
		c.RequestHeaders, c.ResponseHeaders = nil, nil
		if size = c.EncodedSize(); size <= budget {
			return &c
		}
	}
	// Last resort: long free-form strings.
	for _, s := range []*string{&c.Error, &c.Path, &c.Method, &c.ID} {
		for len(*s) > 0 && size > budget {
			*s = cutString(*s, len(*s)-(size-budget)-1)
			size = c.EncodedSize()
		}
	}
	return &c
}

// encodedBound is an upper bound of EncodedSize, cheap to compute: no
// byte of a string or body encodes to more than 6 bytes (\u00XX), and the
// fixed parts (field names, numbers, hashes) to less than 1 KiB.
func (it *Item) encodedBound() int {
	n := 1024 + 6*(len(it.SessionID)+len(it.ID)+len(it.Kind)+len(it.Method)+len(it.Path)+len(it.Direction)+len(it.Error))
	n += 6*(len(it.RequestBody.Data)+len(it.ResponseBody.Data)) + 2*256
	for _, h := range []map[string][]string{it.RequestHeaders, it.ResponseHeaders} {
		for k, vs := range h {
			n += 6*len(k) + 8
			for _, v := range vs {
				n += 6*len(v) + 3
			}
		}
	}
	return n
}

// fitBody cuts b (a body of c) until c encodes within budget or b is empty,
// and returns c's encoded size. size is c's current encoded size.
func fitBody(c *Item, b *Body, size, budget int) int {
	for size > budget && len(b.Data) > 0 {
		over := size - budget
		n := len(b.Data)
		// Bytes of Data to remove: the excess divided by the encoded bytes
		// per data byte, computed exactly from the tail when Data is text.
		var remove int
		if utf8.Valid(b.Data) {
			remove = textBytesToSave(b.Data, over)
		} else {
			remove = (over*3+3)/4 + 3
		}
		if remove <= 0 || remove > n {
			remove = n
		}
		*b = b.cut(n - remove)
		size = c.EncodedSize()
	}
	return size
}

// textBytesToSave returns how many bytes to cut from the end of valid
// UTF-8 data so that its JSON string encoding shrinks by at least save bytes.
func textBytesToSave(data []byte, save int) int {
	saved, i := 0, len(data)
	for i > 0 && saved < save {
		r, size := utf8.DecodeLastRune(data[:i])
		saved += jsonRuneLen(r, size)
		i -= size
	}
	return len(data) - i
}

// jsonRuneLen is the length of a rune inside a JSON string as encoding/json
// writes it (HTML-escaping on, as json.Marshal does).
func jsonRuneLen(r rune, size int) int {
	switch {
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
		return 2
	case r < 0x20 || r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029' || r == utf8.RuneError:
		return 6
	default:
		return size
	}
}

// bodyDataLen is the encoded length of a body's data (without quotes).
func bodyDataLen(b Body) int {
	if !utf8.Valid(b.Data) {
		return base64.StdEncoding.EncodedLen(len(b.Data))
	}
	n := 0
	for i := 0; i < len(b.Data); {
		r, size := utf8.DecodeRune(b.Data[i:])
		n += jsonRuneLen(r, size)
		i += size
	}
	return n
}

func longestValue(h map[string][]string) int {
	n := 0
	for _, vs := range h {
		for _, v := range vs {
			n = max(n, len(v))
		}
	}
	return n
}

// cutHeaders returns a copy of h with every value cut to at most limit bytes.
func cutHeaders(h map[string][]string, limit int) map[string][]string {
	if h == nil {
		return nil
	}
	out := make(map[string][]string, len(h))
	for k, vs := range h {
		vs = slices.Clone(vs)
		for i, v := range vs {
			vs[i] = cutString(v, limit)
		}
		out[k] = vs
	}
	return out
}

// cutString cuts s to at most n bytes without splitting a UTF-8 sequence.
func cutString(s string, n int) string {
	if n < 0 {
		n = 0
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// bodyBytes is the memory the item's bodies hold.
func (it *Item) bodyBytes() int64 {
	return int64(len(it.RequestBody.Data) + len(it.ResponseBody.Data))
}
