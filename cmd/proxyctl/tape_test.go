package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const tapeTestHTTP = `{"proxyctlTape":1,"createdAt":"2026-11-23T15:04:05Z","kind":"mixed","meta":{"target":"https://user:pw@api.example.com/base/"}}
{"type":"exchange","id":"x1","sessionId":"s-1","seq":1,"time":"2026-11-23T15:04:05.5Z","durationMs":12.5,"request":{"method":"POST","url":"/v1/items?b=2&a=1","proto":"HTTP/1.1","headers":{"Authorization":["Bearer sk-1"],"Content-Type":["application/json"]},"body":"{\"password\":\"hunter2\",\"n\":1}"},"response":{"status":201,"headers":{"Content-Type":["application/json"],"Location":["/v1/items/7"]},"trailers":{"X-Sum":["ab"]},"body":"{\"id\":7}"}}
{"type":"exchange","id":"x2","sessionId":"s-1","seq":2,"time":"2026-11-23T15:04:06Z","durationMs":3,"request":{"method":"PUT","url":"/v1/blob","headers":{"Content-Type":["application/octet-stream"]},"body":{"encoding":"base64","data":"AAEC/w=="}},"response":{"status":200,"headers":{"Content-Type":["image/png"]},"body":{"encoding":"base64","data":"iVBORw0KGgo="}}}
{"type":"exchange","id":"x3","sessionId":"s-1","seq":3,"time":"2026-11-23T15:04:07Z","durationMs":5000,"request":{"method":"GET","url":"http://other.example/abs"},"error":"upstream response header timeout"}
{"type":"frame","id":"f1","sessionId":"s-2","seq":1,"time":"2026-11-23T15:04:08Z","direction":"client->server","data":"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"password\":\"p\"}}"}
`

// runTape runs proxyctl in-process and returns its exit code and output.
func runTape(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	runChecked(t, strings.Join(args, " "), func() {
		code = runEnv(t.Context(), args, strings.NewReader(""), &out, &errb, func(string) string { return "" })
	})
	return code, out.String(), errb.String()
}

func writeTapeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask
		t.Fatal(err)
	}
	return path
}

// TestTapeExportHAR checks the HAR 1.2 fields every entry must have.
func TestTapeExportHAR(t *testing.T) {
	path := writeTapeFile(t, "api.tape.json", tapeTestHTTP, 0o600)
	out := filepath.Join(filepath.Dir(path), "api.har")
	code, stdout, stderr := runTape(t, "tape", "export", "--format", "har", path, "-o", out)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing (written to -o)", stdout)
	}
	if want := "proxyctl: 1 stdio frame left out (HAR holds HTTP exchanges only)\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var har struct {
		Log struct {
			Version string
			Creator struct{ Name, Version string }
			Entries []map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal(data, &har); err != nil {
		t.Fatalf("HAR is not JSON: %v\n%s", err, data)
	}
	if har.Log.Version != "1.2" {
		t.Errorf("log.version %q, want 1.2", har.Log.Version)
	}
	if har.Log.Creator.Name != "proxyctl" || har.Log.Creator.Version == "" {
		t.Errorf("log.creator %+v, want proxyctl and a version", har.Log.Creator)
	}
	if len(har.Log.Entries) != 3 {
		t.Fatalf("%d entries, want 3", len(har.Log.Entries))
	}
	has := func(t *testing.T, obj map[string]json.RawMessage, where string, keys ...string) {
		t.Helper()
		for _, k := range keys {
			if _, ok := obj[k]; !ok {
				t.Errorf("%s: missing %q", where, k)
			}
		}
	}
	sub := func(t *testing.T, raw json.RawMessage) map[string]json.RawMessage {
		t.Helper()
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s is not an object: %v", raw, err)
		}
		return m
	}
	wantURLs := []string{
		"https://api.example.com/base/v1/items?b=2&a=1", // user info dropped
		"https://api.example.com/base/v1/blob",
		"http://other.example/abs", // absolute targets are kept
	}
	for i, e := range har.Log.Entries {
		has(t, e, "entry", "startedDateTime", "time", "request", "response", "cache", "timings")
		req, resp, timings := sub(t, e["request"]), sub(t, e["response"]), sub(t, e["timings"])
		has(t, req, "request", "method", "url", "httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize")
		has(t, resp, "response", "status", "statusText", "httpVersion", "cookies", "headers", "content", "redirectURL", "headersSize", "bodySize")
		has(t, sub(t, resp["content"]), "response.content", "size", "mimeType")
		has(t, timings, "timings", "send", "wait", "receive")
		var url string
		_ = json.Unmarshal(req["url"], &url)
		if url != wantURLs[i] {
			t.Errorf("entry %d: url %q, want %q", i, url, wantURLs[i])
		}
		for _, k := range []string{"cookies", "headers", "queryString"} {
			if s := string(req[k]); !strings.HasPrefix(s, "[") {
				t.Errorf("entry %d: request.%s = %s, want an array", i, k, s)
			}
		}
	}
	entry0 := string(data)
	for _, want := range []string{
		`"startedDateTime":"2026-11-23T15:04:05.5Z"`,
		`"queryString":[{"name":"b","value":"2"},{"name":"a","value":"1"}]`,
		`"redirectURL":"/v1/items/7"`,
		`"_trailers":[{"name":"X-Sum","value":"ab"}]`,
		`"postData":{"mimeType":"application/octet-stream","text":"AAEC/w==","_encoding":"base64"}`,
		`"content":{"size":8,"mimeType":"image/png","text":"iVBORw0KGgo=","encoding":"base64"}`,
		`"response":{"status":0,`,
		`"_error":"upstream response header timeout"`,
	} {
		if !strings.Contains(entry0, want) {
			t.Errorf("HAR lacks %s", want)
		}
	}
	if strings.Contains(entry0, "user:pw") {
		t.Error("HAR holds the target's user info")
	}
}

