package tape

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"
)

// DefaultHARBase is the base URL of HAR request URLs when the tape has no
// "target" meta.
const DefaultHARBase = "http://localhost"

// HAR 1.2 structures (http://www.softwareishard.com/blog/har-12-spec/).
// Fields starting with "_" are proxyctl extensions, allowed by the spec.

type harFile struct {
	Log *harLog `json:"log"`
}

type harLog struct {
	Version string     `json:"version"`
	Creator harCreator `json:"creator"`
	Entries []harEntry `json:"entries"`
}

type harCreator struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type harEntry struct {
	StartedDateTime string      `json:"startedDateTime"`
	Time            float64     `json:"time"`
	Request         *harRequest `json:"request"`
	Response        harResponse `json:"response"`
	Cache           struct{}    `json:"cache"`
	Timings         harTimings  `json:"timings"`

	ID        string `json:"_id,omitempty"`
	SessionID string `json:"_sessionId,omitempty"`
	Seq       uint64 `json:"_seq,omitempty"`
	Stubbed   bool   `json:"_stubbed,omitempty"`
	Error     string `json:"_error,omitempty"`
}

type harNV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type harRequest struct {
	Method      string       `json:"method"`
	URL         string       `json:"url"`
	HTTPVersion string       `json:"httpVersion"`
	Headers     []harNV      `json:"headers"`
	QueryString []harNV      `json:"queryString"`
	Cookies     []harNV      `json:"cookies"`
	HeadersSize int          `json:"headersSize"`
	BodySize    int          `json:"bodySize"`
	PostData    *harPostData `json:"postData,omitempty"`
}

type harPostData struct {
	MimeType string `json:"mimeType"`
	Text     string `json:"text"`
	// Encoding is a proxyctl extension: HAR 1.2 postData has no encoding,
	// so a binary request body is base64 in Text with "_encoding":"base64".
	Encoding string `json:"_encoding,omitempty"`
}

type harResponse struct {
	Status      int        `json:"status"`
	StatusText  string     `json:"statusText"`
	HTTPVersion string     `json:"httpVersion"`
	Headers     []harNV    `json:"headers"`
	Cookies     []harNV    `json:"cookies"`
	Content     harContent `json:"content"`
	RedirectURL string     `json:"redirectURL"`
	HeadersSize int        `json:"headersSize"`
	BodySize    int        `json:"bodySize"`
	Trailers    []harNV    `json:"_trailers,omitempty"`
}

type harContent struct {
	Size     int    `json:"size"`
	MimeType string `json:"mimeType"`
	Text     string `json:"text,omitempty"`
	Encoding string `json:"encoding,omitempty"`
}

type harTimings struct {
	Send    float64 `json:"send"`
	Wait    float64 `json:"wait"`
	Receive float64 `json:"receive"`
}

// ExportHAR writes entries as a HAR 1.2 log, with request URLs made absolute
// against [DefaultHARBase]. creator is "name" or "name version".
func ExportHAR(w io.Writer, entries []*Exchange, creator string) error {
	return ExportHARBase(w, entries, creator, "")
}

// ExportHARBase is [ExportHAR] with request URLs made absolute against base
// (typically [Header.Target]; "" means [DefaultHARBase]). Request URLs that
// are already absolute are kept.
func ExportHARBase(w io.Writer, entries []*Exchange, creator, base string) error {
	if base == "" {
		base = DefaultHARBase
	}
	baseURL, err := url.Parse(base)
	if err != nil || baseURL.Scheme == "" || baseURL.Host == "" {
		return fmt.Errorf("export har: invalid base URL %s", quoteShort(base))
	}
	name, version, _ := strings.Cut(strings.TrimSpace(creator), " ")
	log := harLog{
		Version: "1.2",
		Creator: harCreator{Name: name, Version: strings.TrimSpace(version)},
		Entries: make([]harEntry, 0, len(entries)),
	}
	for i, x := range entries {
		if x == nil {
			return fmt.Errorf("export har: entry %d: nil exchange", i)
		}
		e, err := toHAREntry(x, baseURL)
		if err != nil {
			return fmt.Errorf("export har: entry %d: %w", i, err)
		}
		log.Entries = append(log.Entries, e)
	}
	b, err := marshalNoEscape(harFile{Log: &log})
	if err != nil {
		return fmt.Errorf("export har: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("export har: %w", err)
	}
	return nil
}

func toHAREntry(x *Exchange, base *url.URL) (harEntry, error) {
	u, err := absoluteURL(x.Request.URL, base)
	if err != nil {
		return harEntry{}, err
	}
	req := &harRequest{
		Method:      x.Request.Method,
		URL:         u.String(),
		HTTPVersion: protoOr(x.Request.Proto),
		Headers:     harHeaders(x.Request.Headers),
		QueryString: harQuery(u.RawQuery),
		Cookies:     []harNV{},
		HeadersSize: -1,
		BodySize:    len(x.Request.Body),
	}
	if len(x.Request.Body) > 0 {
		pd := &harPostData{MimeType: x.Request.Headers.Get("Content-Type")}
		if isText(x.Request.Body) {
			pd.Text = string(x.Request.Body)
		} else {
			pd.Text = base64.StdEncoding.EncodeToString(x.Request.Body)
			pd.Encoding = "base64"
		}
		req.PostData = pd
	}
	resp := harResponse{
		HTTPVersion: protoOr(x.Request.Proto),
		Headers:     []harNV{},
		Cookies:     []harNV{},
		HeadersSize: -1,
	}
	if r := x.Response; r != nil {
		resp.Status = r.Status
		resp.StatusText = http.StatusText(r.Status)
		resp.Headers = harHeaders(r.Headers)
		resp.RedirectURL = r.Headers.Get("Location")
		resp.BodySize = len(r.Body)
		resp.Content = harContent{Size: len(r.Body), MimeType: r.Headers.Get("Content-Type")}
		if len(r.Body) > 0 {
			if isText(r.Body) {
				resp.Content.Text = string(r.Body)
			} else {
				resp.Content.Text = base64.StdEncoding.EncodeToString(r.Body)
				resp.Content.Encoding = "base64"
			}
		}
		if len(r.Trailers) > 0 {
			resp.Trailers = harHeaders(r.Trailers)
		}
	}
	dur := max(x.DurationMs, 0)
	return harEntry{
		StartedDateTime: x.Time.Format(time.RFC3339Nano),
		Time:            dur,
		Request:         req,
		Response:        resp,
		Timings:         harTimings{Wait: dur},
		ID:              x.ID,
		SessionID:       x.SessionID,
		Seq:             x.Seq,
		Stubbed:         x.Stubbed,
		Error:           x.Error,
	}, nil
}

func absoluteURL(target string, base *url.URL) (*url.URL, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("invalid request url: %w", err)
	}
	if u.IsAbs() {
		return u, nil
	}
	out := *base
	out.Path = strings.TrimSuffix(base.Path, "/") + "/" + strings.TrimPrefix(u.Path, "/")
	out.RawPath = ""
	if u.RawPath != "" {
		out.RawPath = strings.TrimSuffix(base.EscapedPath(), "/") + "/" + strings.TrimPrefix(u.RawPath, "/")
	}
	out.RawQuery = u.RawQuery
	out.Fragment = ""
	return &out, nil
}

