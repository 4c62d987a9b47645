package jsonrpc

import (
	"encoding/json"
	"strconv"
)

type wireError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

type errorResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   wireError       `json:"error"`
}

type resultResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
}

// ErrorResponse builds a one-line JSON-RPC error response (no trailing
// newline). A nil id is written as null. data is omitted when nil, and
// dropped if it cannot be encoded.
func ErrorResponse(id json.RawMessage, code int, msg string, data any) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, err := json.Marshal(errorResponse{JSONRPC: "2.0", ID: id, Error: wireError{Code: code, Message: msg, Data: data}})
	if err != nil {
		b, err = json.Marshal(errorResponse{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: wireError{Code: code, Message: msg}})
		if err != nil { // only an invalid id can get here
			return []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":` + strconv.Itoa(code) + `,"message":"internal error"}}`)
		}
	}
	return b
}

// ResultResponse builds a one-line JSON-RPC result response (no trailing
// newline). A nil result is written as null; result must be valid JSON.
func ResultResponse(id, result json.RawMessage) ([]byte, error) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	if len(result) == 0 {
		result = json.RawMessage("null")
	}
	return json.Marshal(resultResponse{JSONRPC: "2.0", ID: id, Result: result})
}
