package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// scanCorpus is JSON, valid and not, that exercises every scanner state.
func scanCorpus() []string {
	c := []string{
		"", " ", "\t\r ", "{}", "[]", " { } ", "[ ]", "{", "}", "[", "]", "{]", "[}", "{}}", "[]]", "{}{}", "{},",
		`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`,
		` { "method" : "a\/b" , "id" : "x\"y" } `,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":null,"result":{"content":[1,2.5e3,true,false,null]}}`,
		`{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"Method not found"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"a"}]`, `[1,[2,[3,{"a":[]}]],{}]`,
		`{"\u006dethod":"m","i\u0064":3}`, `{"method":"é世🎉"}`, `{"id":1,"id":"two","method":1,"method":"m"}`,
		`{"params":{"id":1,"method":"x"},"id":2}`, `{"result":1,"error":2}`, `{"jsonrpc":2}`,
		`"str"`, `1`, `-1`, `0`, `-0`, `1.5`, `-0.5e-3`, `1E+9`, `1e`, `1e+`, `1.`, `.5`, `01`, `-`, `--1`, `1.5.5`,
		`+1`, `0x10`, `1e5e5`, `12 `, ` 12 3`, `true`, `false`, `null`, `tru`, `nul`, `falsey`, `nulll`, `True`,
		`{"a":}`, `{"a":1,}`, `{"a":1}x`, `{"a":"` + "\x01" + `"}`, `{"a":"` + "\x1f" + `"}`, `{"a":"` + "\x7f" + `"}`,
		`{"a":01}`, `{"a":tru}`, `{"a":"\q"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, `{"a":"\uD83C\uDF89"}`,
		`{"a":"\"\\\/\b\f\n\r\t"}`, `{"a":"\`, `{"a":"\u`, `[1,2`, `{"a" 1}`, `{"a":1 "b":2}`, `{,}`, `[,]`, `[1,,2]`,
		`{"a":[1,2,]}`, `{"a":{"b":{"c":[true,false,null,-1.0e-1,"x"]}}}`, `{1:2}`, `{"a"}`, `{"a":1:2}`,
		`{"a":-}`, `{"a":-a}`, `{"a":1.e1}`, `{"a":1.0E}`, `[-0.0e+0]`, `[0e1]`, `[0.1E-10]`, `[1e01]`,
		"{\"a\":\"\xff\xfe\"}", "{\"a\":\"\xc3\"}", `{"a":"é"}`, `[""]`, `{"":""}`,
		"{\"a\":1}\r", "{\"a\":1}\r\r", "\r{}",
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		"{" + strings.Repeat(`"a":[`, 9999) + strings.Repeat("]", 9999) + "}",
		"{" + strings.Repeat(`"a":{`, 10000) + strings.Repeat("}", 10000) + "}",
	}
	long := strings.Repeat("lorem ipsum é ", 3000)
	for _, special := range []string{"", `\n`, `\"`, `\u00e9`, "\x01", `"`, `\`} {
		for _, at := range []int{0, 7, 8, 63, 64, 16<<10 - 1, 16 << 10, 20000} {
			c = append(c, `{"id":1,"result":{"text":"`+long[:at]+special+long[at:]+`"}}`)
		}
	}
	return c
}

// feedSplit feeds a fresh scanner the prefixes data[:c] for each cut, as
// the Reader does, then ends it on the line that data starts with.
func feedSplit(s *scanner, data []byte, cuts ...int) (ok bool, env Envelope, err error) {
	line := firstLine(data)
	for pass := range 2 {
		s.reset()
		for _, c := range cuts {
			s.feed(data[:c])
			if bytes.IndexByte(data[:s.pos], '\n') >= 0 {
				return false, Envelope{}, fmt.Errorf("scanned past a newline: %d", s.pos)
			}
		}
		if pass == 0 {
			ok = s.valid(line)
		} else {
			env, err = s.finish(line)
		}
	}
	return ok, env, err
}

// checkScan compares the scanner's verdict on the line that data starts
// with (fed in pieces cut at cuts) with encoding/json's, and its envelope
// with Peek's.
func checkScan(t *testing.T, s *scanner, data []byte, cuts ...int) {
	t.Helper()
	line := firstLine(data)
	ok, env, err := feedSplit(s, data, cuts...)
	if want := json.Valid(line); ok != want {
		t.Fatalf("%.80q cut at %v: valid %v, json.Valid %v (%v)", data, cuts, ok, want, err)
	}
	wantEnv, wantErr := Peek(line)
	if !reflect.DeepEqual(env, wantEnv) || !sameErr(err, wantErr) {
		t.Fatalf("%.80q cut at %v: got %+v, %v; Peek %+v, %v", data, cuts, env, err, wantEnv, wantErr)
	}
}

// firstLine is the line data starts with, as the Reader returns it.
func firstLine(data []byte) []byte {
	if line, _, ok := bytes.Cut(data, []byte("\n")); ok {
		return trimCR(line)
	}
	return data
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if errors.Is(a, ErrNotMessage) || errors.Is(b, ErrNotMessage) {
		return errors.Is(a, ErrNotMessage) && errors.Is(b, ErrNotMessage)
	}
	var sa, sb *SyntaxError
	return errors.As(a, &sa) && errors.As(b, &sb) && *sa == *sb
}

// TestScannerSplits feeds every input of the corpus cut at every byte
// boundary (once, and one byte at a time) and compares with encoding/json.
func TestScannerSplits(t *testing.T) {
	var s scanner
	var inputs []string
	for _, in := range scanCorpus() {
		// Alone, and followed by the next line as the Reader's buffer has it.
		inputs = append(inputs, in)
		if len(in) < 2000 {
			inputs = append(inputs, in+"\n{\"id\":2}", in+"\r\n\"x", in+"\r\r\n[")
		}
	}
	for _, in := range inputs {
		d := []byte(in)
		checkScan(t, &s, d)
		if len(d) > 2000 {
			// Long inputs: every boundary near the ends and the special byte.
			for _, c := range []int{1, 7, 8, 9, 100, len(d) / 2, len(d) - 9, len(d) - 2, len(d) - 1} {
				checkScan(t, &s, d, c)
			}
			continue
		}
		all := make([]int, 0, len(d))
		for c := range len(d) + 1 {
			checkScan(t, &s, d, c)
			all = append(all, c)
		}
		checkScan(t, &s, d, all...)
	}
}

// randValue appends a random JSON value, nested at most depth deep.
func randValue(rng *rand.Rand, b []byte, depth int) []byte {
	ws := func(b []byte) []byte {
		if rng.IntN(4) == 0 {
			b = append(b, " \t\r"[rng.IntN(3)])
		}
		return b
	}
	switch k := rng.IntN(8); {
	case k == 0 && depth > 0:
		b = append(b, '{')
		for i := range rng.IntN(4) {
			if i > 0 {
				b = append(b, ',')
			}
			b = ws(b)
			b = randString(rng, b)
			b = append(ws(b), ':')
			b = ws(randValue(rng, ws(b), depth-1))
		}
		return append(ws(b), '}')
	case k == 1 && depth > 0:
		b = append(b, '[')
		for i := range rng.IntN(4) {
			if i > 0 {
				b = append(b, ',')
			}
			b = ws(randValue(rng, ws(b), depth-1))
		}
		return append(ws(b), ']')
	case k == 2:
		return randString(rng, b)
	case k == 3:
		return append(b, [...]string{"true", "false", "null"}[rng.IntN(3)]...)
	default:
		if rng.IntN(2) == 0 {
			b = append(b, '-')
		}
		if rng.IntN(3) == 0 {
			b = append(b, '0')
		} else {
			b = strconv.AppendInt(b, 1+rng.Int64N(1e6), 10)
		}
		if rng.IntN(2) == 0 {
			b = strconv.AppendInt(append(b, '.'), rng.Int64N(1e4), 10)
		}
		if rng.IntN(2) == 0 {
			b = append(b, "eE"[rng.IntN(2)])
			if r := rng.IntN(3); r < 2 {
				b = append(b, "+-"[r])
			}
			b = strconv.AppendInt(b, rng.Int64N(400), 10)
		}
		return b
	}
}

func randString(rng *rand.Rand, b []byte) []byte {
	b = append(b, '"')
	for range rng.IntN(6) {
		b = append(b, [...]string{"a", "é", `\n`, `\"`, `\\`, `\/`, `\u00E9`, `\uD83C\uDF89`, "lorem ipsum dolor", "\xff"}[rng.IntN(10)]...)
	}
	return append(b, '"')
}

// TestScannerRandom compares with encoding/json on random values and
// random edits of them and of the corpus, each cut at every byte boundary.
func TestScannerRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte(`{}[]:,"\ -+.eE0123456789tfalsenru` + "\t\r\x01\xc3")
	var corpus [][]byte
	for _, in := range scanCorpus() {
		if len(in) < 200 {
			corpus = append(corpus, []byte(in))
		}
	}
	var s scanner
	n := 5000
	if testing.Short() {
		n = 1000
	}
	var valid int
	for i := range n {
		var d []byte
		if i%4 == 0 {
			d = append(d, corpus[rng.IntN(len(corpus))]...)
		} else {
			d = randValue(rng, nil, 4)
		}
		for range rng.IntN(3) {
			if len(d) == 0 {
				d = append(d, alphabet[rng.IntN(len(alphabet))])
				continue
			}
			switch i := rng.IntN(len(d)); rng.IntN(3) {
			case 0:
				d[i] = alphabet[rng.IntN(len(alphabet))]
			case 1:
				d = append(d[:i], d[i+1:]...)
			default:
				d = append(d[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, d[i:]...)...)
			}
		}
		if json.Valid(d) {
			valid++
		}
		if rng.IntN(2) == 0 {
			d = append(d, "\n{}"[:1+rng.IntN(3)]...)
		}
		for c := range len(d) + 1 {
			checkScan(t, &s, d, c)
		}
	}
	if valid < n/4 || valid > 3*n/4 {
		t.Fatalf("%d of %d inputs valid: the generator needs a better balance", valid, n)
	}
}

func FuzzScanner(f *testing.F) {
	for _, in := range scanCorpus() {
		if len(in) < 200 {
			f.Add([]byte(in), uint64(len(in)/2))
		}
	}
	f.Add([]byte("{\"id\":1}\r\n{}\n"), uint64(3))
	f.Add([]byte("{\"a\":\"x\ny\"}\n{}"), uint64(4))
	f.Fuzz(func(t *testing.T, d []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		var cuts []int
		for c := 0; c < len(d); c += 1 + rng.IntN(8) {
			cuts = append(cuts, c)
		}
		var s scanner
		checkScan(t, &s, d, cuts...)
		checkScan(t, &s, d)
	})
}

// BenchmarkScanner compares Peek with the scanner, fed the whole message or
// 64 KiB at a time as the Reader feeds it from a pipe. "text" is a result
// with one long string (as in the stdio relay's benchmark), "tools" a list
// of many small objects (a tools/list result).
func BenchmarkScanner(b *testing.B) {
	head := `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"`
	tail := `"}]}}`
	text := func(size int) []byte {
		return []byte(head + strings.Repeat("lorem ipsum ", size/12)[:size-len(head)-len(tail)] + tail)
	}
	var tools strings.Builder
	tools.WriteString(`{"jsonrpc":"2.0","id":1,"result":{"tools":[`)
	for i := range 2000 {
		if i > 0 {
			tools.WriteString(",")
		}
		fmt.Fprintf(&tools, `{"name":"tool_%d","description":"Does something useful with its input, %d times.",`+
			`"inputSchema":{"type":"object","properties":{"x":{"type":"number"}},"required":["x"]}}`, i, i)
	}
	tools.WriteString(`]}}`)
	for _, m := range []struct {
		name string
		msg  []byte
	}{{"text1KB", text(1 << 10)}, {"text1MB", text(1 << 20)}, {"tools", []byte(tools.String())}} {
		b.Run(m.name+"/peek", func(b *testing.B) {
			b.SetBytes(int64(len(m.msg)))
			for b.Loop() {
				if _, err := Peek(m.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(m.name+"/scanner", func(b *testing.B) {
			b.SetBytes(int64(len(m.msg)))
			var s scanner
			for b.Loop() {
				s.reset()
				s.feed(m.msg)
				if _, err := s.finish(m.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(m.name+"/scanner64K", func(b *testing.B) {
			b.SetBytes(int64(len(m.msg)))
			var s scanner
			for b.Loop() {
				s.reset()
				for c := 64 << 10; c < len(m.msg); c += 64 << 10 {
					s.feed(m.msg[:c])
				}
				s.feed(m.msg)
				if _, err := s.finish(m.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
