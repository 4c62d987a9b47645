package capture

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func TestBodyJSONRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		body    Body
		wantKey string // "text" or "base64"
	}{
		{"text", Body{Data: []byte(`{"a":"é <b>"}`)}, "text"},
		{"binary", Body{Data: []byte{0x00, 0xff, 0xfe, 'a'}}, "base64"},
		{"empty", Body{}, "text"},
		{"truncated", Body{Data: []byte("ab"), Size: 10, SHA256: sha256.Sum256([]byte("abcdefghij")), Truncated: true}, "text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := json.Marshal(tt.body)
			if err != nil {
				t.Fatal(err)
			}
			var raw map[string]any
			if err := json.Unmarshal(enc, &raw); err != nil {
				t.Fatal(err)
			}
			if _, ok := raw[tt.wantKey]; !ok {
				t.Errorf("encoding %s has no %q", enc, tt.wantKey)
			}
			want := tt.body
			want.complete()
			if want.Size > 0 {
				if got, _ := raw["sha256"].(string); len(got) != 64 {
					t.Errorf("encoding %s: sha256 %q, want 64 hex digits", enc, got)
				}
			}
			var got Body
			if err := json.Unmarshal(enc, &got); err != nil {
				t.Fatalf("unmarshal %s: %v", enc, err)
			}
			if !bytes.Equal(got.Data, want.Data) || got.Size != want.Size || got.SHA256 != want.SHA256 || got.Truncated != want.Truncated {
				t.Errorf("round trip: got %+v, want %+v", got, want)
			}
		})
	}
}

func TestBodyUnmarshalErrors(t *testing.T) {
	for _, in := range []string{
		`{"text":"a","base64":"YQ=="}`,
		`{"base64":"%%%"}`,
		`{"text":"a","sha256":"zz"}`,
		`[]`,
	} {
		var b Body
		if err := json.Unmarshal([]byte(in), &b); err == nil {
			t.Errorf("Unmarshal(%s): got nil error", in)
		}
	}
}

func TestTruncate(t *testing.T) {
	full := []byte(strings.Repeat("é", 10)) // 20 bytes
	bin := bytes.Repeat([]byte{0xff}, 100)
	it := &Item{RequestBody: Body{Data: full}, ResponseBody: Body{Data: bin}}
	c := it.Truncate(5)
	if got := c.RequestBody; string(got.Data) != "éé" || !got.Truncated || got.Size != 20 || got.SHA256 != sha256.Sum256(full) {
		t.Errorf("text body %+v (%q), want %q (rune boundary), truncated, size 20, sha of the original", got, got.Data, "éé")
	}
	if got := c.ResponseBody; len(got.Data) != 5 || !got.Truncated || got.Size != 100 || got.SHA256 != sha256.Sum256(bin) {
		t.Errorf("binary body %+v, want 5 bytes, truncated, size 100", got)
	}
	if it.RequestBody.Truncated || len(it.RequestBody.Data) != 20 {
		t.Error("Truncate modified the original")
	}
	if got := it.Truncate(0).RequestBody; got.Truncated || len(got.Data) != 20 {
		t.Errorf("Truncate(0) (the default, 350 KB): got %+v", got)
	}
	// The copy's Data must not be able to grow into the original's array.
	if cap(c.ResponseBody.Data) != 5 {
		t.Errorf("truncated Data cap %d, want 5", cap(c.ResponseBody.Data))
	}
}

