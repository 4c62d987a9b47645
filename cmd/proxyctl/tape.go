package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/proxyctl/proxyctl/internal/config"
	"github.com/proxyctl/proxyctl/internal/tape"
)

// newTapeCmd is the `tape` group: commands that work on a recorded tape
// file without running a proxy.
func newTapeCmd(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tape",
		Short: "Show, validate, export and redact recorded tapes",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  groupRunE,
	}
	cmd.AddCommand(
		newTapeShowCmd(f, nil),
		newTapeValidateCmd(f, nil),
		newTapeExportCmd(f, nil),
		newTapeRedactCmd(f, nil),
	)
	return cmd
}

// tapeFileArg checks that the command got exactly one FILE argument.
func tapeFileArg(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 1:
		return nil
	case 0:
		return config.Usagef("", "%s: missing FILE argument (the tape to read)", cmd.CommandPath())
	default:
		return config.Usagef("", "%s: takes one FILE argument, got %d", cmd.CommandPath(), len(args))
	}
}

// ---- tape show ----

type tapeShowOptions struct {
	Path string
}

func newTapeShowCmd(f *factory, runF func(*factory, *tapeShowOptions) error) *cobra.Command {
	if runF == nil {
		runF = runTapeShow
	}
	return &cobra.Command{
		Use:   "show FILE",
		Short: "Print a summary table of a tape's exchanges and frames",
		Example: `  proxyctl tape show api.tape.json
  proxyctl tape show mcp.tape.json`,
		Args: tapeFileArg,
		RunE: func(_ *cobra.Command, args []string) error {
			return runF(f, &tapeShowOptions{Path: args[0]})
		},
	}
}

// tapeRPCPeek is what `tape show` reads of a JSON-RPC message.
type tapeRPCPeek struct {
	Method *string          `json:"method"`
	ID     json.RawMessage  `json:"id"`
	Result json.RawMessage  `json:"result"`
	Error  *json.RawMessage `json:"error"`
}

func runTapeShow(f *factory, o *tapeShowOptions) error {
	r, err := tapeOpen(o.Path)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	hdr := r.Header()

	var xrows, frows [][]string
	noteCol := false
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch e := e.(type) {
		case *tape.Exchange:
			row := tapeExchangeRow(e)
			noteCol = noteCol || row[len(row)-1] != ""
			xrows = append(xrows, row)
		case *tape.Frame:
			frows = append(frows, tapeFrameRow(e, hdr.CreatedAt))
		}
	}
	tapeWarn(f, r)

	var b strings.Builder
	fmt.Fprintf(&b, "tape %s: version %d, kind %s, created %s, %s (%s, %s)\n",
		tapeCell(o.Path, 0), hdr.Version, tapeCell(string(hdr.Kind), 20), tapeTime(hdr.CreatedAt),
		tapePlural(len(xrows)+len(frows), "entry", "entries"),
		tapePlural(len(xrows), "exchange", "exchanges"), tapePlural(len(frows), "frame", "frames"))
	if t := hdr.Target(); t != "" {
		fmt.Fprintf(&b, "target: %s\n", tapeCell(tapeRedactURL(t), 0))
	}
	for _, k := range slices.Sorted(maps.Keys(hdr.Meta)) {
		if k != "target" {
			fmt.Fprintf(&b, "%s: %s\n", tapeCell(k, 40), tapeCell(hdr.Meta[k], 200))
		}
	}
	if _, err := io.WriteString(f.Stdout, b.String()); err != nil {
		return err
	}
	if len(xrows) > 0 {
		cols := []string{"SEQ", "SESSION", "METHOD", "PATH", "STATUS", "SIZE", "DURATION", "NOTE"}
		if !noteCol {
			cols = cols[:len(cols)-1]
			for i := range xrows {
				xrows[i] = xrows[i][:len(cols)]
			}
		}
		if err := tapeTable(f.Stdout, cols, xrows); err != nil {
			return err
		}
	}
	if len(frows) > 0 {
		if len(xrows) > 0 {
			if _, err := io.WriteString(f.Stdout, "\n"); err != nil {
				return err
			}
		}
		cols := []string{"SEQ", "SESSION", "DIRECTION", "MESSAGE", "ID", "SIZE", "AT"}
		if err := tapeTable(f.Stdout, cols, frows); err != nil {
			return err
		}
	}
	return nil
}

