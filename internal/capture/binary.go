package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// This file is a compact binary encoding of Item for local storage (the
// bolt store's traffic segments): length-prefixed fields in a fixed
// order, bodies as raw bytes. Encoding a 1 KB exchange is a few copies
// (no escaping, no base64, no hashing: a body whose Size and SHA256 the
// publisher left unset is stored that way and decoded that way), and
// decoding is exact: UnmarshalBinary(AppendBinary(it)) equals *it, except
// that an empty header map, value list or body comes back nil. binary_test.go checks
// the round trip; a change to Item or Body (a new field) must be mirrored
// here (TestBinaryKnowsFields points at it).
//
// The layout, version 1:
//
//	byte 1 (the version)
//	str SessionID | varint Timestamp | str ID
//	str Kind | str Method | str Path | varint Status | str Direction
//	headers RequestHeaders | headers ResponseHeaders
//	body RequestBody | body ResponseBody
//	byte Stubbed (0 or 1) | 8 bytes DurationMs (IEEE 754 bits, big-endian) | str Error
//
// where str is uvarint(len) then the bytes; headers is uvarint(number of
// keys) then, for each key, str key, uvarint(number of values) and the
// values as str; body is a flags byte (bit 0 Truncated, bit 1 SHA256 set),
// str Data, varint Size, and the 32 bytes of SHA256 when bit 1 is set.
// The first three fields come first so that BinaryKey can read them
// without decoding the rest.

const binaryVersion = 1

// errBinary is the error of a malformed binary item.
var errBinary = errors.New("malformed binary traffic item")

// AppendBinary appends the binary encoding of it to dst.
func (it *Item) AppendBinary(dst []byte) ([]byte, error) {
	dst = append(dst, binaryVersion)
	dst = appendStr(dst, it.SessionID)
	dst = binary.AppendVarint(dst, it.Timestamp)
	dst = appendStr(dst, it.ID)
	dst = appendStr(dst, it.Kind)
	dst = appendStr(dst, it.Method)
	dst = appendStr(dst, it.Path)
	dst = binary.AppendVarint(dst, int64(it.Status))
	dst = appendStr(dst, it.Direction)
	dst = appendHeaders(dst, it.RequestHeaders)
	dst = appendHeaders(dst, it.ResponseHeaders)
	dst = it.RequestBody.appendBinary(dst)
	dst = it.ResponseBody.appendBinary(dst)
	if it.Stubbed {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(it.DurationMs))
	return appendStr(dst, it.Error), nil
}

// BinarySize returns an upper bound of the length of it's binary encoding,
// to size a buffer.
func (it *Item) BinarySize() int {
	n := 1 + 8 + 1 + 8 + 2*(1+binary.MaxVarintLen64+sha256Len) + 7*binary.MaxVarintLen64 +
		len(it.SessionID) + len(it.ID) + len(it.Kind) + len(it.Method) + len(it.Path) +
		len(it.Direction) + len(it.Error) + len(it.RequestBody.Data) + len(it.ResponseBody.Data) +
		headersBinarySize(it.RequestHeaders) + headersBinarySize(it.ResponseHeaders)
	return n + 3*binary.MaxVarintLen64
}

const sha256Len = 32

func headersBinarySize(h map[string][]string) int {
	n := binary.MaxVarintLen64
	for k, vs := range h {
		n += 2*binary.MaxVarintLen64 + len(k)
		for _, v := range vs {
			n += binary.MaxVarintLen64 + len(v)
		}
	}
	return n
}

func appendStr[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendHeaders(dst []byte, h map[string][]string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(h)))
	for k, vs := range h {
		dst = appendStr(dst, k)
		dst = binary.AppendUvarint(dst, uint64(len(vs)))
		for _, v := range vs {
			dst = appendStr(dst, v)
		}
	}
	return dst
}

