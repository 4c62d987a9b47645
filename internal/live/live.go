// Package live serves the live traffic stream: captured items pushed to
// WebSocket clients of GET /api/ws as the capture pipeline delivers them.
//
// A Hub is both the capture.Sink that receives the items and the
// http.Handler that upgrades clients:
//
//	hub := &live.Hub{Log: log}
//	pipeline.Add(hub, capture.Drop, capture.WithTruncate(maxCaptureBody))
//	mux.Handle("GET /api/ws", hub)
//	g.Go(func() error { return hub.Run(ctx) })
//
// Topics are "traffic" (every session) and "session-{id}-traffic" (one
// session, which need not exist yet). Each item is one JSON text frame.
//
// The stream is lossy by design, like the pipeline's Drop policy in front of
// it: Deliver never waits for a client. Each client has a bounded queue of
// encoded items and its own writer goroutine; a client whose queue is full
// (or whose socket accepts nothing for WriteTimeout) is dropped with close
// code 1013 (try again later), counted in Dropped and reported to OnDrop, so
// a stalled client slows neither the pipeline nor the other clients.
package live

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/admin"
	"github.com/proxyctl/proxyctl/internal/capture"
)

// Hub defaults, used when the corresponding field is zero or negative.
const (
	DefaultQueueSize    = 256
	DefaultPingInterval = 20 * time.Second
	DefaultWriteTimeout = 5 * time.Second
	DefaultMaxClients   = 1024
)

// Topics.
const (
	// TopicTraffic streams the items of every session.
	TopicTraffic = "traffic"

	sessionTopicPrefix = "session-"
	sessionTopicSuffix = "-traffic"
)

// DropSlow is the reason OnDrop receives for a client dropped for being too
// slow.
const DropSlow = "slow"

const (
	// maxClientMessage bounds a client message. The stream is one-way:
	// client messages are read and discarded; a larger one closes the
	// connection with 1009 (message too big).
	maxClientMessage = 4 << 10
	// closeWait bounds the write of a close frame and, separately, the wait
	// for the client's close reply before the connection is closed.
	closeWait = time.Second
	// maxSessionIDLen is session.MaxIDLen: a longer id names no session.
	maxSessionIDLen = 256
)

// Hub is a capture.Sink (add it to the pipeline with the capture.Drop policy)
// and the http.Handler for /api/ws. The zero value is ready to use; set the
// fields before the first call and do not change them afterwards. Run owns
// the clients' connections: it closes them when its ctx ends.
type Hub struct {
	// QueueSize is each client's queue of encoded items; DefaultQueueSize
	// when <= 0. A client whose queue is full is dropped.
	QueueSize int
	// PingInterval is how often a client is pinged; a client that sends
	// nothing (a pong answers a ping) for 2*PingInterval is disconnected.
	// DefaultPingInterval when <= 0.
	PingInterval time.Duration
	// WriteTimeout bounds every write to a client; a client whose socket
	// accepts nothing for that long is dropped as too slow.
	// DefaultWriteTimeout when <= 0.
	WriteTimeout time.Duration
	// MaxClients caps the connected clients; beyond it ServeHTTP answers
	// 503 before upgrading. DefaultMaxClients when <= 0.
	MaxClients int
	// Log receives connection events (debug) and drops (warn); the zero
	// Logger is silent.
	Log zerolog.Logger
	// OnDrop, when set, is called once per dropped client with the reason
	// (DropSlow), from Deliver or a client's writer goroutine: it must be
	// fast and must not call back into the Hub.
	OnDrop func(reason string)

	// subs is the immutable subscriber snapshot Deliver reads without
	// locking; nil when there are no clients. Written under mu.
	subs atomic.Pointer[subscribers]

	mu      sync.Mutex
	clients map[*client]struct{}
	closed  bool           // Run has ended: no new clients
	wg      sync.WaitGroup // one per client, from subscribe to the end of its ServeHTTP

	dropped atomic.Int64
	bufs    sync.Pool // write buffers, held only while a frame is written
}

var (
	_ capture.Sink = (*Hub)(nil)
	_ http.Handler = (*Hub)(nil)
)

// subscribers is a snapshot of the clients by topic.
type subscribers struct {
	all      []*client            // topic traffic
	sessions map[string][]*client // topic session-{id}-traffic, by id
}

// Name implements capture.Sink.
func (h *Hub) Name() string { return "live" }

// Clients reports the connected clients (including those whose handshake or
// close is in progress).
func (h *Hub) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// Dropped reports how many clients were dropped for being too slow.
func (h *Hub) Dropped() int64 { return h.dropped.Load() }

