package tape

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// HAR 1.2 required fields, as pointers so a missing field shows as nil.
type specNV struct {
	Name  *string `json:"name"`
	Value *string `json:"value"`
}

type specHAR struct {
	Log *struct {
		Version *string `json:"version"`
		Creator *struct {
			Name    *string `json:"name"`
			Version *string `json:"version"`
		} `json:"creator"`
		Entries *[]struct {
			StartedDateTime *string  `json:"startedDateTime"`
			Time            *float64 `json:"time"`
			Request         *struct {
				Method      *string   `json:"method"`
				URL         *string   `json:"url"`
				HTTPVersion *string   `json:"httpVersion"`
				Cookies     *[]specNV `json:"cookies"`
				Headers     *[]specNV `json:"headers"`
				QueryString *[]specNV `json:"queryString"`
				PostData    *struct {
					MimeType *string `json:"mimeType"`
					Text     *string `json:"text"`
				} `json:"postData"`
				HeadersSize *int `json:"headersSize"`
				BodySize    *int `json:"bodySize"`
			} `json:"request"`
			Response *struct {
				Status      *int      `json:"status"`
				StatusText  *string   `json:"statusText"`
				HTTPVersion *string   `json:"httpVersion"`
				Cookies     *[]specNV `json:"cookies"`
				Headers     *[]specNV `json:"headers"`
				Content     *struct {
					Size     *int    `json:"size"`
					MimeType *string `json:"mimeType"`
					Text     *string `json:"text"`
					Encoding *string `json:"encoding"`
				} `json:"content"`
				RedirectURL *string `json:"redirectURL"`
				HeadersSize *int    `json:"headersSize"`
				BodySize    *int    `json:"bodySize"`
			} `json:"response"`
			Cache   *struct{} `json:"cache"`
			Timings *struct {
				Send    *float64 `json:"send"`
				Wait    *float64 `json:"wait"`
				Receive *float64 `json:"receive"`
			} `json:"timings"`
		} `json:"entries"`
	} `json:"log"`
}

func exchangePtrs(xs []Exchange) []*Exchange {
	out := make([]*Exchange, len(xs))
	for i := range xs {
		out[i] = &xs[i]
	}
	return out
}

