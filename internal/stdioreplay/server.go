// Package stdioreplay plays a recorded JSON-RPC stdio server (an MCP server)
// back from the frames of a tape, without starting any process.
//
// # Matching
//
// A client request is matched by method and params, compared semantically
// (jsonrpc.CanonicalParams: key order and whitespace do not matter, the
// top-level params._meta is ignored). It is answered with the recorded
// response, byte for byte, except that the recorded id is replaced by the
// caller's. When the same request was recorded several times, the answers
// come in recorded order, then the last one repeats. The frames of several
// recorded sessions are merged: each session is one run of the server, and
// the answers of an identical request are those of the first session, then
// of the next, and so on. Each call of [Server.Serve] starts from the first
// answer again.
//
// A request the tape cannot answer gets a JSON-RPC error with the caller's
// id: -32601 when the method was never recorded as a request, else -32602
// "no recorded call matches these params" with data {"method",
// "closestParams", "differs"} (the recorded params closest to the request's
// and the dotted paths where they differ).
//
// # Server messages
//
// The server's own messages (notifications and server-to-client requests
// such as roots/list or sampling/createMessage) are replayed in recorded
// order, each attached to the client message recorded last before it:
//
//   - those recorded between a request and its response are written before
//     the response;
//   - those recorded after a client notification (for example
//     notifications/initialized) are written when the client sends that
//     notification again; the notification itself gets no answer;
//   - those recorded before the first client message are written as soon as
//     Serve starts (the first recorded session that has any);
//   - notifications/progress whose progressToken is the one of a pending
//     recorded request go with that request, and are written with the
//     caller's progressToken (or not at all when the caller asked for no
//     progress).
//
// After a server-to-client request, the messages that were recorded after
// the client had answered it are held until the client answers it again, as
// the recorded server waited. The client's responses are otherwise consumed.
// A client notification that was never recorded (with these params) is
// ignored.
//
// Timing is not replayed: messages are written as soon as the client's
// message that triggers them is read. (The MCP TypeScript SDK handles
// notifications a microtask later than responses, so its onprogress callback
// may miss a progress notification read together with the response; that
// happens with live servers too, only less often.)
//
// # Batches
//
// A client batch (a JSON array) is answered element by element; the
// responses made while handling it are written as one array, the server's
// other messages as separate lines before it, as a server would.
package stdioreplay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/jsonrpc"
	"github.com/proxyctl/proxyctl/internal/tape"
)

// Error codes of the responses the replay makes itself (JSON-RPC standard codes).
const (
	// CodeNotRecorded answers a request whose method the tape never saw
	// as a request (message "method not found in the recording").
	CodeNotRecorded = jsonrpc.CodeMethodNotFound
	// CodeNoMatch answers a request whose method was recorded but never with
	// these params (message "no recorded call matches these params").
	CodeNoMatch = jsonrpc.CodeInvalidParams
	// CodeNoResponse answers a matched request whose recorded call never got
	// a response (the recording ended first, or the call was cancelled).
	CodeNoResponse = jsonrpc.CodeInternalError
	// CodeTooLarge answers a request line over Options.MaxMessageSize
	// (message "message too large", data {"size", "limit"}), as the relay does.
	CodeTooLarge = jsonrpc.CodeInvalidRequest
)

// maxDiffers bounds the "differs" list of a -32602 miss.
const maxDiffers = 20

// Options configure a Server. The zero value is usable.
type Options struct {
	// Log receives the replay's own messages: misses (method and id only)
	// and lines that are not JSON-RPC (their size only). Never message contents.
	Log zerolog.Logger
	// MaxMessageSize is the longest client line accepted, in bytes, not
	// counting the newline; 0 means jsonrpc.DefaultMaxSize.
	MaxMessageSize int64
	// Redact, when set, is applied to each client line before it is
	// matched: the recorder's --redact-json, so that a call matches its
	// recording although the recorded secret was replaced by the marker.
	Redact func(line []byte) []byte
}

