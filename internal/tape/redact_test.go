package tape

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
)

func TestRedactHeaders(t *testing.T) {
	h := http.Header{
		"Authorization":       {"Bearer secret"},
		"proxy-authorization": {"Bearer proxy"}, // non-canonical key, as read from a file
		"Cookie":              {"a=1", "b=2"},
		"Set-Cookie":          {"sid=3"},
		"X-API-KEY":           {"k"},
		"X-Session-Token":     {"t"},
		"Content-Type":        {"application/json"},
		"Accept":              {"a", "b"},
	}
	RedactHeaders(h, []string{"x-session-token", " X-Other "})
	want := http.Header{
		"Authorization":       {Redacted},
		"proxy-authorization": {Redacted},
		"Cookie":              {Redacted, Redacted},
		"Set-Cookie":          {Redacted},
		"X-API-KEY":           {Redacted},
		"X-Session-Token":     {Redacted},
		"Content-Type":        {"application/json"},
		"Accept":              {"a", "b"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got %v, want %v", h, want)
	}
	RedactHeaders(nil, nil) // no panic
}

func TestRedactJSON(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  string
		paths []string
		want  string // "" means unchanged
	}{
		{"top level", `{"user":"u","password":"p"}`, []string{"password"}, `{"password":"[REDACTED]","user":"u"}`},
		{"nested", `{"jsonrpc":"2.0","params":{"name":"x","arguments":{"token":"t","q":1}}}`, []string{"params.arguments.token"},
			`{"jsonrpc":"2.0","params":{"arguments":{"q":1,"token":"[REDACTED]"},"name":"x"}}`},
		{"array wildcard", `{"items":[{"secret":1,"k":2},{"k":3},{"secret":{"deep":true}}]}`, []string{"items.*.secret"},
			`{"items":[{"k":2,"secret":"[REDACTED]"},{"k":3},{"secret":"[REDACTED]"}]}`},
		{"object wildcard", `{"users":{"a":{"pw":"1"},"b":{"pw":"2","n":"b"}}}`, []string{"users.*.pw"},
			`{"users":{"a":{"pw":"[REDACTED]"},"b":{"n":"b","pw":"[REDACTED]"}}}`},
		{"array index", `{"items":[{"s":1},{"s":2}]}`, []string{"items.1.s"}, `{"items":[{"s":1},{"s":"[REDACTED]"}]}`},
		{"top-level array", `[{"s":1},{"s":2}]`, []string{"*.s"}, `[{"s":"[REDACTED]"},{"s":"[REDACTED]"}]`},
		{"several paths", `{"a":1,"b":2,"c":3}`, []string{"a", "", "c"}, `{"a":"[REDACTED]","b":2,"c":"[REDACTED]"}`},
		{"numbers kept", `{"big":12345678901234567890,"f":1.50,"s":"x"}`, []string{"s"}, `{"big":12345678901234567890,"f":1.50,"s":"[REDACTED]"}`},
		{"no html escape", `{"s":"x","h":"<a>&"}`, []string{"s"}, `{"h":"<a>&","s":"[REDACTED]"}`},
		{"no match", `{"a": 1}`, []string{"b", "a.b", "a.*"}, ""},
		{"index out of range", `{"items":[1]}`, []string{"items.3", "items.-1", "items.x"}, ""},
		{"key is case-sensitive", `{"Password":"p"}`, []string{"password"}, ""},
		{"not json", `password=hunter2`, []string{"password"}, ""},
		{"trailing data", `{"password":"p"} {"x":1}`, []string{"password"}, ""},
		{"no paths", `{"password":"p"}`, nil, ""},
		{"empty", ``, []string{"password"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := RedactJSON([]byte(tc.body), tc.paths)
			if tc.want == "" {
				if changed || string(got) != tc.body {
					t.Errorf("got %q, %v; want unchanged", got, changed)
				}
				return
			}
			if !changed || string(got) != tc.want {
				t.Errorf("got %s, %v; want %s", got, changed, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("result is not JSON: %s", got)
			}
		})
	}
}

func TestRedactJSONAnyDepth(t *testing.T) {
	in := `{"apiKey":"a","x":{"apiKey":"b","y":[{"apiKey":"c"},{"k":1}]},"z":"apiKey"}`
	out, ok := RedactJSON([]byte(in), []string{"**.apiKey"})
	want := `{"apiKey":"[REDACTED]","x":{"apiKey":"[REDACTED]","y":[{"apiKey":"[REDACTED]"},{"k":1}]},"z":"apiKey"}`
	if !ok || string(out) != want {
		t.Fatalf("got %s %v", out, ok)
	}
	out, ok = RedactJSON([]byte(`{"a":{"b":{"token":"t"}}}`), []string{"a.**.token"})
	if !ok || string(out) != `{"a":{"b":{"token":"[REDACTED]"}}}` {
		t.Fatalf("got %s %v", out, ok)
	}
	if out, ok = RedactJSON([]byte(`{"a":1}`), []string{"**.nope"}); ok || string(out) != `{"a":1}` {
		t.Fatalf("no match must leave the body alone: %s %v", out, ok)
	}
}
