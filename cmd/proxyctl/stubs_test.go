package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func adminDo(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func sessionGet(t *testing.T, url, session string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-Proxy-Session", session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A session stub answers instead of the upstream for its session only; the
// traffic item says stubbed; a captured exchange becomes a stub with one
// call and keeps answering once the upstream is gone.
func TestStubsInForward(t *testing.T) {
	up := roundTripUpstream(t, []byte("x"))
	r := startProxyCmd(t, "forward", "--target", up.URL)
	code, b := adminDo(t, http.MethodPost, "http://"+r.admin+"/api/sessions/s1/stubs",
		`{"pattern":{"method":"GET","url":"/counter"},"response":{"status":200,"body":"stubbed"}}`)
	if code != http.StatusCreated {
		t.Fatalf("create stub: %d %s", code, b)
	}
	if code, body := sessionGet(t, "http://"+r.proxy+"/counter", "s1"); code != 200 || body != "stubbed" {
		t.Fatalf("s1: %d %q", code, body)
	}
	if _, body := sessionGet(t, "http://"+r.proxy+"/counter", "s2"); body != "call 1" {
		t.Fatalf("s2 must reach the upstream: %q", body)
	}
	var page struct {
		Items []struct {
			ID      string
			Path    string
			Stubbed bool
		}
	}
	b = waitTraffic(t, r.admin, "s1", 1)
	_ = json.Unmarshal(b, &page)
	if len(page.Items) != 1 || !page.Items[0].Stubbed {
		t.Fatalf("s1 traffic: %s", b)
	}

	// From traffic: s2's captured exchange becomes s2's stub.
	b = waitTraffic(t, r.admin, "s2", 1)
	_ = json.Unmarshal(b, &page)
	if len(page.Items) != 1 {
		t.Fatalf("s2 traffic: %s", b)
	}
	code, b = adminDo(t, http.MethodPost, "http://"+r.admin+"/api/sessions/s2/stubs/from-traffic", `{"trafficId":"`+page.Items[0].ID+`"}`)
	if code != http.StatusCreated {
		t.Fatalf("from-traffic: %d %s", code, b)
	}
	up.Close()
	if code, body := sessionGet(t, "http://"+r.proxy+"/counter", "s2"); code != 200 || body != "call 1" {
		t.Fatalf("the stub from traffic must answer as recorded: %d %q", code, body)
	}
	// Stubs list and delete.
	var stubs struct{ Items []struct{ StubID string } }
	_, b = adminDo(t, http.MethodGet, "http://"+r.admin+"/api/sessions/s1/stubs", "")
	_ = json.Unmarshal(b, &stubs)
	if len(stubs.Items) != 1 {
		t.Fatalf("list: %s", b)
	}
	if code, _ := adminDo(t, http.MethodDelete, "http://"+r.admin+"/api/sessions/s1/stubs/"+stubs.Items[0].StubID, ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := sessionGet(t, "http://"+r.proxy+"/counter", "s1"); code != http.StatusBadGateway {
		t.Fatalf("after delete, s1 goes upstream (gone: 502), got %d", code)
	}
}

// In replay, stubs come before the tape; "*" applies to every session.
func TestStubsBeforeTheTape(t *testing.T) {
	up := roundTripUpstream(t, []byte("x"))
	tp := filepath.Join(t.TempDir(), "s.tape")
	rec := startProxyCmd(t, "record", "--target", up.URL, "--tape", tp)
	doAll(t, roundTripRequests("http://" + rec.proxy)[5:6])
	rec.wait(t)
	rp := startReplay(t, tp)
	if _, body := sessionGet(t, "http://"+rp.proxy+"/counter", "any"); body != "call 1" {
		t.Fatalf("tape: %q", body)
	}
	code, b := adminDo(t, http.MethodPost, "http://"+rp.admin+"/api/sessions/*/stubs",
		`{"priority":1,"pattern":{"urlPath":"/counter"},"response":{"status":503,"jsonBody":{"down":true}}}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, b)
	}
	if code, body := sessionGet(t, "http://"+rp.proxy+"/counter", "other"); code != 503 || body != `{"down":true}` {
		t.Fatalf("global stub before the tape: %d %q", code, body)
	}
}

// waitTraffic polls the traffic API until the session has n items (capture
// is asynchronous) and returns the page.
func waitTraffic(t *testing.T, admin, session string, n int) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, b := adminDo(t, http.MethodGet, "http://"+admin+"/api/sessions/"+session+"/traffic", "")
		var page struct{ Items []json.RawMessage }
		_ = json.Unmarshal(b, &page)
		if len(page.Items) >= n || time.Now().After(deadline) {
			return b
		}
		time.Sleep(10 * time.Millisecond)
	}
}
