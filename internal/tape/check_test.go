package tape

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	const (
		mixed = `{"proxyctlTape":1,"createdAt":"2026-01-01T00:00:00Z","kind":"mixed"}` + "\n"
		http1 = `{"proxyctlTape":1,"createdAt":"2026-01-01T00:00:00Z","kind":"http"}` + "\n"
		stdio = `{"proxyctlTape":1,"createdAt":"2026-01-01T00:00:00Z","kind":"stdio"}` + "\n"
		x1    = `{"type":"exchange","sessionId":"s1","seq":1,"request":{"method":"GET","url":"/a"},"response":{"status":200}}` + "\n"
		x2    = `{"type":"exchange","sessionId":"s1","seq":2,"request":{"method":"GET","url":"/b"},"error":"timeout"}` + "\n"
		x1s2  = `{"type":"exchange","sessionId":"s2","seq":1,"request":{"method":"GET","url":"/a"},"response":{"status":599}}` + "\n"
		f1    = `{"type":"frame","sessionId":"s3","seq":1,"direction":"client->server","data":"{}"}` + "\n"
		f2    = `{"type":"frame","sessionId":"s3","seq":2,"direction":"server->client","data":"{}"}` + "\n"
	)
	for _, tc := range []struct {
		name, tape string
		want       Counts
		err        string
	}{
		{"empty", mixed, Counts{}, ""},
		{"mixed", mixed + x1 + x2 + "\n" + x1s2 + f1 + f2, Counts{Exchanges: 3, Frames: 2}, ""},
		{"cut last line", http1 + x1 + x2[:20], Counts{Exchanges: 1}, ""},
		{"duplicate seq", mixed + x1 + "\n" + x2 + x1, Counts{Exchanges: 2}, `tape: line 5: invalid entry: duplicate seq 1 in session "s1" (first on line 2)`},
		{"duplicate seq across types", mixed + f1 + strings.Replace(x1, `"s1"`, `"s3"`, 1), Counts{Frames: 1}, `tape: line 3: invalid entry: duplicate seq 1 in session "s3" (first on line 2)`},
		{"status too low", http1 + x1 + strings.Replace(x2, `"error":"timeout"`, `"response":{"status":42}`, 1), Counts{Exchanges: 1}, "tape: line 3: invalid entry: exchange: response status 42 outside 100..599"},
		{"status too high", http1 + strings.Replace(x1, "200", "600", 1), Counts{}, "tape: line 2: invalid entry: exchange: response status 600 outside 100..599"},
		{"status zero", http1 + strings.Replace(x1, "200", "0", 1), Counts{}, "status 0 outside"},
		{"negative duration", http1 + strings.Replace(x1, `"seq":1`, `"seq":1,"durationMs":-3`, 1), Counts{}, "tape: line 2: invalid entry: exchange: negative durationMs -3"},
		{"missing method", http1 + `{"type":"exchange","request":{"url":"/"}}` + "\n", Counts{}, "tape: line 2: invalid entry: exchange: missing request method"},
		{"frame on http tape", http1 + x1 + f1, Counts{Exchanges: 1}, "tape: line 3: invalid entry: frame on an http tape"},
		{"exchange on stdio tape", stdio + f1 + x1, Counts{Frames: 1}, "tape: line 3: invalid entry: exchange on a stdio tape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(strings.NewReader(tc.tape))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Validate(r)
			if got != tc.want {
				t.Errorf("counts: got %+v, want %+v", got, tc.want)
			}
			if tc.err == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got error %v, want it to contain %q", err, tc.err)
			}
			if _, ok := errors.AsType[*LineError](err); !ok {
				t.Errorf("error %T is not a *LineError", err)
			}
		})
	}
}

func TestReaderLine(t *testing.T) {
	tape := `{"proxyctlTape":1,"kind":"stdio"}` + "\n\n" +
		`{"type":"frame","seq":1,"direction":"client->server","data":"a"}` + "\n  \n\n" +
		`{"type":"frame","seq":2,"direction":"server->client","data":"b"}` + "\n"
	r, err := NewReader(strings.NewReader(tape))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Line(); got != 1 {
		t.Errorf("after the header: got line %d, want 1", got)
	}
	for _, want := range []int{3, 6} {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if got := r.Line(); got != want {
			t.Errorf("got line %d, want %d", got, want)
		}
	}
}

