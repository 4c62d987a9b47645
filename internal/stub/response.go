package stub

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/proxyctl/proxyctl/internal/store"
)

// WriteResponse writes s's response to w: after the delay (cut short when
// r's context ends, then nothing is written and the context's cause is
// returned), the status, the headers (Content-Length from the body) and the
// body (not for HEAD). A response that does not compile (see Compile) is
// answered with a JSON 500 and the error returned.
func WriteResponse(w http.ResponseWriter, r *http.Request, s *store.Stub) error {
	resp, err := compileResponse(&s.Response)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		b, _ := json.Marshal(map[string]any{"error": "invalid stub response", "status": http.StatusInternalServerError})
		_, _ = w.Write(append(b, '\n'))
		return err
	}
	return resp.write(w, r)
}

// WriteResponse writes c's response (see the function WriteResponse).
func (c *Compiled) WriteResponse(w http.ResponseWriter, r *http.Request) error {
	return c.resp.write(w, r)
}

func (resp *response) write(w http.ResponseWriter, r *http.Request) error {
	if resp.delay > 0 {
		t := time.NewTimer(resp.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return context.Cause(r.Context())
		}
	}
	h := w.Header()
	for _, kv := range resp.headers {
		h[kv[0]] = []string{kv[1]}
	}
	if bodyAllowed(resp.status) {
		h["Content-Length"] = []string{strconv.Itoa(len(resp.body))}
	}
	w.WriteHeader(resp.status)
	if len(resp.body) == 0 || r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(resp.body)
	return err
}
