// Package stdio relays newline-delimited JSON-RPC between a client on
// stdin/stdout and a child process (an MCP server), applying limits and
// interceptor rules on the way.
package stdio

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/proxyctl/proxyctl/internal/jsonrpc"
	"github.com/proxyctl/proxyctl/internal/ratelimit"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/store"
)

// Error codes of the responses the relay makes itself.
const (
	// CodeRateLimited answers a request rejected by the rate limiter
	// (message "rate limit exceeded", data {"retryAfterMs": N, "tier": "..."}).
	// It is in the JSON-RPC range reserved for implementation-defined
	// server errors (-32000 to -32099).
	CodeRateLimited = -32029
	// CodeBlocked is the default code of a block rule ("blocked by proxy rule").
	CodeBlocked = -32001
	// CodeTooLarge answers an oversized message (message "message too large",
	// data {"size": N, "limit": M}); it is JSON-RPC's "Invalid Request".
	CodeTooLarge = jsonrpc.CodeInvalidRequest
	// CodeSessionEnded answers a request sent after the relay's session was
	// closed (admin API, CLI) or expired ("session is not active").
	CodeSessionEnded = -32003
)

// SessionResolver is the optional part of a SessionOpener that checks the
// session on each client message (recording activity, so an active stdio
// session does not idle out, and refusing messages once it was closed or
// expired). *session.Manager has it.
type SessionResolver interface {
	Resolve(ctx context.Context, id, defaultID string) (store.Session, error)
}

// Defaults applied when the corresponding Relay field is zero.
const (
	DefaultMaxMessageSize = jsonrpc.DefaultMaxSize
	DefaultShutdownGrace  = 5 * time.Second
)

// Limiter decides whether a message may pass. *ratelimit.Limiter satisfies it.
type Limiter interface {
	Allow(ratelimit.Keys) ratelimit.Decision
}

// SessionOpener opens and labels the relay's session. *session.Manager
// satisfies it. If it also has a method
//
//	Close(ctx context.Context, id string) (store.Session, error)
//
// the relay closes its session when Run ends.
type SessionOpener interface {
	Open(ctx context.Context, id string, ttl time.Duration, kind string, labels map[string]string) (store.Session, error)
	Label(ctx context.Context, id string, labels map[string]string) error
}

// Message is one frame seen by the relay, given to Relay.OnMessage.
type Message struct {
	SessionID string
	Direction Direction
	Time      time.Time
	// Data is the frame without its newline. It aliases the relay's buffers
	// and is only valid during the OnMessage call: copy it to keep it.
	Data []byte
	// Generated marks a response made by the relay (rate-limit, rule or size
	// error, mock result) rather than by a peer.
	Generated bool
	// Dropped marks a peer's message that did not reach its destination
	// (rate limited, blocked or mocked).
	Dropped bool
}

// Stats counts what a Relay did.
type Stats struct {
	ClientMessages       int64 // frames forwarded client -> child
	ChildMessages        int64 // frames forwarded child -> client
	RateLimited          int64 // requests answered with CodeRateLimited
	NotificationsDropped int64 // notifications dropped by the rate limiter
	Blocked              int64 // messages stopped by a block rule
	Mocked               int64 // messages answered by a mock rule
	Oversized            int64 // lines over MaxMessageSize
	Invalid              int64 // lines that are not JSON
	SessionRefused       int64 // client messages refused because the session ended
}

// Relay runs Command and relays JSON-RPC messages, one per line, between the
// client (Stdin/Stdout) and the child's stdin/stdout. Bytes of forwarded
// messages are never re-encoded. The zero value of every field but Command is
// usable. A Relay runs once.
type Relay struct {
	Command []string // the child's argv; required
	Env     []string // the child's environment; nil inherits proxyctl's
	Dir     string   // the child's working directory; "" is the current one

	Stdin  io.Reader // client to proxy; nil reads nothing
	Stdout io.Writer // proxy to client: protocol messages only; nil discards
	Stderr io.Writer // the child's stderr, passed through untouched; nil discards

	MaxMessageSize int64         // longest line in bytes; 0 means DefaultMaxMessageSize
	ShutdownGrace  time.Duration // wait before each escalation; 0 means DefaultShutdownGrace

	Limiter  Limiter       // may be nil: no rate limits
	Sessions SessionOpener // may be nil: the session is not recorded
	// SessionID names the relay's session; "" mints a random one.
	SessionID string
	// SessionTTL is passed to SessionOpener.Open (0: none).
	SessionTTL time.Duration
	Rules      []Rule // interceptor rules, see LoadRules

	// OnMessage, if set, is called for every frame the relay forwards, makes
	// or drops, from the copier goroutines (concurrently for the two
	// directions). It must not block and must not retain msg.Data.
	OnMessage func(Message)

	Log zerolog.Logger // the proxy's own messages (stderr)

	stats struct {
		clientMsgs, childMsgs, rateLimited, notifDropped atomic.Int64
		blocked, mocked, oversized, invalid              atomic.Int64
		sessionRefused                                   atomic.Int64
	}
}

