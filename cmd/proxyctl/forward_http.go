package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/proxyctl/proxyctl/internal/config"
	"github.com/proxyctl/proxyctl/internal/forward"
	"github.com/proxyctl/proxyctl/internal/h1"
	"github.com/proxyctl/proxyctl/internal/ratelimit"
	"github.com/proxyctl/proxyctl/internal/server"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/tape"
	"github.com/proxyctl/proxyctl/internal/transport"
)

// forwardHTTPOptions is everything `forward http` runs with, validated.
type forwardHTTPOptions struct {
	Log      zerolog.Logger
	Listen   string
	Target   *url.URL
	Services map[string]*url.URL

	ServiceHeader  string
	UserHeader     string
	ProxyToken     string
	TrustedProxies []netip.Prefix
	MaxBodySize    int64

	Session    session.Config
	SessionHdr string
	RateLimits []ratelimit.Spec
	Transport  transport.Options

	ReadHeaderTimeout time.Duration
	ClientBodyTimeout time.Duration
	ClientSendTimeout time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration
	MaxHeaderBytes    int
	// EventLoops is the number of event loops (0: h1 alone).
	EventLoops int

	Capture captureOptions
	// Backend answers instead of an upstream (replay's tape).
	Backend http.Handler

	// Ready, when set, is called with the bound proxy and admin addresses
	// once both listen (tests and the demo use it).
	Ready func(proxyAddr, adminAddr string)
}

// Client-side limits of the HTTP proxy listener (forward, record, replay).
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultClientBodyTimeout = 60 * time.Second
	defaultClientSendTimeout = 60 * time.Second
	defaultMaxHeaderSize     = 1 << 20
	defaultEventLoops        = 1
)

// httpFlags are the raw flag values of `forward http`.
type httpFlags struct {
	Target, Listen, ServiceHeader, UserHeader, ProxyToken string
	ServiceMap, TrustedProxies                            []string
	MaxBodySize, MaxHeaderSize                            config.Size
	UpstreamTimeout, DialTimeout                          time.Duration
	ReadHeaderTimeout, IdleTimeout, ShutdownTimeout       time.Duration
	ClientBodyTimeout, ClientSendTimeout                  time.Duration
	EventLoops                                            int
	limits                                                limitFlags
	capture                                               captureFlags
	recording                                             bool // record http: --tape
}

func newForwardHTTPCmd(f *factory, runF func(context.Context, *factory, *forwardHTTPOptions) error) *cobra.Command {
	cmd := newHTTPProxyCmd(f, runF, false)
	cmd.Use = "http --target URL [--listen ADDR] [--service-map NAME=URL,...]"
	cmd.Short = "Reverse-proxy HTTP with sessions, routing guards and tiered rate limits"
	cmd.Example = `  proxyctl forward http --target http://localhost:3000
  proxyctl forward http --service-map api=http://localhost:3000,auth=http://localhost:4000 --session-mode strict
  proxyctl forward http --target http://localhost:3000 --rate-limit ip=10/s:20 --rate-limit global=1000/s`
	return cmd
}

