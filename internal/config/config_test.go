package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/proxyctl/proxyctl/internal/config"
)

type flags struct {
	fs      *pflag.FlagSet
	target  string
	timeout time.Duration
	limits  []string
	size    config.Size
	verbose bool
}

func newFlags(t *testing.T, args ...string) *flags {
	t.Helper()
	f := &flags{fs: pflag.NewFlagSet("test", pflag.ContinueOnError)}
	f.fs.StringVar(&f.target, "target", "", "")
	f.fs.DurationVar(&f.timeout, "upstream-timeout", 30*time.Second, "")
	f.fs.StringArrayVar(&f.limits, "rate-limit", nil, "")
	f.size = 16 << 20
	f.fs.Var(&f.size, "max-message-size", "")
	f.fs.BoolVar(&f.verbose, "verbose", false, "")
	if err := f.fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "c.yaml", "target: http://file\nupstream-timeout: 5s\nrate-limit: [\"ip=1/s\", \"global=10/s\"]\nmax-message-size: 1MiB\nverbose: true\n")
	f := newFlags(t, "--target", "http://flag")
	err := config.Apply(f.fs, file, envOf(map[string]string{"PROXYCTL_UPSTREAM_TIMEOUT": "7s"}))
	if err != nil {
		t.Fatal(err)
	}
	if f.target != "http://flag" {
		t.Errorf("target = %q, want the command-line value", f.target)
	}
	if f.timeout != 7*time.Second {
		t.Errorf("timeout = %v, want the environment's 7s", f.timeout)
	}
	if strings.Join(f.limits, ",") != "ip=1/s,global=10/s" {
		t.Errorf("limits = %q, want the file's list", f.limits)
	}
	if f.size != 1<<20 || !f.verbose {
		t.Errorf("size %d verbose %v from file", f.size, f.verbose)
	}
}

func TestEnvList(t *testing.T) {
	f := newFlags(t)
	if err := config.Apply(f.fs, "", envOf(map[string]string{"PROXYCTL_RATE_LIMIT": "ip=1/s, user=2/m"})); err != nil {
		t.Fatal(err)
	}
	if strings.Join(f.limits, "|") != "ip=1/s|user=2/m" {
		t.Errorf("limits = %q", f.limits)
	}
}

func TestErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		want       string
	}{
		{"bad env duration", "", map[string]string{"PROXYCTL_UPSTREAM_TIMEOUT": "soon"}, `invalid value "soon" for --upstream-timeout (from PROXYCTL_UPSTREAM_TIMEOUT)`},
		{"bad file size", "max-message-size: 10XB\n", nil, `for --max-message-size (from `},
		{"unknown key", "rate-limits: [a]\n", nil, `unknown setting "rate-limits"`},
		{"malformed file", "target: [x\n", nil, `--config: read `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = writeFile(t, "c.yaml", tc.file)
			}
			err := config.Apply(newFlags(t).fs, path, envOf(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want it to contain %q", err, tc.want)
			}
			if _, ok := errors.AsType[*config.UsageError](err); !ok {
				t.Errorf("error %T is not a usage error", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestMissingConfigFile(t *testing.T) {
	err := config.Apply(newFlags(t).fs, filepath.Join(t.TempDir(), "nope.yaml"), envOf(nil))
	if err == nil || !strings.Contains(err.Error(), "file not found") {
		t.Fatalf("got %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"512", 512, ""},
		{"512B", 512, ""},
		{"512KB", 512000, ""},
		{"350kb", 350000, ""},
		{"16MiB", 16 << 20, ""},
		{"1.5GiB", 3 << 29, ""},
		{"1k", 1024, ""},
		{"", 0, "empty size"},
		{"MB", 0, "must start with a number"},
		{"10XB", 0, `unknown unit "XB"`},
		{"1.2.3MB", 0, "not a number"},
		{"99999999999GB", 0, "too large"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := config.ParseSize(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %d, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1", "16MiB", "350KB", "1.5GB", "", "x", "9e99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := config.ParseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, n)
		}
		if err == nil {
			back, err := config.ParseSize(config.FormatSize(n))
			if err != nil || back != n {
				t.Fatalf("FormatSize(%d) = %q does not round-trip: %d %v", n, config.FormatSize(n), back, err)
			}
		}
	})
}

func TestParseServiceMap(t *testing.T) {
	m, err := config.ParseServiceMap([]string{"api=http://127.0.0.1:3000, auth=https://auth.internal"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m["api"].Host != "127.0.0.1:3000" || m["auth"].Scheme != "https" {
		t.Fatalf("got %v", m)
	}
	for _, bad := range []string{"api", "=http://x", "api=ftp://x", "api=http://x,api=http://y", "api=http://user:pw@x"} {
		if _, err := config.ParseServiceMap([]string{bad}); err == nil {
			t.Errorf("%q: no error", bad)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: error reveals credentials: %v", bad, err)
		}
	}
}

func TestParsePrefixesAndLoopback(t *testing.T) {
	p, err := config.ParsePrefixes([]string{"10.0.0.0/8,127.0.0.1", "::1"})
	if err != nil || len(p) != 3 || p[1].Bits() != 32 {
		t.Fatalf("got %v %v", p, err)
	}
	if _, err := config.ParsePrefixes([]string{"10.0.0.0/99"}); err == nil {
		t.Error("bad CIDR accepted")
	}
	for addr, want := range map[string]bool{
		"127.0.0.1:9901": true, "[::1]:1": true, "localhost:9901": true,
		":9901": false, "0.0.0.0:9901": false, "10.1.2.3:9901": false, "nonsense": false,
	} {
		if got := config.IsLoopbackListen(addr); got != want {
			t.Errorf("IsLoopbackListen(%q) = %v, want %v", addr, got, want)
		}
	}
}
