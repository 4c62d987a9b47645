package admin_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/admin"
	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
)

const baseMicros = 1767323045_000_000

// newTrafficServer serves the admin API over a memory store holding
// session "s" (unless withSessions is false, when the API has no session
// manager at all).
func newTrafficServer(t *testing.T, withSessions bool, token string) (*httptest.Server, *memstore.Store) {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t))
	st := memstore.New()
	s := &admin.Server{Traffic: st, Token: token, Log: log}
	if withSessions {
		mgr := session.NewManager(st, session.Config{Mode: session.ModeStrict}, log)
		if _, err := mgr.Open(t.Context(), "s", 0, "test", nil); err != nil {
			t.Fatal(err)
		}
		s.Sessions = mgr
		s.Errors = admin.Errors{Ended: session.ErrEnded, TooMany: session.ErrTooMany, Unavailable: session.ErrUnavailable, InvalidID: session.ErrInvalidID}
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, st
}

func trafficItem(session string, n int64) *capture.Item {
	return &capture.Item{
		SessionID:      session,
		Timestamp:      baseMicros + n,
		ID:             fmt.Sprintf("%s-%d", session, n),
		Kind:           capture.KindHTTP,
		Method:         "GET",
		Path:           fmt.Sprintf("/items/%d?x=1", n),
		Status:         200,
		RequestHeaders: map[string][]string{"Accept": {"application/json"}},
		ResponseBody:   capture.NewBody([]byte(`{"ok":true}`)),
		DurationMs:     1.5,
	}
}

func appendN(t *testing.T, st store.Traffic, session string, from, to int64) {
	t.Helper()
	var batch []*capture.Item
	for n := from; n <= to; n++ {
		batch = append(batch, trafficItem(session, n))
	}
	if err := st.AppendTraffic(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
}

// page returns the items' timestamps (as offsets from baseMicros) and next.
func page(t *testing.T, url string) ([]int64, string) {
	t.Helper()
	code, body := call(t, "GET", url, "", "")
	if code != 200 {
		t.Fatalf("GET %s: %d %v", url, code, body)
	}
	items, ok := body["items"].([]any)
	if !ok {
		t.Fatalf("GET %s: items is %T, want a list", url, body["items"])
	}
	var ts []int64
	for _, it := range items {
		ts = append(ts, int64(it.(map[string]any)["timestamp"].(float64))-baseMicros)
	}
	return ts, body["next"].(string)
}

func TestTrafficAPI(t *testing.T) {
	srv, st := newTrafficServer(t, true, "")
	u := srv.URL + "/api/sessions/s/traffic"

	ts, next := page(t, u)
	if len(ts) != 0 || next != "" {
		t.Errorf("no traffic yet: %v, next %q", ts, next)
	}
	// Items of another session never show.
	appendN(t, st, "other", 1, 3)
	bin := trafficItem("s", 3)
	bin.RequestBody = capture.NewBody([]byte{0xff, 0x00, 0xfe})
	if err := st.AppendTraffic(t.Context(), []*capture.Item{trafficItem("s", 5), bin, trafficItem("s", 1), trafficItem("s", 2), trafficItem("s", 4)}); err != nil {
		t.Fatal(err)
	}
	code, body := call(t, "GET", u, "", "")
	if code != 200 {
		t.Fatalf("list: %d %v", code, body)
	}
	items := body["items"].([]any)
	if len(items) != 5 || body["next"] != "" {
		t.Fatalf("list: %d items, next %v; want 5 and no next", len(items), body["next"])
	}
	first := items[0].(map[string]any)
	if first["sessionId"] != "s" || first["id"] != "s-1" || first["path"] != "/items/1?x=1" ||
		first["status"] != 200.0 || first["timestamp"] != float64(baseMicros+1) ||
		first["responseBody"].(map[string]any)["text"] != `{"ok":true}` {
		t.Errorf("first item: %v", first)
	}
	third := items[2].(map[string]any)["requestBody"].(map[string]any)
	if third["base64"] != base64.StdEncoding.EncodeToString([]byte{0xff, 0x00, 0xfe}) || third["size"] != 3.0 {
		t.Errorf("binary body: %v", third)
	}

	// Pages of 2 follow next; cursor is an alias of since.
	for _, param := range []string{"since", "cursor"} {
		var all []int64
		next := ""
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatalf("%s: pagination does not end", param)
			}
			ts, n := page(t, u+"?limit=2&"+param+"="+next)
			all = append(all, ts...)
			if n == "" {
				break
			}
			if want := strconv.FormatInt(baseMicros+ts[len(ts)-1], 10); n != want {
				t.Errorf("%s: next %q, want the last timestamp %q", param, n, want)
			}
			next = n
		}
		if !slices.Equal(all, []int64{1, 2, 3, 4, 5}) {
			t.Errorf("%s: pages gave %v, want 1..5", param, all)
		}
	}
	// A page that ends exactly on the last item has no next.
	if ts, next := page(t, u+"?limit=5"); len(ts) != 5 || next != "" {
		t.Errorf("limit=5: %v, next %q", ts, next)
	}
	if ts, next := page(t, u+"?limit=4"); len(ts) != 4 || next != strconv.FormatInt(baseMicros+4, 10) {
		t.Errorf("limit=4: %v, next %q", ts, next)
	}
	// since is exclusive.
	if ts, _ := page(t, u+"?since="+strconv.FormatInt(baseMicros+3, 10)); !slices.Equal(ts, []int64{4, 5}) {
		t.Errorf("since 3: %v, want [4 5]", ts)
	}
	if ts, next := page(t, u+"?since="+strconv.FormatInt(baseMicros+5, 10)); len(ts) != 0 || next != "" {
		t.Errorf("since the last: %v, next %q", ts, next)
	}
}

