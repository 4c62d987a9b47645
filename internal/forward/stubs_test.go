package forward_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/proxyctl/proxyctl/internal/forward"
	"github.com/proxyctl/proxyctl/internal/session"
)

// fakeStubs answers /stubbed for session s1; it reads the body of every
// request (as a body matcher would) and restores it.
type fakeStubs struct{ sawBody []string }

func (f *fakeStubs) ServeStub(w http.ResponseWriter, r *http.Request, sessionID string) (bool, error) {
	b, _ := io.ReadAll(r.Body)
	f.sawBody = append(f.sawBody, string(b))
	r.Body = io.NopCloser(bytes.NewReader(b))
	if sessionID != "s1" || r.URL.Path != "/stubbed" {
		return false, nil
	}
	w.Header().Set("X-Stub", "yes")
	w.WriteHeader(http.StatusTeapot)
	_, _ = io.WriteString(w, "from stub")
	return true, nil
}

func TestStubsAnswerBeforeTheUpstream(t *testing.T) {
	for _, path := range paths() {
		t.Run(path, func(t *testing.T) {
			c := make(collector, 8)
			stubs := &fakeStubs{}
			f := newProxy(t, echoUpstream(t), session.ModeAuto, func(p *forward.Proxy) {
				p.Stubs = stubs
				capturing(c, 0)(p)
			})
			post := func(path, session string) (*http.Response, string) {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.srv.URL+path, strings.NewReader("payload"))
				req.Header.Set("X-Proxy-Session", session)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, string(b)
			}
			resp, body := post("/stubbed", "s1")
			if resp.StatusCode != http.StatusTeapot || body != "from stub" || resp.Header.Get("X-Stub") != "yes" {
				t.Fatalf("stub: %d %q", resp.StatusCode, body)
			}
			if it := c.next(t); !it.Stubbed || it.Status != http.StatusTeapot || string(it.ResponseBody.Data) != "from stub" || string(it.RequestBody.Data) != "payload" {
				t.Fatalf("stubbed item %+v", it)
			}
			// No stub for another session: the upstream gets the whole body.
			resp, body = post("/stubbed", "s2")
			if resp.StatusCode != http.StatusCreated || body != "echo:payload" {
				t.Fatalf("upstream: %d %q", resp.StatusCode, body)
			}
			if it := c.next(t); it.Stubbed || string(it.RequestBody.Data) != "payload" {
				t.Fatalf("forwarded item: stubbed %v, request body %q", it.Stubbed, it.RequestBody.Data)
			}
		})
	}
}

func TestBackendServesWhatStubsDoNot(t *testing.T) {
	c := make(collector, 8)
	f := newProxy(t, nil, session.ModeAuto, func(p *forward.Proxy) {
		p.Backend = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "backend "+r.URL.Path)
		})
		capturing(c, 0)(p)
	})
	resp, body := get(t, f.srv.URL+"/x", nil)
	if resp.StatusCode != 200 || body != "backend /x" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if it := c.next(t); string(it.ResponseBody.Data) != "backend /x" {
		t.Fatalf("item %+v", it)
	}
	// A service header still must name a service in the map.
	resp, _ = get(t, f.srv.URL+"/x", map[string]string{"X-Proxy-Service": "nope"})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unknown service with a backend: %d", resp.StatusCode)
	}
}
