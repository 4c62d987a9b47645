package capture

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/proxyctl/proxyctl/internal/jsonenc"
)

// TestAppendJSONKnowsFields fails when Item or Body gains or loses a field:
// AppendJSON (encode.go) must then be updated to match.
func TestAppendJSONKnowsFields(t *testing.T) {
	if n := reflect.TypeFor[Item]().NumField(); n != 15 {
		t.Errorf("Item has %d fields, AppendJSON was written for 15: update it", n)
	}
	if n := reflect.TypeFor[Body]().NumField(); n != 4 {
		t.Errorf("Body has %d fields, Body.appendJSON was written for 4: update it", n)
	}
}

// checkAppendJSON fails t unless it.AppendJSON writes json.Marshal's bytes,
// whatever dst holds already, and leaves it unmodified.
func checkAppendJSON(t *testing.T, it *Item) {
	t.Helper()
	want, err := json.Marshal(it)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	before := *it
	got := it.AppendJSON(nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendJSON:\n got %s\nwant %s", got, want)
	}
	prefix := []byte("prefix")
	if got := it.AppendJSON(prefix); !bytes.Equal(got, append(prefix, want...)) {
		t.Fatalf("AppendJSON(prefix) = %s", got)
	}
	if !reflect.DeepEqual(*it, before) {
		t.Fatalf("AppendJSON modified the item:\n got %+v\nwant %+v", *it, before)
	}
	if err := it.CheckJSON(); err != nil {
		t.Fatalf("CheckJSON: %v", err)
	}
}

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestAppendJSONSameBytes(t *testing.T) {
	long := bytes.Repeat([]byte{0x00, 0x9f, 0x92, 0x96}, 100)
	strs := []string{
		"", "plain", `"quoted" \back\`, "\n\r\t\b\f", "\x00\x01\x1f\x7f", "<>&", "a->b <c> & d",
		"line\u2028sep\u2029par", "emoji 🎉 café 中文", "bad \xff\xfe utf8 \xc3", "\xed\xa0\x80 surrogate",
		string(allBytes()),
		strings.Repeat("a", jsonenc.EscChunk-1) + "<é" + strings.Repeat("&", jsonenc.EscChunk),
	}
	bodies := []Body{
		{},
		{Data: []byte{}},
		NewBody([]byte(`{"a":"<b>&ü"}`)),
		NewBody([]byte{0xff, 0xfe, 0x00, 'a'}),
		{Data: []byte("size and hash left to the encoder")},
		{Data: []byte{0x00, 0xff}},
		{Data: long[:10], Size: int64(len(long)), SHA256: sha256.Sum256(long), Truncated: true},
		{Data: []byte("ab<"), Size: 10, SHA256: sha256.Sum256([]byte("ab<defghij")), Truncated: true},
		{Size: 12, SHA256: sha256.Sum256([]byte("hello world!")), Truncated: true},
		{Data: []byte("preset"), Size: 99, SHA256: sha256.Sum256([]byte("other"))},
		{Data: []byte("negative"), Size: -3},
		{Data: allBytes()},
		{Data: []byte(strings.Repeat("\u2028<\"\\", 2000))},
	}
	headers := []map[string][]string{
		nil,
		{},
		{"Accept": {"a/b", "c/d", "a/b"}},
		{"X-Nil": nil, "X-Empty": {}, "X-One": {""}},
		{"b": {"1"}, "B": {"2"}, "a": {"3"}, "": {"empty key"}, "ü": {"4"}, "Z": {"5"}},
		{"Bad\xffKey": {"bad \xfe value"}, "Sep\u2028": {"\u2029"}, "Q\"<>&": {"\\", "<script>&"}},
	}
	many := map[string][]string{}
	for i := range 40 {
		many[strings.Repeat("k", i%7)+string(rune('A'+i))] = []string{strings.Repeat("v", i)}
	}
	headers = append(headers, many)
	durations := []float64{0, math.Copysign(0, -1), 1e-7, 12.84, 1e21, 1e20, 999999999999999999999, 1e-6, 0.000001234,
		-1.5, -1e-7, 5e-324, math.MaxFloat64, 1e-300, float64(1<<53 + 1), 1e100, 123456789.125}

	base := func() *Item {
		return &Item{
			SessionID: "s", Timestamp: 1795446245123456, ID: "0123456789abcdef", Kind: KindHTTP, Method: "GET",
			Path: "/p?q=<1>&r", Status: 200, Stubbed: true, DurationMs: 1.5,
			RequestHeaders:  map[string][]string{"A": {"1", "2"}},
			ResponseHeaders: map[string][]string{"Content-Type": {"text/html"}},
			RequestBody:     NewBody([]byte("req")),
			ResponseBody:    NewBody([]byte("<b>ok</b>")),
		}
	}
	checkAppendJSON(t, &Item{})
	checkAppendJSON(t, base())
	stdio := base()
	stdio.Kind, stdio.Direction, stdio.Status, stdio.Path, stdio.Stubbed, stdio.Error = KindStdio, DirServerToClient, 0, "", false, "boom\n<x>"
	stdio.RequestHeaders, stdio.ResponseHeaders = nil, map[string][]string{}
	checkAppendJSON(t, stdio)
	neg := base()
	neg.Timestamp, neg.Status = -1, -500
	checkAppendJSON(t, neg)
	for _, s := range strs {
		for _, f := range []func(*Item){
			func(it *Item) { it.SessionID = s },
			func(it *Item) { it.ID = s },
			func(it *Item) { it.Kind = s },
			func(it *Item) { it.Method = s },
			func(it *Item) { it.Path = s },
			func(it *Item) { it.Direction = s },
			func(it *Item) { it.Error = s },
			func(it *Item) { it.RequestHeaders = map[string][]string{s: {s, s}} },
			func(it *Item) { it.ResponseBody = Body{Data: []byte(s)} },
		} {
			it := base()
			f(it)
			checkAppendJSON(t, it)
		}
	}
	for _, b := range bodies {
		it := base()
		it.RequestBody = b
		checkAppendJSON(t, it)
		it.ResponseBody = b
		checkAppendJSON(t, it)
	}
	for _, h := range headers {
		it := base()
		it.RequestHeaders, it.ResponseHeaders = h, h
		checkAppendJSON(t, it)
	}
	for _, d := range durations {
		it := base()
		it.DurationMs = d
		checkAppendJSON(t, it)
	}
}

// TestAppendJSONNonFinite checks that CheckJSON refuses what json.Marshal
// refuses.
func TestAppendJSONNonFinite(t *testing.T) {
	for _, d := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		it := &Item{DurationMs: d}
		if _, err := json.Marshal(it); err == nil {
			t.Fatalf("json.Marshal accepted duration %v", d)
		}
		if it.CheckJSON() == nil {
			t.Errorf("CheckJSON accepted duration %v", d)
		}
		if got := it.AppendJSON(nil); !json.Valid(got) {
			t.Errorf("AppendJSON wrote invalid JSON %s", got)
		}
	}
}

// TestAppendJSONNoRace checks that encoding one item from many goroutines
// (as sinks do) writes nothing to it: run with -race.
func TestAppendJSONNoRace(t *testing.T) {
	it := &Item{SessionID: "s", RequestBody: Body{Data: []byte("complete me")}, ResponseBody: Body{Data: []byte{0xff}}}
	want, _ := json.Marshal(it)
	done := make(chan []byte)
	for range 4 {
		go func() { done <- it.AppendJSON(nil) }()
	}
	for range 4 {
		if got := <-done; !bytes.Equal(got, want) {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	if it.RequestBody.Size != 0 {
		t.Errorf("AppendJSON completed the item's body in place")
	}
}

func TestAppendJSONAllocs(t *testing.T) {
	it := benchItem()
	buf := it.AppendJSON(nil)
	if n := testing.AllocsPerRun(100, func() { buf = it.AppendJSON(buf[:0]) }); n != 0 {
		t.Errorf("AppendJSON into a large enough buffer: %v allocs, want 0", n)
	}
}

func FuzzItemAppendJSON(f *testing.F) {
	f.Add("s", "GET", "/v1/items?x=<1>&y", "Content-Type", "application/json", []byte(`{"a":1}`), []byte("resp"), "", math.Float64bits(12.84), int64(1795446245), 200, false, int64(0))
	f.Add("\xff\u2028", "POST", "/\xff\u2029", "X-\xfe", "a\x00b\u2029<>&", []byte("\x00\x01\x02\xff"), []byte(""), "boom\n", math.Float64bits(1e-7), int64(0), 0, true, int64(77))
	f.Add("", "", "", "", "", []byte(nil), []byte{0xc3}, "", math.Float64bits(1e21), int64(-1), -1, true, int64(-5))
	f.Fuzz(func(t *testing.T, sid, method, path, hk, hv string, req, resp []byte, errStr string, dur uint64, ts int64, status int, truncated bool, size int64) {
		d := math.Float64frombits(dur)
		if math.IsNaN(d) || math.IsInf(d, 0) {
			d = 0
		}
		it := &Item{
			SessionID: sid, Timestamp: ts, ID: hv, Kind: hk, Method: method, Path: path, Status: status,
			Direction: errStr, DurationMs: d, Error: errStr, Stubbed: truncated,
			RequestHeaders:  map[string][]string{hk: {hv, path}, hv: nil, method: {}},
			ResponseHeaders: map[string][]string{sid: {errStr}},
			RequestBody:     Body{Data: req},
			ResponseBody:    Body{Data: resp, Size: size, Truncated: truncated, SHA256: sha256.Sum256(req)},
		}
		checkAppendJSON(t, it)
		it.RequestHeaders, it.ResponseHeaders = nil, map[string][]string{}
		it.RequestBody = NewBody(req)
		checkAppendJSON(t, it)
	})
}

// benchItem is an item with a 1 KB response body, 2 request and 7 response
// headers.
func benchItem() *Item {
	body := []byte(strings.Repeat(`{"id":12345,"name":"widget <x> & co","tags":["a","b"]},`, 19)[:1024])
	return &Item{
		SessionID: "sess-0123456789", Timestamp: 1795446245123456, ID: "0123456789abcdef", Kind: KindHTTP,
		Method: "GET", Path: "/v1/widgets?page=2&limit=20", Status: 200, DurationMs: 12.84,
		RequestHeaders: map[string][]string{
			"Accept":     {"application/json"},
			"User-Agent": {"proxyctl-bench/1.0"},
		},
		ResponseHeaders: map[string][]string{
			"Content-Type":   {"application/json; charset=utf-8"},
			"Content-Length": {"1024"},
			"Date":           {"Mon, 23 Nov 2026 18:31:07 GMT"},
			"Cache-Control":  {"no-cache"},
			"X-Request-Id":   {"f3c1a2b4-5d6e-7f80-9a1b-2c3d4e5f6a7b"},
			"Vary":           {"Accept-Encoding"},
			"Server":         {"bench"},
		},
		RequestBody:  Body{},
		ResponseBody: Body{Data: body},
	}
}

// BenchmarkItemJSON compares AppendJSON (into a fresh slice, as the live
// hub does, and into a reused buffer) with json.Marshal.
func BenchmarkItemJSON(b *testing.B) {
	it := benchItem()
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(it); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON/fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = it.AppendJSON(nil)
		}
	})
	b.Run("AppendJSON/reuse", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = it.AppendJSON(buf[:0])
		}
	})
}