func TestRedactEntry(t *testing.T) {
	x := &Exchange{
		Request: Request{
			Method: "POST", URL: "/login",
			Headers: http.Header{"Authorization": {"Bearer s3cret"}, "X-Token": {"t1", Redacted}, "Accept": {"*/*"}},
			Body:    Body(`{"user": "ada", "password": "hunter2", "items": [{"secret": 1}, {"secret": "[REDACTED]"}]}`),
		},
		Response: &Response{
			Status:   200,
			Headers:  http.Header{"Set-Cookie": {"a=1", "b=2"}, "Content-Type": {"application/json"}},
			Trailers: http.Header{"X-Token": {"t2"}},
			Body:     Body(`{"ok": true}`),
		},
	}
	paths := []string{"password", "items.*.secret", "nothing.here"}
	if got := RedactEntry(x, []string{"x-token"}, paths); got != 7 {
		// Authorization, X-Token t1, password, items.0.secret, 2 Set-Cookie, trailer X-Token.
		t.Errorf("got %d values redacted, want 7", got)
	}
	wantReq := http.Header{"Authorization": {Redacted}, "X-Token": {Redacted, Redacted}, "Accept": {"*/*"}}
	if !reflect.DeepEqual(x.Request.Headers, wantReq) {
		t.Errorf("request headers: got %v, want %v", x.Request.Headers, wantReq)
	}
	if got, want := string(x.Request.Body), `{"items":[{"secret":"[REDACTED]"},{"secret":"[REDACTED]"}],"password":"[REDACTED]","user":"ada"}`; got != want {
		t.Errorf("request body: got %s, want %s", got, want)
	}
	if got, want := x.Response.Headers["Set-Cookie"], []string{Redacted, Redacted}; !reflect.DeepEqual(got, want) {
		t.Errorf("Set-Cookie: got %v, want %v", got, want)
	}
	if got, want := x.Response.Trailers.Get("X-Token"), Redacted; got != want {
		t.Errorf("trailer: got %q, want %q", got, want)
	}
	if got, want := string(x.Response.Body), `{"ok": true}`; got != want {
		t.Errorf("response body with no match: got %s, want it unchanged %s", got, want)
	}

	// Redacting again changes and counts nothing, even a body whose
	// formatting RedactJSON would normalize.
	x.Request.Body = Body(`{ "password" : "[REDACTED]" }`)
	if got := RedactEntry(x, []string{"x-token"}, paths); got != 0 {
		t.Errorf("second pass: got %d values redacted, want 0", got)
	}
	if got, want := string(x.Request.Body), `{ "password" : "[REDACTED]" }`; got != want {
		t.Errorf("second pass: body got %s, want it unchanged %s", got, want)
	}

	// An exchange without a response, and frames.
	if got := RedactEntry(&Exchange{Request: Request{Method: "GET"}, Error: "x"}, nil, paths); got != 0 {
		t.Errorf("no response: got %d, want 0", got)
	}
	f := &Frame{Direction: ClientToServer, Data: Body(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"token":"abc","n":1.50}}}`)}
	if got := RedactEntry(f, nil, []string{"params.arguments.token"}); got != 1 {
		t.Errorf("frame: got %d values redacted, want 1", got)
	}
	if got, want := string(f.Data), `{"id":1,"jsonrpc":"2.0","method":"tools/call","params":{"arguments":{"n":1.50,"token":"[REDACTED]"}}}`; got != want {
		t.Errorf("frame data: got %s, want %s", got, want)
	}
	notJSON := &Frame{Direction: ServerToClient, Data: Body("password=1")}
	if got := RedactEntry(notJSON, nil, []string{"password"}); got != 0 || string(notJSON.Data) != "password=1" {
		t.Errorf("non-JSON frame: got %d, %q", got, notJSON.Data)
	}
	// An object redacted whole counts once.
	whole := &Frame{Direction: ClientToServer, Data: Body(`{"params":{"a":1,"b":2}}`)}
	if got := RedactEntry(whole, nil, []string{"params", "*"}); got != 1 {
		t.Errorf("whole object: got %d, want 1", got)
	}
}

func FuzzValidate(f *testing.F) {
	const hdr = `{"proxyctlTape":1,"kind":"mixed"}` + "\n"
	f.Add([]byte(hdr + `{"type":"exchange","sessionId":"s","seq":1,"request":{"method":"GET"},"response":{"status":200}}` + "\n"))
	f.Add([]byte(hdr + `{"type":"exchange","seq":1,"request":{"method":"GET"}}` + "\n" + `{"type":"frame","seq":1,"direction":"client->server"}` + "\n"))
	f.Add([]byte(`{"proxyctlTape":1,"kind":"stdio"}` + "\n" + `{"type":"exchange","request":{"method":"GET"},"response":{"status":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := newReader(strings.NewReader(string(data)), "fuzz", 1<<20)
		if err != nil {
			return
		}
		c, err := Validate(r)
		if c.Exchanges < 0 || c.Frames < 0 {
			t.Fatalf("negative counts %+v", c)
		}
		if err != nil {
			checkOneLine(t, err)
			if _, ok := errors.AsType[*LineError](err); !ok {
				t.Fatalf("error %T is not a *LineError", err)
			}
		}
	})
}