// Stats returns the relay's counters; safe to call while it runs.
func (r *Relay) Stats() Stats {
	s := &r.stats
	return Stats{
		ClientMessages: s.clientMsgs.Load(), ChildMessages: s.childMsgs.Load(),
		RateLimited: s.rateLimited.Load(), NotificationsDropped: s.notifDropped.Load(),
		Blocked: s.blocked.Load(), Mocked: s.mocked.Load(),
		Oversized: s.oversized.Load(), Invalid: s.invalid.Load(),
		SessionRefused: s.sessionRefused.Load(),
	}
}

// Run starts the child, relays until it exits and returns its exit status
// (128+N when killed by signal N). err is non-nil only when the relay could
// not run (the session could not be opened, the child could not start);
// exitCode is then 1.
//
// Shutdown: at the client's EOF the child's stdin is closed; if the child has
// not exited after ShutdownGrace its process group gets SIGTERM, and after
// another ShutdownGrace SIGKILL. When ctx is cancelled the signal (SIGINT if
// the cancellation cause says "interrupt", as signal.NotifyContext's does,
// else SIGTERM) is forwarded to the child's process group, with the same
// SIGKILL escalation. The child is always waited for. Processes left in the
// child's group after it exits are killed.
//
// Run returns once the child has exited and its output is drained. A Read on
// Stdin still pending then (Stdin without SetReadDeadline, such as a
// terminal) is left to finish on its own; nothing is done with what it reads.
func (r *Relay) Run(ctx context.Context) (exitCode int, err error) {
	if len(r.Command) == 0 || r.Command[0] == "" {
		return 1, errors.New("stdio: no command to run")
	}
	s := &runState{r: r, maxSize: r.MaxMessageSize, grace: r.ShutdownGrace, id: r.SessionID}
	if s.maxSize <= 0 {
		s.maxSize = DefaultMaxMessageSize
	}
	if s.grace <= 0 {
		s.grace = DefaultShutdownGrace
	}
	if s.id == "" {
		s.id = newSessionID()
	}
	s.log = r.Log.With().Str("session", s.id).Logger()
	stdout, stderr := r.Stdout, r.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	var undo func()
	s.stdin, stdout, undo = PollableClient(r.Stdin, stdout, r.Stderr)
	defer undo()
	if stderr == nil {
		stderr = io.Discard
	}
	if r.Sessions != nil {
		if _, err := r.Sessions.Open(ctx, s.id, r.SessionTTL, "stdio", map[string]string{"command": r.Command[0]}); err != nil {
			return 1, fmt.Errorf("open session: %w", err)
		}
		s.resolver, _ = r.Sessions.(SessionResolver)
	}

	inR, inW, err := os.Pipe()
	if err != nil {
		return 1, fmt.Errorf("child stdin pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll(inR, inW)
		return 1, fmt.Errorf("child stdout pipe: %w", err)
	}
	growPipe(inW)
	growPipe(outR)
	cmd := exec.Command(r.Command[0], r.Command[1:]...) //nolint:noctx // cancellation forwards a signal and escalates (below), it does not just kill
	cmd.Env, cmd.Dir = r.Env, r.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = s.grace // bounds the copy of a non-file Stderr held open by grandchildren
	if err := cmd.Start(); err != nil {
		closeAll(inR, inW, outR, outW)
		return 1, fmt.Errorf("start %s: %w", r.Command[0], err)
	}
	closeAll(inR, outW)
	pid := cmd.Process.Pid
	s.log.Info().Int("pid", pid).Str("command", r.Command[0]).Msg("child started")

	s.toChild = &lineWriter{w: bufio.NewWriterSize(inW, 64<<10), c: inW}
	s.toClient = &lineWriter{w: bufio.NewWriterSize(stdout, 64<<10)}

	errc := make(chan copyResult, 2)
	clientDone := make(chan struct{})
	childDone := make(chan struct{})
	go func() { defer close(clientDone); errc <- copyResult{ClientToServer, s.clientToChild(ctx)} }()
	go func() { defer close(childDone); errc <- copyResult{ServerToClient, s.childToClient(ctx, outR)} }()
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()

	// Shutdown state machine: stage 0 running; 1 stdin closed, waiting;
	// 2 SIGTERM (or forwarded signal) sent; 3 SIGKILL sent.
	stage := 0
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	ctxDone := ctx.Done()
	var waitErr error
loop:
	for {
		select {
		case res := <-errc:
			if res.err != nil {
				s.log.Debug().Err(res.err).Str("copier", string(res.dir)).Msg("copier stopped")
			}
			if stage == 0 && (res.dir == ClientToServer || res.err != nil) {
				// Client EOF (clientToChild closed the child's stdin), or the
				// client is gone: let the child finish.
				if res.dir == ServerToClient {
					s.toChild.Abort()
				}
				stage = 1
				timer.Reset(s.grace)
			}
		case <-ctxDone:
			ctxDone = nil
			if stage < 2 {
				sig := signalFromCause(ctx)
				s.log.Info().Str("signal", sig.String()).Msg("forwarding signal to the child")
				signalGroup(pid, sig)
				stage = 2
				timer.Reset(s.grace)
			}
		case <-timer.C:
			switch stage {
			case 1:
				s.log.Warn().Dur("grace", s.grace).Msg("child did not exit after its stdin closed; sending SIGTERM")
				signalGroup(pid, syscall.SIGTERM)
				stage = 2
				timer.Reset(s.grace)
			case 2:
				s.log.Warn().Dur("grace", s.grace).Msg("child did not exit after SIGTERM; sending SIGKILL")
				signalGroup(pid, syscall.SIGKILL)
				stage = 3
			}
		case waitErr = <-waitc:
			break loop
		}
	}

	// The child is gone. Kill what it left in its group, drain its output,
	// stop the client side.
	if syscall.Kill(-pid, 0) == nil {
		s.log.Warn().Msg("killing processes left in the child's process group")
		signalGroup(pid, syscall.SIGKILL)
	}
	_ = outR.SetReadDeadline(time.Now().Add(s.grace))
	s.toChild.Abort() // nobody reads it any more
	if !waitFor(childDone, 2*s.grace) {
		s.log.Warn().Msg("the client is not reading its stdout; dropping the child's last output")
	}
	if d, ok := s.stdin.(interface{ SetReadDeadline(time.Time) error }); ok && d.SetReadDeadline(time.Now()) == nil {
		waitFor(clientDone, s.grace)
	}
	s.toClient.Abort() // whatever still runs must not write to the client after Run
	_ = outR.Close()
	s.wg.Wait()
	s.closeSession(ctx)

	code := exitStatus(cmd.ProcessState)
	lvl := zerolog.InfoLevel
	if stage <= 1 && code != 0 {
		lvl = zerolog.WarnLevel // a failure of its own, not our signal
	}
	st := r.Stats()
	s.log.WithLevel(lvl).Int("status", code).Func(func(e *zerolog.Event) {
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Str("signal", ws.Signal().String())
		}
		if waitErr != nil && !isExitError(waitErr) {
			e.AnErr("wait", waitErr)
		}
	}).Int64("toChild", st.ClientMessages).Int64("toClient", st.ChildMessages).
		Int64("rateLimited", st.RateLimited+st.NotificationsDropped).Int64("oversized", st.Oversized).
		Int64("invalid", st.Invalid).Msg("child exited")
	return code, nil
}

