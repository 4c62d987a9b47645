package jsonrpc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/bits"
	"strings"
	"testing"
)

func TestPeek(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want Envelope
	}{
		{"request", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`,
			Envelope{JSONRPC: "2.0", ID: json.RawMessage("1"), Method: "tools/list", HasMethod: true, Params: json.RawMessage("{}")}},
		{"string id, spaces", ` { "method" : "a\/b" , "id" : "x\"y" } `,
			Envelope{ID: json.RawMessage(`"x\"y"`), Method: "a/b", HasMethod: true}},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			Envelope{JSONRPC: "2.0", Method: "notifications/initialized", HasMethod: true}},
		{"result", `{"jsonrpc":"2.0","id":null,"result":{"content":[1,2.5e3,true,false,null]}}`,
			Envelope{JSONRPC: "2.0", ID: json.RawMessage("null"), HasResult: true}},
		{"error", `{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"Method not found"}}`,
			Envelope{JSONRPC: "2.0", ID: json.RawMessage("7"), HasError: true}},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"a"}]`, Envelope{IsBatch: true}},
		{"escaped key", `{"\u006dethod":"m"}`, Envelope{Method: "m", HasMethod: true}},
		{"unicode", `{"method":"é世🎉"}`, Envelope{Method: "é世🎉", HasMethod: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Peek([]byte(tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(tt.want)
			if !bytes.Equal(gb, wb) {
				t.Fatalf("got %s, want %s", gb, wb)
			}
		})
	}
}

func TestPeekInvalid(t *testing.T) {
	for _, msg := range []string{"", "   ", "hello", `{"a":}`, `{"a":1,}`, `{"a":1}x`, `{"a":"\x01"}`,
		`{"a":01}`, `{"a":tru}`, `{"a":"\q"}`, `{"a":"\u12"}`, `[1,2`, `{"a" 1}`, strings.Repeat("[", 20000)} {
		if _, err := Peek([]byte(msg)); err == nil {
			t.Errorf("Peek(%.40q): no error", msg)
		}
	}
	if _, err := Peek([]byte(`"str"`)); !errors.Is(err, ErrNotMessage) {
		t.Errorf("Peek(string): got %v, want ErrNotMessage", err)
	}
}

func TestIDFromPrefixAndSuffix(t *testing.T) {
	prefix := []struct{ head, want string }{
		{`{"jsonrpc":"2.0","id":12,"method":"x","params":{"a":"bbbb`, "12"},
		{`{"jsonrpc":"2.0","id":12`, ""}, // could be 123...
		{`{"id":"a\"b", "x`, `"a\"b"`},
		{`{"params":{"id":1},"id":2,`, "2"},
		{`{"params":{"id":1,"x":"aaaa`, ""},
		{`[{"id":1}`, ""},
	}
	for _, tt := range prefix {
		if got := string(IDFromPrefix([]byte(tt.head))); got != tt.want {
			t.Errorf("IDFromPrefix(%q) = %q, want %q", tt.head, got, tt.want)
		}
	}
	suffix := []struct{ tail, want string }{
		{`aaa"},"jsonrpc":"2.0","id":3}`, "3"},
		{`aaa"}, "id" : "r-1" }` + "\r\n", `"r-1"`},
		{`aaa","id":3}}`, ""},
		{`aaa"},"xid":3}`, ""},
		{`aaa"},"id":"a\"b"}`, ""},
		{`aaa"},"id":-1.5e3}`, "-1.5e3"},
	}
	for _, tt := range suffix {
		if got := string(IDFromSuffix([]byte(tt.tail))); got != tt.want {
			t.Errorf("IDFromSuffix(%q) = %q, want %q", tt.tail, got, tt.want)
		}
	}
}

func TestResponses(t *testing.T) {
	got := string(ErrorResponse(json.RawMessage(`"a"`), -32029, "rate limit exceeded", map[string]any{"retryAfterMs": 250, "tier": "endpoint"}))
	want := `{"jsonrpc":"2.0","id":"a","error":{"code":-32029,"message":"rate limit exceeded","data":{"retryAfterMs":250,"tier":"endpoint"}}}`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if got := string(ErrorResponse(nil, -32600, "message too large", nil)); got != `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"message too large"}}` {
		t.Fatalf("got %s", got)
	}
	res, err := ResultResponse(json.RawMessage("1"), json.RawMessage("{\n \"tools\": []\n}"))
	if err != nil || string(res) != `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}` {
		t.Fatalf("got %s, %v", res, err)
	}
}

