package stdioreplay

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/proxyctl/proxyctl/internal/jsonrpc"
)

// miss builds the answer (a line) to a request with no recorded match.
// params is the request's canonical params (nil if they could not be read).
func (s *Server) miss(method string, id json.RawMessage, params []byte) []byte {
	cands := s.byMethod[method]
	if len(cands) == 0 {
		s.log.Warn().Str("method", method).RawJSON("id", idOrNull(id)).Msg("replay miss: method not in the recording")
		return line(jsonrpc.ErrorResponse(id, CodeNotRecorded, "method not found in the recording",
			map[string]string{"method": method}))
	}
	want := flatten(params)
	var best *call
	var bestDiff []string
	for _, c := range cands {
		d := differs(want, flatten(c.params))
		if best == nil || len(d) < len(bestDiff) {
			best, bestDiff = c, d
		}
	}
	s.log.Warn().Str("method", method).RawJSON("id", idOrNull(id)).Int("differs", len(bestDiff)).
		Msg("replay miss: no recorded call matches these params")
	if len(bestDiff) > maxDiffers {
		bestDiff = append(bestDiff[:maxDiffers:maxDiffers], "…")
	}
	return line(jsonrpc.ErrorResponse(id, CodeNoMatch, "no recorded call matches these params", struct {
		Method        string          `json:"method"`
		ClosestParams json.RawMessage `json:"closestParams"`
		Differs       []string        `json:"differs"`
	}{method, best.params, bestDiff}))
}

func idOrNull(id json.RawMessage) json.RawMessage {
	if id == nil {
		return json.RawMessage("null")
	}
	return id
}

// flatten maps the dotted path of every leaf of a JSON value (array
// indexes as numbers; empty objects and arrays are leaves) to its
// canonical encoding. The path of a top-level leaf is "".
func flatten(data []byte) map[string]string {
	out := map[string]string{}
	if len(data) == 0 {
		return out
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return out
	}
	walk(out, "", v)
	return out
}

func walk(out map[string]string, path string, v any) {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch x := v.(type) {
	case map[string]any:
		if len(x) > 0 {
			for k, e := range x {
				walk(out, join(k), e)
			}
			return
		}
	case []any:
		if len(x) > 0 {
			for i, e := range x {
				walk(out, join(strconv.Itoa(i)), e)
			}
			return
		}
	}
	b, err := jsonrpc.CanonicalValue(v)
	if err != nil {
		b = nil
	}
	out[path] = string(b)
}

// differs lists, sorted, the paths where a and b differ.
func differs(a, b map[string]string) []string {
	d := []string{}
	for k, va := range a {
		if vb, ok := b[k]; !ok || vb != va {
			d = append(d, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, k)
		}
	}
	slices.Sort(d)
	d = slices.Compact(d)
	if len(d) > 0 && d[0] == "" {
		d[0] = "(params)" // the params themselves: not an object or array, or one side is empty
	}
	return d
}