type copyResult struct {
	dir Direction
	err error
}

// runState is the state of one Run.
type runState struct {
	r        *Relay
	stdin    io.Reader       // r.Stdin, or a pollable copy of it (PollablePipe)
	resolver SessionResolver // nil: sessions are not checked per message
	id       string
	log      zerolog.Logger
	maxSize  int64
	grace    time.Duration
	toChild  *lineWriter
	toClient *lineWriter
	wg       sync.WaitGroup // session label updates
}

// clientToChild copies the client's messages to the child. It returns nil at
// the client's EOF and closes the child's stdin then.
func (s *runState) clientToChild(ctx context.Context) error {
	if s.stdin == nil {
		s.toChild.Close()
		return nil
	}
	rd := jsonrpc.NewReader(s.stdin, s.maxSize)
	rd.Validate = true
	for {
		msg, err := rd.ReadMessage()
		if err != nil {
			if tl, ok := errors.AsType[*jsonrpc.TooLongError](err); ok {
				s.oversized(tl, ClientToServer)
				continue
			}
			if len(msg) > 0 {
				s.lastLine(ctx, rd, msg, ClientToServer)
			}
			s.toChild.Close()
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return fmt.Errorf("read client: %w", err)
		}
		if err := s.handle(ctx, rd, msg, ClientToServer); err != nil {
			return err
		}
		if !rd.LineBuffered() {
			if err := s.toChild.Flush(); err != nil {
				return fmt.Errorf("write child: %w", err)
			}
		}
	}
}