func TestExportHARStructure(t *testing.T) {
	xs := sampleExchanges(t)
	var buf bytes.Buffer
	if err := ExportHARBase(&buf, exchangePtrs(xs), "proxyctl 0.1.0", "https://api.example.com"); err != nil {
		t.Fatal(err)
	}
	var h specHAR
	if err := json.Unmarshal(buf.Bytes(), &h); err != nil {
		t.Fatal(err)
	}
	l := h.Log
	if l == nil || l.Version == nil || *l.Version != "1.2" || l.Creator == nil || l.Creator.Name == nil ||
		*l.Creator.Name != "proxyctl" || l.Creator.Version == nil || *l.Creator.Version != "0.1.0" || l.Entries == nil {
		t.Fatalf("bad log: %s", buf.Bytes()[:min(300, buf.Len())])
	}
	if len(*l.Entries) != len(xs) {
		t.Fatalf("got %d entries, want %d", len(*l.Entries), len(xs))
	}
	for i, e := range *l.Entries {
		if e.StartedDateTime == nil || e.Time == nil || e.Request == nil || e.Response == nil || e.Cache == nil || e.Timings == nil {
			t.Fatalf("entry %d lacks a required field", i)
		}
		if _, err := time.Parse(time.RFC3339Nano, *e.StartedDateTime); err != nil {
			t.Errorf("entry %d: startedDateTime: %v", i, err)
		}
		rq, rs := e.Request, e.Response
		if rq.Method == nil || rq.URL == nil || rq.HTTPVersion == nil || rq.Cookies == nil || rq.Headers == nil ||
			rq.QueryString == nil || rq.HeadersSize == nil || rq.BodySize == nil {
			t.Errorf("entry %d: request lacks a required field", i)
			continue
		}
		if !strings.HasPrefix(*rq.URL, "https://api.example.com/") {
			t.Errorf("entry %d: url %q not absolute on the base", i, *rq.URL)
		}
		if *rq.HeadersSize != -1 || *rq.BodySize != len(xs[i].Request.Body) {
			t.Errorf("entry %d: headersSize %d bodySize %d", i, *rq.HeadersSize, *rq.BodySize)
		}
		if (rq.PostData != nil) != (len(xs[i].Request.Body) > 0) {
			t.Errorf("entry %d: postData presence wrong", i)
		}
		if pd := rq.PostData; pd != nil && (pd.MimeType == nil || pd.Text == nil) {
			t.Errorf("entry %d: postData lacks mimeType or text", i)
		}
		if rs.Status == nil || rs.StatusText == nil || rs.HTTPVersion == nil || rs.Cookies == nil || rs.Headers == nil ||
			rs.Content == nil || rs.Content.Size == nil || rs.Content.MimeType == nil || rs.RedirectURL == nil ||
			rs.HeadersSize == nil || rs.BodySize == nil {
			t.Errorf("entry %d: response lacks a required field", i)
			continue
		}
		if tm := e.Timings; tm.Send == nil || tm.Wait == nil || tm.Receive == nil || *tm.Wait != xs[i].DurationMs {
			t.Errorf("entry %d: bad timings", i)
		}
	}
	e0 := (*l.Entries)[0]
	if got, want := *e0.Request.URL, "https://api.example.com/v1/items?limit=10&tag=a&tag=b"; got != want {
		t.Errorf("url = %q, want %q", got, want)
	}
	var qs []string
	for _, nv := range *e0.Request.QueryString {
		qs = append(qs, *nv.Name+"="+*nv.Value)
	}
	if got, want := strings.Join(qs, "&"), "limit=10&tag=a&tag=b"; got != want {
		t.Errorf("queryString = %q, want %q", got, want)
	}
	var accept []string
	for _, nv := range *e0.Request.Headers {
		if *nv.Name == "Accept" {
			accept = append(accept, *nv.Value)
		}
	}
	if want := []string{"a/b", "c/d", "a/b"}; !reflect.DeepEqual(accept, want) {
		t.Errorf("Accept values = %q, want %q", accept, want)
	}
	if *e0.Response.StatusText != "Created" || *e0.Response.Content.MimeType != "application/json" {
		t.Errorf("response 0: %q %q", *e0.Response.StatusText, *e0.Response.Content.MimeType)
	}
	bin := (*l.Entries)[2].Response.Content
	if bin.Encoding == nil || *bin.Encoding != "base64" || *bin.Size != 1<<20 {
		t.Errorf("binary content not base64 or wrong size")
	}
	if c := (*l.Entries)[0].Response.Content; c.Encoding != nil {
		t.Errorf("text content has encoding %q", *c.Encoding)
	}
}

