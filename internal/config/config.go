// Package config merges command-line flags with PROXYCTL_* environment
// variables and a config file, and parses the value types flags share
// (sizes, service maps, address lists).
//
// Precedence, highest first: a flag given on the command line, the
// environment variable PROXYCTL_<FLAG_WITH_UNDERSCORES>, the config file
// (key = flag name), the flag's default. Every value, wherever it came
// from, is parsed by the flag itself, so an invalid value is reported with
// the flag's name and its source.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// EnvPrefix is prepended to a flag's upper-cased, underscored name to form
// its environment variable.
const EnvPrefix = "PROXYCTL_"

// UsageError is a configuration or usage mistake: the command exits 2.
// Flag names the flag at fault ("" when none applies).
type UsageError struct {
	Flag string
	Err  error
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError for flag with a formatted message.
func Usagef(flag, format string, args ...any) error {
	return &UsageError{Flag: flag, Err: fmt.Errorf(format, args...)}
}

// FlagError wraps err as a usage error that names --flag.
func FlagError(flag string, err error) error {
	return &UsageError{Flag: flag, Err: fmt.Errorf("--%s: %w", flag, err)}
}

// EnvName is the environment variable that sets flag.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Apply fills every flag in fs that was not set on the command line from
// the environment (looked up with getenv) and then from the config file at
// path (YAML, JSON or TOML by extension; "" for none). Keys in the file that
// name no flag are an error, so a typo does not silently do nothing.
//
// For repeatable flags (slices and string arrays) an environment value is
// split on commas and a file value may be a list.
func Apply(fs *pflag.FlagSet, path string, getenv func(string) string) error {
	var file map[string]any
	if path != "" {
		if err := checkConfigPath(path); err != nil {
			return err
		}
		v := viper.New()
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			var nf viper.ConfigFileNotFoundError
			if errors.As(err, &nf) || errors.Is(err, os.ErrNotExist) {
				return Usagef("config", "--config: read %s: file not found", path)
			}
			return Usagef("config", "--config: read %s: %v", path, err)
		}
		file = v.AllSettings()
		if err := checkKeys(fs, file, path); err != nil {
			return err
		}
	}
	var firstErr error
	fs.VisitAll(func(f *pflag.Flag) {
		if firstErr != nil || f.Changed || f.Name == "help" {
			return
		}
		env := EnvName(f.Name)
		if val := getenv(env); val != "" {
			firstErr = setFlag(fs, f, splitList(f, val), env)
			return
		}
		if raw, ok := file[f.Name]; ok {
			vals, err := fileValues(raw)
			if err != nil {
				firstErr = Usagef(f.Name, "invalid value for --%s in %s: %v", f.Name, path, err)
				return
			}
			firstErr = setFlag(fs, f, vals, path)
		}
	})
	return firstErr
}

func checkConfigPath(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return Usagef("config", "--config: read %s: file not found", path)
	case err != nil:
		return Usagef("config", "--config: read %s: %v", path, err)
	case fi.IsDir():
		return Usagef("config", "--config: read %s: is a directory", path)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json", ".toml":
		return nil
	default:
		return Usagef("config", "--config: %s: unsupported file type %q (use .yaml, .yml, .json or .toml)", path, filepath.Ext(path))
	}
}

func checkKeys(fs *pflag.FlagSet, file map[string]any, path string) error {
	var unknown []string
	for k := range file {
		if fs.Lookup(k) == nil {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return Usagef("config", "--config: %s: unknown setting %q for this command", path, unknown[0])
}

func isList(f *pflag.Flag) bool {
	t := f.Value.Type()
	return strings.HasSuffix(t, "Slice") || strings.HasSuffix(t, "Array")
}

func splitList(f *pflag.Flag, val string) []string {
	if !isList(f) {
		return []string{val}
	}
	parts := strings.Split(val, ",")
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func fileValues(raw any) ([]string, error) {
	switch v := raw.(type) {
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, err := scalar(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	default:
		s, err := scalar(v)
		if err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
}

func scalar(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool, int, int64, float64, uint64:
		return fmt.Sprint(v), nil
	case map[string]any:
		// A nested map (service-map: {api: http://...}) becomes name=value pairs.
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			s, err := scalar(v[k])
			if err != nil {
				return "", err
			}
			parts = append(parts, k+"="+s)
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("unsupported value of type %T", v)
	}
}

func setFlag(fs *pflag.FlagSet, f *pflag.Flag, vals []string, source string) error {
	for _, val := range vals {
		if err := fs.Set(f.Name, val); err != nil {
			return Usagef(f.Name, "invalid value %q for --%s (from %s): %v", val, f.Name, source, err)
		}
	}
	return nil
}