// Stats counts what a Server did, over every Serve.
type Stats struct {
	// Hits counts requests answered with a recorded response.
	Hits int64
	// Misses counts requests the tape could not answer: no recorded match
	// (-32601, -32602), a matched call that was never answered when it was
	// recorded (-32603), a line over the size limit.
	Misses int64
	// Unused counts recorded requests whose answer no Serve has replayed.
	Unused int
}

// Server replays the server side of recorded stdio sessions. It is safe for
// concurrent use; each Serve is an independent run.
type Server struct {
	log     zerolog.Logger
	maxSize int64
	redact  func([]byte) []byte

	calls    map[callKey]*call  // recorded requests
	notes    map[callKey]*call  // recorded client notifications
	byMethod map[string][]*call // recorded requests by method, for misses
	preamble *script            // server messages before the first client message
	nreq     int                // recorded request scripts (script.index range)
	hits     atomic.Int64       // see Stats
	misses   atomic.Int64       // see Stats
	mu       sync.Mutex         // guards used, nused
	used     []bool             // by script.index: replayed at least once
	nused    int                // count of true in used
}

type callKey struct{ method, params string }

// call is one distinct (method, params) the client sent, with the scripts of
// its recorded occurrences in recorded order.
type call struct {
	method  string
	params  []byte // canonical
	scripts []*script
}

// script is what the server did after one recorded client message: the steps
// to replay, in order.
type script struct {
	steps []step
	// index numbers request scripts from 0 (for Stats.Unused); -1 for
	// notification and preamble scripts.
	index    int
	answered bool   // a response to the request was recorded
	method   string // of the client message
	token    string // canonical _meta.progressToken of the request, "" if none
}

type stepKind uint8

const (
	stepSend     stepKind = iota // write line as recorded
	stepRequest                  // write line, a server request the client must answer (id)
	stepResponse                 // write tpl with the caller's id
	stepProgress                 // write tpl with the caller's progress token
	stepGate                     // go on once the client has answered server request id
	stepNoAnswer                 // no response was recorded: answer CodeNoResponse
)

type step struct {
	kind stepKind
	line []byte   // stepSend, stepRequest: the message and "\n"
	tpl  template // stepResponse, stepProgress
	id   string   // stepRequest, stepGate: canonical id of the server request
}

// template is a recorded message with a hole for one JSON value (an id or a
// progress token): head + value + tail.
type template struct{ head, tail []byte }

// render returns the message with v in the hole, and a newline.
func (t template) render(v []byte) []byte {
	b := make([]byte, 0, len(t.head)+len(v)+len(t.tail)+1)
	b = append(b, t.head...)
	b = append(b, v...)
	b = append(b, t.tail...)
	return append(b, '\n')
}

// NewServer builds the replay from a tape's stdio frames, in tape order.
// Frames are grouped by session (in order of first appearance) and ordered
// by Seq within a session; each session is one recorded run. Frames that are
// not JSON-RPC are skipped. It fails only on a frame with an unknown
// direction.
func NewServer(frames []*tape.Frame, o Options) (*Server, error) {
	s := &Server{
		log:      o.Log,
		maxSize:  o.MaxMessageSize,
		redact:   o.Redact,
		calls:    map[callKey]*call{},
		notes:    map[callKey]*call{},
		byMethod: map[string][]*call{},
	}
	if s.maxSize <= 0 {
		s.maxSize = jsonrpc.DefaultMaxSize
	}
	var order []string
	sessions := map[string][]*tape.Frame{}
	for _, f := range frames {
		if f == nil {
			continue
		}
		if f.Direction != tape.ClientToServer && f.Direction != tape.ServerToClient {
			return nil, fmt.Errorf("frame %s (session %s, seq %d): unknown direction %q", f.ID, f.SessionID, f.Seq, f.Direction)
		}
		if _, ok := sessions[f.SessionID]; !ok {
			order = append(order, f.SessionID)
		}
		sessions[f.SessionID] = append(sessions[f.SessionID], f)
	}
	for _, id := range order {
		fs := sessions[id]
		slices.SortStableFunc(fs, func(a, b *tape.Frame) int {
			switch {
			case a.Seq < b.Seq:
				return -1
			case a.Seq > b.Seq:
				return 1
			}
			return 0
		})
		s.addSession(fs)
	}
	for _, c := range s.calls {
		for _, sc := range c.scripts {
			if !sc.answered {
				sc.steps = append(sc.steps, step{kind: stepNoAnswer})
			}
		}
	}
	// A gate with nothing after it holds nothing back.
	for _, m := range []map[callKey]*call{s.calls, s.notes} {
		for _, c := range m {
			for _, sc := range c.scripts {
				sc.trimGates()
			}
		}
	}
	if s.preamble != nil {
		s.preamble.trimGates()
	}
	s.used = make([]bool, s.nreq)
	return s, nil
}