// childToClient copies the child's messages to the client until the child's
// stdout ends.
func (s *runState) childToClient(ctx context.Context, out io.Reader) error {
	rd := jsonrpc.NewReader(out, s.maxSize)
	rd.Validate = true
	for {
		msg, err := rd.ReadMessage()
		if err != nil {
			if tl, ok := errors.AsType[*jsonrpc.TooLongError](err); ok {
				s.oversized(tl, ServerToClient)
				continue
			}
			if len(msg) > 0 {
				s.lastLine(ctx, rd, msg, ServerToClient)
			}
			ferr := s.toClient.Flush()
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = nil
			} else if errors.Is(err, os.ErrDeadlineExceeded) {
				s.log.Warn().Msg("child's stdout still open after it exited (held by another process); stopped reading it")
				err = nil
			}
			return errors.Join(err, ferr)
		}
		if err := s.handle(ctx, rd, msg, ServerToClient); err != nil {
			return err
		}
		if !rd.LineBuffered() {
			if err := s.toClient.Flush(); err != nil {
				return fmt.Errorf("write client: %w", err)
			}
		}
	}
}

// lastLine deals with data after the last newline of a stream: forwarded
// if it is a whole message, else reported.
func (s *runState) lastLine(ctx context.Context, rd *jsonrpc.Reader, msg []byte, dir Direction) {
	if _, err := rd.Envelope(); err != nil {
		s.r.stats.invalid.Add(1)
		s.log.Warn().Str("direction", string(dir)).Int("bytes", len(msg)).
			Msg("stream ended in the middle of a message; dropped it")
		return
	}
	_ = s.handle(ctx, rd, msg, dir)
}

// handle routes one message, the last one rd returned, travelling in
// direction dir. It returns an error only when the destination cannot be
// written.
func (s *runState) handle(ctx context.Context, rd *jsonrpc.Reader, msg []byte, dir Direction) error {
	if isBlank(msg) {
		return nil
	}
	env, err := rd.Envelope() // checked as it arrived
	if err != nil {
		s.r.stats.invalid.Add(1)
		s.log.Warn().Str("direction", string(dir)).Int("bytes", len(msg)).
			Msg("dropping a line that is not a JSON-RPC message")
		return nil
	}
	dst, back := s.toChild, s.toClient
	if dir == ServerToClient {
		dst, back = s.toClient, s.toChild
	}
	if env.HasMethod {
		if dir == ClientToServer {
			if s.resolver != nil && !s.sessionActive(ctx, env) {
				return nil
			}
			if env.Method == "initialize" || env.Method == "server/discover" {
				s.labelFrom(ctx, env.Params)
			}
			if s.r.Limiter != nil && !s.allow(msg, env) {
				return nil
			}
		}
		if len(s.r.Rules) > 0 {
			hit, delay := match(s.r.Rules, dir, env.Method)
			if delay > 0 {
				if err := dst.Flush(); err != nil {
					return err
				}
				sleep(ctx, delay)
			}
			if hit != nil {
				s.apply(hit, msg, env, dir, back)
				return nil
			}
		}
	}
	if err := dst.WriteLine(msg); err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	if dir == ClientToServer {
		s.r.stats.clientMsgs.Add(1)
	} else {
		s.r.stats.childMsgs.Add(1)
	}
	s.observe(dir, msg, false, false)
	return nil
}

