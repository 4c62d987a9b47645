// Command gen writes the data bench/replay.sh serves, all from one list of
// exchanges: GET /item/0 .. /item/N-1, each answered 200 with its own JSON
// body of exactly 1024 bytes. It writes
//
//	DIR/items-N.har                   one HAR 1.2 file per -har size (proxyctl's own HAR writer)
//	DIR/wiremock/mappings/items.json  WireMock stub mappings, one per path (-stubs of them)
//	DIR/imposter.json                 a mountebank imposter with the same stubs (equals path)
//	DIR/item-7.json                   the body of /item/7, to check every server answers the same
//
// Run from the repository root:
//
//	go run ./bench/replay -out DIR -har 1,10000,1000 -stubs 1000 -mb-port PORT
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/proxyctl/proxyctl/internal/tape"
)

const bodySize = 1024

func main() {
	out := flag.String("out", "", "directory to write into (created)")
	hars := flag.String("har", "1,10000", "comma-separated exchange counts, one HAR file each")
	stubs := flag.Int("stubs", 1000, "number of WireMock mappings and mountebank stubs (0: none)")
	mbPort := flag.Int("mb-port", 0, "port of the mountebank imposter")
	flag.Parse()
	if err := run(*out, *hars, *stubs, *mbPort); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out, hars string, stubs, mbPort int) error {
	if out == "" {
		return fmt.Errorf("-out is required")
	}
	if err := os.MkdirAll(filepath.Join(out, "wiremock", "mappings"), 0o750); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(out, "wiremock", "__files"), 0o750); err != nil {
		return err
	}
	for s := range strings.SplitSeq(hars, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-har %q: want positive counts", hars)
		}
		if err := writeHAR(filepath.Join(out, fmt.Sprintf("items-%d.har", n)), n); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(out, "item-7.json"), itemBody(7), 0o600); err != nil {
		return err
	}
	if stubs > 0 {
		if err := writeJSON(filepath.Join(out, "wiremock", "mappings", "items.json"), wiremockMappings(stubs)); err != nil {
			return err
		}
		if err := writeJSON(filepath.Join(out, "imposter.json"), imposter(stubs, mbPort)); err != nil {
			return err
		}
	}
	return nil
}

// itemPath is the request path of exchange i.
func itemPath(i int) string { return "/item/" + strconv.Itoa(i) }

// itemBody is the response body of exchange i: a JSON object padded to
// exactly bodySize bytes, different for every i.
func itemBody(i int) []byte {
	type item struct {
		ID          int      `json:"id"`
		Name        string   `json:"name"`
		SKU         string   `json:"sku"`
		Price       float64  `json:"price"`
		InStock     bool     `json:"inStock"`
		Tags        []string `json:"tags"`
		Description string   `json:"description"`
	}
	it := item{
		ID: i, Name: fmt.Sprintf("item %d", i), SKU: fmt.Sprintf("SKU-%08d", i*7919),
		Price: float64(i%10000)/100 + 0.99, InStock: i%3 != 0,
		Tags: []string{"bench", "replay", "tag-" + strconv.Itoa(i%17)},
	}
	b, _ := json.Marshal(it) // plain fields: cannot fail
	const words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
	pad := bodySize - len(b)
	var d strings.Builder
	for j := i; d.Len() < pad; j++ {
		d.WriteString(words[j%len(words):])
		d.WriteString(words)
	}
	it.Description = d.String()[:pad]
	b, _ = json.Marshal(it) // plain fields: cannot fail
	return b
}

func writeHAR(path string, n int) error {
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	xs := make([]*tape.Exchange, n)
	for i := range n {
		xs[i] = &tape.Exchange{
			ID:         fmt.Sprintf("x%d", i),
			Time:       start.Add(time.Duration(i) * time.Millisecond),
			DurationMs: 1.5,
			Request: tape.Request{
				Method: http.MethodGet, URL: itemPath(i), Proto: "HTTP/1.1",
				Headers: http.Header{"Accept": {"application/json"}, "User-Agent": {"bench-client/1.0"}},
			},
			Response: &tape.Response{
				Status:  http.StatusOK,
				Headers: http.Header{"Content-Type": {"application/json"}},
				Body:    tape.Body(itemBody(i)),
			},
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := tape.ExportHAR(f, xs, "proxyctl-bench 1"); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// wiremockMappings is a WireMock mappings file: one stub per path, method
// and path equal, the same status, Content-Type and body as the HAR.
func wiremockMappings(n int) any {
	type req struct {
		Method  string `json:"method"`
		URLPath string `json:"urlPath"`
	}
	type resp struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	}
	type mapping struct {
		Request  req  `json:"request"`
		Response resp `json:"response"`
	}
	ms := make([]mapping, n)
	for i := range n {
		ms[i] = mapping{
			Request:  req{Method: http.MethodGet, URLPath: itemPath(i)},
			Response: resp{Status: http.StatusOK, Headers: map[string]string{"Content-Type": "application/json"}, Body: string(itemBody(i))},
		}
	}
	return map[string]any{"mappings": ms}
}

// imposter is a mountebank HTTP imposter on 127.0.0.1:port with one stub
// per path ("equals": {"path": ...}). mountebank answers "Connection:
// close" unless told otherwise, so every response (and the 404 for a miss)
// says keep-alive, as the other servers do.
func imposter(n, port int) any {
	type is struct {
		StatusCode int               `json:"statusCode"`
		Headers    map[string]string `json:"headers"`
		Body       string            `json:"body,omitempty"`
	}
	type response struct {
		Is is `json:"is"`
	}
	type predicate struct {
		Equals map[string]string `json:"equals"`
	}
	type stub struct {
		Predicates []predicate `json:"predicates"`
		Responses  []response  `json:"responses"`
	}
	hdr := map[string]string{"Content-Type": "application/json", "Connection": "keep-alive"}
	ss := make([]stub, n)
	for i := range n {
		ss[i] = stub{
			Predicates: []predicate{{Equals: map[string]string{"path": itemPath(i)}}},
			Responses:  []response{{Is: is{StatusCode: http.StatusOK, Headers: hdr, Body: string(itemBody(i))}}},
		}
	}
	return map[string]any{
		"protocol":        "http",
		"host":            "127.0.0.1",
		"port":            port,
		"name":            "proxyctl-bench",
		"defaultResponse": is{StatusCode: http.StatusNotFound, Headers: map[string]string{"Connection": "keep-alive"}},
		"stubs":           ss,
	}
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, b, 0o600)
}
