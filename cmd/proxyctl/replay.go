package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/config"
	"github.com/proxyctl/proxyctl/internal/record"
	"github.com/proxyctl/proxyctl/internal/replay"
	"github.com/proxyctl/proxyctl/internal/stdio"
	"github.com/proxyctl/proxyctl/internal/stdioreplay"
	"github.com/proxyctl/proxyctl/internal/tape"
	"github.com/proxyctl/proxyctl/internal/transport"
)

// replayFlags are the raw flag values of `replay`.
type replayFlags struct {
	Listen       string
	Stdio        bool
	Strict       bool
	Fallback     string
	Latency      string
	MatchHeaders []string
	MaxBody      config.Size
	limits       limitFlags
	capture      captureFlags
}

// replayOptions is what `replay` runs with, validated.
type replayOptions struct {
	Files        []string
	HTTP         *forwardHTTPOptions // nil with --stdio
	Stdio        bool
	Strict       bool
	Fallback     *url.URL
	Latency      string
	MatchHeaders []string
	MaxBody      int64

	// Ready, when set, is called with the bound addresses (tests).
	Ready func(proxyAddr, adminAddr string)
}

func newReplayCmd(f *factory, runF func(context.Context, *factory, *replayOptions) error) *cobra.Command {
	if runF == nil {
		runF = runReplay
	}
	fl := replayFlags{MaxBody: 16 << 20}
	cmd := &cobra.Command{
		Use:   "replay TAPE_OR_HAR... [--listen ADDR] [--stdio] [--strict] [--fallback URL]",
		Short: "Serve recorded exchanges (tapes or HAR files) as a stub server, over HTTP or stdio",
		Long: `replay answers requests from one or more tapes (proxyctl record) or HAR 1.2 files,
with no network and no upstream. A request matches a recorded one by method and
path, query parameters in any order, JSON bodies compared semantically (other
bodies byte for byte) and the headers named with --match-header. JSON-RPC calls
(MCP over HTTP or stdio) match by method and params, ignoring params._meta, and
are answered with the caller's id. When the same request was recorded several
times, the answers come in recorded order, then the last one repeats.

A miss is answered 404 with the closest recorded request and what differs, or
sent to --fallback. --strict makes replay exit 1 at shutdown when anything
missed: the CI guard that the tests sent nothing the tape cannot answer.
Session stubs (admin API) are consulted before the tape.`,
		Example: `  proxyctl replay api.tape.json
  proxyctl replay api.tape.json more.har --listen 127.0.0.1:9000 --strict
  proxyctl replay api.tape.json --fallback https://api.example.com --match-header X-Tenant
  proxyctl replay mcp.tape.json --stdio`,
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
	fs.StringVar(&fl.Listen, "listen", "127.0.0.1:8080", "address to listen on (HTTP replay)")
	fs.BoolVar(&fl.Stdio, "stdio", false, "act as the recorded JSON-RPC server on stdin/stdout instead of serving HTTP")
	fs.BoolVar(&fl.Strict, "strict", false, "exit 1 at shutdown if any request missed")
	fs.StringVar(&fl.Fallback, "fallback", "", "send requests no recorded exchange matches to this upstream URL instead of answering 404")
	fs.StringVar(&fl.Latency, "latency", "none", "none: answer at once; recorded: wait each exchange's recorded duration")
	fs.StringArrayVar(&fl.MatchHeaders, "match-header", nil, "header that must also match the recorded request, repeatable")
	fs.Var(&fl.MaxBody, "max-match-body", "request bodies longer than this are refused with 413 (they are read whole to be matched)")
	fl.limits.register(fs)
	fl.capture.register(fs, false)
	return cmd
}

func (fl *replayFlags) options(f *factory, args []string) (*replayOptions, error) {
	o := &replayOptions{
		Files:        args,
		Stdio:        fl.Stdio,
		Strict:       fl.Strict,
		Latency:      fl.Latency,
		MatchHeaders: fl.MatchHeaders,
		MaxBody:      int64(fl.MaxBody),
	}
	switch fl.Latency {
	case "none", "recorded":
	default:
		return nil, config.Usagef("latency", "--latency must be none or recorded, not %q", fl.Latency)
	}
	if o.MaxBody <= 0 {
		return nil, config.Usagef("max-match-body", "--max-match-body must be positive")
	}
	if fl.Fallback != "" {
		u, err := config.ParseUpstream(fl.Fallback)
		if err != nil {
			return nil, config.FlagError("fallback", err)
		}
		o.Fallback = u
	}
	if fl.Stdio {
		if fl.Fallback != "" {
			return nil, config.Usagef("fallback", "--fallback is for HTTP replay, not --stdio")
		}
		return o, nil
	}
	h := &forwardHTTPOptions{
		Listen:            fl.Listen,
		ServiceHeader:     "X-Proxy-Service",
		UserHeader:        "X-User-Id",
		SessionHdr:        fl.limits.SessionHeader,
		ReadHeaderTimeout: defaultReadHeaderTimeout,
		ClientBodyTimeout: defaultClientBodyTimeout,
		ClientSendTimeout: defaultClientSendTimeout,
		MaxHeaderBytes:    defaultMaxHeaderSize,
		IdleTimeout:       2 * time.Minute,
		ShutdownTimeout:   10 * time.Second,
		Transport:         transport.Options{},
	}
	var err error
	if h.Session, h.RateLimits, err = fl.limits.validate(); err != nil {
		return nil, err
	}
	if h.Capture, err = fl.capture.options(false, tape.KindHTTP, nil); err != nil {
		return nil, err
	}
	h.Log = f.logger()
	o.HTTP = h
	return o, nil
}

// loadRecordings reads every file: tapes, and HAR files (recognised by
// their content).
func loadRecordings(paths []string) (xs []*tape.Exchange, frames []*tape.Frame, redactJSON []string, err error) {
	for _, p := range paths {
		if tapeIsHAR(p) {
			hx, err := readHARFile(p)
			if err != nil {
				return nil, nil, nil, err
			}
			xs = append(xs, hx...)
			continue
		}
		r, err := tape.Open(p)
		if err != nil {
			return nil, nil, nil, err
		}
		if raw := r.Header().Meta[tapeMetaRedactJSON]; raw != "" {
			var paths []string
			if err := json.Unmarshal([]byte(raw), &paths); err != nil {
				_ = r.Close()
				return nil, nil, nil, fmt.Errorf("%s: header meta %s: %w", p, tapeMetaRedactJSON, err)
			}
			redactJSON = append(redactJSON, paths...)
		}
		entries, err := r.ReadAll()
		_ = r.Close()
		if err != nil {
			return nil, nil, nil, err
		}
		for _, e := range entries {
			switch v := e.(type) {
			case *tape.Exchange:
				xs = append(xs, v)
			case *tape.Frame:
				frames = append(frames, v)
			}
		}
	}
	return xs, frames, redactJSON, nil
}

// matchRedaction returns what replay applies to a request before matching
// it: the recorders' --redact-json (nil when they used none).
func matchRedaction(paths []string, kind string) func([]byte) []byte {
	if len(paths) == 0 {
		return nil
	}
	red := record.NewRedactor(nil, paths)
	return func(b []byte) []byte {
		return red.Item(&capture.Item{Kind: kind, RequestBody: capture.Body{Data: b}}).RequestBody.Data
	}
}

func runReplay(ctx context.Context, f *factory, o *replayOptions) error {
	log := f.logger()
	xs, frames, redactJSON, err := loadRecordings(o.Files)
	if err != nil {
		return err
	}
	if o.Stdio {
		if len(frames) == 0 {
			return fmt.Errorf("replay --stdio: %s hold no stdio frames", strings.Join(o.Files, ", "))
		}
		srv, err := stdioreplay.NewServer(frames, stdioreplay.Options{
			Log:    log.With().Str("component", "replay").Logger(),
			Redact: matchRedaction(redactJSON, capture.KindStdio),
		})
		if err != nil {
			return err
		}
		log.Info().Int("frames", len(frames)).Msg("replaying stdio")
		// As the relay does: the client's pipes served by Go's poller, so
		// that a pending read can be interrupted at shutdown.
		in, out, undo := stdio.PollableClient(f.Stdin, f.Stdout, f.Stderr)
		defer undo()
		serr := srv.Serve(ctx, in, out)
		st := srv.Stats()
		_, _ = fmt.Fprintf(f.Stderr, "proxyctl: replay: %d hits, %d misses, %d recorded calls never used\n", st.Hits, st.Misses, st.Unused)
		if serr != nil && !errors.Is(serr, context.Canceled) {
			return serr
		}
		if o.Strict && st.Misses > 0 {
			return fmt.Errorf("replay --strict: %d requests had no recorded answer", st.Misses)
		}
		return nil
	}
	if len(xs) == 0 {
		return fmt.Errorf("replay: %s hold no HTTP exchanges (use --stdio for stdio tapes)", strings.Join(o.Files, ", "))
	}
	ix, err := replay.NewIndex(xs, replay.Options{
		MatchHeaders: o.MatchHeaders, Latency: o.Latency, Log: log.With().Str("component", "replay").Logger(),
		Redact: matchRedaction(redactJSON, capture.KindHTTP),
	})
	if err != nil {
		return err
	}
	h := &replay.Handler{Index: ix, MaxBody: o.MaxBody}
	if o.Fallback != nil {
		target := o.Fallback
		// The pooled fallback connections must not outlive the command.
		fallback := transport.New(transport.Options{})
		defer fallback.CloseIdleConnections()
		h.Fallback = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.SetXForwarded()
				pr.Out.Header.Del("Proxy-Authorization")
			},
			Transport: fallback,
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
				log.Warn().Err(err).Msg("replay fallback failed")
				http.Error(w, `{"error":"fallback upstream unreachable","status":502}`, http.StatusBadGateway)
			},
		}
	}
	o.HTTP.Backend = h
	o.HTTP.Ready = o.Ready
	log.Info().Int("exchanges", len(xs)).Strs("files", o.Files).Msg("replaying http")
	err = runForwardHTTP(ctx, f, o.HTTP)
	st := ix.Stats()
	_, _ = fmt.Fprintf(f.Stderr, "proxyctl: replay: %d hits, %d misses, %d recorded exchanges never used\n", st.Hits, st.Misses, len(st.Unused))
	if err != nil {
		return err
	}
	if o.Strict && st.Misses > 0 {
		return fmt.Errorf("replay --strict: %d requests had no recorded answer", st.Misses)
	}
	return nil
}

func readHARFile(path string) ([]*tape.Exchange, error) {
	fh, err := tape.OpenInput(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = fh.Close() }()
	xs, err := tape.ReadHAR(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return xs, nil
}
