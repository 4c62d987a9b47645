package tape

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/proxyctl/proxyctl/internal/jsonenc"
)

// jsonExchangeLine is the encoding/json oracle for appendExchange: the line
// Writer.WriteExchange wrote before the hand-rolled encoder.
func jsonExchangeLine(x *Exchange) ([]byte, error) {
	return marshalNoEscape(struct {
		Type string `json:"type"`
		*Exchange
	}{"exchange", x})
}

// jsonFrameLine is the encoding/json oracle for appendFrame.
func jsonFrameLine(f *Frame) ([]byte, error) {
	return marshalNoEscape(struct {
		Type string `json:"type"`
		*Frame
	}{"frame", f})
}

func checkExchangeEquivalent(t testing.TB, x *Exchange) {
	t.Helper()
	want, err := jsonExchangeLine(x)
	if ok := canAppendExchange(x); ok != (err == nil) {
		t.Fatalf("canAppendExchange = %v, encoding/json error = %v", ok, err)
	}
	if err != nil {
		return
	}
	prefix := []byte("prefix")
	got := appendExchange(slices.Clip(prefix), x)
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("appendExchange lost dst: %q", got)
	}
	if got = got[len(prefix):]; !bytes.Equal(got, want) {
		t.Fatalf("appendExchange differs from encoding/json\n got: %q\nwant: %q", got, want)
	}
}

func checkFrameEquivalent(t testing.TB, f *Frame) {
	t.Helper()
	want, err := jsonFrameLine(f)
	if ok := canAppendFrame(f); ok != (err == nil) {
		t.Fatalf("canAppendFrame = %v, encoding/json error = %v", ok, err)
	}
	if err != nil {
		return
	}
	if got := appendFrame(nil, f); !bytes.Equal(got, want) {
		t.Fatalf("appendFrame differs from encoding/json\n got: %q\nwant: %q", got, want)
	}
}

// oddStrings exercise every escaping rule of encoding/json's string encoder.
var oddStrings = []string{
	"",
	"plain",
	`quote " backslash \ slash /`,
	"\n\r\t\b\f",
	"\x00\x01\x1f\x7f",
	"<>&",
	"a->b <c> & d",
	"line\u2028sep\u2029par",
	"emoji 🎉 café 中文",
	"\xff",
	"bad \xfe\xff utf-8 \xc3",
	"cut rune at end \xe2\x82",
	"surrogate \xed\xa0\x80",
	"overlong \xc0\xaf",
	"replacement char \ufffd itself",
	"\u2028",
	"/v1/items?q=%E2%82%AC&x=\xe9",
	allASCII(),
	strings.Repeat("a", jsonenc.EscChunk-1) + "\xff\xe2\x80" + strings.Repeat("\"", jsonenc.EscChunk),
}

func allASCII() string {
	var b strings.Builder
	for c := range 128 {
		b.WriteByte(byte(c))
	}
	return b.String()
}

