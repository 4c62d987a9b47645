package tape

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Line returns the 1-based number of the line the entry last returned by
// [Reader.Next] was read from (blank lines count). After Open or NewReader it
// is 1, the header's line; after an error it is the line the error names.
func (r *Reader) Line() int { return r.line }

// Counts says how many entries of each type a tape holds.
type Counts struct {
	Exchanges int
	Frames    int
}

// Validate reads the remaining entries of r and checks what [Reader.Next]
// does not: every entry fits the header's kind (no frame on an http tape, no
// exchange on a stdio tape), every response status is within 100..599, no
// duration is negative, and no (sessionId, seq) pair repeats. It stops at the
// first problem, a *[LineError] naming its line, and returns the entries
// counted before it. A cut last line is not a problem: it is reported by
// [Reader.Warnings].
func Validate(r *Reader) (Counts, error) {
	type key struct {
		session string
		seq     uint64
	}
	var c Counts
	seen := make(map[key]int)
	kind := r.Header().Kind
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil {
			return c, err
		}
		var k key
		isFrame := false
		switch e := e.(type) {
		case *Exchange:
			if kind == KindStdio {
				return c, r.lineErr(errors.New("invalid entry: exchange on a stdio tape"))
			}
			if err := e.check(); err != nil {
				return c, r.lineErr(fmt.Errorf("invalid entry: %w", err))
			}
			k = key{e.SessionID, e.Seq}
		case *Frame:
			if kind == KindHTTP {
				return c, r.lineErr(errors.New("invalid entry: frame on an http tape"))
			}
			k = key{e.SessionID, e.Seq}
			isFrame = true
		}
		if first, dup := seen[k]; dup {
			return c, r.lineErr(fmt.Errorf("invalid entry: duplicate seq %d in session %s (first on line %d)", k.seq, quoteShort(k.session), first))
		}
		seen[k] = r.Line()
		if isFrame {
			c.Frames++
		} else {
			c.Exchanges++
		}
	}
}

// check holds the exchange checks a reader does not make.
func (x *Exchange) check() error {
	if x.DurationMs < 0 {
		return fmt.Errorf("exchange: negative durationMs %v", x.DurationMs)
	}
	if x.Response != nil && (x.Response.Status < 100 || x.Response.Status > 599) {
		return fmt.Errorf("exchange: response status %d outside 100..599", x.Response.Status)
	}
	return nil
}

// RedactEntry redacts e in place, as a recorder does before writing it:
// [RedactHeaders] with the extra header names headers on an exchange's
// request headers, response headers and trailers, and [RedactJSON] with paths
// on its request and response bodies or on a frame's data. It returns how
// many values it replaced. Values that already were [Redacted] are not
// counted, and a body in which nothing new was replaced is left byte for byte
// as it was, so redacting twice changes nothing.
func RedactEntry(e Entry, headers, paths []string) int {
	n := 0
	switch e := e.(type) {
	case *Exchange:
		n += redactHeadersCount(e.Request.Headers, headers)
		var c int
		e.Request.Body, c = redactBodyCount(e.Request.Body, paths)
		n += c
		if r := e.Response; r != nil {
			n += redactHeadersCount(r.Headers, headers)
			n += redactHeadersCount(r.Trailers, headers)
			r.Body, c = redactBodyCount(r.Body, paths)
			n += c
		}
	case *Frame:
		var c int
		e.Data, c = redactBodyCount(e.Data, paths)
		n += c
	}
	return n
}

func redactHeadersCount(h http.Header, extra []string) int {
	n := 0
	for name, values := range h {
		if !secretHeader(name, extra) {
			continue
		}
		for _, v := range values {
			if v != Redacted {
				n++
			}
		}
	}
	RedactHeaders(h, extra)
	return n
}

func redactBodyCount(b Body, paths []string) (Body, int) {
	if len(b) == 0 || len(paths) == 0 {
		return b, 0
	}
	out, ok := RedactJSON(b, paths)
	if !ok {
		return b, 0
	}
	before, err1 := decodeJSONNumber(b)
	after, err2 := decodeJSONNumber(out)
	if err1 != nil || err2 != nil {
		return b, 0 // cannot happen: RedactJSON decoded b and wrote out
	}
	n := countRedacted(before, after)
	if n == 0 {
		return b, 0
	}
	return Body(out), n
}

func decodeJSONNumber(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

// countRedacted counts the values that are [Redacted] in after but were not
// in before. Redaction only replaces values, so the two trees have the same
// shape elsewhere.
func countRedacted(before, after any) int {
	switch a := after.(type) {
	case string:
		if b, ok := before.(string); a != Redacted || ok && b == Redacted {
			return 0
		}
		return 1
	case map[string]any:
		b, ok := before.(map[string]any)
		if !ok {
			return 0
		}
		n := 0
		for k, av := range a {
			n += countRedacted(b[k], av)
		}
		return n
	case []any:
		b, ok := before.([]any)
		if !ok {
			return 0
		}
		n := 0
		for i, av := range a {
			if i < len(b) {
				n += countRedacted(b[i], av)
			}
		}
		return n
	}
	return 0
}