// session is the state of reading one recorded session.
type session struct {
	s          *Server
	pending    map[string]*script // recorded client request id -> its script
	tokens     map[string]*script // progress token -> script of the pending request
	serverReqs map[string]*script // server request id -> script that sent it
	anchor     *script            // the last client request or notification
	preamble   *script
}

func (s *Server) addSession(frames []*tape.Frame) {
	ss := &session{
		s:          s,
		pending:    map[string]*script{},
		tokens:     map[string]*script{},
		serverReqs: map[string]*script{},
		preamble:   &script{index: -1},
	}
	for _, f := range frames {
		data := []byte(f.Data)
		env, err := jsonrpc.Peek(data)
		if err != nil {
			s.log.Debug().Str("frame", f.ID).Int("bytes", len(data)).Msg("skipping a recorded frame that is not a JSON-RPC message")
			continue
		}
		msgs := [][]byte{data}
		if env.IsBatch {
			var elems []json.RawMessage
			if json.Unmarshal(data, &elems) != nil {
				continue
			}
			msgs = msgs[:0]
			for _, e := range elems {
				msgs = append(msgs, e)
			}
		}
		for _, m := range msgs {
			e := env
			if env.IsBatch {
				if e, err = jsonrpc.Peek(m); err != nil || e.IsBatch {
					continue
				}
			}
			if f.Direction == tape.ClientToServer {
				ss.client(e)
			} else {
				ss.server(m, e)
			}
		}
	}
	if s.preamble == nil && len(ss.preamble.steps) > 0 {
		s.preamble = ss.preamble
	}
}

func (sc *script) trimGates() {
	for len(sc.steps) > 0 && sc.steps[len(sc.steps)-1].kind == stepGate {
		sc.steps = sc.steps[:len(sc.steps)-1]
	}
}

// client records a client message.
func (ss *session) client(env jsonrpc.Envelope) {
	s := ss.s
	switch {
	case env.HasMethod:
		params, err := jsonrpc.CanonicalParams(env.Params)
		if err != nil {
			return
		}
		k := callKey{env.Method, string(params)}
		sc := &script{index: -1, method: env.Method}
		m := s.notes
		if env.IsRequest() {
			m = s.calls
			sc.index = s.nreq
			s.nreq++
			ss.pending[idKey(env.ID)] = sc
			if tok := progressToken(env.Params); tok != nil {
				sc.token = idKey(tok)
				ss.tokens[sc.token] = sc
			}
		}
		c := m[k]
		if c == nil {
			c = &call{method: env.Method, params: params}
			m[k] = c
			if env.IsRequest() {
				s.byMethod[env.Method] = append(s.byMethod[env.Method], c)
			}
		}
		c.scripts = append(c.scripts, sc)
		ss.anchor = sc
	case env.IsResponse() && env.ID != nil:
		// The client answered a server request: what the server did next
		// waits for that answer.
		id := idKey(env.ID)
		if sc := ss.serverReqs[id]; sc != nil {
			sc.steps = append(sc.steps, step{kind: stepGate, id: id})
			delete(ss.serverReqs, id)
		}
	}
}

