package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// CanonicalParams returns a canonical encoding of a request's params for
// matching a request against recorded ones (replay): object keys sorted,
// insignificant whitespace removed, numbers as written, and the top-level
// "_meta" member (MCP's per-request metadata: progress tokens, trace ids)
// dropped. Absent and null params are both "null". Params that are not
// valid JSON are an error.
func CanonicalParams(params json.RawMessage) ([]byte, error) {
	params = bytes.TrimSpace(params)
	if len(params) == 0 || string(params) == "null" {
		return []byte("null"), nil
	}
	v, err := decodeOne(params)
	if err != nil {
		return nil, err
	}
	if m, ok := v.(map[string]any); ok {
		delete(m, "_meta")
	}
	return CanonicalValue(v)
}

// CanonicalJSON returns a canonical encoding of one JSON value (keys sorted,
// compact, numbers as written), for comparing JSON bodies semantically.
func CanonicalJSON(data []byte) ([]byte, error) {
	v, err := decodeOne(bytes.TrimSpace(data))
	if err != nil {
		return nil, err
	}
	return CanonicalValue(v)
}

// CanonicalValue encodes a value decoded with UseNumber canonically.
func CanonicalValue(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func decodeOne(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("jsonrpc: trailing data after the JSON value")
	}
	return v, nil
}