func TestAppendExchangeEquivalence(t *testing.T) {
	zones := []*time.Location{
		time.UTC,
		time.FixedZone("IST", 5*3600+30*60),
		time.FixedZone("PDT", -7*3600),
		time.FixedZone("odd", 3600+30),
		time.FixedZone("max", 23*3600+59*60),
		time.FixedZone("toofar", 24*3600), // refused by encoding/json
	}
	times := []time.Time{
		{},
		t0,
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 100_000_000, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 1, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // refused by encoding/json
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),    // refused by encoding/json
		time.Now(), // monotonic reading, local zone
	}
	for _, z := range zones {
		times = append(times, t0.In(z), time.Date(2026, 6, 1, 0, 0, 0, 0, z))
	}
	durations := []float64{
		0, math.Copysign(0, -1), 1e-7, 1e-6, 9.99e-7, 12.84, 3, 0.1, 1e20, 1e21, 1.5e21,
		123456789.125, 999999.999, -1.5, -1e-7, 5e-324, math.MaxFloat64, 1e-300,
		float64(1<<53 + 1), 1e100,
		math.NaN(), math.Inf(1), math.Inf(-1), // refused by encoding/json
	}
	bodies := []Body{
		nil,
		{},
		Body("hello"),
		Body(strings.Repeat("json {\"a\":1}\n", 100)),
		Body("\x00\x01\x02\x03abc"),                 // too many control chars: base64
		Body("abcdefghi\x01"),                       // one in ten: text
		Body("abcdefgh\x01"),                        // more than one in ten: base64
		Body("text \x7f with DEL and \x1b[0m ansi"), // DEL counts as control
		Body("\xff\xfe\x00 binary"),
		Body("line\u2028sep 🎉 <b>&amp;</b>"),
		Body("\t\r\n"),
		{0},
		{0xe2, 0x80, 0xa8},
		Body(allASCII()),
		// Straddling jsonenc.AppendString's chunks.
		Body(strings.Repeat("\"", 2500)),
		Body(strings.Repeat("a", jsonenc.EscChunk-1) + "é" + strings.Repeat("b", jsonenc.EscChunk)),
		Body(strings.Repeat("a", jsonenc.EscChunk-2) + "\u2028\n" + strings.Repeat("\\", jsonenc.EscChunk+3)),
		Body(strings.Repeat("é\n\"🎉", 3*jsonenc.EscChunk)),
	}
	headers := []http.Header{
		nil,
		{},
		{"Accept": {"a/b", "c/d", "a/b"}},
		{"X-Nil": nil, "X-Empty": {}, "X-One": {""}},
		{"b": {"1"}, "B": {"2"}, "a": {"3"}, "": {"empty key"}, "ü": {"4"}, "Z": {"5"}},
		{"Bad\xffKey": {"bad \xfe value"}, "Sep\u2028": {"\u2029"}, "Q\"": {"\\"}},
		manyHeaders(16),
		manyHeaders(17),
		manyHeaders(100),
	}

	base := func() Exchange {
		return Exchange{
			ID: "01JD7Z3K9Q", SessionID: "s-1", Seq: 7, Time: t0, DurationMs: 12.84,
			Request: Request{
				Method: "POST", URL: "/v1/login?next=%2Fhome", Proto: "HTTP/1.1",
				Headers: http.Header{"Content-Type": {"application/json"}, "Accept": {"a", "b"}},
				Body:    Body(`{"user":"ada"}`),
			},
			Response: &Response{
				Status:  200,
				Headers: http.Header{"Content-Type": {"application/json"}},
				Body:    Body("{\"ok\":true}\n"),
			},
		}
	}
	var cases []Exchange
	add := func(mod func(x *Exchange)) {
		x := base()
		mod(&x)
		cases = append(cases, x)
	}
	add(func(*Exchange) {})
	add(func(x *Exchange) { *x = Exchange{} })
	add(func(x *Exchange) { *x = Exchange{Request: Request{Method: "GET"}} })
	add(func(x *Exchange) { x.Response = nil; x.Error = "upstream response header timeout" })
	add(func(x *Exchange) { x.Response = &Response{} })
	add(func(x *Exchange) { x.Response.Status = -1; x.Seq = math.MaxUint64 })
	add(func(x *Exchange) { x.Stubbed = true })
	add(func(x *Exchange) { x.Stubbed = true; x.Error = "body: unexpected EOF"; x.Response.Status = 599 })
	add(func(x *Exchange) {
		x.Response.Trailers = http.Header{"X-Checksum": {"9f2c"}, "Grpc-Status": {"0"}}
	})
	add(func(x *Exchange) { x.Response.Trailers = http.Header{} })
	add(func(x *Exchange) { x.Request.Proto = "" })
	for _, tm := range times {
		add(func(x *Exchange) { x.Time = tm })
	}
	for _, d := range durations {
		add(func(x *Exchange) { x.DurationMs = d })
	}
	for _, b := range bodies {
		add(func(x *Exchange) { x.Request.Body = b })
		add(func(x *Exchange) { x.Response.Body = b })
	}
	for _, h := range headers {
		add(func(x *Exchange) { x.Request.Headers = h })
		add(func(x *Exchange) { x.Response.Headers = h })
		add(func(x *Exchange) { x.Response.Trailers = h })
	}
	for _, s := range oddStrings {
		add(func(x *Exchange) { x.ID = s })
		add(func(x *Exchange) { x.SessionID = s })
		add(func(x *Exchange) { x.Request.Method = s })
		add(func(x *Exchange) { x.Request.URL = s })
		add(func(x *Exchange) { x.Request.Proto = s })
		add(func(x *Exchange) { x.Error = s })
		add(func(x *Exchange) { x.Request.Headers = http.Header{s: {s, s}} })
		add(func(x *Exchange) { x.Response.Body = Body(s) })
	}
	cases = append(cases, sampleExchanges(t)...)

	for i := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkExchangeEquivalent(t, &cases[i]) })
	}
}