func protoOr(p string) string {
	if p == "" {
		return "HTTP/1.1"
	}
	return p
}

// harHeaders lists h sorted by name, values in recorded order.
func harHeaders(h http.Header) []harNV {
	out := []harNV{}
	for _, name := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[name] {
			out = append(out, harNV{Name: name, Value: v})
		}
	}
	return out
}

func harQuery(raw string) []harNV {
	out := []harNV{}
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			v = uv
		}
		out = append(out, harNV{Name: k, Value: v})
	}
	return out
}

// ReadHAR reads the entries of a HAR 1.2 log as exchanges. Request URLs
// become request targets (path and query); HTTP/2 pseudo-headers (":path")
// are dropped; response content with "encoding": "base64" is decoded.
// Errors name the entry index.
func ReadHAR(r io.Reader) ([]*Exchange, error) {
	var f harFile
	dec := json.NewDecoder(r)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("read har: %w", err)
	}
	if f.Log == nil {
		return nil, errors.New(`read har: missing "log"`)
	}
	out := make([]*Exchange, 0, len(f.Log.Entries))
	for i := range f.Log.Entries {
		x, err := fromHAREntry(&f.Log.Entries[i])
		if err != nil {
			return nil, fmt.Errorf("read har: entry %d: %w", i, err)
		}
		out = append(out, x)
	}
	return out, nil
}

func fromHAREntry(e *harEntry) (*Exchange, error) {
	if e.Request == nil {
		return nil, errors.New(`missing "request"`)
	}
	if e.Request.Method == "" {
		return nil, errors.New("missing request method")
	}
	u, err := url.Parse(e.Request.URL)
	if err == nil && u.Opaque != "" {
		err = errors.New("opaque URL")
	}
	if err == nil {
		_, err = url.Parse(u.RequestURI())
	}
	if err != nil {
		return nil, fmt.Errorf("invalid request url %s: %w", quoteShort(e.Request.URL), err)
	}
	x := &Exchange{
		ID:         e.ID,
		SessionID:  e.SessionID,
		Seq:        e.Seq,
		DurationMs: e.Time,
		Stubbed:    e.Stubbed,
		Error:      e.Error,
		Request: Request{
			Method:  e.Request.Method,
			URL:     u.RequestURI(),
			Proto:   e.Request.HTTPVersion,
			Headers: fromHARHeaders(e.Request.Headers),
		},
	}
	if e.StartedDateTime != "" {
		t, err := time.Parse(time.RFC3339Nano, e.StartedDateTime)
		if err != nil {
			return nil, fmt.Errorf("invalid startedDateTime %s", quoteShort(e.StartedDateTime))
		}
		x.Time = t
	}
	if pd := e.Request.PostData; pd != nil && pd.Text != "" {
		body, err := decodeHARText(pd.Text, pd.Encoding)
		if err != nil {
			return nil, fmt.Errorf("request postData: %w", err)
		}
		x.Request.Body = body
	}
	r := e.Response
	if r.Status == 0 && len(r.Headers) == 0 && r.Content.Text == "" {
		return x, nil // no response received
	}
	x.Response = &Response{
		Status:   r.Status,
		Headers:  fromHARHeaders(r.Headers),
		Trailers: fromHARHeaders(r.Trailers),
	}
	if r.Content.Text != "" {
		body, err := decodeHARText(r.Content.Text, r.Content.Encoding)
		if err != nil {
			return nil, fmt.Errorf("response content: %w", err)
		}
		x.Response.Body = body
	}
	return x, nil
}

func decodeHARText(text, encoding string) (Body, error) {
	switch encoding {
	case "":
		return Body(text), nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("invalid base64: %w", err)
		}
		return Body(b), nil
	default:
		return nil, fmt.Errorf("unknown encoding %s", quoteShort(encoding))
	}
}

func fromHARHeaders(nvs []harNV) http.Header {
	if len(nvs) == 0 {
		return nil
	}
	h := make(http.Header, len(nvs))
	for _, nv := range nvs {
		if nv.Name == "" || strings.HasPrefix(nv.Name, ":") {
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(nv.Name)
		h[k] = append(h[k], nv.Value)
	}
	if len(h) == 0 {
		return nil
	}
	return h
}
