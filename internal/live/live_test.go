package live_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/live"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait in these tests: generous, for shared and
// loaded CI hosts; passing tests take a fraction of it.
const testTimeout = 20 * time.Second

// start serves h on a 127.0.0.1 httptest server and runs it until the test
// ends; stop ends Run early and returns its error. Options adjust the server
// before it starts.
func start(t testing.TB, h *live.Hub, opts ...func(*httptest.Server)) (srv *httptest.Server, stop func() error) {
	t.Helper()
	if tt, ok := t.(*testing.T); ok {
		h.Log = zerolog.New(zerolog.NewTestWriter(tt))
	}
	srv = httptest.NewUnstartedServer(h)
	for _, o := range opts {
		o(srv)
	}
	srv.Start()
	t.Cleanup(srv.Close) // runs after Run has returned (cleanups are LIFO)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	var err error
	stopped := false
	stop = func() error {
		if stopped {
			return err
		}
		stopped = true
		cancel()
		select {
		case err = <-done:
		case <-time.After(testTimeout):
			t.Fatal("Run did not return after its ctx ended")
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return srv, stop
}

func wsURL(srv *httptest.Server, topic string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/api/ws?topic=" + url.QueryEscape(topic)
}

// dial opens a WebSocket to topic, with an Origin header when origin is set.
func dial(t testing.TB, srv *httptest.Server, topic, origin string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	hdr := http.Header{}
	if origin != "" {
		hdr.Set("Origin", origin)
	}
	d := websocket.Dialer{HandshakeTimeout: testTimeout}
	conn, resp, err := d.DialContext(ctx, wsURL(srv, topic), hdr)
	if conn != nil {
		t.Cleanup(func() { _ = conn.Close() })
	}
	return conn, resp, err
}

func mustDial(t testing.TB, srv *httptest.Server, topic string) *websocket.Conn {
	t.Helper()
	conn, resp, err := dial(t, srv, topic, "")
	if err != nil {
		t.Fatalf("dial %s: %v", topic, err)
	}
	_ = resp.Body.Close()
	return conn
}

// wantJSONError checks a refused handshake's response.
func wantJSONError(t *testing.T, resp *http.Response, err error, status int) {
	t.Helper()
	if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
		t.Fatalf("dial: got %v, want a refused handshake", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != status {
		t.Errorf("status: got %d, want %d", resp.StatusCode, status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type: got %q, want %q", ct, "application/json")
	}
	var body struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode error body: %v", err)
	}
	if body.Status != status || body.Error == "" {
		t.Errorf("body: got %+v, want status %d and an error", body, status)
	}
}

// waitFor polls cond until it holds or testTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func item(session string, i int, body []byte) *capture.Item {
	return &capture.Item{
		SessionID:    session,
		Timestamp:    int64(i),
		ID:           strconv.Itoa(i),
		Kind:         capture.KindHTTP,
		Method:       "GET",
		Path:         "/items/" + strconv.Itoa(i) + "?q=1",
		Status:       200,
		ResponseBody: capture.NewBody(body),
		DurationMs:   1.5,
	}
}

// readN reads n text frames and checks each is exactly json.Marshal of the
// next item of want.
func readN(ctx context.Context, conn *websocket.Conn, want []*capture.Item) error {
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(d)
	}
	for i, it := range want {
		typ, msg, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("item %d of %d: %w", i, len(want), err)
		}
		if typ != websocket.TextMessage {
			return fmt.Errorf("item %d: got message type %d, want text", i, typ)
		}
		enc, _ := json.Marshal(it)
		if !bytes.Equal(msg, enc) {
			return fmt.Errorf("item %d: got %.200s, want %.200s", i, msg, enc)
		}
	}
	return nil
}

