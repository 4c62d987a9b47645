package jsonrpc

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// chunkReader returns its data in pseudo-random pieces, then io.EOF forever.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(1+c.rng.IntN(97), len(p), len(c.data))
	if c.rng.IntN(8) == 0 {
		n = min(len(p), len(c.data)) // sometimes a big read
	}
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// readAll reads messages until io.EOF, recording each outcome.
func readAll(t testing.TB, r *Reader) (msgs []string, errs []error) {
	for i := range 1 << 20 {
		m, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			return msgs, errs
		}
		if i%2 == 1 {
			r.LineBuffered() // must not change what comes next
		}
		if i%3 != 2 { // sometimes not asked for
			env, perr := r.Envelope()
			wantEnv, wantErr := Peek(m)
			if !reflect.DeepEqual(env, wantEnv) || !sameErr(perr, wantErr) {
				t.Fatalf("message %d %.60q: Envelope %+v, %v; Peek %+v, %v", i, m, env, perr, wantEnv, wantErr)
			}
		}
		msgs = append(msgs, string(m))
		errs = append(errs, err)
	}
	t.Fatal("reader never reached io.EOF")
	return nil, nil
}

// checkLines compares what a Reader returned with the lines of input.
func checkLines(t testing.TB, input []byte, limit int64, msgs []string, errs []error) {
	t.Helper()
	lines := bytes.Split(input, []byte("\n"))
	last := lines[len(lines)-1]
	lines = lines[:len(lines)-1]
	if len(last) > 0 {
		lines = append(lines, last)
	}
	if len(msgs) != len(lines) {
		t.Fatalf("got %d messages, want %d", len(msgs), len(lines))
	}
	for i, line := range lines {
		unterminated := len(last) > 0 && i == len(lines)-1
		if int64(len(line)) > limit {
			var tl *TooLongError
			if !errors.As(errs[i], &tl) {
				t.Fatalf("line %d (%d bytes): got err %v, want *TooLongError", i, len(line), errs[i])
			}
			if tl.Size != int64(len(line)) || !bytes.Equal(tl.Head, line[:min(len(line), HeadSize)]) {
				t.Fatalf("line %d: TooLongError size %d head %q, want %d %q", i, tl.Size, tl.Head, len(line), line[:min(len(line), HeadSize)])
			}
			wantTail := bytes.TrimSuffix(line[max(0, len(line)-TailSize):], []byte("\r"))
			if !bytes.Equal(tl.Tail, wantTail) {
				t.Fatalf("line %d: tail %q, want %q", i, tl.Tail, wantTail)
			}
			continue
		}
		want := string(line)
		if unterminated {
			if !errors.Is(errs[i], io.ErrUnexpectedEOF) {
				t.Fatalf("last line: got err %v, want io.ErrUnexpectedEOF", errs[i])
			}
		} else {
			want = strings.TrimSuffix(want, "\r")
			if errs[i] != nil {
				t.Fatalf("line %d: unexpected error %v", i, errs[i])
			}
		}
		if msgs[i] != want {
			t.Fatalf("line %d: got %q, want %q", i, msgs[i], want)
		}
	}
}

func TestReaderLines(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // spans several bufio buffers
	longJSON := `{"jsonrpc":"2.0","id":7,"result":{"text":"` + strings.Repeat(`lorem \"ipsum\" é `, 12<<10) + `"},"x":[1,-2.5e3,true,null]}`
	tests := []struct {
		name  string
		in    string
		limit int64
	}{
		{"empty", "", 0},
		{"one", `{"a":1}` + "\n", 0},
		{"crlf", "{\"a\":1}\r\n{}\n", 0},
		{"blank lines", "\n\n{}\n\n", 0},
		{"no final newline", "{}\n{\"x\"", 0},
		{"unicode", "{\"s\":\"héllo 世界 🎉\"}\n", 0},
		{"long", long + "\n{}\n", 0},
		{"long unterminated", "{}\n" + long, 0},
		{"too long in buffer", "{\"id\":1,\"x\":\"aaaaaaaa\"}\n{}\n", 10},
		{"too long spanning", long + "\n{}\n", 100 << 10},
		{"too long at eof", "{}\n" + long, 100 << 10},
		{"exact limit", "0123456789\n01234567890\n", 10},
		{"long JSON", longJSON + "\n" + longJSON + "\r\n{}\n" + longJSON[:1000] + "\n" + longJSON, 0},
		{"long JSON, spaces", "{ \"id\" :  1 ,\t\"method\":\"m\", \"params\":" + longJSON + "  \r \r\n", 0},
		{"long JSON too long", longJSON + "\n{}\n", 100 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []io.Reader{
				strings.NewReader(tt.in),
				iotest.OneByteReader(strings.NewReader(tt.in)),
				iotest.HalfReader(strings.NewReader(tt.in)),
			} {
				rd := NewReader(r, tt.limit)
				rd.Validate = true
				msgs, errs := readAll(t, rd)
				checkLines(t, []byte(tt.in), rd.limit(), msgs, errs)
			}
			rd := NewReader(strings.NewReader(tt.in), tt.limit) // Envelope calls Peek
			msgs, errs := readAll(t, rd)
			checkLines(t, []byte(tt.in), rd.limit(), msgs, errs)
		})
	}
}

