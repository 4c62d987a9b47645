package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/proxyctl/proxyctl/internal/config"
)

// Exit codes, decided only in run.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// exitError carries an exit status that is not an error to print (forward
// stdio exits with its child's status).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// factory holds what every command needs from the outside world. Commands
// get it explicitly: there is no package-level state.
type factory struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string

	global globalOptions
}

type globalOptions struct {
	ConfigFile  string
	LogLevel    string
	LogFormat   string
	Store       string
	StoreChosen bool // --store was given (flag, environment or config file)
	AdminListen string
	AdminToken  string
}

// run executes proxyctl with args and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runEnv(ctx, args, stdin, stdout, stderr, os.Getenv)
}

// runEnv is run with the environment lookup injected (tests).
func runEnv(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	f := &factory{Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv}
	root := newRootCmd(f)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	return exitCode(err, cmd, stderr)
}

func exitCode(err error, _ *cobra.Command, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	if ee, ok := errors.AsType[*exitError](err); ok {
		return ee.code
	}
	// One line, naming the culprit; `--help` is one flag away.
	_, _ = fmt.Fprintf(stderr, "proxyctl: %v\n", err)
	if isUsage(err) {
		return exitUsage
	}
	return exitFailure
}

func isUsage(err error) bool {
	if _, ok := errors.AsType[*config.UsageError](err); ok {
		return true
	}
	// cobra reports unknown subcommands with a plain error.
	return strings.HasPrefix(err.Error(), "unknown command ")
}

func newRootCmd(f *factory) *cobra.Command {
	root := &cobra.Command{
		Use:           "proxyctl",
		Short:         "Forward, record and replay HTTP and stdio JSON-RPC traffic",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return f.applyConfig(cmd.Flags())
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &config.UsageError{Err: err}
	})
	pf := root.PersistentFlags()
	g := &f.global
	pf.StringVar(&g.ConfigFile, "config", "", "config file (YAML, JSON or TOML; keys are flag names)")
	pf.StringVar(&g.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&g.LogFormat, "log-format", "auto", "log format: auto (console on a terminal, else json), json or console")
	pf.StringVar(&g.Store, "store", defaultStore(f.Getenv), "store URL: bolt:PATH (the default: an embedded file), memory (nothing survives exit) or dynamodb://?region=R&endpoint=URL&table-prefix=P")
	pf.StringVar(&g.AdminListen, "admin-listen", "127.0.0.1:9901", "admin API address, or off")
	pf.StringVar(&g.AdminToken, "admin-token", "", "bearer token required by the admin API (required for a non-loopback --admin-listen)")

	fwd := &cobra.Command{
		Use:   "forward",
		Short: "Proxy traffic to an upstream with sessions and rate limits",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  groupRunE,
	}
	fwd.AddCommand(newForwardHTTPCmd(f, nil), newForwardStdioCmd(f, nil))
	root.AddCommand(fwd, newRecordCmd(f), newReplayCmd(f, nil), newSessionCmd(f), newStubCmd(f), newStoreCmd(f), newVersionCmd(f), newDemoCmd(f, nil), newTapeCmd(f))
	return root
}

// groupRunE makes a command group with no subcommand named a usage error.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return config.Usagef("", "unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return config.Usagef("", "%s needs a subcommand", cmd.CommandPath())
}

// usageArgs wraps a cobra positional-argument check so that its failure is
// a usage error (exit 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &config.UsageError{Err: err}
		}
		return nil
	}
}

// applyConfig merges environment and config file into the flags not given
// on the command line, then validates the global flags.
func (f *factory) applyConfig(fs *pflag.FlagSet) error {
	getenv := f.Getenv
	if fl := fs.Lookup("service-map"); fl != nil && !fl.Changed && getenv(config.EnvName("service-map")) == "" {
		if v := getenv("SERVICE_MAP"); v != "" {
			if err := fs.Set("service-map", v); err != nil {
				return config.Usagef("service-map", "invalid SERVICE_MAP: %v", err)
			}
		}
	}
	if err := config.Apply(fs, f.global.ConfigFile, getenv); err != nil {
		return err
	}
	if fl := fs.Lookup("store"); fl != nil {
		f.global.StoreChosen = fl.Changed
	}
	if _, err := zerolog.ParseLevel(f.global.LogLevel); err != nil || f.global.LogLevel == "" {
		return config.Usagef("log-level", "--log-level %q must be debug, info, warn or error", f.global.LogLevel)
	}
	switch f.global.LogFormat {
	case "auto", "json", "console":
	default:
		return config.Usagef("log-format", "--log-format %q must be auto, json or console", f.global.LogFormat)
	}
	if a := f.global.AdminListen; a != "off" && !config.IsLoopbackListen(a) && f.global.AdminToken == "" {
		return config.Usagef("admin-token", "--admin-listen %s is not a loopback address: set --admin-token", a)
	}
	return nil
}

// logger builds the command's logger: always stderr, never stdout.
func (f *factory) logger() zerolog.Logger {
	lvl, err := zerolog.ParseLevel(f.global.LogLevel)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	var w = f.Stderr
	console := f.global.LogFormat == "console"
	if f.global.LogFormat == "auto" {
		if fd, ok := f.Stderr.(interface{ Fd() uintptr }); ok && isatty.IsTerminal(fd.Fd()) {
			console = true
		}
	}
	if console {
		w = zerolog.ConsoleWriter{Out: f.Stderr, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}
