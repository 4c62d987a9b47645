package stub_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/stub"
)

// parse decodes a stub from its admin API JSON form.
func parse(t *testing.T, js string) store.Stub {
	t.Helper()
	var s store.Stub
	dec := json.NewDecoder(strings.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("decode %s: %v", js, err)
	}
	return s
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, stub, want string
	}{
		{"bad urlPattern", `{"pattern":{"urlPattern":"/a/(b"}}`, "pattern.urlPattern: error parsing regexp"},
		{"two urls", `{"pattern":{"url":"/a","urlPath":"/a"}}`, "at most one of url, urlPath and urlPattern"},
		{"bad method", `{"pattern":{"method":"GE T"}}`, `pattern.method "GE T"`},
		{"no matcher", `{"pattern":{"headers":{"X-A":{}}}}`, `pattern.headers["X-A"]: set one of equalTo`},
		{"two matchers", `{"pattern":{"query":{"q":{"equalTo":"a","contains":"b"}}}}`, `pattern.query["q"]: set only one matcher, not equalTo and contains`},
		{"absent and value", `{"pattern":{"query":{"q":{"equalTo":"a","absent":true}}}}`, "not equalTo and absent"},
		{"bad matches", `{"pattern":{"body":{"matches":"a**"}}}`, "pattern.body.matches: error parsing regexp"},
		{"bad equalToJson string", `{"pattern":{"body":{"equalToJson":"{not json"}}}`, "pattern.body.equalToJson: the string does not hold a JSON document"},
		{"absent body", `{"pattern":{"body":{"absent":true}}}`, "pattern.body.absent"},
		{"bad header name", `{"pattern":{"headers":{"X A":{"equalTo":"1"}}}}`, `pattern.headers["X A"]: not a valid header name`},
		{"same header twice", `{"pattern":{"headers":{"x-a":{"equalTo":"1"},"X-A":{"equalTo":"2"}}}}`, `"X-A" and "x-a" name the same header`},
		{"empty query name", `{"pattern":{"query":{"":{"equalTo":"1"}}}}`, "empty parameter name"},
		{"status low", `{"response":{"status":99}}`, "response.status 99"},
		{"status informational", `{"response":{"status":101}}`, "response.status 101"},
		{"status high", `{"response":{"status":600}}`, "response.status 600"},
		{"body and base64", `{"response":{"body":"a","bodyBase64":"YQ=="}}`, "response: set only one of body, bodyBase64 and jsonBody, not body and bodyBase64"},
		{"body and json", `{"response":{"body":"a","jsonBody":{}}}`, "not body and jsonBody"},
		{"bad base64", `{"response":{"bodyBase64":"!!"}}`, "response.bodyBase64"},
		{"body with 204", `{"response":{"status":204,"body":"x"}}`, "response.body: a 204 response has no body"},
		{"negative delay", `{"response":{"delayMs":-1}}`, "response.delayMs -1"},
		{"long delay", `{"response":{"delayMs":300001}}`, "response.delayMs 300001"},
		{"header value newline", `{"response":{"headers":{"X-A":"a\r\nX-B: b"}}}`, `response.headers["X-A"]: the value holds a line break`},
		{"bad response header", `{"response":{"headers":{"":"x"}}}`, `response.headers[""]: not a valid header name`},
		{"stub id", `{"stubId":"a/b"}`, `stubId "a/b"`},
		{"long stub id", `{"stubId":"` + strings.Repeat("a", 129) + `"}`, "stubId: length 129"},
		{"negative expiry", `{"expiresAt":-5}`, "expiresAt -5"},
		{"expiry in ms", `{"expiresAt":1767323045000}`, "expiresAt 1767323045000: want unix seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := stub.Compile(parse(t, tt.stub))
			if err == nil {
				t.Fatalf("Compile(%s) succeeded", tt.stub)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile(%s):\n got %q\nwant it to contain %q", tt.stub, err, tt.want)
			}
		})
	}
}

func TestCompileValid(t *testing.T) {
	for _, js := range []string{
		`{}`,
		`{"pattern":{"method":"any","urlPattern":"/a/.*"},"response":{"status":201,"jsonBody":[1,2]}}`,
		`{"pattern":{"method":"PATCH","url":"/a?b=c","headers":{"x-a":{"absent":true}},"query":{"b":{"matches":"c|d"}}}}`,
		`{"pattern":{"body":{"equalToJson":{"b":[1,{"c":null}],"a":"x"}}}}`,
		`{"pattern":{"body":{"equalToJson":"{\"a\": 1}"}}}`,
		`{"pattern":{"body":{"equalTo":""}}}`,
		`{"pattern":{"body":{"binaryEqualTo":"AAH/"}}}`,
		`{"pattern":{"body":{"equalToJson":null,"contains":"x"}}}`,
		`{"response":{"status":204,"headers":{"X-A":"1","Content-Length":"99"}}}`,
		`{"response":{"bodyBase64":"AAH/","delayMs":300000}}`,
		`{"stubId":"Az09-_.~","expiresAt":1767323045}`,
	} {
		if _, err := stub.Compile(parse(t, js)); err != nil {
			t.Errorf("Compile(%s): %v", js, err)
		}
	}
}

func TestCompileCopies(t *testing.T) {
	s := store.Stub{StubID: "a", Response: store.StubResponse{Headers: map[string]string{"X-A": "1"}}}
	c, err := stub.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	s.Response.Headers["X-A"] = "changed"
	if got := c.Stub().Response.Headers["X-A"]; got != "1" {
		t.Errorf("compiled stub shares the caller's map: X-A %q", got)
	}
}

func TestCompare(t *testing.T) {
	base := time.Unix(1767323045, 0)
	a := store.Stub{StubID: "a", Priority: 1, CreatedAt: base}
	b := store.Stub{StubID: "b", Priority: 2, CreatedAt: base.Add(time.Hour)}
	newer := store.Stub{StubID: "c", Priority: 1, CreatedAt: base.Add(time.Second)}
	twin := store.Stub{StubID: "b", Priority: 1, CreatedAt: base}
	tests := []struct {
		x, y store.Stub
		want int
	}{
		{a, b, -1},     // lower priority number first
		{newer, a, -1}, // newest first on a tie
		{a, twin, -1},  // then the smaller id
		{a, a, 0},
	}
	for _, tt := range tests {
		if got := stub.Compare(tt.x, tt.y); got != tt.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", tt.x.StubID, tt.y.StubID, got, tt.want)
		}
		if got := stub.Compare(tt.y, tt.x); got != -tt.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", tt.y.StubID, tt.x.StubID, got, -tt.want)
		}
	}
}
