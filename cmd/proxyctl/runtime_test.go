package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/aws/smithy-go/logging"
	"github.com/rs/zerolog"
)

// TestSDKLogger checks that the AWS SDK's log lines become the command's
// log events, at their level, instead of plain text on stderr.
func TestSDKLogger(t *testing.T) {
	var buf bytes.Buffer
	l := sdkLogger(zerolog.New(&buf).Level(zerolog.InfoLevel))
	l.Logf(logging.Warn, "failed to discard remaining HTTP response body: %v", "closed")
	l.Logf(logging.Debug, "retrying %d", 2) // below the level: dropped
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1: %s", len(lines), buf.Bytes())
	}
	var ev map[string]string
	if err := json.Unmarshal(lines[0], &ev); err != nil {
		t.Fatal(err)
	}
	if ev["level"] != "warn" || ev["component"] != "aws-sdk" || ev["message"] != "failed to discard remaining HTTP response body: closed" {
		t.Errorf("event %v", ev)
	}
}
