package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

func TestHeadEnd(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want int
	}{
		{"", -1},
		{"GET / HTTP/1.1\r\nHost: x\r\n", -1},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r", -1},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody", 27},
		{"GET / HTTP/1.1\nHost: x\n\n", 24},
		{"GET / HTTP/1.1\nHost: x\n\r\n", 25},
		{"GET / HTTP/1.1\r\nHost: x\r\r\n\r\r\n", -1},
		{"\n\n", 2},
		{"\r\n\r\n", 4},
	}
	for _, tc := range cases {
		if got := headEnd([]byte(tc.in)); got != tc.want {
			t.Errorf("headEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// FuzzHeadEnd checks headEnd against http.ReadRequest: where ReadRequest
// parses a head, it ends where headEnd says; and it never reads past the
// end headEnd finds (the server relies on both).
func FuzzHeadEnd(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nX-Fold: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\n",
		"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end := headEnd(b)
		if end == 0 || end < -1 || end > len(b) {
			t.Fatalf("headEnd(%q) = %d, out of range", b, end)
		}
		r := bytes.NewReader(b)
		br := bufio.NewReaderSize(r, len(b)+16)
		_, err := http.ReadRequest(br)
		consumed := len(b) - r.Len() - br.Buffered()
		if err == nil && consumed != end {
			t.Fatalf("ReadRequest parsed %d bytes of %q, headEnd says %d", consumed, b, end)
		}
		if end >= 0 && consumed > end {
			t.Fatalf("ReadRequest read %d bytes of %q (%v), past the end headEnd found at %d", consumed, b, err, end)
		}
	})
}
