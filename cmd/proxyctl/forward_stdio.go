package main

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/proxyctl/proxyctl/internal/config"
	"github.com/proxyctl/proxyctl/internal/ratelimit"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/stdio"
	"github.com/proxyctl/proxyctl/internal/tape"
)

// forwardStdioOptions is everything `forward stdio` runs with, validated.
type forwardStdioOptions struct {
	Log            zerolog.Logger
	Command        []string
	MaxMessageSize int64
	ShutdownGrace  time.Duration
	Rules          []stdio.Rule
	SessionID      string

	Session    session.Config
	RateLimits []ratelimit.Spec
	Capture    captureOptions
}

// stdioFlags are the raw flag values of `forward stdio`.
type stdioFlags struct {
	MaxMessageSize config.Size
	ShutdownGrace  time.Duration
	RulesFile      string
	SessionID      string
	limits         limitFlags
	capture        captureFlags
	recording      bool
}

func newForwardStdioCmd(f *factory, runF func(context.Context, *factory, *forwardStdioOptions) error) *cobra.Command {
	cmd := newStdioProxyCmd(f, runF, false)
	cmd.Use = "stdio [flags] -- COMMAND [ARGS...]"
	cmd.Short = "Relay JSON-RPC over stdio (MCP) to a child process, with limits and interceptor rules"
	cmd.Example = `  proxyctl forward stdio -- npx -y @modelcontextprotocol/server-everything stdio
  proxyctl forward stdio --rate-limit endpoint=5/s --rules rules.yaml -- ./my-mcp-server
  proxyctl forward stdio --max-message-size 64MiB --shutdown-grace 2s -- python server.py`
	return cmd
}

// newStdioProxyCmd is forward stdio, or record stdio when recording (which
// adds --tape).
func newStdioProxyCmd(f *factory, runF func(context.Context, *factory, *forwardStdioOptions) error, recording bool) *cobra.Command {
	if runF == nil {
		runF = runForwardStdio
	}
	fl := stdioFlags{MaxMessageSize: stdio.DefaultMaxMessageSize, recording: recording}
	cmd := &cobra.Command{
		Long: `Runs COMMAND and relays newline-delimited JSON-RPC between proxyctl's stdin/stdout
and the command's stdin/stdout, byte for byte. stdout carries only protocol
messages; proxyctl's logs and the command's stderr go to stderr. proxyctl exits
with the command's exit status (128+N when it is killed by signal N).`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := fl.options(f, args)
			if err != nil {
				return err
			}
			return runF(cmd.Context(), f, opts)
		},
	}
	fs := cmd.Flags()
	fs.SetInterspersed(false) // flags after COMMAND belong to it
	fs.Var(&fl.MaxMessageSize, "max-message-size", "longest JSON-RPC line accepted, e.g. 16MiB; an oversized request gets a JSON-RPC error")
	fs.DurationVar(&fl.ShutdownGrace, "shutdown-grace", stdio.DefaultShutdownGrace, "after stdin closes (or a signal), wait this long before SIGTERM, then again before SIGKILL")
	fs.StringVar(&fl.RulesFile, "rules", "", "interceptor rules file (YAML or JSON): block, mock or delay messages by direction and method")
	fs.StringVar(&fl.SessionID, "session-id", "", "id of this run's session (default: a random stdio-... id)")
	fl.limits.register(fs)
	fl.capture.register(fs, fl.recording)
	return cmd
}

func (fl *stdioFlags) options(f *factory, args []string) (*forwardStdioOptions, error) {
	o := &forwardStdioOptions{
		Command:        args,
		MaxMessageSize: int64(fl.MaxMessageSize),
		ShutdownGrace:  fl.ShutdownGrace,
		SessionID:      fl.SessionID,
	}
	if o.MaxMessageSize <= 0 {
		return nil, config.Usagef("max-message-size", "--max-message-size must be positive")
	}
	if o.ShutdownGrace <= 0 {
		return nil, config.Usagef("shutdown-grace", "--shutdown-grace must be positive")
	}
	if fl.RulesFile != "" {
		rules, err := stdio.LoadRules(fl.RulesFile)
		if err != nil {
			return nil, config.FlagError("rules", err)
		}
		o.Rules = rules
	}
	var err error
	if o.Session, o.RateLimits, err = fl.limits.validate(); err != nil {
		return nil, err
	}
	meta := map[string]string{"command": "proxyctl record stdio", "child": strings.Join(args, " ")}
	if o.Capture, err = fl.capture.options(fl.recording, tape.KindStdio, meta); err != nil {
		return nil, err
	}
	o.Log = f.logger()
	return o, nil
}