func manyHeaders(n int) http.Header {
	h := make(http.Header, n)
	for i := range n {
		// Keys whose byte order differs from their numeric order.
		h[fmt.Sprintf("X-H%d", (i*7919)%n)] = []string{fmt.Sprint(i)}
	}
	return h
}

func TestAppendFrameEquivalence(t *testing.T) {
	cases := sampleFrames()
	cases = append(cases,
		Frame{},
		Frame{Direction: ClientToServer, Data: Body{}},
		Frame{Direction: ServerToClient, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		Frame{Direction: ServerToClient, Time: t0.In(time.FixedZone("IST", 5*3600+30*60)), Seq: math.MaxUint64},
	)
	for _, s := range oddStrings {
		cases = append(cases,
			Frame{ID: s, SessionID: s, Direction: Direction(s), Time: t0, Data: Body(s)},
		)
	}
	for i := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkFrameEquivalent(t, &cases[i]) })
	}
}

// TestEncoderKnowsFields fails when an entry struct gains, loses or
// re-tags a field: appendExchange and appendFrame must then be updated (the
// equivalence cases only see an omitempty field once one of them sets it).
func TestEncoderKnowsFields(t *testing.T) {
	for _, c := range []struct {
		v    any
		tags string
	}{
		{Exchange{}, "id sessionId seq time durationMs request response,omitempty stubbed,omitempty error,omitempty"},
		{Request{}, "method url proto,omitempty headers,omitempty body,omitempty"},
		{Response{}, "status headers,omitempty trailers,omitempty body,omitempty"},
		{Frame{}, "id sessionId seq time direction data,omitempty"},
		{bodyWire{}, "text,omitempty encoding,omitempty data,omitempty"},
	} {
		typ := reflect.TypeOf(c.v)
		var tags []string
		for f := range typ.Fields() {
			tags = append(tags, f.Tag.Get("json"))
		}
		if got := strings.Join(tags, " "); got != c.tags {
			t.Errorf("%s fields are tagged %q; appendExchange/appendFrame encode %q", typ, got, c.tags)
		}
	}
}

// isTextRef is the original, rune-ranging isText, kept as the oracle for
// the byte-loop version (the encoding/json oracle cannot check isText: Body's
// MarshalJSON uses it too).
func isTextRef(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	var runes, ctrl int
	for _, r := range string(b) {
		runes++
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f {
			ctrl++
		}
	}
	return ctrl*10 <= runes
}

func TestIsText(t *testing.T) {
	cases := []string{
		"", "a", "\x00", "\t\r\n", "abcdefghi\x01", "abcdefgh\x01", "\x7f" + strings.Repeat("x", 9),
		"\x7f" + strings.Repeat("x", 8), "é\x01" + strings.Repeat("é", 8), "é\x01" + strings.Repeat("é", 7),
		"\u0085\u0085\u0085", "🎉\x01" + strings.Repeat("🎉", 8), "🎉\x01" + strings.Repeat("🎉", 7), "\xff", "\xed\xa0\x80",
	}
	cases = append(cases, oddStrings...)
	for _, c := range cases {
		if got, want := isText([]byte(c)), isTextRef([]byte(c)); got != want {
			t.Errorf("isText(%q) = %v, want %v", c, got, want)
		}
	}
}

