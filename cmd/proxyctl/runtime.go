package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/logging"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	bbolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sync/errgroup"

	"github.com/proxyctl/proxyctl/internal/admin"
	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/config"
	"github.com/proxyctl/proxyctl/internal/metrics"
	"github.com/proxyctl/proxyctl/internal/ratelimit"
	"github.com/proxyctl/proxyctl/internal/server"
	"github.com/proxyctl/proxyctl/internal/session"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/boltstore"
	"github.com/proxyctl/proxyctl/internal/store/dynamostore"
	"github.com/proxyctl/proxyctl/internal/store/memstore"
	"github.com/proxyctl/proxyctl/internal/stub"
	"github.com/proxyctl/proxyctl/internal/ui"
)

// limitFlags are the session and rate-limit flags forward, record and
// replay share.
type limitFlags struct {
	SessionHeader   string
	SessionMode     string
	SessionMax      int
	SessionIdle     time.Duration
	SessionTTL      time.Duration
	SessionCacheTTL time.Duration
	RateLimits      []string
}

func (l *limitFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&l.SessionHeader, "session-header", "X-Proxy-Session", "request header carrying the session id (Mcp-Session-Id follows MCP sessions)")
	fs.StringVar(&l.SessionMode, "session-mode", "auto", "auto (unknown ids open sessions) or strict (missing 400, unknown 404, ended 403)")
	fs.IntVar(&l.SessionMax, "session-max", 10000, "maximum active sessions (503 beyond it); 0 for no limit")
	fs.DurationVar(&l.SessionIdle, "session-idle-timeout", 30*time.Minute, "expire a session after this long without traffic; 0 for never")
	fs.DurationVar(&l.SessionTTL, "session-ttl", 0, "expire a session this long after it opened; 0 for never")
	fs.DurationVar(&l.SessionCacheTTL, "session-cache-ttl", time.Second, "how long a session lookup is cached in front of the store")
	fs.StringArrayVar(&l.RateLimits, "rate-limit", nil, "TIER=RATE[:BURST], repeatable; TIER global|ip|user|endpoint|session, RATE N/s|N/m|N/h")
}

func (l *limitFlags) validate() (session.Config, []ratelimit.Spec, error) {
	mode, err := session.ParseMode(l.SessionMode)
	if err != nil {
		return session.Config{}, nil, config.FlagError("session-mode", err)
	}
	if l.SessionHeader == "" {
		return session.Config{}, nil, config.Usagef("session-header", "--session-header must not be empty")
	}
	for _, c := range []struct {
		name string
		d    time.Duration
	}{{"session-idle-timeout", l.SessionIdle}, {"session-ttl", l.SessionTTL}, {"session-cache-ttl", l.SessionCacheTTL}} {
		if c.d < 0 {
			return session.Config{}, nil, config.Usagef(c.name, "--%s must not be negative", c.name)
		}
	}
	if l.SessionMax < 0 {
		return session.Config{}, nil, config.Usagef("session-max", "--session-max must not be negative")
	}
	specs, err := ratelimit.ParseSpecs(l.RateLimits)
	if err != nil {
		return session.Config{}, nil, config.FlagError("rate-limit", err)
	}
	cfg := session.Config{
		Mode:        mode,
		Max:         l.SessionMax,
		IdleTimeout: l.SessionIdle,
		TTL:         l.SessionTTL,
		CacheTTL:    l.SessionCacheTTL,
	}
	return cfg, specs, nil
}