func TestReaderUnderlyingError(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(strings.NewReader("{}\n{\"par"), iotest.ErrReader(boom)), 0)
	if m, err := r.ReadMessage(); err != nil || string(m) != "{}" {
		t.Fatalf("got %q, %v", m, err)
	}
	m, err := r.ReadMessage()
	if !errors.Is(err, boom) || string(m) != `{"par` {
		t.Fatalf("got %q, %v; want partial line and boom", m, err)
	}
}

func TestTooLongErrorID(t *testing.T) {
	big := strings.Repeat("a", 50<<10)
	tests := []struct {
		name, line, want string
	}{
		{"id first", `{"jsonrpc":"2.0","id":42,"method":"x","params":{"s":"` + big + `"}}`, "42"},
		{"id last (JS SDK order)", `{"method":"tools/call","params":{"s":"` + big + `"},"jsonrpc":"2.0","id":"abc-1"}`, `"abc-1"`},
		{"no id", `{"method":"x","params":{"s":"` + big + `"}}`, ""},
		{"nested id is not the id", `{"method":"x","params":{"s":"` + big + `","id":5}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.line+"\n{}\n"), 1024)
			_, err := r.ReadMessage()
			var tl *TooLongError
			if !errors.As(err, &tl) {
				t.Fatalf("got %v, want *TooLongError", err)
			}
			if got := string(tl.ID()); got != tt.want {
				t.Fatalf("got id %q, want %q", got, tt.want)
			}
			if m, err := r.ReadMessage(); err != nil || string(m) != "{}" {
				t.Fatalf("next message: got %q, %v", m, err)
			}
		})
	}
}

func TestLineBuffered(t *testing.T) {
	r := NewReader(strings.NewReader("{}\n{}\n{"), 0)
	if _, err := r.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if !r.LineBuffered() {
		t.Fatal("LineBuffered = false with a whole line buffered")
	}
	if _, err := r.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if r.LineBuffered() {
		t.Fatal("LineBuffered = true with only a partial line buffered")
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte("{}\n{\"a\":1}\r\n"), uint64(1), uint16(0))
	f.Add([]byte("héllo\nwörld"), uint64(2), uint16(3))
	f.Add([]byte("\n\n\r\n"), uint64(3), uint16(1))
	f.Add(bytes.Repeat([]byte("x"), 5000), uint64(4), uint16(100))
	f.Add([]byte("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"a\":[1,2.5,\"\\u00e9\"]}}\r\n[1]\n\"s\"\n{\"a\""), uint64(5), uint16(0))
	f.Add([]byte("{\"result\":\""+strings.Repeat("ab\\\"c", 300)+"\"}\n{\"a\":tru}\n{\"x\":1\n"), uint64(6), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, limit uint16) {
		lim := int64(limit)
		if lim == 0 {
			lim = DefaultMaxSize
		}
		cr := &chunkReader{data: data, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
		r := NewReader(cr, lim)
		r.Validate = seed%4 != 0
		msgs, errs := readAll(t, r)
		checkLines(t, data, lim, msgs, errs)
	})
}

func BenchmarkReader(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		line := append(bytes.Repeat([]byte("a"), size-1), '\n')
		b.Run(sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				r := NewReader(bytes.NewReader(line), 0)
				if _, err := r.ReadMessage(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return strconv.Itoa(n>>20) + "MB"
	}
	return strconv.Itoa(n>>10) + "KB"
}