func TestTrafficAPIMaxLimit(t *testing.T) {
	srv, st := newTrafficServer(t, true, "")
	u := srv.URL + "/api/sessions/s/traffic"
	appendN(t, st, "s", 1, store.MaxLimit)
	// Exactly MaxLimit items: the store cannot return limit+1, yet next
	// must still be empty.
	if ts, next := page(t, u+"?limit=1000"); len(ts) != store.MaxLimit || next != "" {
		t.Errorf("%d items, limit 1000: got %d, next %q", store.MaxLimit, len(ts), next)
	}
	appendN(t, st, "s", store.MaxLimit+1, store.MaxLimit+1)
	ts, next := page(t, u+"?limit=1000")
	if len(ts) != store.MaxLimit || next != strconv.FormatInt(baseMicros+store.MaxLimit, 10) {
		t.Fatalf("%d items, limit 1000: got %d, next %q", store.MaxLimit+1, len(ts), next)
	}
	if ts, next := page(t, u+"?limit=1000&since="+next); !slices.Equal(ts, []int64{store.MaxLimit + 1}) || next != "" {
		t.Errorf("second page: %v, next %q", ts, next)
	}
	// The default page size.
	if ts, next := page(t, u); len(ts) != store.DefaultLimit || next == "" {
		t.Errorf("default limit: %d items, next %q", len(ts), next)
	}
}

func TestTrafficAPIErrors(t *testing.T) {
	srv, st := newTrafficServer(t, true, "")
	appendN(t, st, "ghost", 1, 2) // traffic of a session the manager does not know
	code, body := call(t, "GET", srv.URL+"/api/sessions/ghost/traffic", "", "")
	if code != 404 || body["error"] != "unknown session" {
		t.Errorf("unknown session: %d %v", code, body)
	}
	for _, q := range []string{"since=abc", "since=-1", "since=1.5", "cursor=x", "since=99999999999999999999", "limit=0", "limit=1001", "limit=x"} {
		code, body := call(t, "GET", srv.URL+"/api/sessions/s/traffic?"+q, "", "")
		if code != 400 || body["error"] == nil || body["status"] != 400.0 {
			t.Errorf("%s: %d %v, want a 400 JSON error", q, code, body)
		}
	}
}

func TestTrafficAPIWithoutSessions(t *testing.T) {
	srv, st := newTrafficServer(t, false, "tok")
	appendN(t, st, "any", 1, 2)
	if code, _ := call(t, "GET", srv.URL+"/api/sessions/any/traffic", "", ""); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	code, body := call(t, "GET", srv.URL+"/api/sessions/any/traffic", "tok", "")
	if code != 200 || len(body["items"].([]any)) != 2 {
		t.Errorf("with token: %d %v", code, body)
	}
	// With no session manager an unknown session just has no traffic.
	code, body = call(t, "GET", srv.URL+"/api/sessions/nope/traffic", "tok", "")
	if code != 200 || len(body["items"].([]any)) != 0 || body["next"] != "" {
		t.Errorf("unknown session: %d %v", code, body)
	}
}

func TestTrafficAPIOff(t *testing.T) {
	srv, _ := newServer(t, "")
	if code, _ := call(t, "POST", srv.URL+"/api/sessions", "", `{"id":"s"}`); code != 201 {
		t.Fatalf("create: %d", code)
	}
	if code, _ := call(t, "GET", srv.URL+"/api/sessions/s/traffic", "", ""); code != 404 {
		t.Errorf("traffic without a Traffic store: %d, want 404", code)
	}
}

// brokenTraffic is a store whose traffic queries fail.
type brokenTraffic struct{ store.Traffic }

func (brokenTraffic) ListTraffic(context.Context, string, int64, int) ([]capture.Item, error) {
	return nil, errors.New("connection refused to 10.0.0.7")
}

func TestTrafficAPIStoreError(t *testing.T) {
	s := &admin.Server{Traffic: brokenTraffic{}, Log: zerolog.New(zerolog.NewTestWriter(t))}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/api/sessions/s/traffic", nil))
	if rec.Code != http.StatusServiceUnavailable || strings.Contains(rec.Body.String(), "10.0.0.7") {
		t.Errorf("store failure: %d %s", rec.Code, rec.Body)
	}
}