func TestDeliverOrderAndTopics(t *testing.T) {
	const n = 600
	h := &live.Hub{QueueSize: 2 * n}
	srv, _ := start(t, h)

	all := mustDial(t, srv, "traffic")
	a := mustDial(t, srv, "session-a-traffic")
	// Session "later-1" has no item yet: its first comes halfway through.
	later := mustDial(t, srv, "session-later-1-traffic")

	var items, wantA, wantLater []*capture.Item
	for i := range n {
		s := "b"
		switch {
		case i%3 == 0:
			s = "a"
		case i%3 == 1 && i >= n/2:
			s = "later-1"
		}
		it := item(s, i, []byte("body "+strconv.Itoa(i)))
		items = append(items, it)
		switch s {
		case "a":
			wantA = append(wantA, it)
		case "later-1":
			wantLater = append(wantLater, it)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	// Subscriptions are in place once the dials return: deliver at once,
	// in batches of varying size, while the clients read.
	g.Go(func() error {
		for i, size := 0, 1; i < n; i, size = i+size, size%25+1 {
			if err := h.Deliver(ctx, items[i:min(i+size, n)]); err != nil {
				return fmt.Errorf("deliver: %w", err)
			}
		}
		return nil
	})
	g.Go(func() error { return readN(ctx, all, items) })
	g.Go(func() error { return readN(ctx, a, wantA) })
	g.Go(func() error { return readN(ctx, later, wantLater) })
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := h.Dropped(); got != 0 {
		t.Errorf("Dropped: got %d, want 0", got)
	}
}

func TestOrigin(t *testing.T) {
	h := &live.Hub{}
	srv, _ := start(t, h)
	self := srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(self)
	tests := []struct {
		name, origin string
		ok           bool
	}{
		{"none", "", true},
		{"same host", "http://" + self, true},
		{"same host other scheme", "https://" + self, true},
		{"foreign", "http://evil.example", false},
		{"foreign same port", "http://evil.example:" + port, false},
		{"same address other port", "http://127.0.0.1:1", false},
		{"localhost for 127.0.0.1", "http://localhost:" + port, false},
		{"null", "null", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, resp, err := dial(t, srv, "traffic", tt.origin)
			if tt.ok {
				if err != nil {
					t.Fatalf("dial with Origin %q: %v", tt.origin, err)
				}
				_ = resp.Body.Close()
				_ = conn.Close()
				return
			}
			wantJSONError(t, resp, err, http.StatusForbidden)
		})
	}
	waitFor(t, "no clients", func() bool { return h.Clients() == 0 })
}

func TestBadTopic(t *testing.T) {
	h := &live.Hub{}
	srv, _ := start(t, h)
	for _, tt := range []struct{ name, topic string }{
		{"empty", ""},
		{"case", "Traffic"},
		{"suffix", "traffic2"},
		{"no traffic suffix", "session-a"},
		{"no session prefix", "a-traffic"},
		{"empty id", "session--traffic"},
		{"no id", "session-traffic"},
		{"id too long", "session-" + strings.Repeat("x", 257) + "-traffic"},
		{"id with space", "session-a b-traffic"},
		{"id with control", "session-a\x00-traffic"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, resp, err := dial(t, srv, tt.topic, "")
			wantJSONError(t, resp, err, http.StatusBadRequest)
		})
	}
	// No topic parameter at all.
	resp, err := srv.Client().Get(srv.URL + "/api/ws")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no topic: got %d, want 400", resp.StatusCode)
	}
	if n := h.Clients(); n != 0 {
		t.Errorf("Clients: got %d, want 0", n)
	}
}

func TestNotAWebSocket(t *testing.T) {
	h := &live.Hub{}
	srv, _ := start(t, h)
	resp, err := srv.Client().Get(srv.URL + "/api/ws?topic=traffic")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !json.Valid(body) {
		t.Errorf("got %d %s, want 400 with a JSON body", resp.StatusCode, body)
	}
	if n := h.Clients(); n != 0 {
		t.Errorf("Clients: got %d, want 0", n)
	}
}

func TestMaxClients(t *testing.T) {
	h := &live.Hub{MaxClients: 2}
	srv, _ := start(t, h)
	first := mustDial(t, srv, "traffic")
	mustDial(t, srv, "session-x-traffic")
	_, resp, err := dial(t, srv, "traffic", "")
	wantJSONError(t, resp, err, http.StatusServiceUnavailable)

	// A client that leaves frees its slot.
	_ = first.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = first.Close()
	waitFor(t, "one client", func() bool { return h.Clients() == 1 })
	mustDial(t, srv, "traffic")
}

