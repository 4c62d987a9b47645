package capture

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/proxyctl/proxyctl/internal/jsonenc"
)

// This file is a hand-rolled encoder for Item. AppendJSON writes exactly the
// bytes json.Marshal writes for an *Item (HTML escaping on), without
// reflection and without allocating (but to grow dst). encode_test.go checks
// the equivalence against encoding/json; a change to Item or Body (a new
// field, a tag) must be mirrored here (TestAppendJSONKnowsFields points at
// it).

// CheckJSON reports the error json.Marshal returns for it, if any: it
// refuses a NaN or infinite DurationMs. AppendJSON may be used only when
// CheckJSON returns nil.
func (it *Item) CheckJSON() error {
	if math.IsNaN(it.DurationMs) || math.IsInf(it.DurationMs, 0) {
		return fmt.Errorf("json: unsupported value: %s", strconv.FormatFloat(it.DurationMs, 'g', -1, 64))
	}
	return nil
}

// AppendJSON appends the JSON encoding of it to dst: the same bytes as
// json.Marshal(it), Body fields included (their Size and SHA256 completed
// from Data when unset, as Body.MarshalJSON does, without modifying it).
// it must satisfy CheckJSON; a non-finite DurationMs, which json.Marshal
// refuses, is written as null.
func (it *Item) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"sessionId":`...)
	dst = jsonenc.AppendStringHTML(dst, it.SessionID)
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, it.Timestamp, 10)
	dst = append(dst, `,"id":`...)
	dst = jsonenc.AppendStringHTML(dst, it.ID)
	dst = append(dst, `,"kind":`...)
	dst = jsonenc.AppendStringHTML(dst, it.Kind)
	dst = append(dst, `,"method":`...)
	dst = jsonenc.AppendStringHTML(dst, it.Method)
	if it.Path != "" {
		dst = append(dst, `,"path":`...)
		dst = jsonenc.AppendStringHTML(dst, it.Path)
	}
	if it.Status != 0 {
		dst = append(dst, `,"status":`...)
		dst = strconv.AppendInt(dst, int64(it.Status), 10)
	}
	if it.Direction != "" {
		dst = append(dst, `,"direction":`...)
		dst = jsonenc.AppendStringHTML(dst, it.Direction)
	}
	if len(it.RequestHeaders) > 0 {
		dst = append(dst, `,"requestHeaders":`...)
		dst = jsonenc.AppendStringLists(dst, it.RequestHeaders, true)
	}
	if len(it.ResponseHeaders) > 0 {
		dst = append(dst, `,"responseHeaders":`...)
		dst = jsonenc.AppendStringLists(dst, it.ResponseHeaders, true)
	}
	dst = append(dst, `,"requestBody":`...)
	dst = it.RequestBody.appendJSON(dst)
	dst = append(dst, `,"responseBody":`...)
	dst = it.ResponseBody.appendJSON(dst)
	if it.Stubbed {
		dst = append(dst, `,"stubbed":true`...)
	} else {
		dst = append(dst, `,"stubbed":false`...)
	}
	dst = append(dst, `,"duration":`...)
	if math.IsNaN(it.DurationMs) || math.IsInf(it.DurationMs, 0) {
		dst = append(dst, "null"...)
	} else {
		dst = jsonenc.AppendFloat(dst, it.DurationMs)
	}
	if it.Error != "" {
		dst = append(dst, `,"error":`...)
		dst = jsonenc.AppendStringHTML(dst, it.Error)
	}
	return append(dst, '}')
}

// appendJSON appends b as Body.MarshalJSON encodes it (and json.Marshal
// writes it back, compacted and HTML-escaped). b is a copy: completing it
// leaves the item alone.
func (b Body) appendJSON(dst []byte) []byte {
	b.complete()
	if utf8.Valid(b.Data) {
		dst = append(dst, `{"text":`...)
		dst = jsonenc.AppendStringHTML(dst, b.Data)
	} else {
		dst = append(dst, `{"base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, b.Data)
		dst = append(dst, '"')
	}
	if b.Truncated {
		dst = append(dst, `,"truncated":true`...)
	} else {
		dst = append(dst, `,"truncated":false`...)
	}
	dst = append(dst, `,"size":`...)
	dst = strconv.AppendInt(dst, b.Size, 10)
	if b.Size > 0 {
		dst = append(dst, `,"sha256":"`...)
		dst = hex.AppendEncode(dst, b.SHA256[:])
		dst = append(dst, '"')
	}
	return append(dst, '}')
}