// sessionActive checks the relay's session for a client message (a cache
// hit in the session manager: no store call). A session that was closed or
// expired answers requests with CodeSessionEnded and drops notifications;
// the child keeps running until the client disconnects. A store outage
// does not stop the relay: the session it opened itself stays cached.
func (s *runState) sessionActive(ctx context.Context, env jsonrpc.Envelope) bool {
	_, err := s.resolver.Resolve(ctx, s.id, "")
	if err == nil {
		return true
	}
	if !errors.Is(err, session.ErrEnded) {
		s.log.Warn().Err(err).Msg("session check failed; message passed")
		return true
	}
	s.r.stats.sessionRefused.Add(1)
	if env.IsNotification() {
		s.log.Debug().Str("method", env.Method).Msg("session not active: notification dropped")
		return false
	}
	s.reply(s.toClient, ServerToClient, jsonrpc.ErrorResponse(env.ID, CodeSessionEnded, "session is not active", nil))
	return false
}

// allow applies the rate limits to a client message; false means it was
// answered or dropped here.
func (s *runState) allow(msg []byte, env jsonrpc.Envelope) bool {
	d := s.r.Limiter.Allow(ratelimit.Keys{Endpoint: env.Method, Session: s.id})
	if d.Allowed {
		return true
	}
	s.observe(ClientToServer, msg, false, true)
	if !env.IsRequest() {
		s.r.stats.notifDropped.Add(1)
		s.log.Debug().Str("method", env.Method).Str("tier", string(d.Tier)).Msg("rate limit: notification dropped")
		return false
	}
	s.r.stats.rateLimited.Add(1)
	s.log.Debug().Str("method", env.Method).Str("tier", string(d.Tier)).Msg("rate limit: request rejected")
	retry := (d.RetryAfter + time.Millisecond - 1) / time.Millisecond
	resp := jsonrpc.ErrorResponse(env.ID, CodeRateLimited, "rate limit exceeded",
		map[string]any{"retryAfterMs": int64(retry), "tier": string(d.Tier)})
	s.reply(s.toClient, ServerToClient, resp)
	return false
}

// apply carries out a block or mock rule on msg; replies go back to the sender.
func (s *runState) apply(rule *Rule, msg []byte, env jsonrpc.Envelope, dir Direction, back *lineWriter) {
	s.observe(dir, msg, false, true)
	s.log.Debug().Str("rule", rule.Name).Str("action", string(rule.Action)).Str("method", env.Method).
		Str("direction", string(dir)).Msg("rule matched")
	backDir := ServerToClient
	if dir == ServerToClient {
		backDir = ClientToServer
	}
	switch rule.Action {
	case ActionMock:
		s.r.stats.mocked.Add(1)
		if env.IsRequest() {
			resp, err := jsonrpc.ResultResponse(env.ID, rule.Result)
			if err != nil {
				resp = jsonrpc.ErrorResponse(env.ID, jsonrpc.CodeInternalError, "invalid mock result", nil)
			}
			s.reply(back, backDir, resp)
		}
	default: // ActionBlock
		s.r.stats.blocked.Add(1)
		if env.IsRequest() {
			code, text := CodeBlocked, "blocked by proxy rule"
			var data any
			if e := rule.Error; e != nil {
				if e.Code != 0 {
					code = e.Code
				}
				if e.Message != "" {
					text = e.Message
				}
				if len(e.Data) > 0 {
					data = e.Data
				}
			}
			s.reply(back, backDir, jsonrpc.ErrorResponse(env.ID, code, text, data))
		}
	}
}

// oversized answers (or drops) a line over the size limit that came from dir.
// The error goes to the peer waiting for an answer: the sender of a request,
// the receiver of a response.
func (s *runState) oversized(tl *jsonrpc.TooLongError, from Direction) {
	s.r.stats.oversized.Add(1)
	env := jsonrpc.PeekPrefix(tl.Head)
	id := tl.ID()
	s.log.Warn().Str("direction", string(from)).Int64("bytes", tl.Size).Int64("limit", tl.Limit).
		Bool("idKnown", id != nil).Msg("dropping a message over the size limit")
	isResponse := env.HasResult || env.HasError || (from == ServerToClient && !env.HasMethod && id != nil)
	resp := jsonrpc.ErrorResponse(id, CodeTooLarge, "message too large", map[string]int64{"size": tl.Size, "limit": tl.Limit})
	switch {
	case from == ClientToServer && !isResponse:
		s.reply(s.toClient, ServerToClient, resp)
	case from == ClientToServer && id != nil:
		s.reply(s.toChild, ClientToServer, resp)
	case from == ServerToClient && isResponse:
		s.reply(s.toClient, ServerToClient, resp)
	case from == ServerToClient && id != nil:
		s.reply(s.toChild, ClientToServer, resp)
	}
}

