package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/proxyctl/proxyctl/internal/config"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/stub"
)

// The session, stub and store commands work on the configured store
// directly (--store), without a running proxy.

// openCLIStore opens --store for a one-shot command. The memory store
// would be empty and lost at exit, so it is refused.
func (f *factory) openCLIStore(ctx context.Context) (store.Store, error) {
	if isMemoryStore(f.global.Store) {
		return nil, config.Usagef("store", "--store memory lives inside one proxyctl process: give the store the proxy uses (bolt:PATH or dynamodb://...)")
	}
	return openStoreContext(ctx, f.global.Store, f.logger())
}

func newSessionCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "session",
		Short: "List, show and close sessions in the store",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRunE,
	}
	var limit int
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List sessions, ordered by id",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > store.MaxLimit {
				return config.Usagef("limit", "--limit must be from 1 to %d", store.MaxLimit)
			}
			st, err := f.openCLIStore(cmd.Context())
			if err != nil {
				return err
			}
			defer func() { _ = st.Close() }()
			var all []store.Session
			cursor := ""
			for len(all) < limit {
				page, next, err := st.ListSessions(cmd.Context(), store.Page{Cursor: cursor, Limit: min(store.MaxLimit, limit-len(all))})
				if err != nil {
					return err
				}
				all = append(all, page...)
				if next == "" {
					break
				}
				cursor = next
			}
			if asJSON {
				return writeJSONTo(f.Stdout, all)
			}
			rows := make([][]string, 0, len(all))
			for _, s := range all {
				rows = append(rows, []string{s.ID, string(s.State), s.Kind, cliTime(s.CreatedAt), cliTime(s.LastSeenAt), cliLabels(s.Labels)})
			}
			return tapeTable(f.Stdout, []string{"ID", "STATE", "KIND", "CREATED", "LAST SEEN", "LABELS"}, rows)
		},
	}
	list.Flags().IntVar(&limit, "limit", 100, "most sessions to list")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Print a session as JSON",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := f.openCLIStore(cmd.Context())
			if err != nil {
				return err
			}
			defer func() { _ = st.Close() }()
			s, err := st.GetSession(cmd.Context(), args[0])
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("session %q not found", args[0])
			}
			if err != nil {
				return err
			}
			return writeJSONTo(f.Stdout, s)
		},
	}
	closeCmd := &cobra.Command{
		Use:   "close ID",
		Short: "Close a session: every proxy sharing the store refuses it within its cache TTL",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := f.openCLIStore(cmd.Context())
			if err != nil {
				return err
			}
			defer func() { _ = st.Close() }()
			s, err := st.EndSession(cmd.Context(), args[0], store.StateClosed, time.Now())
			switch {
			case errors.Is(err, store.ErrNotFound):
				return fmt.Errorf("session %q not found", args[0])
			case errors.Is(err, store.ErrConflict):
				_, _ = fmt.Fprintf(f.Stdout, "session %s is already %s\n", args[0], s.State)
				return nil
			case err != nil:
				return err
			}
			_, _ = fmt.Fprintf(f.Stdout, "closed session %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(list, show, closeCmd)
	return cmd
}

func newStubCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stub",
		Short: "List, add and delete session stubs in the store",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRunE,
	}
	var session string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--session ID]",
		Short: "List a session's stubs (--session *: the global ones)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := f.openCLIStore(cmd.Context())
			if err != nil {
				return err
			}
			defer func() { _ = st.Close() }()
			stubs, err := st.ListStubs(cmd.Context(), session)
			if err != nil {
				return err
			}
			slices.SortFunc(stubs, stub.Compare)
			if asJSON {
				return writeJSONTo(f.Stdout, stubs)
			}
			rows := make([][]string, 0, len(stubs))
			for _, s := range stubs {
				expires := ""
				if s.ExpiresAt != 0 {
					expires = cliTime(time.Unix(s.ExpiresAt, 0))
				}
				rows = append(rows, []string{s.StubID, s.SessionID, strconv.Itoa(s.Priority), cliMethod(s.Pattern.Method),
					cliURL(s.Pattern), strconv.Itoa(s.Response.Status), expires})
			}
			return tapeTable(f.Stdout, []string{"STUB", "SESSION", "PRIORITY", "METHOD", "URL", "STATUS", "EXPIRES"}, rows)
		},
	}
	list.Flags().StringVar(&session, "session", store.GlobalSession, "session whose stubs to list")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")

	var file, method, url, body string
	var status, priority int
	var ttl time.Duration
	add := &cobra.Command{
		Use:   "add --session ID (-f STUB.json | --url URL [--method M] [--status N] [--body TEXT])",
		Short: "Add a stub (the admin API's JSON, from a file or stdin, or built from flags)",
		Example: `  proxyctl stub add --session '*' --method GET --url /health --status 200 --body ok
  proxyctl stub add --session run-42 -f stub.json
  echo '{"pattern":{"urlPath":"/v1/users","method":"POST"},"response":{"status":201,"jsonBody":{"id":7}}}' | proxyctl stub add --session run-42 -f -`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s store.Stub
			switch {
			case file != "" && url != "":
				return config.Usagef("file", "give -f or --url, not both")
			case file != "":
				if err := readStubJSON(f, file, &s); err != nil {
					return err
				}
				if s.Priority == 0 {
					s.Priority = stub.DefaultPriority
				}
			case url != "":
				s = store.Stub{
					Priority: stub.DefaultPriority,
					Pattern:  store.StubPattern{Method: method, URL: url},
					Response: store.StubResponse{Status: status, Body: body},
				}
			default:
				return config.Usagef("url", "give -f STUB.json (or - for stdin) or --url")
			}
			if cmd.Flags().Changed("priority") {
				s.Priority = priority
			}
			if s.SessionID != "" && s.SessionID != session {
				return config.Usagef("session", "the stub's sessionId %q differs from --session %q", s.SessionID, session)
			}
			s.SessionID = session
			now := time.Now()
			if ttl > 0 {
				s.ExpiresAt = now.Add(ttl).Unix()
			}
			s, err := stub.Prepare(s, now)
			if err != nil {
				return fmt.Errorf("invalid stub: %w", err)
			}
			st, err := f.openCLIStore(cmd.Context())
			if err != nil {
				return err
			}
			defer func() { _ = st.Close() }()
			if err := st.PutStub(cmd.Context(), s); err != nil {
				return err
			}
			return writeJSONTo(f.Stdout, s)
		},
	}
	af := add.Flags()
	af.StringVar(&session, "session", store.GlobalSession, "session the stub belongs to (* for every session)")
	af.StringVarP(&file, "file", "f", "", "stub JSON as the admin API takes it (- for stdin)")
	af.StringVar(&method, "method", "", "request method to match (any when empty)")
	af.StringVar(&url, "url", "", "request target to match exactly (path and query)")
	af.IntVar(&status, "status", 200, "response status")
	af.StringVar(&body, "body", "", "response body")
	af.IntVar(&priority, "priority", stub.DefaultPriority, "lower wins; ties go to the newest stub")
	af.DurationVar(&ttl, "ttl", 0, "expire the stub after this long (0: never)")

	del := &cobra.Command{
		Use:   "delete --session ID STUB_ID",
		Short: "Delete a stub",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := f.openCLIStore(cmd.Context())
			if err != nil {
				return err
			}
			defer func() { _ = st.Close() }()
			err = st.DeleteStub(cmd.Context(), session, args[0])
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("stub %s not found in session %s", args[0], session)
			}
			if err != nil {
				return err
			}
			_, _ = fmt.Fprintf(f.Stdout, "deleted stub %s\n", args[0])
			return nil
		},
	}
	del.Flags().StringVar(&session, "session", store.GlobalSession, "session the stub belongs to")
	cmd.AddCommand(list, add, del)
	return cmd
}

func newStoreCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Manage the store",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRunE,
	}
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the store's tables or file (idempotent)",
		Long: `init creates what --store needs: the DynamoDB tables (sessions, stubs,
proxy-traffic, with the table prefix; waits until they are ACTIVE), or the
bolt file, its directory and its traffic directory. Running it again
changes nothing.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if isMemoryStore(f.global.Store) {
				if _, err := parseRetention(strings.TrimPrefix(f.global.Store, "memory"), false); err != nil {
					return err
				}
				_, _ = fmt.Fprintln(f.Stdout, "the memory store needs no initialization")
				return nil
			}
			st, err := openStoreContext(cmd.Context(), f.global.Store, f.logger())
			if err != nil {
				return err
			}
			defer func() { _ = st.Close() }()
			if in, ok := st.(interface{ Init(context.Context) error }); ok {
				if err := in.Init(cmd.Context()); err != nil {
					return err
				}
			}
			_, _ = fmt.Fprintf(f.Stdout, "store %s is ready\n", f.global.Store)
			return nil
		},
	}
	cmd.AddCommand(initCmd)
	return cmd
}

func readStubJSON(f *factory, file string, s *store.Stub) error {
	var r io.Reader
	if file == "-" {
		r = f.Stdin
	} else {
		fh, err := os.Open(file)
		if err != nil {
			return err
		}
		defer func() { _ = fh.Close() }()
		r = fh
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(s); err != nil {
		return fmt.Errorf("stub %s: invalid JSON: %w", file, err)
	}
	return nil
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cliTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func cliLabels(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}

func cliMethod(m string) string {
	if m == "" {
		return "ANY"
	}
	return strings.ToUpper(m)
}

func cliURL(p store.StubPattern) string {
	switch {
	case p.URL != "":
		return p.URL
	case p.URLPath != "":
		return p.URLPath + "?*"
	case p.URLPattern != "":
		return "~" + p.URLPattern
	}
	return "*"
}