func TestExportHARDefaultBase(t *testing.T) {
	xs := []*Exchange{
		{Time: t0, Request: Request{Method: "GET", URL: "/a%2Fb/c?x=%20y"}, Response: &Response{Status: 302, Headers: http.Header{"Location": {"/next"}}}},
		{Time: t0, Request: Request{Method: "GET", URL: "http://other.example/abs?q=1"}},
	}
	var buf bytes.Buffer
	if err := ExportHAR(&buf, xs, "proxyctl"); err != nil {
		t.Fatal(err)
	}
	var h specHAR
	if err := json.Unmarshal(buf.Bytes(), &h); err != nil {
		t.Fatal(err)
	}
	es := *h.Log.Entries
	if got, want := *es[0].Request.URL, "http://localhost/a%2Fb/c?x=%20y"; got != want {
		t.Errorf("url = %q, want %q", got, want)
	}
	if got := *es[0].Response.RedirectURL; got != "/next" {
		t.Errorf("redirectURL = %q", got)
	}
	if got, want := *es[1].Request.URL, "http://other.example/abs?q=1"; got != want {
		t.Errorf("absolute url = %q, want %q", got, want)
	}
	if *h.Log.Creator.Version != "" {
		t.Errorf("creator version = %q", *h.Log.Creator.Version)
	}
	back, err := ReadHAR(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := back[0].Request.URL; got != "/a%2Fb/c?x=%20y" {
		t.Errorf("read back url = %q", got)
	}
	if back[1].Response != nil {
		t.Errorf("exchange without response read back with %+v", back[1].Response)
	}

	if err := ExportHARBase(&buf, xs, "p", "not a url"); err == nil {
		t.Error("bad base: no error")
	}
	if err := ExportHAR(&buf, []*Exchange{nil}, "p"); err == nil || !strings.Contains(err.Error(), "entry 0") {
		t.Errorf("nil entry: %v", err)
	}
}

func TestHARRoundTrip(t *testing.T) {
	xs := sampleExchanges(t)
	var buf bytes.Buffer
	if err := ExportHAR(&buf, exchangePtrs(xs), "proxyctl 1"); err != nil {
		t.Fatal(err)
	}
	back, err := ReadHAR(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(xs) {
		t.Fatalf("got %d exchanges, want %d", len(back), len(xs))
	}
	for i, got := range back {
		want := normalizeExchange(xs[i])
		if !got.Time.Equal(want.Time) {
			t.Errorf("%d: time %v, want %v", i, got.Time, want.Time)
		}
		got.Time = want.Time
		if want.Request.Proto == "" {
			want.Request.Proto = "HTTP/1.1"
		}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("exchange %d:\n got %+v\nwant %+v", i, *got, want)
		}
	}
}

func TestReadHARForeign(t *testing.T) {
	// As written by a browser: HTTP/2 pseudo-headers, lowercase names,
	// base64 content, postData without our extension.
	body := base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 0xff})
	har := `{"log":{"version":"1.2","creator":{"name":"WebInspector","version":"537.36"},"entries":[
	{"startedDateTime":"2024-05-01T10:00:00.123+02:00","time":42.5,
	 "request":{"method":"POST","url":"https://example.com/api/x?b=2&a=1","httpVersion":"http/2.0",
	  "headers":[{"name":":authority","value":"example.com"},{"name":"content-type","value":"text/plain"},{"name":"accept","value":"1"},{"name":"Accept","value":"2"}],
	  "queryString":[],"cookies":[],"headersSize":-1,"bodySize":5,"postData":{"mimeType":"text/plain","text":"hello"}},
	 "response":{"status":200,"statusText":"OK","httpVersion":"http/2.0","headers":[{"name":"content-type","value":"image/png"}],"cookies":[],
	  "content":{"size":4,"mimeType":"image/png","text":"` + body + `","encoding":"base64"},"redirectURL":"","headersSize":-1,"bodySize":4},
	 "cache":{},"timings":{"send":1,"wait":40,"receive":1.5}}]}}`
	xs, err := ReadHAR(strings.NewReader(har))
	if err != nil {
		t.Fatal(err)
	}
	x := xs[0]
	if x.Request.URL != "/api/x?b=2&a=1" || x.Request.Method != "POST" || string(x.Request.Body) != "hello" || x.DurationMs != 42.5 {
		t.Errorf("request = %+v", x.Request)
	}
	if want := (http.Header{"Content-Type": {"text/plain"}, "Accept": {"1", "2"}}); !reflect.DeepEqual(x.Request.Headers, want) {
		t.Errorf("headers = %v, want %v", x.Request.Headers, want)
	}
	if x.Response == nil || x.Response.Status != 200 || !bytes.Equal(x.Response.Body, []byte{0, 1, 2, 0xff}) {
		t.Errorf("response = %+v", x.Response)
	}
	if want := time.Date(2024, 5, 1, 8, 0, 0, 123e6, time.UTC); !x.Time.Equal(want) {
		t.Errorf("time = %v, want %v", x.Time, want)
	}
}

func TestReadHARErrors(t *testing.T) {
	entry := func(s string) string {
		return `{"log":{"version":"1.2","entries":[{"request":{"method":"GET","url":"/"}},` + s + `]}}`
	}
	for _, tc := range []struct{ name, har, want string }{
		{"not json", `<html>`, "read har: invalid character '<'"},
		{"no log", `{}`, `read har: missing "log"`},
		{"no request", entry(`{}`), `read har: entry 1: missing "request"`},
		{"no method", entry(`{"request":{"url":"/"}}`), "read har: entry 1: missing request method"},
		{"bad url", entry(`{"request":{"method":"GET","url":"http://a b/%zz"}}`), "read har: entry 1: invalid request url"},
		{"bad time", entry(`{"startedDateTime":"monday","request":{"method":"GET","url":"/"}}`), `read har: entry 1: invalid startedDateTime "monday"`},
		{"bad base64", entry(`{"request":{"method":"GET","url":"/"},"response":{"status":200,"content":{"text":"!!","encoding":"base64"}}}`), "read har: entry 1: response content: invalid base64"},
		{"bad encoding", entry(`{"request":{"method":"GET","url":"/"},"response":{"status":200,"content":{"text":"x","encoding":"gzip"}}}`), `read har: entry 1: response content: unknown encoding "gzip"`},
		{"wrong type", `{"log":{"entries":[{"request":{"method":7}}]}}`, "read har: json: cannot unmarshal number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadHAR(strings.NewReader(tc.har))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("got %v, want prefix %q", err, tc.want)
			}
		})
	}
}