func (b *Body) appendBinary(dst []byte) []byte {
	var flags byte
	if b.Truncated {
		flags |= 1
	}
	hasSHA := b.SHA256 != [sha256Len]byte{}
	if hasSHA {
		flags |= 2
	}
	dst = append(dst, flags)
	dst = appendStr(dst, b.Data)
	dst = binary.AppendVarint(dst, b.Size)
	if hasSHA {
		dst = append(dst, b.SHA256[:]...)
	}
	return dst
}

// binReader decodes the fields of a binary item; the first error sticks.
type binReader struct {
	b   []byte
	err error
}

func (r *binReader) fail() {
	if r.err == nil {
		r.err = errBinary
	}
	r.b = nil
}

func (r *binReader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *binReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns the next str field, a view of the input.
func (r *binReader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

func (r *binReader) str() string { return string(r.bytes()) }

// count reads a number of following entries, each at least min bytes long.
func (r *binReader) count(minLen int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/minLen) { //nolint:gosec // a length is not negative
		r.fail()
		return 0
	}
	return int(n) //nolint:gosec // bounded by len(r.b) above
}

func (r *binReader) headers() map[string][]string {
	n := r.count(2)
	if n == 0 {
		return nil
	}
	h := make(map[string][]string, n)
	for range n {
		k := r.str()
		var vs []string
		if nv := r.count(1); nv > 0 {
			vs = make([]string, nv)
			for i := range vs {
				vs[i] = r.str()
			}
		}
		if r.err != nil {
			return nil
		}
		h[k] = vs
	}
	return h
}

func (r *binReader) body() Body {
	var b Body
	flags := r.byte()
	if flags&^3 != 0 {
		r.fail()
	}
	b.Truncated = flags&1 != 0
	if d := r.bytes(); len(d) > 0 {
		b.Data = append([]byte(nil), d...)
	}
	b.Size = r.varint()
	if flags&2 != 0 {
		if len(r.b) < sha256Len {
			r.fail()
			return Body{}
		}
		copy(b.SHA256[:], r.b)
		r.b = r.b[sha256Len:]
	}
	return b
}

// BinaryKey returns the session id, timestamp and id of the binary item
// data without decoding the rest; sid and id are views of data.
func BinaryKey(data []byte) (sid []byte, ts int64, id []byte, err error) {
	r := binReader{b: data}
	if v := r.byte(); r.err == nil && v != binaryVersion {
		return nil, 0, nil, fmt.Errorf("%w: version %d", errBinary, v)
	}
	sid = r.bytes()
	ts = r.varint()
	id = r.bytes()
	if r.err != nil {
		return nil, 0, nil, r.err
	}
	return sid, ts, id, nil
}

// UnmarshalBinary decodes data, written by AppendBinary, into it. The
// result shares no memory with data.
func (it *Item) UnmarshalBinary(data []byte) error {
	r := binReader{b: data}
	if v := r.byte(); r.err == nil && v != binaryVersion {
		return fmt.Errorf("%w: version %d", errBinary, v)
	}
	var out Item
	out.SessionID = r.str()
	out.Timestamp = r.varint()
	out.ID = r.str()
	out.Kind = r.str()
	out.Method = r.str()
	out.Path = r.str()
	status := r.varint()
	if status < math.MinInt32 || status > math.MaxInt32 {
		r.fail()
	}
	out.Status = int(status)
	out.Direction = r.str()
	out.RequestHeaders = r.headers()
	out.ResponseHeaders = r.headers()
	out.RequestBody = r.body()
	out.ResponseBody = r.body()
	switch r.byte() {
	case 0:
	case 1:
		out.Stubbed = true
	default:
		r.fail()
	}
	if len(r.b) < 8 {
		r.fail()
	} else {
		out.DurationMs = math.Float64frombits(binary.BigEndian.Uint64(r.b))
		r.b = r.b[8:]
	}
	out.Error = r.str()
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d bytes after the end", errBinary, len(r.b))
	}
	if r.err != nil {
		return r.err
	}
	*it = out
	return nil
}
