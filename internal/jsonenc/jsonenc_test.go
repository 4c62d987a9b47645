package jsonenc

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// reference is encoding/json's encoding of s, with or without HTML escaping.
func reference(t testing.TB, s string, html bool) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(html)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func checkString(t testing.TB, s string) {
	t.Helper()
	for _, html := range []bool{false, true} {
		want := reference(t, s, html)
		enc := AppendString[string]
		encB := AppendString[[]byte]
		if html {
			enc, encB = AppendStringHTML[string], AppendStringHTML[[]byte]
		}
		if got := enc([]byte("x"), s); !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Fatalf("html=%v: AppendString(%q) = %s, want %s", html, s, got[1:], want)
		}
		if got := encB(nil, []byte(s)); !bytes.Equal(got, want) {
			t.Fatalf("html=%v: AppendString([]byte %q) = %s, want %s", html, s, got, want)
		}
	}
}

// TestAppendStringPositions puts each kind of byte the encoder treats
// apart at every offset of a word, and next to word and chunk ends.
func TestAppendStringPositions(t *testing.T) {
	specials := []string{`"`, `\`, "\x00", "\x1f", "\n", "\t", "\x7f", " ", "<", "&", "é", "\u2028", "🎉", "\xff", "\xed\xa0\x80", "\xe2\x80"}
	for _, sp := range specials {
		for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, EscChunk - 9, EscChunk - 1, EscChunk, EscChunk + 1} {
			for i := 0; i <= n && i <= 20; i++ {
				s := strings.Repeat("a", i) + sp + strings.Repeat("b", n-i)
				checkString(t, s)
				checkString(t, strings.Repeat("q", n-i)+sp+strings.Repeat(sp, i%3)+"z")
			}
		}
	}
	checkString(t, strings.Repeat(`{"id":12345,"name":"widget"},`, 100))
	checkString(t, strings.Repeat("\"\\", EscChunk))
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain ascii text of some length", `{"a":"b\"c"}`, "\x00\x01<>&\u2028é\xff", strings.Repeat("x", 40) + `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkString(t, s) })
}

// BenchmarkAppendString: a 1 KB body of each kind.
func BenchmarkAppendString(b *testing.B) {
	for _, bc := range []struct{ name, s string }{
		{"text", strings.Repeat("The quick brown fox jumps over the lazy dog; ", 24)[:1024]},
		{"base64", strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU2Nzg5K/8=", 21)[:1024]},
		{"json", strings.Repeat(`{"id":12345,"name":"widget","tags":["a","b"]},`, 23)[:1024]},
		{"json-prose", strings.Repeat(`{"title":"A longer value, as in real APIs","body":"Lorem ipsum dolor sit amet"},`, 13)[:1024]},
	} {
		b.Run(bc.name, func(b *testing.B) {
			src := []byte(bc.s)
			var dst []byte
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				dst = AppendString(dst[:0], src)
			}
		})
	}
}