// Deliver implements capture.Sink. It encodes each item once, only when a
// client listens for its session, and queues the shared bytes for every such
// client without blocking: a client whose queue is full is dropped. Items
// reach each client in Deliver order. Deliver never fails.
func (h *Hub) Deliver(_ context.Context, batch []*capture.Item) error {
	s := h.subs.Load()
	if s == nil {
		return nil
	}
	for _, it := range batch {
		one := s.sessions[it.SessionID]
		if len(s.all) == 0 && len(one) == 0 {
			continue
		}
		if err := it.CheckJSON(); err != nil { // not expected: a NaN or infinite duration
			h.Log.Error().Err(err).Str("session", it.SessionID).Str("item", it.ID).Msg("live: encode traffic item")
			continue
		}
		// A fresh slice per item: clients share msg until they have sent it.
		msg := it.AppendJSON(nil)
		h.send(s.all, msg)
		h.send(one, msg)
	}
	return nil
}

func (h *Hub) send(cs []*client, msg []byte) {
	for _, c := range cs {
		if c.closing.Load() {
			continue
		}
		select {
		case c.queue <- msg:
		default:
			h.dropSlow(c, "queue full", nil)
		}
	}
}

// dropSlow closes c with 1013 and counts it, unless c is already closing.
func (h *Hub) dropSlow(c *client, why string, cause error) {
	if !c.close(websocket.CloseTryAgainLater, "client too slow", cause) {
		return
	}
	h.dropped.Add(1)
	h.Log.Warn().Str("topic", c.topic).Str("remote", c.remote).Str("why", why).
		Int("queue_size", cap(c.queue)).Msg("live client too slow, dropped")
	if h.OnDrop != nil {
		h.OnDrop(DropSlow)
	}
}

// ServeHTTP upgrades a client of GET /api/ws?topic=... and streams to it
// until it goes away, is dropped or Run ends. Refusals come before the
// upgrade, as JSON errors: 403 for a foreign Origin, 400 for a bad topic,
// 503 beyond MaxClients or after Run has ended.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		admin.WriteError(w, http.StatusForbidden, "origin not allowed")
		return
	}
	topic := r.URL.Query().Get("topic")
	session, ok := parseTopic(topic)
	if !ok {
		admin.WriteError(w, http.StatusBadRequest, `topic must be "traffic" or "session-{id}-traffic"`)
		return
	}
	c := &client{
		topic:   topic,
		session: session,
		remote:  r.RemoteAddr,
		queue:   make(chan []byte, positive(h.QueueSize, DefaultQueueSize)),
		done:    make(chan struct{}),
	}
	// Subscribe before the upgrade: once the client has its 101, every item
	// delivered afterwards reaches it.
	if code, msg := h.subscribe(c); code != 0 {
		admin.WriteError(w, code, msg)
		return
	}
	defer h.wg.Done()
	up := websocket.Upgrader{
		HandshakeTimeout: positive(h.WriteTimeout, DefaultWriteTimeout),
		WriteBufferPool:  &h.bufs,
		// ServeHTTP has checked the Origin already.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			admin.WriteError(w, status, reason.Error())
		},
	}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil { // Upgrade has answered
		c.close(0, "", err)
		h.unsubscribe(c)
		return
	}
	h.serve(c, conn)
}

// Run waits for ctx to end, then closes every client with 1001 (going away),
// waits for their connections to close and returns nil. ServeHTTP refuses
// new clients (503) from then on. Run may be called once.
func (h *Hub) Run(ctx context.Context) error {
	<-ctx.Done()
	h.mu.Lock()
	h.closed = true
	clients := slices.Collect(maps.Keys(h.clients))
	h.mu.Unlock()
	for _, c := range clients {
		c.close(websocket.CloseGoingAway, "going away", nil)
	}
	h.wg.Wait()
	return nil
}

// subscribe registers c, or returns the status and message refusing it.
// On success the caller owns one count of h.wg.
func (h *Hub) subscribe(c *client) (int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return http.StatusServiceUnavailable, "live stream is shutting down"
	}
	if len(h.clients) >= positive(h.MaxClients, DefaultMaxClients) {
		return http.StatusServiceUnavailable, "too many live clients"
	}
	if h.clients == nil {
		h.clients = make(map[*client]struct{})
	}
	h.clients[c] = struct{}{}
	h.wg.Add(1)
	h.snapshot()
	return 0, ""
}

func (h *Hub) unsubscribe(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, c)
	h.snapshot()
}

// snapshot publishes the subscribers for Deliver; h.mu must be held.
// It costs O(clients), paid on connect and disconnect only.
func (h *Hub) snapshot() {
	if len(h.clients) == 0 {
		h.subs.Store(nil)
		return
	}
	s := &subscribers{}
	for c := range h.clients {
		if c.session == "" {
			s.all = append(s.all, c)
			continue
		}
		if s.sessions == nil {
			s.sessions = make(map[string][]*client)
		}
		s.sessions[c.session] = append(s.sessions[c.session], c)
	}
	h.subs.Store(s)
}