func TestTapeRedactFiles(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes")
	}
	path := writeTapeFile(t, "api.tape.json", tapeTestHTTP, 0o640)
	dir := filepath.Dir(path)

	// -o: a new file gets 0600, the source is untouched.
	out := filepath.Join(dir, "clean.tape.json")
	code, _, stderr := runTape(t, "tape", "redact", path, "-o", out, "--redact-json", "password", "--redact-json", "params.password")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := "proxyctl: redacted 3 values in 2 of 4 entries; wrote " + out + "\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	checkMode(t, out, 0o600)
	if b, _ := os.ReadFile(path); string(b) != tapeTestHTTP {
		t.Error("-o changed the source tape")
	}
	if b, _ := os.ReadFile(out); bytes.Contains(b, []byte("hunter2")) || bytes.Contains(b, []byte("sk-1")) || bytes.Contains(b, []byte(`\"p\"`)) {
		t.Errorf("secrets left in %s", b)
	}

	// In place: the file keeps its mode, and no temporary file is left.
	code, _, stderr = runTape(t, "tape", "redact", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkMode(t, path, 0o640)
	b, _ := os.ReadFile(path)
	if bytes.Contains(b, []byte("sk-1")) || !bytes.Contains(b, []byte("hunter2")) {
		t.Errorf("in place without --redact-json: got %s", b)
	}
	checkNoTemp(t, dir)

	// Through a symlink: the target is rewritten, the link stays.
	link := filepath.Join(dir, "link.tape.json")
	if err := os.Symlink(out, link); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr = runTape(t, "tape", "redact", link, "--redact-header", "Content-Type"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("link replaced by a file: %v", err)
	}
	if b, _ := os.ReadFile(out); bytes.Contains(b, []byte("application/json")) {
		t.Errorf("link target not redacted: %s", b)
	}

	// A bad line: exit 1, the file is unchanged and no temporary is left.
	bad := tapeTestHTTP + "{\"type\":\n"
	badPath := filepath.Join(dir, "bad.tape.json")
	if err := os.WriteFile(badPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runTape(t, "tape", "redact", badPath)
	if code != 1 || !strings.Contains(stderr, "bad.tape.json: line 6: invalid entry") {
		t.Errorf("exit %d, stderr %q; want 1 naming line 6", code, stderr)
	}
	if b, _ := os.ReadFile(badPath); string(b) != bad {
		t.Error("failed redaction changed the file")
	}
	checkNoTemp(t, dir)

	// -o into a directory is refused.
	if code, _, stderr = runTape(t, "tape", "redact", path, "-o", dir); code != 1 || !strings.Contains(stderr, "is a directory") {
		t.Errorf("-o DIR: exit %d, stderr %q", code, stderr)
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func checkNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// TestTapeCutLastLine covers, on every platform, the cut tape the scripts
// make with head(1).
func TestTapeCutLastLine(t *testing.T) {
	lines := strings.SplitAfter(tapeTestHTTP, "\n")
	cut := strings.Join(lines[:3], "") + lines[3][:40]
	path := writeTapeFile(t, "cut.tape.json", cut, 0o600)
	warn := "proxyctl: warning: tape " + path + ": line 4: truncated last line (40 bytes) ignored\n"

	code, stdout, stderr := runTape(t, "tape", "validate", path)
	if code != 0 || stdout != path+": ok (2 exchanges, 0 frames)\n" || stderr != warn {
		t.Errorf("validate: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runTape(t, "tape", "show", path)
	if code != 0 || !strings.Contains(stdout, "2 entries (2 exchanges, 0 frames)") || stderr != warn {
		t.Errorf("show: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Redact drops the cut line (it may hold a secret it cannot redact).
	code, _, stderr = runTape(t, "tape", "redact", path)
	if code != 0 || !strings.HasPrefix(stderr, warn) {
		t.Errorf("redact: exit %d, stderr %q", code, stderr)
	}
	if b, _ := os.ReadFile(path); !bytes.HasSuffix(b, []byte("}\n")) || bytes.Count(b, []byte("\n")) != 3 {
		t.Errorf("redacted tape:\n%s", b)
	}
}

func TestTapeFormatting(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{tapeSize(0), "0B"},
		{tapeSize(999), "999B"},
		{tapeSize(1234), "1.2KB"},
		{tapeSize(5_500_000), "5.5MB"},
		{tapeSize(2_000_000_000), "2.0GB"},
		{tapeDuration(0.25), "250µs"},
		{tapeDuration(12.84), "12.8ms"},
		{tapeDuration(5001.2), "5.00s"},
		{tapeDuration(123_456), "2m3s"},
		{tapeCell("", 10), "-"},
		{tapeCell("a\tb\nc\x1b[0m", 0), `a\tb\nc\x1b[0m`},
		{tapeCell("héllo wörld", 5), "héllo…"},
		{tapeCell("héllo", 5), "héllo"},
		{tapeCell("\xff", 0), `\ufffd`},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestTapeRPCSummary(t *testing.T) {
	for _, tc := range []struct{ data, msg, id string }{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "tools/list", "1"},
		{`{"jsonrpc":"2.0","method":"notifications/progress","params":{}}`, "notifications/progress", "-"},
		{`{"jsonrpc":"2.0","id":"a","result":null}`, "result", `"a"`},
		{`{"jsonrpc":"2.0","id":2,"result":{"x":1}}`, "result", "2"},
		{`{"jsonrpc":"2.0","id":3,"error":{"code":-32600,"message":"bad\nrequest"}}`, `error -32600 bad\nrequest`, "3"},
		{`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`, "error -32700 parse error", "null"},
		{`[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":2,"method":"b"}]`, "batch of 2", "-"},
		{`not json`, "(not JSON-RPC)", "-"},
		{`{"jsonrpc":"2.0"}`, "(not JSON-RPC)", "-"},
		{``, "(not JSON-RPC)", "-"},
	} {
		msg, id := tapeRPCSummary([]byte(tc.data))
		if msg != tc.msg || id != tc.id {
			t.Errorf("%s: got %q %q, want %q %q", tc.data, msg, id, tc.msg, tc.id)
		}
	}
}
