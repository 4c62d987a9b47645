package tape

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{CreatedAt: t0, Meta: map[string]string{"target": "http://x"}})
	if err != nil {
		f.Fatal(err)
	}
	for _, x := range sampleExchanges(f)[:2] {
		if err := w.WriteExchange(x); err != nil {
			f.Fatal(err)
		}
	}
	for _, fr := range sampleFrames() {
		if err := w.WriteFrame(fr); err != nil {
			f.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:buf.Len()-7])
	f.Add([]byte(`{"proxyctlTape":1,"kind":"http"}` + "\n" + `{"type":"exchange","request":{"method":"GET","body":{"encoding":"base64","data":"AA=="}}}` + "\n"))
	f.Add([]byte(`{"proxyctlTape":1,"kind":"stdio"}` + "\n\n" + `{"type":"frame","direction":"server->client","data":"x"}`))
	f.Add([]byte(`{"proxyctlTape":2}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := newReader(bytes.NewReader(data), "fuzz", 1<<20)
		if err != nil {
			checkOneLine(t, err)
			return
		}
		for range len(data) + 1 {
			e, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				checkOneLine(t, err)
				break
			}
			switch e := e.(type) {
			case *Exchange:
				if e.Request.Method == "" {
					t.Fatal("exchange without method accepted")
				}
			case *Frame:
			default:
				t.Fatalf("entry of type %T", e)
			}
		}
		for _, w := range r.Warnings() {
			if strings.Contains(w, "\n") {
				t.Fatalf("warning is not one line: %q", w)
			}
		}
	})
}

func FuzzReadHAR(f *testing.F) {
	var buf bytes.Buffer
	if err := ExportHAR(&buf, exchangePtrs(sampleExchanges(f)[:2]), "proxyctl 1"); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(`{"log":{"entries":[{"request":{"method":"GET","url":"/"},"response":{"status":200,"content":{"text":"AAE=","encoding":"base64"}}}]}}`))
	f.Add([]byte(`{"log":{"entries":[{"request":{"method":"POST","url":"http://h/p?q","postData":{"text":"//8=","_encoding":"base64"}}}]}}`))
	f.Add([]byte(`{"log":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		xs, err := ReadHAR(bytes.NewReader(data))
		if err != nil {
			checkOneLine(t, err)
			return
		}
		// What was read exports again.
		if err := ExportHAR(io.Discard, xs, "fuzz"); err != nil {
			t.Fatalf("re-export: %v", err)
		}
	})
}

func checkOneLine(t *testing.T, err error) {
	t.Helper()
	if msg := err.Error(); msg == "" || strings.Contains(msg, "\n") {
		t.Fatalf("error is not one line: %q", msg)
	}
}