// TestStalledClient: a client that never reads fills its TCP buffers and its
// queue; Deliver keeps returning, the healthy client gets everything, and the
// stalled one is dropped with 1013.
func TestStalledClient(t *testing.T) {
	const (
		n = 2000
		// The stalled client is dropped once its TCP buffers and then this
		// queue are full. The healthy client reads while the loop delivers
		// at most window items ahead of it; a window of a few dozen items
		// (rather than lockstep) keeps the test fast on a loaded host.
		queueSize = 64
		window    = queueSize / 2
	)
	var (
		mu    sync.Mutex
		drops []string
	)
	h := &live.Hub{QueueSize: queueSize, OnDrop: func(r string) {
		mu.Lock()
		defer mu.Unlock()
		drops = append(drops, r)
	}}
	// Small socket buffers on both ends (which also turn off the kernel's
	// autotuning, up to 32 MiB on some hosts) make the stalled client's TCP
	// buffers fill after a few hundred KiB whatever the host, so that small
	// items, cheap to encode under the race detector, are enough.
	const sockBuf = 32 << 10
	srv, _ := start(t, h, func(srv *httptest.Server) {
		srv.Listener = smallSendBuffers{srv.Listener.(*net.TCPListener), sockBuf}
	})
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()

	// The stalled client never reads until the end.
	d := websocket.Dialer{
		HandshakeTimeout: testTimeout,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				err = conn.(*net.TCPConn).SetReadBuffer(sockBuf)
			}
			return conn, err
		},
	}
	stalled, resp, err := d.DialContext(ctx, wsURL(srv, "traffic"), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	defer stalled.Close()
	healthy := mustDial(t, srv, "traffic")
	// The healthy client reports each item's id.
	got := make(chan int, n)
	readErr := make(chan error, 1)
	go func() {
		_ = healthy.SetReadDeadline(time.Now().Add(testTimeout))
		for range n {
			_, msg, err := healthy.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			// Items encode their id early: no need to decode the body.
			_, rest, _ := bytes.Cut(msg, []byte(`"id":"`))
			digits, _, _ := bytes.Cut(rest, []byte(`"`))
			id, err := strconv.Atoi(string(digits))
			if err != nil {
				readErr <- fmt.Errorf("no id in %.100s", msg)
				return
			}
			got <- id
		}
	}()
	next := 0
	receive := func() {
		t.Helper()
		select {
		case id := <-got:
			if id != next {
				t.Fatalf("healthy client: got item %d, want %d", id, next)
			}
			next++
		case err := <-readErr:
			t.Fatalf("healthy client: %v", err)
		case <-ctx.Done():
			t.Fatalf("healthy client: got %d items of %d: %v", next, n, ctx.Err())
		}
	}

	body := bytes.Repeat([]byte("x"), 4<<10) // 2000 of them: 8 MiB
	var slowest time.Duration
	for i := range n {
		start := time.Now()
		if err := h.Deliver(ctx, []*capture.Item{item("s", i, body)}); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(start))
		if i-next >= window {
			receive()
		}
	}
	for next < n {
		receive()
	}
	t.Logf("%d Delivers of %d KiB items; slowest took %v", n, len(body)>>10, slowest)

	if got := h.Dropped(); got != 1 {
		t.Errorf("Dropped: got %d, want 1", got)
	}
	waitFor(t, "the stalled client to go", func() bool { return h.Clients() == 1 })
	mu.Lock()
	if len(drops) != 1 || drops[0] != live.DropSlow {
		t.Errorf("OnDrop: got %q, want one %q", drops, live.DropSlow)
	}
	mu.Unlock()

	// The stalled client reads what its buffers held, then the close.
	_ = stalled.SetReadDeadline(time.Now().Add(testTimeout))
	for err == nil {
		_, _, err = stalled.ReadMessage()
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("stalled client: got %v, want close 1013 or its connection closed", err)
	}
	t.Logf("stalled client: %v", err)
}