// serve runs an upgraded client: a reader and a writer goroutine, and this
// one, which waits for the client to close and then closes the connection.
func (h *Hub) serve(c *client, conn *websocket.Conn) {
	log := h.Log.With().Str("topic", c.topic).Str("remote", c.remote).Logger()
	log.Debug().Msg("live client connected")
	ping := positive(h.PingInterval, DefaultPingInterval)
	readDone := make(chan struct{})
	writeDone := make(chan struct{})
	go h.readLoop(c, conn, 2*ping, readDone)
	go h.writeLoop(c, conn, ping, positive(h.WriteTimeout, DefaultWriteTimeout), writeDone)

	<-c.done
	// c.code, c.reason and c.cause were set before c.done was closed.
	if c.code != 0 {
		msg := websocket.FormatCloseMessage(c.code, c.reason)
		if err := conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait)); err == nil {
			// Give the client a moment to answer the close, so that it
			// reads the close frame before the connection goes.
			t := time.NewTimer(closeWait)
			select {
			case <-readDone:
			case <-t.C:
			}
			t.Stop()
		}
	}
	_ = conn.Close() // unblocks the reader and a writer stuck in a write
	<-readDone
	<-writeDone
	h.unsubscribe(c)
	ev := log.Debug().Int("close_code", c.code)
	if c.cause != nil {
		ev = ev.AnErr("cause", c.cause)
	}
	ev.Msg("live client disconnected")
}

// readLoop discards what the client sends and notices when it goes: a read
// error (its close, a message over maxClientMessage, or nothing received for
// pongWait) closes the client.
func (h *Hub) readLoop(c *client, conn *websocket.Conn, pongWait time.Duration, done chan<- struct{}) {
	defer close(done)
	conn.SetReadLimit(maxClientMessage)
	alive := func(string) error { return conn.SetReadDeadline(time.Now().Add(pongWait)) }
	_ = alive("")
	conn.SetPongHandler(alive)
	for {
		_, r, err := conn.NextReader()
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		if err != nil {
			c.close(0, "", fmt.Errorf("read: %w", err))
			return
		}
		_ = alive("")
	}
}

// writeLoop writes the client's queue and its pings until the client closes.
// A write that times out drops the client as too slow; any other write error
// closes it.
func (h *Hub) writeLoop(c *client, conn *websocket.Conn, ping, timeout time.Duration, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(ping)
	defer t.Stop()
	for {
		select { // closing wins over a ready queue
		case <-c.done:
			return
		default:
		}
		var err error
		select {
		case <-c.done:
			return
		case msg := <-c.queue:
			_ = conn.SetWriteDeadline(time.Now().Add(timeout))
			err = conn.WriteMessage(websocket.TextMessage, msg)
		case <-t.C:
			err = conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(timeout))
		}
		if err != nil {
			err = fmt.Errorf("write: %w", err)
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				h.dropSlow(c, "write timed out", err)
			} else {
				c.close(0, "", err)
			}
			return
		}
	}
}

// client is one WebSocket subscriber.
type client struct {
	topic   string
	session string // "" for every session
	remote  string
	queue   chan []byte // encoded items, shared with other clients: read-only

	closing atomic.Bool
	done    chan struct{} // closed once closing is set and the fields below are
	code    int           // close frame to send, 0 for none
	reason  string
	cause   error // why, for the log
}

// close starts closing c: serve sends a close frame with code and reason
// (none when code is 0) and closes the connection. Only the first call has
// an effect; it reports whether it was the one.
func (c *client) close(code int, reason string, cause error) bool {
	if !c.closing.CompareAndSwap(false, true) {
		return false
	}
	c.code, c.reason, c.cause = code, reason, cause
	close(c.done)
	return true
}

// parseTopic returns the session a topic names, "" for every session.
func parseTopic(topic string) (session string, ok bool) {
	if topic == TopicTraffic {
		return "", true
	}
	id, ok := strings.CutPrefix(topic, sessionTopicPrefix)
	if !ok {
		return "", false
	}
	id, ok = strings.CutSuffix(id, sessionTopicSuffix)
	if !ok || id == "" || len(id) > maxSessionIDLen {
		return "", false
	}
	for i := range len(id) { // the session package's rule: visible ASCII
		if c := id[i]; c < 0x21 || c > 0x7e {
			return "", false
		}
	}
	return id, true
}

// sameOrigin accepts a request without an Origin header (CLI tools, SDKs)
// and one whose Origin's host:port is the host the request was sent to (the
// admin listener's own page); it refuses every other browser origin.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Values("Origin")
	if len(origin) == 0 {
		return true
	}
	u, err := url.Parse(origin[0])
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

func positive[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}