// openStoreContext opens the store named by --store: memory, bolt:PATH or
// dynamodb://?region=R&endpoint=URL&table-prefix=P.
func openStoreContext(ctx context.Context, raw string, log zerolog.Logger) (store.Store, error) {
	switch {
	case isMemoryStore(raw):
		r, err := parseRetention(strings.TrimPrefix(raw, "memory"), false)
		if err != nil {
			return nil, err
		}
		return memstore.NewWithOptions(memstore.Options{MaxTrafficItems: r.items, MaxTrafficBytes: r.bytes}), nil
	case strings.HasPrefix(raw, "bolt:"):
		path, query, _ := strings.Cut(strings.TrimPrefix(raw, "bolt:"), "?")
		if path == "" {
			return nil, config.Usagef("store", "--store bolt:PATH needs a path")
		}
		r, err := parseRetention("?"+query, true)
		if err != nil {
			return nil, err
		}
		st, err := boltstore.Open(path, boltstore.Options{
			MaxTrafficItems: r.items, MaxTrafficBytes: r.bytes, TrafficSyncInterval: r.sync,
		})
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return st, nil
	case strings.HasPrefix(raw, "dynamodb://"):
		st, err := dynamostore.Open(ctx, raw, dynamostore.Options{
			LoadOptions: []func(*awsconfig.LoadOptions) error{awsconfig.WithLogger(sdkLogger(log))},
		})
		if err != nil {
			if errors.Is(err, dynamostore.ErrBadURL) {
				return nil, config.FlagError("store", err)
			}
			return nil, fmt.Errorf("open store: %w", err)
		}
		return st, nil
	default:
		return nil, config.Usagef("store", "--store %q must be memory, bolt:PATH or dynamodb://...", raw)
	}
}

// sdkLogger sends the AWS SDK's log lines (for example a warning that a
// response body could not be drained) through the command's logger, so
// that they keep --log-format and --log-level instead of going to stderr
// as plain text.
func sdkLogger(log zerolog.Logger) logging.Logger {
	log = log.With().Str("component", "aws-sdk").Logger()
	return logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		ev := log.Debug()
		if c == logging.Warn {
			ev = log.Warn()
		}
		ev.Msgf(format, v...)
	})
}

// isMemoryStore reports whether a --store URL names the memory store.
func isMemoryStore(raw string) bool { return raw == "memory" || strings.HasPrefix(raw, "memory?") }

// retention is the traffic bound of an embedded store URL:
// ?max-traffic-items=N&max-traffic-size=SIZE (0: the store's default), and
// for bolt &traffic-sync=DURATION, how long captured traffic may wait for
// its fsync (0: every write; boltstore.Options.TrafficSyncInterval).
type retention struct {
	items int
	bytes int64
	sync  time.Duration // boltstore's encoding: 0 the default, < 0 every write
}

func parseRetention(query string, bolt bool) (retention, error) {
	var r retention
	q, err := url.ParseQuery(strings.TrimPrefix(query, "?"))
	if err != nil {
		return r, config.Usagef("store", "--store: bad query %q: %v", query, err)
	}
	for k, v := range q {
		val := v[len(v)-1]
		switch k {
		case "max-traffic-items":
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 {
				return r, config.Usagef("store", "--store: max-traffic-items=%q must be a positive number", val)
			}
			r.items = n
		case "max-traffic-size":
			n, err := config.ParseSize(val)
			if err == nil && n <= 0 {
				err = errors.New("must be positive")
			}
			if err != nil {
				return r, config.Usagef("store", "--store: max-traffic-size: %v", err)
			}
			r.bytes = n
		case "traffic-sync":
			d, err := time.ParseDuration(val)
			if err == nil && d < 0 {
				err = errors.New("must not be negative")
			}
			if err != nil || !bolt {
				if err == nil {
					err = errors.New("only the bolt store syncs traffic to disk")
				}
				return r, config.Usagef("store", "--store: traffic-sync: %v", err)
			}
			r.sync = d
			if d == 0 {
				r.sync = -1
			}
		default:
			want := "max-traffic-items or max-traffic-size"
			if bolt {
				want = "max-traffic-items, max-traffic-size or traffic-sync"
			}
			return r, config.Usagef("store", "--store: unknown parameter %q (want %s)", k, want)
		}
	}
	return r, nil
}

// defaultStore is the embedded default: a bolt file in the user's data
// directory ($XDG_DATA_HOME/proxyctl/proxyctl.db, else
// ~/.local/share/proxyctl/proxyctl.db), or memory when neither
// XDG_DATA_HOME nor HOME is set.
func defaultStore(getenv func(string) string) string {
	dir := getenv("XDG_DATA_HOME")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			return "memory"
		}
		dir = filepath.Join(home, ".local", "share")
	}
	return "bolt:" + filepath.Join(dir, "proxyctl", "proxyctl.db")
}