// runForwardStdio relays until the child exits and returns its status as an
// exitError (nil for 0).
func runForwardStdio(ctx context.Context, f *factory, o *forwardStdioOptions) error {
	rt, err := f.newProxyRuntime(ctx, o.Log, o.Session, o.RateLimits)
	if err != nil {
		return err
	}
	defer func() { _ = rt.Close() }()
	capt, err := rt.newCapture(f, o.Capture)
	if err != nil {
		return err
	}

	// The admin API and background tasks live as long as the child.
	bgctx, stopBg := context.WithCancel(ctx)
	defer stopBg()
	g, gctx := errgroup.WithContext(bgctx)
	rt.start(gctx, g)

	r := &stdio.Relay{
		Command:        o.Command,
		Stdin:          f.Stdin,
		Stdout:         f.Stdout,
		Stderr:         f.Stderr,
		MaxMessageSize: o.MaxMessageSize,
		ShutdownGrace:  o.ShutdownGrace,
		Sessions:       rt.Sessions,
		SessionID:      o.SessionID,
		SessionTTL:     o.Session.TTL,
		Rules:          o.Rules,
		Log:            o.Log.With().Str("component", "stdio").Logger(),
	}
	if rt.Limiter.Enabled() {
		r.Limiter = rt.Limiter
	}
	if capt != nil {
		r.OnMessage = capt.publishFrame
		capt.start(ctx)
	}
	registerStdioMetrics(rt, r)
	// When the tape cannot be written any more (a full disk), the child is
	// shut down as on SIGTERM and the command exits 1 with the error.
	rctx, stopRelay := context.WithCancelCause(ctx)
	defer stopRelay(nil)
	go func() {
		select {
		case <-capt.TapeFailed():
			stopRelay(capt.tapeFailure())
		case <-rctx.Done():
		}
	}()
	o.Log.Info().Strs("command", o.Command).Str("admin", rt.AdminAddr()).Int("rules", len(o.Rules)).Msg("forwarding stdio")
	code, runErr := r.Run(rctx)
	stopErr := capt.stop()
	stopBg()
	gErr := g.Wait()
	if failed := capt.tapeFailure(); failed != nil {
		// Logged once when it happened; the rest is this failure again.
		if stopErr != nil && !errors.Is(stopErr, failed) {
			o.Log.Error().Err(stopErr).Msg("capture")
		}
		return failed
	}
	if stopErr != nil {
		o.Log.Error().Err(stopErr).Msg("capture")
		if runErr == nil && code == 0 {
			runErr = stopErr
		}
	}
	if gErr != nil && runErr == nil {
		o.Log.Warn().Err(gErr).Msg("background task")
	}
	if runErr != nil {
		return runErr
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// registerStdioMetrics exposes the relay's counters on /metrics.
func registerStdioMetrics(rt *proxyRuntime, r *stdio.Relay) {
	const name = "proxyctl_stdio_messages_total"
	const help = "JSON-RPC messages seen by the stdio relay, by what happened to them."
	for outcome, get := range map[string]func(stdio.Stats) int64{
		"client_to_server":     func(s stdio.Stats) int64 { return s.ClientMessages },
		"server_to_client":     func(s stdio.Stats) int64 { return s.ChildMessages },
		"rate_limited":         func(s stdio.Stats) int64 { return s.RateLimited },
		"notification_dropped": func(s stdio.Stats) int64 { return s.NotificationsDropped },
		"blocked":              func(s stdio.Stats) int64 { return s.Blocked },
		"mocked":               func(s stdio.Stats) int64 { return s.Mocked },
		"oversized":            func(s stdio.Stats) int64 { return s.Oversized },
		"invalid":              func(s stdio.Stats) int64 { return s.Invalid },
		"session_refused":      func(s stdio.Stats) int64 { return s.SessionRefused },
	} {
		rt.Metrics.CounterFunc(name, help, map[string]string{"outcome": outcome}, func() float64 { return float64(get(r.Stats())) })
	}
}
