package jsonrpc

import "testing"

func TestCanonicalParams(t *testing.T) {
	for in, want := range map[string]string{
		``:                            `null`,
		` null `:                      `null`,
		`{"b":1, "a":[1, 2.50, "x"]}`: `{"a":[1,2.50,"x"],"b":1}`,
		`{"_meta":{"progressToken":7},"name":"echo"}`:  `{"name":"echo"}`,
		`{"x":{"_meta":1}}`:                            `{"x":{"_meta":1}}`, // only the top-level _meta
		`[3, {"b":true,"a":null}]`:                     `[3,{"a":null,"b":true}]`,
		`{"html":"<a href='x'>&</a>","u":"caf\u00e9"}`: `{"html":"<a href='x'>&</a>","u":"café"}`,
	} {
		got, err := CanonicalParams([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("CanonicalParams(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{`{`, `{"a":1} {}`, `nope`} {
		if _, err := CanonicalParams([]byte(bad)); err == nil {
			t.Errorf("CanonicalParams(%s): want an error", bad)
		}
	}
	a, _ := CanonicalJSON([]byte(`{"a": 1, "b": [true]}`))
	b, _ := CanonicalJSON([]byte("{\"b\":[true],\n\"a\":1}"))
	if string(a) != string(b) {
		t.Errorf("%s != %s", a, b)
	}
}