func TestFitTo(t *testing.T) {
	big := func(b byte) []byte { return bytes.Repeat([]byte{b}, 350_000) }
	bigHeaders := map[string][]string{}
	for i := range 50 {
		bigHeaders["X-H"+strings.Repeat("h", i)] = []string{strings.Repeat("v", 1500)}
	}
	hugeHeaders := map[string][]string{}
	for i := range 50 {
		hugeHeaders["X-H"+strings.Repeat("h", i)] = []string{strings.Repeat("v", 4000)}
	}
	binary := big(0xff)
	tests := []struct {
		name   string
		item   *Item
		budget int
	}{
		{"two 350KB text bodies and big headers", &Item{
			SessionID: "s", ID: "i", Method: "POST", Path: "/upload",
			RequestHeaders: bigHeaders, ResponseHeaders: bigHeaders,
			RequestBody: Body{Data: big('a')}, ResponseBody: Body{Data: big('b')},
		}, 0},
		{"headers larger than the budget with two 350KB bodies", &Item{
			RequestHeaders: hugeHeaders, ResponseHeaders: hugeHeaders,
			RequestBody: Body{Data: big('a')}, ResponseBody: Body{Data: big('b')},
		}, 0},
		{"two 350KB binary bodies", &Item{
			RequestBody: Body{Data: binary}, ResponseBody: Body{Data: binary[:300_000]},
		}, 0},
		{"escape-heavy text", &Item{
			RequestBody: Body{Data: []byte(strings.Repeat("<\n", 200_000))}, ResponseBody: Body{Data: []byte(strings.Repeat("x", 100) + strings.Repeat("&", 300_000))},
		}, 0},
		{"headers alone too large", &Item{
			RequestHeaders: map[string][]string{"A": {strings.Repeat("<", 100_000)}},
			RequestBody:    Body{Data: []byte("x")},
		}, 10_000},
		{"tiny budget", &Item{Path: strings.Repeat("/p", 1000), RequestBody: Body{Data: big('a')}}, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			budget := tt.budget
			if budget == 0 {
				budget = DefaultItemBudget
			}
			got := tt.item.FitTo(tt.budget)
			if size := got.EncodedSize(); size > budget {
				t.Fatalf("encoded size %d, want <= %d", size, budget)
			}
			for _, pair := range []struct{ got, orig Body }{{got.RequestBody, tt.item.RequestBody}, {got.ResponseBody, tt.item.ResponseBody}} {
				if len(pair.orig.Data) == 0 {
					continue
				}
				if pair.got.Size != int64(len(pair.orig.Data)) || pair.got.SHA256 != sha256.Sum256(pair.orig.Data) {
					t.Errorf("body size %d / sha lost: want the original's", pair.got.Size)
				}
				if len(pair.got.Data) < len(pair.orig.Data) && !pair.got.Truncated {
					t.Error("cut body not marked truncated")
				}
				if !bytes.HasPrefix(pair.orig.Data, pair.got.Data) {
					t.Error("fitted body is not a prefix of the original")
				}
			}
			// It uses the budget: within 1% when bodies alone were cut.
			if len(got.RequestBody.Data)+len(got.ResponseBody.Data) > 0 && got.EncodedSize() < budget*99/100 {
				t.Errorf("encoded size %d, want close to %d", got.EncodedSize(), budget)
			}
			// A JSON round trip keeps it within budget.
			enc, _ := json.Marshal(got)
			var back Item
			if err := json.Unmarshal(enc, &back); err != nil {
				t.Fatal(err)
			}
			if back.EncodedSize() != len(enc) {
				t.Errorf("re-encoded size %d, want %d", back.EncodedSize(), len(enc))
			}
		})
	}
	small := &Item{RequestBody: Body{Data: []byte("hi")}}
	if got := small.FitTo(0); got != small {
		t.Errorf("small item: got %+v, want the item itself (items are immutable)", got)
	}
}

func TestFitToTwoMaxBodiesAfterTruncate(t *testing.T) {
	// The store's path: Truncate to 350 KB, then fit to 390,000 bytes.
	it := &Item{
		RequestHeaders: map[string][]string{"Cookie": {strings.Repeat("c", 20_000)}},
		RequestBody:    Body{Data: bytes.Repeat([]byte("q"), 1_000_000)},
		ResponseBody:   Body{Data: bytes.Repeat([]byte("r"), 1_000_000)},
	}
	got := it.Truncate(0).FitTo(0)
	if size := got.EncodedSize(); size > DefaultItemBudget {
		t.Fatalf("encoded size %d, want <= %d", size, DefaultItemBudget)
	}
	if got.RequestBody.Size != 1_000_000 || !got.RequestBody.Truncated || !utf8.Valid(got.RequestBody.Data) {
		t.Errorf("request body %d bytes, size %d, truncated %v", len(got.RequestBody.Data), got.RequestBody.Size, got.RequestBody.Truncated)
	}
}