// tapeExchangeRow is one row of the exchange table; its last cell is the
// note (error, stubbed), possibly empty.
func tapeExchangeRow(x *tape.Exchange) []string {
	status, size := "ERR", "-"
	if x.Response != nil {
		status = strconv.Itoa(x.Response.Status)
		size = tapeSize(len(x.Response.Body))
	}
	var notes []string
	if x.Stubbed {
		notes = append(notes, "stubbed")
	}
	if x.Error != "" {
		notes = append(notes, "error: "+x.Error)
	}
	note := ""
	if len(notes) > 0 {
		note = tapeCell(strings.Join(notes, "; "), 120)
	}
	return []string{
		strconv.FormatUint(x.Seq, 10),
		tapeCell(x.SessionID, 40),
		tapeCell(x.Request.Method, 20),
		tapeCell(x.Request.URL, 80),
		status,
		size,
		tapeDuration(x.DurationMs),
		note,
	}
}

func tapeFrameRow(fr *tape.Frame, start time.Time) []string {
	msg, id := tapeRPCSummary(fr.Data)
	at := "-"
	if !fr.Time.IsZero() && !start.IsZero() {
		d := fr.Time.Sub(start)
		at = "+" + tapeDuration(float64(d)/float64(time.Millisecond))
		if d < 0 {
			at = "-" + tapeDuration(float64(-d)/float64(time.Millisecond))
		}
	}
	return []string{
		strconv.FormatUint(fr.Seq, 10),
		tapeCell(fr.SessionID, 40),
		tapeCell(string(fr.Direction), 20),
		msg,
		id,
		tapeSize(len(fr.Data)),
		at,
	}
}

// tapeRPCSummary names a JSON-RPC message: its method for a request or
// notification, "result" or "error CODE MESSAGE" for a response; and its id.
func tapeRPCSummary(data []byte) (msg, id string) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var batch []json.RawMessage
		if json.Unmarshal(trimmed, &batch) == nil {
			return fmt.Sprintf("batch of %d", len(batch)), "-"
		}
	}
	var p tapeRPCPeek
	if json.Unmarshal(trimmed, &p) != nil {
		return "(not JSON-RPC)", "-"
	}
	id = "-"
	if len(p.ID) > 0 {
		id = tapeCell(string(p.ID), 40)
	}
	switch {
	case p.Method != nil:
		return tapeCell(*p.Method, 60), id
	case p.Error != nil:
		var e struct {
			Code    json.Number `json:"code"`
			Message string      `json:"message"`
		}
		_ = json.Unmarshal(*p.Error, &e)
		return tapeCell(strings.TrimSpace("error "+e.Code.String()+" "+e.Message), 80), id
	case p.Result != nil:
		return "result", id
	default:
		return "(not JSON-RPC)", id
	}
}