// TestSlowClient: a client whose queue overflows while its socket still
// has room reads what was sent before the drop, in order, then close 1013.
func TestSlowClient(t *testing.T) {
	h := &live.Hub{QueueSize: 1}
	srv, _ := start(t, h)
	conn := mustDial(t, srv, "traffic")
	// One batch of many small items: Deliver queues far faster than the
	// writer goroutine can write them, so the queue of 1 overflows.
	var batch []*capture.Item
	for i := range 5000 {
		batch = append(batch, item("a", i, nil))
	}
	if err := h.Deliver(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if got := h.Dropped(); got != 1 {
		t.Fatalf("Dropped: got %d, want 1", got)
	}
	_ = conn.SetReadDeadline(time.Now().Add(testTimeout))
	var err error
	n := 0
	for ; ; n++ {
		var msg []byte
		if _, msg, err = conn.ReadMessage(); err != nil {
			break
		}
		if enc, _ := json.Marshal(batch[n]); !bytes.Equal(msg, enc) {
			t.Fatalf("item %d: got %s, want %s", n, msg, enc)
		}
	}
	if ce, ok := errors.AsType[*websocket.CloseError](err); !ok ||
		ce.Code != websocket.CloseTryAgainLater || ce.Text != "client too slow" {
		t.Errorf("after %d items: got %v, want close 1013 client too slow", n, err)
	}
	waitFor(t, "no clients", func() bool { return h.Clients() == 0 })
}

// smallSendBuffers sets the send buffer of the connections it accepts.
type smallSendBuffers struct {
	*net.TCPListener
	size int
}

func (l smallSendBuffers) Accept() (net.Conn, error) {
	conn, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	if err := conn.SetWriteBuffer(l.size); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

func TestRunClosesClients(t *testing.T) {
	h := &live.Hub{}
	srv, stop := start(t, h)
	conns := []*websocket.Conn{mustDial(t, srv, "traffic"), mustDial(t, srv, "session-a-traffic")}

	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	for _, c := range conns {
		g.Go(func() error {
			_ = c.SetReadDeadline(time.Now().Add(testTimeout))
			_, _, err := c.ReadMessage()
			if ce, ok := errors.AsType[*websocket.CloseError](err); !ok ||
				ce.Code != websocket.CloseGoingAway || ce.Text != "going away" {
				return fmt.Errorf("got %w, want close 1001 going away", err)
			}
			return nil
		})
	}
	if err := stop(); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := h.Clients(); n != 0 {
		t.Errorf("Clients after Run: got %d, want 0", n)
	}
	_, resp, err := dial(t, srv, "traffic", "")
	wantJSONError(t, resp, err, http.StatusServiceUnavailable)
	// Deliver after Run is a no-op.
	if err := h.Deliver(ctx, []*capture.Item{item("a", 1, nil)}); err != nil {
		t.Errorf("Deliver after Run: %v", err)
	}
}

func TestKeepalive(t *testing.T) {
	// 2*PingInterval is how long the reading client has to answer a ping:
	// long enough for a loaded host.
	h := &live.Hub{PingInterval: 100 * time.Millisecond}
	srv, _ := start(t, h)

	// A client that reads answers pings and stays.
	alive := mustDial(t, srv, "traffic")
	var pings atomic.Int32
	alive.SetPingHandler(func(data string) error {
		pings.Add(1)
		return alive.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	// A client that never reads never answers: it is disconnected after
	// 2*PingInterval.
	mustDial(t, srv, "traffic")

	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	read := make(chan error, 1)
	want := []*capture.Item{item("a", 1, []byte("after pings"))}
	go func() { read <- readN(ctx, alive, want) }()
	waitFor(t, "the silent client to go", func() bool { return h.Clients() == 1 })
	waitFor(t, "pings", func() bool { return pings.Load() >= 2 })
	if err := h.Deliver(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if got := h.Dropped(); got != 0 {
		t.Errorf("Dropped: got %d, want 0 (a silent client is not a slow one)", got)
	}
}

func TestClientMessages(t *testing.T) {
	h := &live.Hub{}
	srv, _ := start(t, h)
	conn := mustDial(t, srv, "traffic")
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()

	// Small messages are ignored.
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"subscribe":"x"}`)); err != nil {
		t.Fatal(err)
	}
	want := []*capture.Item{item("a", 1, nil)}
	if err := h.Deliver(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := readN(ctx, conn, want); err != nil {
		t.Fatal(err)
	}

	// A message over the limit closes the connection with 1009.
	if err := conn.WriteMessage(websocket.BinaryMessage, make([]byte, 8<<10)); err != nil {
		t.Fatal(err)
	}
	_, _, err := conn.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Errorf("got %v, want close 1009", err)
	}
	waitFor(t, "no clients", func() bool { return h.Clients() == 0 })
}

func TestPipeline(t *testing.T) {
	h := &live.Hub{}
	srv, _ := start(t, h)
	p := &capture.Pipeline{Log: zerolog.New(zerolog.NewTestWriter(t))}
	p.Add(h, capture.Drop, capture.WithTruncate(10))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pipeline Run: %v", err)
		}
	}()

	conn := mustDial(t, srv, "session-p-traffic")
	p.Publish(item("other", 0, nil))
	p.Publish(item("p", 1, bytes.Repeat([]byte("y"), 100)))
	_ = conn.SetReadDeadline(time.Now().Add(testTimeout))
	_, msg, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var got capture.Item
	if err := json.Unmarshal(msg, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "1" || got.SessionID != "p" || string(got.ResponseBody.Data) != "yyyyyyyyyy" ||
		!got.ResponseBody.Truncated || got.ResponseBody.Size != 100 {
		t.Errorf("got %s, want item 1 of session p with its body truncated to 10 of 100 bytes", msg)
	}
}

// TestSubscribeWhileDelivering connects and disconnects clients while items
// are delivered (for the race detector).
func TestSubscribeWhileDelivering(t *testing.T) {
	h := &live.Hub{}
	srv, _ := start(t, h)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	stop := make(chan struct{})
	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = h.Deliver(ctx, []*capture.Item{item("a", i, nil), item("b", i, nil)})
		}
	}()
	for i := range 20 {
		topic := "traffic"
		if i%2 == 1 {
			topic = "session-a-traffic"
		}
		conn := mustDial(t, srv, topic)
		_ = conn.SetReadDeadline(time.Now().Add(testTimeout))
		// The loop delivers as fast as it can: a client can be dropped as
		// too slow before its first item.
		if _, _, err := conn.ReadMessage(); err != nil && !websocket.IsCloseError(err, websocket.CloseTryAgainLater) {
			t.Fatalf("client %d: %v", i, err)
		}
		_ = conn.Close()
	}
	close(stop)
	<-delivered
	waitFor(t, "no clients", func() bool { return h.Clients() == 0 })
}

func TestDeliverWithoutListenersDoesNotEncode(t *testing.T) {
	h := &live.Hub{}
	srv, _ := start(t, h)
	batch := []*capture.Item{item("b", 1, []byte("body")), item("c", 2, nil)}
	ctx := t.Context()
	if n := testing.AllocsPerRun(100, func() { _ = h.Deliver(ctx, batch) }); n != 0 {
		t.Errorf("no clients: %v allocations per Deliver, want 0", n)
	}
	mustDial(t, srv, "session-a-traffic")
	if n := testing.AllocsPerRun(100, func() { _ = h.Deliver(ctx, batch) }); n != 0 {
		t.Errorf("no client for these sessions: %v allocations per Deliver, want 0", n)
	}
}

// BenchmarkDeliver measures Deliver's own cost (encode once, queue for every
// client); the clients' catching up is outside the timer.
func BenchmarkDeliver(b *testing.B) {
	for _, clients := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			const queueSize = 1024
			h := &live.Hub{QueueSize: queueSize}
			srv, _ := start(b, h)
			var received atomic.Int64
			for range clients {
				conn := mustDial(b, srv, "traffic")
				go func() {
					for {
						if _, _, err := conn.NextReader(); err != nil {
							return
						}
						received.Add(1)
					}
				}()
			}
			batch := []*capture.Item{item("s", 1, []byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))}
			ctx := context.Background()
			b.ReportAllocs()
			sent := 0
			for b.Loop() {
				_ = h.Deliver(ctx, batch)
				sent++
				if sent%(queueSize/2) == 0 {
					b.StopTimer()
					for received.Load() < int64(sent*clients) {
						time.Sleep(50 * time.Microsecond)
					}
					b.StartTimer()
				}
			}
			if h.Dropped() != 0 {
				b.Fatalf("%d clients dropped", h.Dropped())
			}
		})
	}
}