// openRuntimeStore opens --store for a proxying command. When the store
// was not chosen (the bolt default) and another proxyctl process holds its
// file, the command runs on the memory store instead, with a warning:
// several MCP servers wrapped by proxyctl at once must not fail because
// they share the default file.
func (f *factory) openRuntimeStore(ctx context.Context, log zerolog.Logger) (store.Store, error) {
	st, err := openStoreContext(ctx, f.global.Store, log)
	if err != nil && !f.global.StoreChosen && strings.HasPrefix(f.global.Store, "bolt:") && errors.Is(err, bbolterrors.ErrTimeout) {
		log.Warn().Err(err).Msg("the default store is in use by another proxyctl process: this run uses the memory store (choose one with --store)")
		return memstore.New(), nil
	}
	return st, err
}

// proxyRuntime is what a proxying command runs besides its listener: the
// store, the session manager, the limiter, metrics and the admin API.
// Each command builds its own.
type proxyRuntime struct {
	Log      zerolog.Logger
	Store    store.Store
	Sessions *session.Manager
	Limiter  *ratelimit.Limiter
	Metrics  *metrics.Metrics
	Admin    *admin.Server
	// Stubs answers requests with session stubs (HTTP commands), following
	// the store; the admin API writes through it.
	Stubs *stub.Engine

	adminLn net.Listener
	// tapeWatch, set by newCapture when recording, returns the tape's
	// write failure: start runs it in the command's errgroup, so that a
	// full disk stops the command.
	tapeWatch func(ctx context.Context) error
}

// newProxyRuntime builds the runtime and binds the admin listener (so a
// port conflict fails start-up, before any traffic is accepted).
func (f *factory) newProxyRuntime(ctx context.Context, log zerolog.Logger, scfg session.Config, specs []ratelimit.Spec) (*proxyRuntime, error) {
	opened, err := f.openRuntimeStore(ctx, log)
	if err != nil {
		return nil, err
	}
	st := &guardedStore{Store: opened}
	rt := &proxyRuntime{
		Log:      log,
		Store:    st,
		Sessions: session.NewManager(st, scfg, log.With().Str("component", "session").Logger()),
		Limiter:  ratelimit.New(specs, ratelimit.Options{}),
		Metrics:  metrics.New(),
	}
	rt.Stubs = &stub.Engine{Store: st, CacheTTL: scfg.CacheTTL, Log: log.With().Str("component", "stub").Logger()}
	rt.Metrics.GaugeFunc("proxyctl_sessions", "Sessions known to this instance, by state.", map[string]string{"state": "active"},
		func() float64 { return float64(rt.Sessions.Stats().Active) })
	rt.Metrics.GaugeFunc("proxyctl_sessions", "Sessions known to this instance, by state.", map[string]string{"state": "closed"},
		func() float64 { return float64(rt.Sessions.Stats().Closed) })
	rt.Metrics.GaugeFunc("proxyctl_sessions", "Sessions known to this instance, by state.", map[string]string{"state": "expired"},
		func() float64 { return float64(rt.Sessions.Stats().Expired) })
	rt.Metrics.GaugeFunc("proxyctl_ratelimit_keys", "Per-key rate-limit buckets currently tracked.", nil,
		func() float64 { return float64(rt.Limiter.Len()) })
	probe := &storeProbe{Store: st, Log: log.With().Str("component", "store").Logger()}
	rt.Metrics.GaugeFunc("proxyctl_store_up", "1 when the store answered its last health probe (at most one a second, when /healthz or /metrics is read), else 0.", nil,
		func() float64 {
			if probe.Check(context.Background()) != nil {
				return 0
			}
			return 1
		})
	rt.Metrics.CounterFunc("proxyctl_store_errors_total", "Store calls that failed or timed out (sessions, stubs, traffic, health probes; not counting not-found, conflicts and callers that gave up).", nil,
		func() float64 { return float64(st.errors.Load()) })
	rt.Admin = &admin.Server{
		Sessions: rt.Sessions,
		Errors:   admin.Errors{Ended: session.ErrEnded, TooMany: session.ErrTooMany, Unavailable: session.ErrUnavailable, InvalidID: session.ErrInvalidID},
		Traffic:  st,
		Stubs: struct {
			*stub.Engine
			store.Traffic
		}{rt.Stubs, st},
		Token:   f.global.AdminToken,
		Metrics: rt.Metrics.Handler(),
		UI:      ui.Handler(),
		Health: func(ctx context.Context) map[string]error {
			return map[string]error{"store": probe.Check(ctx)}
		},
		Log: log.With().Str("component", "admin").Logger(),
	}
	if f.global.AdminListen != "off" {
		ln, err := server.Listen(ctx, f.global.AdminListen, "--admin-listen")
		if err != nil {
			_ = st.Close()
			return nil, err
		}
		rt.adminLn = ln
	}
	return rt, nil
}

