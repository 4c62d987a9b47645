package tape

import (
	"encoding/base64"
	"math"
	"strconv"
	"time"

	"github.com/proxyctl/proxyctl/internal/jsonenc"
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
	dst = jsonenc.AppendString(dst, x.ID)
	dst = append(dst, `,"sessionId":`...)
	dst = jsonenc.AppendString(dst, x.SessionID)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, x.Seq, 10)
	dst = append(dst, `,"time":`...)
	dst = appendTime(dst, x.Time)
	dst = append(dst, `,"durationMs":`...)
	dst = jsonenc.AppendFloat(dst, x.DurationMs)

	dst = append(dst, `,"request":{"method":`...)
	dst = jsonenc.AppendString(dst, x.Request.Method)
	dst = append(dst, `,"url":`...)
	dst = jsonenc.AppendString(dst, x.Request.URL)
	if x.Request.Proto != "" {
		dst = append(dst, `,"proto":`...)
		dst = jsonenc.AppendString(dst, x.Request.Proto)
	}
	if len(x.Request.Headers) > 0 {
		dst = append(dst, `,"headers":`...)
		dst = jsonenc.AppendStringLists(dst, x.Request.Headers, false)
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
			dst = jsonenc.AppendStringLists(dst, r.Headers, false)
		}
		if len(r.Trailers) > 0 {
			dst = append(dst, `,"trailers":`...)
			dst = jsonenc.AppendStringLists(dst, r.Trailers, false)
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
		dst = jsonenc.AppendString(dst, x.Error)
	}
	return append(dst, '}')
}

// appendFrame appends the tape line of f (without its newline) to dst.
// f must satisfy canAppendFrame.
func appendFrame(dst []byte, f *Frame) []byte {
	dst = append(dst, `{"type":"frame","id":`...)
	dst = jsonenc.AppendString(dst, f.ID)
	dst = append(dst, `,"sessionId":`...)
	dst = jsonenc.AppendString(dst, f.SessionID)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, f.Seq, 10)
	dst = append(dst, `,"time":`...)
	dst = appendTime(dst, f.Time)
	dst = append(dst, `,"direction":`...)
	dst = jsonenc.AppendString(dst, string(f.Direction))
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

// appendBody appends a non-empty b as Body.MarshalJSON encodes it.
func appendBody(dst []byte, b Body) []byte {
	if isText(b) {
		dst = append(dst, `{"text":`...)
		dst = jsonenc.AppendString(dst, []byte(b))
		return append(dst, '}')
	}
	dst = append(dst, `{"encoding":"base64","data":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, `"}`...)
}