// newHTTPProxyCmd is forward http, or record http when recording (which
// adds --tape).
func newHTTPProxyCmd(f *factory, runF func(context.Context, *factory, *forwardHTTPOptions) error, recording bool) *cobra.Command {
	if runF == nil {
		runF = runForwardHTTP
	}
	fl := httpFlags{recording: recording, MaxHeaderSize: defaultMaxHeaderSize}
	cmd := &cobra.Command{
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := fl.options(f)
			if err != nil {
				return err
			}
			return runF(cmd.Context(), f, opts)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&fl.Target, "target", "", "default upstream URL (http:// or https://)")
	fs.StringVar(&fl.Listen, "listen", "127.0.0.1:8080", "address to listen on")
	fs.StringSliceVar(&fl.ServiceMap, "service-map", nil, "allowed upstreams NAME=URL,... picked with --service-header (env SERVICE_MAP too)")
	fs.StringVar(&fl.ServiceHeader, "service-header", forward.DefaultServiceHeader, "request header that picks a service from the service map")
	fs.StringVar(&fl.UserHeader, "user-header", forward.DefaultUserHeader, "request header identifying the user for the user rate-limit tier")
	fs.StringVar(&fl.ProxyToken, "proxy-token", "", "require clients to send Proxy-Authorization: Bearer <token> (stripped before forwarding)")
	fs.StringSliceVar(&fl.TrustedProxies, "trusted-proxies", nil, "CIDRs or IPs whose X-Forwarded-For is trusted for the client address")
	fs.Var(&fl.MaxBodySize, "max-body-size", "refuse request bodies larger than this with 413, e.g. 10MiB (0: no limit)")
	fs.DurationVar(&fl.UpstreamTimeout, "upstream-timeout", transport.DefaultResponseHeaderTimeout, "time to the upstream's response headers before 504")
	fs.DurationVar(&fl.DialTimeout, "dial-timeout", transport.DefaultDialTimeout, "time to connect to the upstream before 502")
	fs.DurationVar(&fl.ReadHeaderTimeout, "read-header-timeout", defaultReadHeaderTimeout, "time a client has to send its request headers")
	fs.DurationVar(&fl.ClientBodyTimeout, "client-body-timeout", defaultClientBodyTimeout, "longest time between two successive reads of a request body before 408 (0: no limit)")
	fs.DurationVar(&fl.ClientSendTimeout, "client-send-timeout", defaultClientSendTimeout, "longest time a write of the response may wait for a client that stopped reading before the connection is closed (0: no limit)")
	fs.Var(&fl.MaxHeaderSize, "max-header-size", "refuse request lines plus headers larger than this with 431, e.g. 64KiB")
	fs.DurationVar(&fl.IdleTimeout, "idle-timeout", 2*time.Minute, "close idle client keep-alive connections after this long")
	fs.DurationVar(&fl.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGINT/SIGTERM, how long in-flight requests may take to finish")
	fs.IntVar(&fl.EventLoops, "event-loops", defaultEventLoops, "event loops serving plain keep-alive requests (0: a goroutine per connection, as net/http)")
	fl.limits.register(fs)
	fl.capture.register(fs, fl.recording)
	return cmd
}

func (fl *httpFlags) options(f *factory) (*forwardHTTPOptions, error) {
	o := &forwardHTTPOptions{
		Listen:            fl.Listen,
		ServiceHeader:     fl.ServiceHeader,
		UserHeader:        fl.UserHeader,
		ProxyToken:        fl.ProxyToken,
		MaxBodySize:       int64(fl.MaxBodySize),
		SessionHdr:        fl.limits.SessionHeader,
		ReadHeaderTimeout: fl.ReadHeaderTimeout,
		ClientBodyTimeout: fl.ClientBodyTimeout,
		ClientSendTimeout: fl.ClientSendTimeout,
		IdleTimeout:       fl.IdleTimeout,
		ShutdownTimeout:   fl.ShutdownTimeout,
		MaxHeaderBytes:    int(fl.MaxHeaderSize),
		Transport: transport.Options{
			DialTimeout:           fl.DialTimeout,
			ResponseHeaderTimeout: fl.UpstreamTimeout,
		},
	}
	var err error
	if fl.Target != "" {
		if o.Target, err = config.ParseUpstream(fl.Target); err != nil {
			return nil, config.FlagError("target", err)
		}
	}
	if o.Services, err = config.ParseServiceMap(fl.ServiceMap); err != nil {
		return nil, config.FlagError("service-map", err)
	}
	if o.Target == nil && len(o.Services) == 0 {
		return nil, config.Usagef("target", "--target or --service-map is required")
	}
	if o.TrustedProxies, err = config.ParsePrefixes(fl.TrustedProxies); err != nil {
		return nil, config.FlagError("trusted-proxies", err)
	}
	for name, d := range map[string]time.Duration{
		"upstream-timeout": fl.UpstreamTimeout, "dial-timeout": fl.DialTimeout,
		"read-header-timeout": fl.ReadHeaderTimeout, "idle-timeout": fl.IdleTimeout, "shutdown-timeout": fl.ShutdownTimeout,
	} {
		if d <= 0 {
			return nil, config.Usagef(name, "--%s must be positive", name)
		}
	}
	if fl.ClientBodyTimeout < 0 {
		return nil, config.Usagef("client-body-timeout", "--client-body-timeout must not be negative (0: no limit)")
	}
	if fl.ClientSendTimeout < 0 {
		return nil, config.Usagef("client-send-timeout", "--client-send-timeout must not be negative (0: no limit)")
	}
	if fl.EventLoops < 0 || fl.EventLoops > 64 {
		return nil, config.Usagef("event-loops", "--event-loops must be between 0 and 64")
	}
	o.EventLoops = fl.EventLoops
	if fl.MaxHeaderSize <= 0 {
		return nil, config.Usagef("max-header-size", "--max-header-size must be positive")
	}
	if o.Session, o.RateLimits, err = fl.limits.validate(); err != nil {
		return nil, err
	}
	meta := map[string]string{"command": "proxyctl record http"}
	if o.Target != nil {
		meta["target"] = o.Target.Redacted()
	}
	if o.Capture, err = fl.capture.options(fl.recording, tape.KindHTTP, meta); err != nil {
		return nil, err
	}
	o.Log = f.logger()
	return o, nil
}

// runForwardHTTP serves the proxy until ctx ends, then drains in-flight
// requests.
func runForwardHTTP(ctx context.Context, f *factory, o *forwardHTTPOptions) error {
	rt, err := f.newProxyRuntime(ctx, o.Log, o.Session, o.RateLimits)
	if err != nil {
		return err
	}
	defer func() { _ = rt.Close() }()

	ln, err := server.Listen(ctx, o.Listen, "--listen")
	if err != nil {
		return err
	}
	// The pooled upstream connections must not outlive the command.
	upstream := transport.NewSync(o.Transport)
	defer upstream.CloseIdleConnections()
	p := &forward.Proxy{
		Target:         o.Target,
		Services:       o.Services,
		ServiceHeader:  o.ServiceHeader,
		SessionHeader:  o.SessionHdr,
		UserHeader:     o.UserHeader,
		ProxyToken:     o.ProxyToken,
		TrustedProxies: o.TrustedProxies,
		MaxBodySize:    o.MaxBodySize,
		// The server has no ReadTimeout or WriteTimeout (bodies stream for
		// as long as they last): a stalled body is bounded per read, a
		// client that stops reading per write.
		ClientBodyTimeout: o.ClientBodyTimeout,
		ClientSendTimeout: o.ClientSendTimeout,
		Sessions:          rt.Sessions,
		SessionErrors: forward.SessionErrors{
			Missing: session.ErrMissing, Unknown: session.ErrUnknown, Ended: session.ErrEnded,
			TooMany: session.ErrTooMany, Unavailable: session.ErrUnavailable, InvalidID: session.ErrInvalidID,
		},
		Backend:   o.Backend,
		Stubs:     rt.Stubs,
		Observer:  rt.Metrics,
		Transport: upstream,
		Log:       o.Log.With().Str("component", "proxy").Logger(),
	}
	if rt.Limiter.Enabled() {
		p.Limiter = rt.Limiter
	}
	capt, err := rt.newCapture(f, o.Capture)
	if err != nil {
		_ = ln.Close()
		return err
	}
	if capt != nil {
		p.Capture, p.Stamper, p.CaptureBodyLimit = capt.Pipeline, capt.Stamper, capt.BodyLimit
		capt.start(ctx)
	}
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          zerologStd(o.Log),
	}
	// Plain keep-alive requests are served by h1, everything else by srv
	// (docs/architecture.md, "The HTTP server").
	hs := &h1.Server{
		Handler:           p,
		Fallback:          srv,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		ErrorLog:          srv.ErrorLog,
	}

	g, gctx := errgroup.WithContext(ctx)
	rt.start(gctx, g)
	var srvr server.Server = hs
	if o.EventLoops > 0 && forward.LoopsSupported && p.Loopable() {
		// The hot path on event loops; h1 (and net/http behind it) serve
		// what they hand over (docs/architecture.md, "Event loops").
		ls := &forward.LoopServer{
			Proxy: p, H1: hs, Loops: o.EventLoops,
			ReadHeaderTimeout: o.ReadHeaderTimeout, IdleTimeout: o.IdleTimeout,
			MaxHeaderBytes: o.MaxHeaderBytes, Upstream: o.Transport,
		}
		const help = "Requests the event loops served themselves (path=loop) or lent to h1 (path=handed: not yet decidable from caches, or not the loop's kind)."
		rt.Metrics.CounterFunc("proxyctl_loop_requests_total", help, map[string]string{"path": "loop"},
			func() float64 { return float64(ls.Stats().Served) })
		rt.Metrics.CounterFunc("proxyctl_loop_requests_total", help, map[string]string{"path": "handed"},
			func() float64 { return float64(ls.Stats().Handed) })
		srvr = ls
	}
	g.Go(func() error {
		if err := server.Run(gctx, srvr, ln, o.ShutdownTimeout); err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
		return nil
	})
	target := ""
	if o.Target != nil {
		target = o.Target.Redacted()
	}
	o.Log.Info().Str("listen", ln.Addr().String()).Str("admin", rt.AdminAddr()).Str("target", target).
		Strs("services", config.ServiceNames(o.Services)).Str("session_mode", string(o.Session.Mode)).Msg("forwarding http")
	if o.Ready != nil {
		o.Ready(ln.Addr().String(), rt.AdminAddr())
	}
	err = g.Wait()
	// The listener is shut down: every in-flight exchange has published
	// its item. Drain the sinks and close the tape.
	if cerr := capt.stop(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	o.Log.Info().Msg("stopped")
	return err
}