func FuzzPeek(f *testing.F) {
	for _, s := range []string{`{"jsonrpc":"2.0","id":1,"method":"m","params":{}}`, `[1]`, `{"id":"x","result":null}`,
		`{"a":"\ud83c\udf89"}`, `1`, `{"a":-0.5E+2}`, `{`, `{"method":"\u00e9"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		env, err := Peek(msg)
		valid := json.Valid(msg)
		if err == nil && !valid {
			t.Fatalf("Peek accepted invalid JSON %q", msg)
		}
		if err != nil {
			if valid && !errors.Is(err, ErrNotMessage) {
				// Only nesting deeper than encoding/json's limit may differ.
				var se *SyntaxError
				if !errors.As(err, &se) || se.Msg != "nested too deeply" {
					t.Fatalf("Peek rejected valid JSON %q: %v", msg, err)
				}
			}
			return
		}
		_ = PeekPrefix(msg[:len(msg)/2])
		_ = IDFromSuffix(msg)
		if env.IsBatch {
			return
		}
		var ref map[string]json.RawMessage // case-sensitive, last duplicate wins
		if json.Unmarshal(msg, &ref) != nil {
			return
		}
		if m, ok := ref["method"]; ok {
			var s string
			if json.Unmarshal(m, &s) == nil && (!env.HasMethod || env.Method != s) {
				t.Fatalf("method: got %q %v, want %q", env.Method, env.HasMethod, s)
			}
		}
		if id, ok := ref["id"]; ok && !bytes.Equal(env.ID, id) {
			t.Fatalf("id: got %s, want %s", env.ID, id)
		}
		if id := IDFromPrefix(msg); id != nil && !json.Valid(id) {
			t.Fatalf("IDFromPrefix returned invalid JSON %q", id)
		}
	})
}

// TestSpecial checks that the lowest byte special flags is the first byte
// that ends the string scan, for every pair of bytes at every pair of
// positions in a word (a borrow only ever runs upwards).
func TestSpecial(t *testing.T) {
	isSpecial := func(c byte) bool { return c < 0x20 || c == '"' || c == '\\' }
	for p1 := range 8 {
		for p2 := p1 + 1; p2 < 9; p2++ { // p2 == 8: one byte only
			for c1 := range 256 {
				for c2 := range 256 {
					if p2 == 8 && c2 > 0 {
						break
					}
					w := []byte("aaaaaaaa")
					w[p1] = byte(c1)
					if p2 < 8 {
						w[p2] = byte(c2)
					}
					want := 8
					for i, c := range w {
						if isSpecial(c) {
							want = i
							break
						}
					}
					got := 8
					if m := special(binary.LittleEndian.Uint64(w)); m != 0 {
						got = bits.TrailingZeros64(m) / 8
					}
					if got != want {
						t.Fatalf("word %q: first special byte at %d, want %d", w, got, want)
					}
				}
			}
		}
	}
}

func BenchmarkPeek(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"` + strings.Repeat("lorem ipsum é ", 75000) + `"}]}}`)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Peek(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPeekLongStrings puts a special byte at offsets around the boundaries
// of the string scan (words, the short prefix, search windows) in long
// strings, and compares with encoding/json.
func TestPeekLongStrings(t *testing.T) {
	var sc scanner
	for _, n := range []int{0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 15, 16, 17, 31, 32, 33, 40, 64, 100, 4096, 16<<10 - 1, 16 << 10, 16<<10 + 1, 40 << 10} {
		for _, at := range []int{0, 1, 2, 5, 6, 7, 8, 9, 15, 16, 31, 32, 33, 39, 40, 63, 64, 65, n / 2, n - 16<<10,
			16<<10 - 1, 16 << 10, 16<<10 + 1, 16<<10 + 63, 16<<10 + 64, 16<<10 + 65, n - 2, n - 1, n} {
			if at < 0 || at > n {
				continue
			}
			for _, special := range []string{"\x01", "\x1f", `"`, `\`, `\n`, `\u00e9`, `\"`, "\t"} {
				body := []byte(strings.Repeat("a", n))
				s := string(body[:at]) + special + string(body[at:])
				// As a member name and as a value, at the end of the message
				// and followed by more; last, the special byte where the
				// closing quote would be.
				for _, msg := range []string{`{"s":"` + s + `"}`, `["` + s + `"]`, `{"` + s + `":1}`, `{"a":["` + s + `",1,"b"],"c":2}`,
					`["` + string(body[:at]) + special + `,1]`} {
					_, err := Peek([]byte(msg))
					if got, want := err == nil, json.Valid([]byte(msg)); got != want {
						t.Fatalf("n=%d at=%d special %q in %.40q: Peek valid %v, json.Valid %v (%v)", n, at, special, msg, got, want, err)
					}
					if msg[0] == '{' && msg[1] == '"' && msg[2] == 's' {
						checkScan(t, &sc, []byte(msg), len(msg)/2) // the scanner scans strings as Peek does
					}
				}
			}
		}
	}
}

// BenchmarkPeekEscapes is a long string with an escape every 40 bytes (text
// with newlines): the string scan must stay linear.
func BenchmarkPeekEscapes(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":1,"result":{"text":"` + strings.Repeat(`lorem ipsum dolor sit amet consectetur\n`, 25000) + `"}}`)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Peek(msg); err != nil {
			b.Fatal(err)
		}
	}
}
