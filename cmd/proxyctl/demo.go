package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/proxyctl/proxyctl/internal/demo"
	"github.com/proxyctl/proxyctl/internal/ratelimit"
	"github.com/proxyctl/proxyctl/internal/server"
)

type demoOptions struct {
	Serve bool
}

// newDemoCmd runs a self-contained tour: a built-in upstream, `forward http`
// in front of it, and a few requests that show sessions, header handling
// and rate limits. Nothing outside the process is needed.
func newDemoCmd(f *factory, runF func(context.Context, *factory, *demoOptions) error) *cobra.Command {
	if runF == nil {
		runF = runDemo
	}
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo [--serve]",
		Short: "Try proxyctl offline: a built-in upstream behind forward http, with a guided tour",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("log-level") && f.Getenv("PROXYCTL_LOG_LEVEL") == "" {
				f.global.LogLevel = "warn" // the tour's table is the output
			}
			return runF(cmd.Context(), f, &o)
		},
	}
	cmd.Flags().BoolVar(&o.Serve, "serve", false, "after the tour, keep the upstream and proxy running until interrupted")
	return cmd
}

func runDemo(ctx context.Context, f *factory, o *demoOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)

	upLn, err := server.Listen(gctx, "127.0.0.1:0", "demo upstream")
	if err != nil {
		return err
	}
	upSrv := &http.Server{Handler: demo.Handler(), ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error { return server.Run(gctx, upSrv, upLn, time.Second) })

	target, _ := url.Parse("http://" + upLn.Addr().String())
	specs, err := ratelimit.ParseSpecs([]string{"endpoint=5/m:5"})
	if err != nil {
		return err
	}
	if f.global.AdminListen == "127.0.0.1:9901" {
		f.global.AdminListen = "127.0.0.1:0" // do not collide with a running proxyctl
	}
	if !f.global.StoreChosen {
		f.global.Store = "memory" // the tour leaves nothing behind
	}
	ready := make(chan [2]string, 1)
	var lf limitFlags
	lf.SessionHeader, lf.SessionMode, lf.SessionMax = "X-Proxy-Session", "auto", 100
	lf.SessionIdle, lf.SessionCacheTTL = 10*time.Minute, time.Second
	scfg, _, err := lf.validate()
	if err != nil {
		return err
	}
	opts := &forwardHTTPOptions{
		Log:               f.logger(),
		Listen:            "127.0.0.1:0",
		Target:            target,
		ServiceHeader:     "X-Proxy-Service",
		UserHeader:        "X-User-Id",
		Session:           scfg,
		SessionHdr:        "X-Proxy-Session",
		RateLimits:        specs,
		ReadHeaderTimeout: 5 * time.Second,
		ClientBodyTimeout: defaultClientBodyTimeout,
		ClientSendTimeout: defaultClientSendTimeout,
		MaxHeaderBytes:    defaultMaxHeaderSize,
		IdleTimeout:       time.Minute,
		ShutdownTimeout:   2 * time.Second,
		EventLoops:        defaultEventLoops, // as forward http
		Ready:             func(p, a string) { ready <- [2]string{p, a} },
	}
	g.Go(func() error { return runForwardHTTP(gctx, f, opts) })

	var addrs [2]string
	select {
	case addrs = <-ready:
	case <-gctx.Done():
		cancel()
		return g.Wait()
	}
	tourErr := tour(gctx, f.Stdout, "http://"+addrs[0], addrs[1])
	if tourErr == nil && o.Serve {
		_, _ = fmt.Fprintf(f.Stdout, "\nServing until interrupted (Ctrl-C):\n  proxy     http://%s   (try: curl -H 'X-Proxy-Session: mine' http://%s/hello)\n  upstream  %s\n", addrs[0], addrs[0], target)
		if addrs[1] != "" {
			_, _ = fmt.Fprintf(f.Stdout, "  admin     http://%s/api/sessions\n", addrs[1])
		}
		<-gctx.Done()
	}
	cancel()
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return tourErr
}

