package capture

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"maps"
	"math"
	"reflect"
	"strings"
	"testing"
)

// TestBinaryKnowsFields fails when Item or Body gains or loses a field:
// AppendBinary and UnmarshalBinary (binary.go) must then be updated.
func TestBinaryKnowsFields(t *testing.T) {
	if n := reflect.TypeFor[Item]().NumField(); n != 15 {
		t.Errorf("Item has %d fields, AppendBinary was written for 15: update it", n)
	}
	if n := reflect.TypeFor[Body]().NumField(); n != 4 {
		t.Errorf("Body has %d fields, Body.appendBinary was written for 4: update it", n)
	}
}

// normalized returns it as a binary round trip gives it back: empty maps,
// value lists and bodies nil.
func normalized(it *Item) Item {
	c := *it
	norm := func(h map[string][]string) map[string][]string {
		if len(h) == 0 {
			return nil
		}
		out := maps.Clone(h)
		for k, vs := range out {
			if len(vs) == 0 {
				out[k] = nil
			}
		}
		return out
	}
	c.RequestHeaders, c.ResponseHeaders = norm(c.RequestHeaders), norm(c.ResponseHeaders)
	for _, b := range []*Body{&c.RequestBody, &c.ResponseBody} {
		if len(b.Data) == 0 {
			b.Data = nil
		}
	}
	return c
}

// checkBinary fails t unless it survives AppendBinary and UnmarshalBinary,
// whatever dst holds already, that BinaryKey reads its key, that
// BinarySize bounds the encoding, and that every cut of the encoding is
// refused.
func checkBinary(t *testing.T, it *Item) {
	t.Helper()
	before := normalized(it)
	enc, err := it.AppendBinary([]byte("prefix"))
	if err != nil {
		t.Fatal(err)
	}
	enc = enc[len("prefix"):]
	if len(enc) > it.BinarySize() {
		t.Errorf("encoding of %d bytes, BinarySize %d", len(enc), it.BinarySize())
	}
	var got Item
	if err := got.UnmarshalBinary(enc); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	want := normalized(it)
	if math.IsNaN(it.DurationMs) { // NaN != NaN: compare the bits
		if math.Float64bits(got.DurationMs) != math.Float64bits(it.DurationMs) {
			t.Errorf("DurationMs %v, want %v", got.DurationMs, it.DurationMs)
		}
		got.DurationMs, want.DurationMs = 0, 0
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	after := normalized(it)
	if math.IsNaN(before.DurationMs) && math.IsNaN(after.DurationMs) {
		before.DurationMs, after.DurationMs = 0, 0
	}
	if !reflect.DeepEqual(after, before) {
		t.Fatal("AppendBinary modified the item")
	}
	sid, ts, id, err := BinaryKey(enc)
	if err != nil || string(sid) != it.SessionID || ts != it.Timestamp || string(id) != it.ID {
		t.Errorf("BinaryKey = %q %d %q %v", sid, ts, id, err)
	}
	for n := range len(enc) {
		var cut Item
		if err := cut.UnmarshalBinary(enc[:n]); err == nil {
			t.Fatalf("UnmarshalBinary of the first %d of %d bytes succeeded", n, len(enc))
		} else if !errors.Is(err, errBinary) {
			t.Fatalf("error %v does not wrap errBinary", err)
		}
	}
	if err := new(Item).UnmarshalBinary(append(bytes.Clone(enc), 0)); err == nil {
		t.Error("a trailing byte was accepted")
	}
}

func TestBinaryRoundTrip(t *testing.T) {
	base := benchItem()
	checkBinary(t, &Item{})
	checkBinary(t, base)
	for _, f := range []func(*Item){
		func(it *Item) { it.Timestamp, it.Status = -1, -500 },
		func(it *Item) { it.Timestamp, it.Status = math.MinInt64, math.MaxInt32 },
		func(it *Item) {
			it.Kind, it.Direction, it.Error, it.Stubbed = KindStdio, DirServerToClient, "boom\n", true
		},
		func(it *Item) {
			it.SessionID, it.ID, it.Path = "\xff\x00", string(allBytes()), strings.Repeat("p", 300)
		},
		func(it *Item) { it.DurationMs = math.NaN() },
		func(it *Item) { it.DurationMs = math.Inf(-1) },
		func(it *Item) { it.DurationMs = math.Copysign(0, -1) },
		func(it *Item) {
			it.RequestHeaders = map[string][]string{"X-Nil": nil, "X-Empty": {}, "": {""}, "A": {"1", "1"}}
		},
		func(it *Item) { it.ResponseHeaders = map[string][]string{} },
		func(it *Item) { it.RequestBody = NewBody(allBytes()) },
		func(it *Item) { it.ResponseBody = Body{Data: []byte{}} },
		func(it *Item) {
			long := bytes.Repeat([]byte{0, 0xff}, 1000)
			it.ResponseBody = Body{Data: long[:10], Size: int64(len(long)), SHA256: sha256.Sum256(long), Truncated: true}
		},
		func(it *Item) { it.RequestBody = Body{Size: 12, Truncated: true} },
		func(it *Item) { it.RequestBody = Body{Data: []byte("x"), Size: -3} },
	} {
		it := benchItem()
		f(it)
		checkBinary(t, it)
	}
}

// TestBinaryDecodedIsCopy checks that a decoded item shares nothing with
// the bytes it came from.
func TestBinaryDecodedIsCopy(t *testing.T) {
	it := benchItem()
	it.RequestBody = NewBody([]byte("request"))
	enc, _ := it.AppendBinary(nil)
	var got Item
	if err := got.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	clear(enc)
	if string(got.RequestBody.Data) != "request" || string(got.ResponseBody.Data) != string(it.ResponseBody.Data) ||
		got.SessionID != it.SessionID || got.ResponseHeaders["Server"][0] != "bench" {
		t.Errorf("decoded item changed with its input: %+v", got)
	}
}

func TestBinaryRefusesOtherVersion(t *testing.T) {
	enc, _ := benchItem().AppendBinary(nil)
	enc[0] = 2
	if err := new(Item).UnmarshalBinary(enc); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("UnmarshalBinary of version 2: %v", err)
	}
	if _, _, _, err := BinaryKey(enc); err == nil {
		t.Error("BinaryKey of version 2 succeeded")
	}
}

func FuzzItemBinary(f *testing.F) {
	enc, _ := benchItem().AppendBinary(nil)
	f.Add(enc)
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var it Item
		if it.UnmarshalBinary(data) != nil {
			return
		}
		// What decodes encodes back to something that decodes the same.
		again, _ := it.AppendBinary(nil)
		var it2 Item
		if err := it2.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		a, b := normalized(&it), normalized(&it2)
		if math.IsNaN(a.DurationMs) {
			a.DurationMs, b.DurationMs = 0, 0
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("re-encoding changed the item:\n%+v\n%+v", a, b)
		}
	})
}

// BenchmarkItemBinary is BenchmarkItemJSON's item through the binary
// encoding.
func BenchmarkItemBinary(b *testing.B) {
	it := benchItem()
	b.Run("AppendBinary/reuse", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = it.AppendBinary(buf[:0])
		}
	})
	enc, _ := it.AppendBinary(nil)
	b.Run("UnmarshalBinary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got Item
			if err := got.UnmarshalBinary(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
