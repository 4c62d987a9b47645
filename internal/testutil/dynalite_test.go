package testutil

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// dynamo sends one DynamoDB JSON request to d and returns the response
// body.
func dynamo(t *testing.T, d *DynaliteServer, op, body string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, d.Endpoint, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810."+op)
	// dynalite checks the header's shape, not the signature.
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00")
	req.Header.Set("X-Amz-Date", "20260101T000000Z")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %s (%v)", op, resp.Status, b, err)
	}
	return string(b)
}

// TestDynaliteRestart starts dynalite with a data directory, stops it and
// starts it again on the same port: the data is still there (the outage
// tests rely on this).
func TestDynaliteRestart(t *testing.T) {
	node, dir, err := DynaliteDir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	path := t.TempDir()
	d, err := StartDynalite(t.Context(), node, dir, DynaliteOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop() })
	dynamo(t, d, "CreateTable", `{"TableName":"kept","BillingMode":"PAY_PER_REQUEST",
		"AttributeDefinitions":[{"AttributeName":"k","AttributeType":"S"}],
		"KeySchema":[{"AttributeName":"k","KeyType":"HASH"}]}`)
	if err := d.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if resp, err := http.Get(d.Endpoint); err == nil {
		_ = resp.Body.Close()
		t.Errorf("dynalite still answers after Stop")
	}

	again, err := StartDynalite(t.Context(), node, dir, DynaliteOptions{Port: d.Port, Path: path})
	if err != nil {
		t.Fatalf("restart on port %d: %v", d.Port, err)
	}
	t.Cleanup(func() { _ = again.Stop() })
	if again.Endpoint != d.Endpoint {
		t.Errorf("restarted at %s, want %s", again.Endpoint, d.Endpoint)
	}
	if got := dynamo(t, again, "ListTables", `{}`); !strings.Contains(got, `"kept"`) {
		t.Errorf("after a restart ListTables = %s, want the table kept", got)
	}
}

func TestDynaliteInMemory(t *testing.T) {
	d := Dynalite(t)
	if got := dynamo(t, d, "ListTables", `{}`); !strings.Contains(got, `"TableNames":[]`) {
		t.Errorf("fresh dynalite: ListTables = %s", got)
	}
}