// reply writes a message the relay made, whole, and flushes it.
func (s *runState) reply(w *lineWriter, dir Direction, msg []byte) {
	if err := w.WriteLine(msg); err == nil {
		err = w.Flush()
		if err != nil {
			s.log.Debug().Err(err).Msg("write reply")
		}
	}
	s.observe(dir, msg, true, false)
}

func (s *runState) observe(dir Direction, msg []byte, generated, dropped bool) {
	if f := s.r.OnMessage; f != nil {
		f(Message{SessionID: s.id, Direction: dir, Time: time.Now(), Data: msg, Generated: generated, Dropped: dropped})
	}
}

// labelFrom labels the session with what initialize (or server/discover)
// says about the client, without holding up the message.
func (s *runState) labelFrom(ctx context.Context, params json.RawMessage) {
	var p struct {
		ProtocolVersion string `json:"protocolVersion"`
		ClientInfo      struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"clientInfo"`
	}
	if len(params) == 0 || json.Unmarshal(params, &p) != nil {
		return
	}
	labels := map[string]string{}
	for k, v := range map[string]string{"clientName": p.ClientInfo.Name, "clientVersion": p.ClientInfo.Version, "protocolVersion": p.ProtocolVersion} {
		if v != "" {
			labels[k] = v
		}
	}
	if len(labels) == 0 {
		return
	}
	s.log.Info().Str("clientName", labels["clientName"]).Str("clientVersion", labels["clientVersion"]).
		Str("protocolVersion", labels["protocolVersion"]).Msg("client identified")
	if s.r.Sessions == nil {
		return
	}
	s.wg.Go(func() {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := s.r.Sessions.Label(lctx, s.id, labels); err != nil {
			s.log.Warn().Err(err).Msg("label session")
		}
	})
}

// closeSession ends the session if the SessionOpener can.
func (s *runState) closeSession(ctx context.Context) {
	c, ok := s.r.Sessions.(interface {
		Close(ctx context.Context, id string) (store.Session, error)
	})
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := c.Close(cctx, s.id); err != nil {
		s.log.Warn().Err(err).Msg("close session")
	}
}

// lineWriter writes whole lines to one destination, serialized.
type lineWriter struct {
	mu      sync.Mutex
	w       *bufio.Writer
	c       io.Closer // closed by Close and Abort, if set
	closed  bool
	err     error // sticky write error
	aborted atomic.Bool
}

// Abort closes the destination at once, without the lock: a write blocked
// on it fails (when the destination can be closed), later writes are refused.
func (lw *lineWriter) Abort() {
	lw.aborted.Store(true)
	if lw.c != nil {
		_ = lw.c.Close()
	}
}

var errClosed = errors.New("stdio: destination closed")

// WriteLine buffers msg and a newline; Flush sends them.
func (lw *lineWriter) WriteLine(msg []byte) error {
	if lw.aborted.Load() {
		return errClosed
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.closed {
		return errClosed
	}
	if lw.err != nil {
		return lw.err
	}
	if _, err := lw.w.Write(msg); err != nil {
		lw.err = err
		return err
	}
	lw.err = lw.w.WriteByte('\n')
	return lw.err
}

// Flush sends what is buffered.
func (lw *lineWriter) Flush() error {
	if lw.aborted.Load() {
		return errClosed
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.closed {
		return errClosed
	}
	if lw.err == nil {
		lw.err = lw.w.Flush()
	}
	return lw.err
}

// Close flushes and closes the destination; later writes fail. Idempotent.
func (lw *lineWriter) Close() {
	if lw.aborted.Load() {
		return
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.closed {
		return
	}
	if lw.err == nil {
		lw.err = lw.w.Flush()
	}
	lw.closed = true
	if lw.c != nil {
		_ = lw.c.Close()
	}
}

// waitFor waits for done to close, at most d; it reports whether it did.
func waitFor(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func newSessionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "stdio-" + hex.EncodeToString(b[:])
}

func signalFromCause(ctx context.Context) syscall.Signal {
	// signal.NotifyContext's cause reads "<signal> signal received".
	if c := context.Cause(ctx); c != nil && strings.HasPrefix(c.Error(), syscall.SIGINT.String()) {
		return syscall.SIGINT
	}
	return syscall.SIGTERM
}

// signalGroup signals the child's process group (its pgid is its pid).
func signalGroup(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
}

func exitStatus(ps *os.ProcessState) int {
	if ps == nil {
		return 1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

func isExitError(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee)
}

func closeAll(cs ...io.Closer) {
	for _, c := range cs {
		_ = c.Close()
	}
}