// tour sends requests through the proxy and prints what happened.
func tour(ctx context.Context, out io.Writer, proxy, admin string) error {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{}).DialContext}}
	do := func(method, url string, hdr map[string]string) (int, http.Header, string, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return 0, nil, "", err
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, resp.Header, strings.TrimSpace(string(b)), err
	}
	_, _ = fmt.Fprintf(out, "proxyctl demo: a built-in upstream behind `proxyctl forward http` at %s\n", proxy)
	_, _ = fmt.Fprintf(out, "rate limit: endpoint=5/m:5 (burst 5)   session header: X-Proxy-Session\n\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "#\tREQUEST\tSESSION\tSTATUS\tWHAT HAPPENED")
	n := 0
	row := func(req, sess string, code int, what string) {
		n++
		_, _ = fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\n", n, req, sess, code, what)
	}
	code, _, body, err := do("GET", proxy+"/hello", map[string]string{"X-Proxy-Session": "demo-1"})
	if err != nil {
		return fmt.Errorf("demo request: %w", err)
	}
	row("GET /hello", "demo-1", code, "forwarded: "+body)
	code, _, body, err = do("GET", proxy+"/echo", map[string]string{"X-Proxy-Session": "demo-1", "Proxy-Authorization": "Bearer not-for-upstream"})
	if err != nil {
		return fmt.Errorf("demo request: %w", err)
	}
	what := "upstream saw X-Forwarded-For"
	if !strings.Contains(body, "X-Forwarded-For") {
		what = "X-Forwarded-For missing!"
	}
	if strings.Contains(body, "not-for-upstream") {
		what += ", and Proxy-Authorization LEAKED"
	} else {
		what += "; Proxy-Authorization was stripped"
	}
	row("GET /echo", "demo-1", code, what)
	for range 5 {
		code, hdr, _, err := do("GET", proxy+"/status/204", nil)
		if err != nil {
			return fmt.Errorf("demo request: %w", err)
		}
		what := "forwarded (RateLimit-Remaining: " + hdr.Get("RateLimit-Remaining") + ")"
		if code == http.StatusTooManyRequests {
			what = "rate limited, Retry-After: " + hdr.Get("Retry-After") + "s"
		}
		row("GET /status/204", "(per-client)", code, what)
	}
	for range 2 {
		code, hdr, _, err := do("GET", proxy+"/status/204", nil)
		if err != nil {
			return fmt.Errorf("demo request: %w", err)
		}
		what := "forwarded"
		if code == http.StatusTooManyRequests {
			what = "rate limited (burst used up), Retry-After: " + hdr.Get("Retry-After") + "s"
		}
		row("GET /status/204", "(per-client)", code, what)
	}
	if admin != "" {
		code, _, _, err = do("DELETE", "http://"+admin+"/api/sessions/demo-1", nil)
		if err != nil {
			return fmt.Errorf("demo admin request: %w", err)
		}
		row("DELETE admin /api/sessions/demo-1", "demo-1", code, "session closed through the admin API")
		code, _, body, err = do("GET", proxy+"/hello", map[string]string{"X-Proxy-Session": "demo-1"})
		if err != nil {
			return fmt.Errorf("demo request: %w", err)
		}
		row("GET /hello", "demo-1", code, "refused: "+body)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if admin != "" {
		_, _, body, err := do("GET", "http://"+admin+"/metrics", nil)
		if err != nil {
			return fmt.Errorf("demo admin request: %w", err)
		}
		_, _ = fmt.Fprintln(out, "\nFrom the admin API's /metrics:")
		for line := range strings.SplitSeq(body, "\n") {
			if strings.HasPrefix(line, "proxyctl_http_requests_total") || strings.HasPrefix(line, "proxyctl_sessions{") || strings.HasPrefix(line, "proxyctl_rate_limited_total") {
				_, _ = fmt.Fprintln(out, "  "+line)
			}
		}
	}
	_, _ = fmt.Fprintf(out, "\nNext: `proxyctl forward http --target URL` in front of your own service; `proxyctl demo --serve` keeps this one running.\n")
	return nil
}