// server records a server message.
func (ss *session) server(msg []byte, env jsonrpc.Envelope) {
	target := ss.anchor
	if target == nil {
		target = ss.preamble
	}
	switch {
	case env.IsResponse():
		id := idKey(env.ID)
		sc := ss.pending[id]
		if env.ID == nil || sc == nil {
			ss.s.log.Debug().Int("bytes", len(msg)).Msg("skipping a recorded response to no recorded request")
			return
		}
		delete(ss.pending, id)
		if sc.token != "" {
			delete(ss.tokens, sc.token)
		}
		tpl, ok := holeAt(msg, "id")
		if !ok {
			return
		}
		sc.steps = append(sc.steps, step{kind: stepResponse, tpl: tpl})
		sc.answered = true
	case env.IsNotification():
		if env.Method == "notifications/progress" {
			if tok := memberValue(env.Params, "progressToken"); tok != nil {
				if sc := ss.tokens[idKey(tok)]; sc != nil {
					if tpl, ok := holeAt(msg, "params", "progressToken"); ok {
						sc.steps = append(sc.steps, step{kind: stepProgress, tpl: tpl})
						return
					}
				}
			}
		}
		target.steps = append(target.steps, step{kind: stepSend, line: line(msg)})
	case env.IsRequest():
		id := idKey(env.ID)
		target.steps = append(target.steps, step{kind: stepRequest, line: line(msg), id: id})
		ss.serverReqs[id] = target
	}
}

// markUsed records that the request script i was replayed.
func (s *Server) markUsed(i int) {
	if i < 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < len(s.used) && !s.used[i] {
		s.used[i] = true
		s.nused++
	}
}

// Stats returns the server's counters; safe to call while it serves.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	unused := s.nreq - s.nused
	s.mu.Unlock()
	return Stats{Hits: s.hits.Load(), Misses: s.misses.Load(), Unused: unused}
}

// line returns msg as one line ended by "\n". A recorded frame has no line
// break; a hand-written one may have some in its whitespace, which is removed.
func line(msg []byte) []byte {
	if bytes.ContainsAny(msg, "\r\n") {
		var b bytes.Buffer
		if json.Compact(&b, msg) == nil {
			msg = b.Bytes()
		}
	}
	out := make([]byte, 0, len(msg)+1)
	return append(append(out, msg...), '\n')
}

// idKey is the canonical form of a JSON value used as a map key (ids and
// progress tokens: 1 and 1.0 stay different, as the peers would see them).
func idKey(raw []byte) string {
	if c, err := jsonrpc.CanonicalJSON(raw); err == nil {
		return string(c)
	}
	return string(raw)
}

// progressToken returns params._meta.progressToken, nil when absent.
func progressToken(params []byte) []byte {
	return memberValue(memberValue(params, "_meta"), "progressToken")
}

// memberValue returns the raw value of the member name of the JSON object
// obj (the last one when repeated), nil when obj is not an object or has no
// such member.
func memberValue(obj []byte, name string) []byte {
	start, end, ok := memberSpan(obj, name)
	if !ok {
		return nil
	}
	return obj[start:end]
}

// memberSpan returns where the value of the member name of the JSON object
// obj is (the last one when the name repeats, as jsonrpc.Peek reads it).
func memberSpan(obj []byte, name string) (start, end int, ok bool) {
	if len(obj) == 0 {
		return 0, 0, false
	}
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, 0, false
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return 0, 0, false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return 0, 0, false
		}
		e := int(dec.InputOffset())
		b := e - len(raw)
		if b < 0 || e > len(obj) || !bytes.Equal(obj[b:e], raw) {
			return 0, 0, false
		}
		if k, _ := kt.(string); k == name {
			start, end, ok = b, e, true
		}
	}
	return start, end, ok
}

// holeAt makes a template of msg with a hole at the value found by
// following the member names path from the top-level object.
func holeAt(msg []byte, path ...string) (template, bool) {
	off, v := 0, msg
	for _, name := range path {
		b, e, ok := memberSpan(v, name)
		if !ok {
			return template{}, false
		}
		off += b
		v = v[b:e]
	}
	lm := line(msg)
	if len(lm) != len(msg)+1 { // compacted: offsets moved, find them again
		return holeAt(lm[:len(lm)-1], path...)
	}
	return template{head: lm[:off], tail: lm[off+len(v) : len(lm)-1]}, true
}