// AdminAddr is the bound admin address, or "" when the admin API is off.
func (rt *proxyRuntime) AdminAddr() string {
	if rt.adminLn == nil {
		return ""
	}
	return rt.adminLn.Addr().String()
}

// start runs the admin API, the session sweeper, the limiter's eviction
// and, when recording, the tape's failure watch in g until ctx ends.
func (rt *proxyRuntime) start(ctx context.Context, g *errgroup.Group) {
	g.Go(func() error { return rt.Sessions.Run(ctx) })
	g.Go(func() error { return rt.Limiter.Run(ctx) })
	if watch := rt.tapeWatch; watch != nil {
		g.Go(func() error { return watch(ctx) })
	}
	if rt.adminLn != nil {
		srv := &http.Server{
			Handler:           rt.Admin,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          nil,
		}
		g.Go(func() error {
			if err := server.Run(ctx, srv, rt.adminLn, 5*time.Second); err != nil {
				return fmt.Errorf("admin API: %w", err)
			}
			return nil
		})
	}
}

// Close releases the store.
func (rt *proxyRuntime) Close() error { return rt.Store.Close() }

// Store health probe bounds.
const (
	// storeProbeTimeout bounds one probe: a store slower than this is
	// reported unavailable.
	storeProbeTimeout = storeCallTimeout
	// storeProbeEvery is how long a probe's result is reused, so /healthz
	// and /metrics under load read the store at most once a second.
	storeProbeEvery = time.Second
	// storeProbeID is the session id the probe reads: normally no session
	// has it (the probe only reads), so a reachable store answers
	// store.ErrNotFound; should a client open it, the read succeeds all
	// the same.
	storeProbeID = "proxyctl-health-probe"
)

// errStoreUnavailable is what /healthz says when the store fails: the
// details (endpoints, table names, request ids) are logged, not served on
// the unauthenticated /healthz.
var errStoreUnavailable = errors.New("store unavailable")

// storeProbe tells whether the store answers, for /healthz and
// proxyctl_store_up: one cheap read (GetSession of storeProbeID, expecting
// store.ErrNotFound) bounded by storeProbeTimeout, done at most once per
// storeProbeEvery however often it is asked, and only when asked. It is
// never on the proxy's request path.
type storeProbe struct {
	Store store.Sessions
	Log   zerolog.Logger

	mu      sync.Mutex // held during a probe: concurrent callers share its result
	checked time.Time  // when the last probe ended; zero before the first
	err     error      // its result
}

// Check returns nil when the store answered the last probe, else an error
// for /healthz. It probes again when the last result is older than
// storeProbeEvery. ctx's cancellation does not cut a probe short (its
// result is shared), storeProbeTimeout does.
func (p *storeProbe) Check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.checked.IsZero() && time.Since(p.checked) < storeProbeEvery {
		return p.err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeProbeTimeout)
	_, err := p.Store.GetSession(pctx, storeProbeID)
	cancel()
	if err == nil || errors.Is(err, store.ErrNotFound) {
		if p.err != nil {
			p.Log.Info().Msg("store is reachable again")
		}
		p.err = nil
	} else {
		if p.err == nil {
			p.Log.Warn().Err(err).Msg("store health probe failed: the store is unavailable")
		}
		p.err = errStoreUnavailable
		if errors.Is(err, context.DeadlineExceeded) {
			p.err = fmt.Errorf("%w: no answer within %v", errStoreUnavailable, storeProbeTimeout)
		}
	}
	p.checked = time.Now()
	return p.err
}