func TestStamperSameMicrosecond(t *testing.T) {
	var s Stamper
	now := time.UnixMicro(1_700_000_000_000_000)
	const goroutines, each = 100, 50
	results := make([][]int64, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				results[g] = append(results[g], s.Stamp("s1", now))
			}
		})
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, r := range results {
		for i, ts := range r {
			if seen[ts] {
				t.Fatalf("duplicate stamp %d", ts)
			}
			seen[ts] = true
			if i > 0 && ts <= r[i-1] {
				t.Fatalf("stamps not increasing: %d after %d", ts, r[i-1])
			}
			if ts < now.UnixMicro() || ts >= now.UnixMicro()+goroutines*each {
				t.Fatalf("stamp %d outside [now, now+%d)", ts, goroutines*each)
			}
		}
	}
	// Another session is independent.
	if got := s.Stamp("s2", now); got != now.UnixMicro() {
		t.Errorf("other session: got %d, want %d", got, now.UnixMicro())
	}
}

func TestStamperBoundedMemory(t *testing.T) {
	s := Stamper{MaxSessions: 1000, Idle: time.Minute}
	now := time.UnixMicro(1_700_000_000_000_000)
	first := s.Stamp("s-0", now)
	for i := range 100_000 {
		s.Stamp("s-"+string(rune('a'+i%26))+itoa(i), now)
		if s.Len() > 1000 {
			t.Fatalf("after %d sessions: %d remembered, want <= 1000", i+1, s.Len())
		}
	}
	// s-0 was forgotten; stamping it again in the same microsecond still
	// gives a new value.
	if got := s.Stamp("s-0", now); got <= first {
		t.Errorf("forgotten session restamped %d, want > %d", got, first)
	}
	// Idle sessions are forgotten as time passes.
	later := now.Add(10 * time.Minute)
	s.Stamp("fresh", later)
	if got := s.Len(); got != 1 {
		t.Errorf("after idle sweep: %d remembered, want 1", got)
	}
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

func FuzzBodyJSON(f *testing.F) {
	f.Add([]byte("hello"), false)
	f.Add([]byte{0xff, 0x00}, true)
	f.Add([]byte(`{"text":"<&>"}`), false)
	f.Fuzz(func(t *testing.T, data []byte, truncated bool) {
		in := NewBody(data)
		if truncated {
			in = in.cut(len(data) / 2)
		}
		enc, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var out Body
		if err := json.Unmarshal(enc, &out); err != nil {
			t.Fatalf("unmarshal %s: %v", enc, err)
		}
		if !bytes.Equal(out.Data, in.Data) || out.Size != in.Size || out.SHA256 != in.SHA256 || out.Truncated != in.Truncated {
			t.Fatalf("round trip of %q: got %+v, want %+v", data, out, in)
		}
		// Arbitrary input never panics.
		var junk Body
		_ = json.Unmarshal(data, &junk)
	})
}

func TestEncodedBoundIsAnUpperBound(t *testing.T) {
	nasty := string([]byte{0x01, 0x02, '"', '\\', 0xff, 0xfe}) + "\u2028<>&"
	for _, it := range []*Item{
		{},
		{SessionID: nasty, Path: nasty, Error: nasty, Method: nasty, ID: nasty,
			RequestHeaders:  map[string][]string{nasty: {nasty, nasty}, "A": {""}},
			ResponseHeaders: map[string][]string{"B": {nasty}},
			RequestBody:     NewBody([]byte(strings.Repeat(nasty, 50))),
			ResponseBody:    Body{Data: []byte(strings.Repeat("\x00", 1000)), Truncated: true, Size: 5000}},
	} {
		if b, e := it.encodedBound(), it.EncodedSize(); b < e {
			t.Fatalf("bound %d < encoded size %d", b, e)
		}
	}
}