// TestWriterUnencodable checks that an entry encoding/json refuses is still
// refused, with encoding/json's error, and is not sticky.
func TestWriterUnencodable(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{CreatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []Exchange{
		{Request: Request{Method: "GET"}, DurationMs: math.NaN()},
		{Request: Request{Method: "GET"}, DurationMs: math.Inf(-1)},
		{Request: Request{Method: "GET"}, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		_, jerr := jsonExchangeLine(&x)
		err := w.WriteExchange(x)
		if err == nil || jerr == nil || err.Error() != "encode exchange: "+jerr.Error() {
			t.Errorf("WriteExchange = %v, want encode exchange: %v", err, jerr)
		}
	}
	fr := Frame{Direction: ClientToServer, Time: t0.In(time.FixedZone("", 24*3600))}
	_, jerr := jsonFrameLine(&fr)
	if err := w.WriteFrame(fr); err == nil || jerr == nil || err.Error() != "encode frame: "+jerr.Error() {
		t.Errorf("WriteFrame = %v, want encode frame: %v", err, jerr)
	}
	if err := w.WriteFrame(Frame{Direction: ClientToServer}); err != nil {
		t.Fatalf("valid frame after refused ones: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 2 {
		t.Errorf("tape has %d lines, want 2 (header, frame):\n%s", n, buf.Bytes())
	}
}

// TestWriterLines checks the writer's output is the encoding/json lines.
func TestWriterLines(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{CreatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	want.Write(buf.Bytes())
	xs := sampleExchanges(t)
	for i := range xs {
		if err := w.WriteExchange(xs[i]); err != nil {
			t.Fatal(err)
		}
		line, err := jsonExchangeLine(&xs[i])
		if err != nil {
			t.Fatal(err)
		}
		want.Write(line)
		want.WriteByte('\n')
	}
	fs := sampleFrames()
	for i := range fs {
		if err := w.WriteFrame(fs[i]); err != nil {
			t.Fatal(err)
		}
		line, err := jsonFrameLine(&fs[i])
		if err != nil {
			t.Fatal(err)
		}
		want.Write(line)
		want.WriteByte('\n')
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want.Bytes()) {
		t.Error("writer output differs from the encoding/json lines")
	}
	if w.buf != nil && cap(w.buf) > maxKeptBuf {
		t.Errorf("writer keeps a %d-byte buffer after a 1 MiB body", cap(w.buf))
	}
}

func TestAppendExchangeAllocs(t *testing.T) {
	x := benchExchange()
	buf := appendExchange(nil, &x)
	if n := testing.AllocsPerRun(100, func() { buf = appendExchange(buf[:0], &x) }); n != 0 {
		t.Errorf("appendExchange into a large enough buffer: %v allocs, want 0", n)
	}
	w, err := NewWriter(io.Discard, Header{CreatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := w.WriteExchange(x); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("WriteExchange: %v allocs, want 0", n)
	}
}

func FuzzEncodeEquivalence(f *testing.F) {
	f.Add("GET", "/v1/items?x=1", "Content-Type", "application/json", []byte(`{"a":1}`), "", math.Float64bits(12.84), int64(1795446245), int64(123456789), 0)
	f.Add("POST", "/\xff\u2028", "X-\xfe", "a\x00b\u2029<>&", []byte("\x00\x01\x02\xff"), "boom\n", math.Float64bits(1e-7), int64(0), int64(0), 19800)
	f.Add("", "", "", "", []byte{}, "\"\\", math.Float64bits(1e21), int64(-62135596800), int64(1), -25200)
	f.Add("M", "u", "k", "v", []byte("🎉 text \x1b"), "e", math.Float64bits(math.NaN()), int64(253402300800), int64(0), 86400)
	f.Fuzz(func(t *testing.T, method, url, hkey, hval string, body []byte, errStr string, durBits uint64, sec, nsec int64, zoneOff int) {
		tm := time.Unix(sec, nsec).In(time.FixedZone("z", zoneOff))
		x := Exchange{
			ID: url, SessionID: hval, Seq: durBits, Time: tm, DurationMs: math.Float64frombits(durBits),
			Request: Request{
				Method: method, URL: url, Proto: "HTTP/1.1",
				Headers: http.Header{hkey: {hval, errStr}, "Accept": {"*/*"}},
				Body:    body,
			},
			Response: &Response{Status: int(durBits % 600), Headers: http.Header{hkey: {hval}}, Trailers: http.Header{hval: {hkey}}, Body: body},
			Stubbed:  durBits&2 != 0,
			Error:    errStr,
		}
		if durBits&4 != 0 {
			x.Response = nil
		}
		if x.Request.Method == "" {
			x.Request.Method = "GET" // required by validate
		}
		if got, want := isText(body), isTextRef(body); got != want {
			t.Fatalf("isText(%q) = %v, want %v", body, got, want)
		}
		checkExchangeEquivalent(t, &x)
		dir := ClientToServer
		if durBits&1 != 0 {
			dir = ServerToClient
		}
		fr := Frame{ID: method, SessionID: errStr, Seq: uint64(sec), Time: tm, Direction: dir, Data: body}
		checkFrameEquivalent(t, &fr)

		if !canAppendExchange(&x) || !canAppendFrame(&fr) {
			return
		}
		// What was appended reads back.
		var tape bytes.Buffer
		tape.WriteString(`{"proxyctlTape":1,"createdAt":"2026-11-23T15:04:05Z","kind":"mixed"}` + "\n")
		tape.Write(appendExchange(nil, &x))
		tape.WriteByte('\n')
		tape.Write(appendFrame(nil, &fr))
		tape.WriteByte('\n')
		r, err := NewReader(&tape)
		if err != nil {
			t.Fatal(err)
		}
		es, err := r.ReadAll()
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		if len(es) != 2 {
			t.Fatalf("read back %d entries, want 2", len(es))
		}
		gx, ok := es[0].(*Exchange)
		if !ok {
			t.Fatalf("entry 1 is %T", es[0])
		}
		// RFC 3339 drops the seconds of a zone offset, so only whole minutes
		// round-trip.
		timeOK := func(got time.Time) bool { return zoneOff%60 != 0 || got.Equal(tm) }
		if !bytes.Equal(gx.Request.Body, body) || gx.Seq != x.Seq || !timeOK(gx.Time) || gx.Stubbed != x.Stubbed {
			t.Fatalf("exchange read back differs: %+v", gx)
		}
		if gx.DurationMs != x.DurationMs && !(gx.DurationMs == 0 && x.DurationMs == 0) {
			t.Fatalf("durationMs read back as %v, want %v", gx.DurationMs, x.DurationMs)
		}
		if x.Response != nil && (gx.Response == nil || !bytes.Equal(gx.Response.Body, body)) {
			t.Fatalf("response read back differs: %+v", gx.Response)
		}
		gf, ok := es[1].(*Frame)
		if !ok {
			t.Fatalf("entry 2 is %T", es[1])
		}
		if !bytes.Equal(gf.Data, body) || gf.Direction != dir || !timeOK(gf.Time) {
			t.Fatalf("frame read back differs: %+v", gf)
		}
	})
}

// benchExchange is a 1 KB text GET with 2 request and 7 response headers.
func benchExchange() Exchange {
	body := []byte(strings.Repeat(`{"id":12345,"name":"widget","tags":["a","b"]},`, 23)[:1024])
	return Exchange{
		ID: "01JD7Z3K9Q", SessionID: "s-1", Seq: 42, Time: t0, DurationMs: 12.84,
		Request: Request{
			Method: "GET", URL: "/v1/items?limit=10", Proto: "HTTP/1.1",
			Headers: http.Header{"Accept": {"application/json"}, "User-Agent": {"bench/1.0"}},
		},
		Response: &Response{
			Status: 200,
			Headers: http.Header{
				"Content-Type":   {"application/json"},
				"Content-Length": {"1024"},
				"Date":           {"Mon, 23 Nov 2026 15:04:05 GMT"},
				"Cache-Control":  {"no-cache"},
				"Vary":           {"Accept-Encoding"},
				"X-Request-Id":   {"abc123"},
				"Server":         {"nginx"},
			},
			Body: body,
		},
	}
}

func BenchmarkWriteExchange(b *testing.B) {
	w, err := NewWriter(io.Discard, Header{CreatedAt: t0})
	if err != nil {
		b.Fatal(err)
	}
	x := benchExchange()
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteExchange(x); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeExchange compares the encoder with the encoding/json path
// it replaced.
func BenchmarkEncodeExchange(b *testing.B) {
	x := benchExchange()
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = appendExchange(buf[:0], &x)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for b.Loop() {
			line, err := jsonExchangeLine(&x)
			if err != nil {
				b.Fatal(err)
			}
			n = len(line)
		}
		b.SetBytes(int64(n))
	})
}