func tapeTable(w io.Writer, cols []string, rows [][]string) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, row := range rows {
		_, _ = fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush() // writes to a bytes.Buffer cannot fail
	// Empty last cells leave padding behind: trim it.
	var out strings.Builder
	for line := range strings.Lines(buf.String()) {
		out.WriteString(strings.TrimRight(line, " \n"))
		out.WriteByte('\n')
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// tapeCell makes s safe for one table cell: non-printable runes (tabs,
// newlines, terminal escapes) are escaped, and s is cut to maxRunes (0: no
// limit) with an ellipsis.
func tapeCell(s string, maxRunes int) string {
	var b strings.Builder
	n := 0
	for i, r := range s {
		if maxRunes > 0 && n == maxRunes {
			if i < len(s) {
				b.WriteString("…")
			}
			break
		}
		n++
		switch {
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// tapeSize renders n bytes with a decimal unit: 512B, 1.2KB, 3.4MB.
func tapeSize(n int) string {
	switch {
	case n < 1000:
		return strconv.Itoa(n) + "B"
	case n < 1000*1000:
		return fmt.Sprintf("%.1fKB", float64(n)/1e3)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1fMB", float64(n)/1e6)
	default:
		return fmt.Sprintf("%.1fGB", float64(n)/1e9)
	}
}

// tapeDuration renders a duration in milliseconds: 850µs, 12.8ms, 5.00s, 2m3s.
func tapeDuration(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.0fµs", ms*1000)
	case ms < 1000:
		return fmt.Sprintf("%.1fms", ms)
	case ms < 60_000:
		return fmt.Sprintf("%.2fs", ms/1000)
	default:
		return time.Duration(ms * float64(time.Millisecond)).Round(time.Second).String()
	}
}

func tapeTime(t time.Time) string {
	if t.IsZero() {
		return "(unknown)"
	}
	return t.Format(time.RFC3339Nano)
}

func tapePlural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// tapeRedactURL hides a password in a URL's user info.
func tapeRedactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}

// ---- tape validate ----

type tapeValidateOptions struct {
	Path string
}

func newTapeValidateCmd(f *factory, runF func(*factory, *tapeValidateOptions) error) *cobra.Command {
	if runF == nil {
		runF = runTapeValidate
	}
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check that a file is a well-formed tape (exit 1 naming the first bad line)",
		Long: `Validate reads the whole tape and checks its header and every entry: the
JSON of each line, the entry types, bodies, request methods, response statuses
(100..599), that entries fit the tape's kind and that no (sessionId, seq) pair
repeats. The first problem is reported with its line and the command exits 1.
A cut last line, as left by a killed recorder, is a warning, not a failure.`,
		Example: `  proxyctl tape validate api.tape.json`,
		Args:    tapeFileArg,
		RunE: func(_ *cobra.Command, args []string) error {
			return runF(f, &tapeValidateOptions{Path: args[0]})
		},
	}
}

func runTapeValidate(f *factory, o *tapeValidateOptions) error {
	r, err := tapeOpen(o.Path)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	c, err := tape.Validate(r)
	if err != nil {
		return err
	}
	tapeWarn(f, r)
	_, err = fmt.Fprintf(f.Stdout, "%s: ok (%s, %s)\n", o.Path,
		tapePlural(c.Exchanges, "exchange", "exchanges"), tapePlural(c.Frames, "frame", "frames"))
	return err
}

// ---- tape export ----

type tapeExportOptions struct {
	Path   string
	Output string // "" or "-": stdout
}

func newTapeExportCmd(f *factory, runF func(*factory, *tapeExportOptions) error) *cobra.Command {
	if runF == nil {
		runF = runTapeExport
	}
	var format, output string
	cmd := &cobra.Command{
		Use:   "export --format har FILE [-o OUT]",
		Short: "Write a tape's HTTP exchanges as a HAR 1.2 file",
		Long: `Export writes the HTTP exchanges of a tape as a HAR 1.2 log, on stdout or,
with -o, to a file (written atomically; mode 0600 for a new file). Request URLs
are made absolute on the tape's target (meta.target), else http://localhost.
Stdio frames have no HAR form and are left out.`,
		Example: `  proxyctl tape export --format har api.tape.json > api.har
  proxyctl tape export --format har api.tape.json -o api.har`,
		Args: tapeFileArg,
		RunE: func(_ *cobra.Command, args []string) error {
			switch strings.ToLower(format) {
			case "har":
			case "":
				return config.Usagef("format", "--format is required (har)")
			default:
				return config.Usagef("format", "--format %q is not supported (use har)", format)
			}
			return runF(f, &tapeExportOptions{Path: args[0], Output: output})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&format, "format", "", "output format: har (required)")
	fs.StringVarP(&output, "output", "o", "", "write to this file instead of stdout (- for stdout)")
	return cmd
}

func runTapeExport(f *factory, o *tapeExportOptions) error {
	if o.Output != "" && o.Output != "-" && tapeSameFile(o.Path, o.Output) {
		// Replacing the tape by its HAR export would lose the tape (and
		// its stdio frames): surely a slip.
		return fmt.Errorf("export %s: -o %s is the tape itself; write the HAR file elsewhere", o.Path, o.Output)
	}
	r, err := tapeOpen(o.Path)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	var xs []*tape.Exchange
	frames := 0
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch e := e.(type) {
		case *tape.Exchange:
			xs = append(xs, e)
		case *tape.Frame:
			frames++
		}
	}
	_ = r.Close()
	tapeWarn(f, r)
	if len(xs) == 0 {
		return fmt.Errorf("export %s: tape has no HTTP exchanges to export", o.Path)
	}
	if frames > 0 {
		_, _ = fmt.Fprintf(f.Stderr, "proxyctl: %s left out (HAR holds HTTP exchanges only)\n", tapePlural(frames, "stdio frame", "stdio frames"))
	}
	creator := "proxyctl " + tapeBuildVersion()
	export := func(w io.Writer) error {
		return tape.ExportHARBase(w, xs, creator, tapeHARBase(r.Header().Target()))
	}
	if o.Output == "" || o.Output == "-" {
		return export(f.Stdout)
	}
	return tapeWriteAtomic(o.Output, func(w io.Writer) (bool, error) {
		return true, export(w)
	})
}

// tapeBuildVersion is the version `proxyctl version` prints.
func tapeBuildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// tapeHARBase is the tape's target without user info: credentials have no
// place in an exported file.
func tapeHARBase(target string) string {
	if u, err := url.Parse(target); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	return target
}

// ---- tape redact ----

type tapeRedactOptions struct {
	Path    string
	Output  string // "": rewrite Path in place
	Headers []string
	JSON    []string
}

func newTapeRedactCmd(f *factory, runF func(*factory, *tapeRedactOptions) error) *cobra.Command {
	if runF == nil {
		runF = runTapeRedact
	}
	o := &tapeRedactOptions{}
	cmd := &cobra.Command{
		Use:   "redact FILE [-o OUT] [--redact-header NAME]... [--redact-json PATH]...",
		Short: "Redact secrets in an existing tape",
		Long: `Redact replaces secrets in a tape with [REDACTED], as the recorder does: every
value of the Authorization, Proxy-Authorization, Cookie, Set-Cookie and
X-Api-Key headers (request, response and trailers) and of each --redact-header,
and the values at each --redact-json PATH in request and response bodies and in
stdio frames. Without -o the tape is rewritten in place, atomically, keeping
its file mode. The number of values redacted is printed on stderr.`,
		Example: `  proxyctl tape redact api.tape.json --redact-header X-Session-Token --redact-json password
  proxyctl tape redact mcp.tape.json --redact-json params.arguments.token -o shared.tape.json`,
		Args: tapeFileArg,
		RunE: func(_ *cobra.Command, args []string) error {
			o.Path = args[0]
			for _, p := range o.JSON {
				if strings.TrimSpace(p) == "" || strings.Contains(p, "..") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") {
					return config.Usagef("redact-json", "--redact-json %q: a path is dot-separated segments, e.g. params.arguments.token", p)
				}
			}
			for _, h := range o.Headers {
				if strings.TrimSpace(h) == "" {
					return config.Usagef("redact-header", "--redact-header: empty header name")
				}
			}
			return runF(f, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&o.Output, "output", "o", "", "write the redacted tape here (- for stdout) instead of rewriting FILE")
	fs.StringArrayVar(&o.Headers, "redact-header", nil, "also redact this header's values (repeatable)")
	fs.StringArrayVar(&o.JSON, "redact-json", nil, "redact the value at this dotted path in JSON bodies and frames, e.g. params.arguments.token (repeatable)")
	return cmd
}

func runTapeRedact(f *factory, o *tapeRedactOptions) error {
	r, err := tapeOpen(o.Path)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	out, inPlace := o.Output, o.Output == ""
	if inPlace {
		out = o.Path
	}
	var values, changed, total int
	redact := func(w io.Writer) (bool, error) {
		tw, err := tape.NewWriter(w, r.Header())
		if err != nil {
			return false, err
		}
		for {
			e, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return false, err
			}
			total++
			if n := tape.RedactEntry(e, o.Headers, o.JSON); n > 0 {
				values += n
				changed++
			}
			switch e := e.(type) {
			case *tape.Exchange:
				err = tw.WriteExchange(*e)
			case *tape.Frame:
				err = tw.WriteFrame(*e)
			}
			if err != nil {
				return false, fmt.Errorf("tape %s: line %d: %w", o.Path, r.Line(), err)
			}
		}
		if err := tw.Close(); err != nil {
			return false, err
		}
		_ = r.Close()
		// In place with nothing to redact and nothing dropped: leave the
		// file as it is.
		return !inPlace || values > 0 || len(r.Warnings()) > 0, nil
	}
	if out == "-" {
		out = "stdout"
		_, err = redact(f.Stdout)
	} else {
		err = tapeWriteAtomic(out, redact)
	}
	if err != nil {
		return err
	}
	tapeWarn(f, r)
	switch {
	case values == 0 && inPlace && len(r.Warnings()) == 0:
		_, err = fmt.Fprintf(f.Stderr, "proxyctl: nothing to redact in %s (%s); file unchanged\n", o.Path, tapePlural(total, "entry", "entries"))
	default:
		_, err = fmt.Fprintf(f.Stderr, "proxyctl: redacted %s in %d of %s; wrote %s\n",
			tapePlural(values, "value", "values"), changed, tapePlural(total, "entry", "entries"), out)
	}
	return err
}

// ---- shared ----

// tapeOpen opens a tape for reading, saying so plainly when the file is a
// directory or a HAR file rather than a tape.
func tapeOpen(path string) (*tape.Reader, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("open tape %s: is a directory", path)
	}
	r, err := tape.Open(path)
	if err != nil {
		if le, ok := errors.AsType[*tape.LineError](err); ok && le.Line == 1 && tapeIsHAR(path) {
			return nil, fmt.Errorf("%s is a HAR file, not a proxyctl tape; replay accepts it as is", path)
		}
		return nil, err
	}
	return r, nil
}

// tapeIsHAR reports whether the file at path is a JSON object with a "log"
// object, as a HAR file is. It reads no further than that member.
func tapeIsHAR(path string) bool {
	fh, err := tape.OpenInput(path) // never waits on a named pipe
	if err != nil {
		return false
	}
	defer func() { _ = fh.Close() }()
	dec := json.NewDecoder(bufio.NewReader(fh))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return false
		}
		if key == "log" {
			tok, err := dec.Token()
			return err == nil && tok == json.Delim('{')
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

// tapeSameFile reports whether a and b name the same existing file (links
// followed).
func tapeSameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// tapeWarn prints the reader's warnings (a cut last line) on stderr.
func tapeWarn(f *factory, r *tape.Reader) {
	for _, w := range r.Warnings() {
		_, _ = fmt.Fprintf(f.Stderr, "proxyctl: warning: %s\n", w)
	}
}

// tapeWriteAtomic writes path through a temporary file in the same
// directory, renamed over path once write succeeded and said to commit (a
// reader of path never sees a partial file). An existing path keeps its file
// mode; a new file gets 0600, as tapes hold full bodies. A symlink is
// followed: its target is replaced.
func tapeWriteAtomic(path string, write func(io.Writer) (commit bool, err error)) error {
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	mode := fs.FileMode(0o600)
	switch fi, err := os.Stat(path); {
	case err == nil && fi.IsDir():
		return fmt.Errorf("write %s: is a directory", path)
	case err == nil:
		mode = fi.Mode().Perm()
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write %s: directory %s does not exist", path, dir)
		}
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err // the temporary name means nothing to the user
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 256<<10)
	commit, err := write(bw)
	if err != nil {
		return err
	}
	if !commit {
		return nil
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	committed = true
	return nil
}