// Store call bounds (guardedStore). The AWS SDK's HTTP client has no
// response timeout: without them a store that accepts connections but does
// not answer (or a pooled connection that silently died) would hold a
// session lookup, and every request of that session waiting on it, until
// the client gives up, and the capture pipeline's delivery forever.
const (
	// storeCallTimeout bounds the calls a proxied request may wait on:
	// the session manager's and the stub engine's (a cache refresh is a
	// session lookup, then the global and the session's stubs, one after
	// the other). Past it the session manager serves the session it has
	// cached (or answers 503) and the stub engine the stubs it has. A store
	// slower than this is unavailable, for /healthz too.
	storeCallTimeout = time.Second
	// storeBatchTimeout bounds one capture batch (up to storeBatch items:
	// for DynamoDB, chunks in BatchWriteItem calls of 25 whose unprocessed
	// chunks are retried for up to about 5 s each); the pipeline then
	// retries the batch
	// (capture.Pipeline.RetryFor).
	storeBatchTimeout = 2 * time.Minute
)

// guardedStore is the runtime's store: it bounds the time of the calls
// made without a client waiting to cancel them (storeCallTimeout,
// storeBatchTimeout; a caller's earlier deadline wins; the admin API's
// calls end with its request), and counts the calls that fail, for
// proxyctl_store_errors_total. The answers callers expect (not found,
// exists, conflict, bad cursor, limit) and calls whose caller gave up
// (context.Canceled) are not failures. It adds no store call, and the
// proxy's hot path (cache hits) does not reach it.
type guardedStore struct {
	store.Store
	errors atomic.Int64
}

var _ store.Store = (*guardedStore)(nil)

func (c *guardedStore) count(err error) error {
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExists) &&
		!errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrBadCursor) &&
		!errors.Is(err, store.ErrLimit) && !errors.Is(err, context.Canceled) {
		c.errors.Add(1)
	}
	return err
}

// CreateSession implements store.Store.
func (c *guardedStore) CreateSession(ctx context.Context, s store.Session) error {
	ctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	return c.count(c.Store.CreateSession(ctx, s))
}

// GetSession implements store.Store.
func (c *guardedStore) GetSession(ctx context.Context, id string) (store.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	s, err := c.Store.GetSession(ctx, id)
	return s, c.count(err)
}

// EndSession implements store.Store.
func (c *guardedStore) EndSession(ctx context.Context, id string, to store.SessionState, at time.Time) (store.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	s, err := c.Store.EndSession(ctx, id, to, at)
	return s, c.count(err)
}

// TouchSession implements store.Store.
func (c *guardedStore) TouchSession(ctx context.Context, id string, at time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	return c.count(c.Store.TouchSession(ctx, id, at))
}

// LabelSession implements store.Store.
func (c *guardedStore) LabelSession(ctx context.Context, id string, labels map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	return c.count(c.Store.LabelSession(ctx, id, labels))
}

// ListSessions implements store.Store.
func (c *guardedStore) ListSessions(ctx context.Context, p store.Page) ([]store.Session, string, error) {
	items, next, err := c.Store.ListSessions(ctx, p)
	return items, next, c.count(err)
}

// PutStub implements store.Store.
func (c *guardedStore) PutStub(ctx context.Context, s store.Stub) error {
	return c.count(c.Store.PutStub(ctx, s))
}

// DeleteStub implements store.Store.
func (c *guardedStore) DeleteStub(ctx context.Context, sessionID, stubID string) error {
	return c.count(c.Store.DeleteStub(ctx, sessionID, stubID))
}

// ListStubs implements store.Store.
func (c *guardedStore) ListStubs(ctx context.Context, sessionID string) ([]store.Stub, error) {
	ctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	stubs, err := c.Store.ListStubs(ctx, sessionID)
	return stubs, c.count(err)
}

// AppendTraffic implements store.Store.
func (c *guardedStore) AppendTraffic(ctx context.Context, items []*capture.Item) error {
	ctx, cancel := context.WithTimeout(ctx, storeBatchTimeout)
	defer cancel()
	return c.count(c.Store.AppendTraffic(ctx, items))
}

// ListTraffic implements store.Store.
func (c *guardedStore) ListTraffic(ctx context.Context, sessionID string, after int64, limit int) ([]capture.Item, error) {
	items, err := c.Store.ListTraffic(ctx, sessionID, after, limit)
	return items, c.count(err)
}

// GetTraffic implements store.Store.
func (c *guardedStore) GetTraffic(ctx context.Context, sessionID, id string) (capture.Item, error) {
	it, err := c.Store.GetTraffic(ctx, sessionID, id)
	return it, c.count(err)
}
