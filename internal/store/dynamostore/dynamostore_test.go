package dynamostore

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/storetest"
	"github.com/proxyctl/proxyctl/internal/testutil"
)

// prefixSeq gives every store of a test binary its own tables.
var prefixSeq atomic.Int64

func staticCredentials() func(*config.LoadOptions) error {
	return config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", ""))
}

// storeURL returns a URL for fresh tables on d.
func storeURL(d *testutil.DynaliteServer) string {
	return fmt.Sprintf("dynamodb://?region=us-east-1&endpoint=%s&table-prefix=t%d-",
		url.QueryEscape(d.Endpoint), prefixSeq.Add(1))
}

// openStore opens a store on fresh tables of d and initialises it.
func openStore(t testing.TB, d *testutil.DynaliteServer, o Options) *Store {
	t.Helper()
	o.LoadOptions = append(o.LoadOptions, staticCredentials())
	st, err := Open(t.Context(), storeURL(d), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := st.Init(t.Context()); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func suiteStore(d *testutil.DynaliteServer) func(t *testing.T) store.Store {
	return func(t *testing.T) store.Store { return openStore(t, d, Options{}) }
}

func TestSessions(t *testing.T) {
	t.Parallel()
	storetest.TestSessions(t, suiteStore(testutil.Dynalite(t)))
}

func TestTraffic(t *testing.T) {
	t.Parallel()
	storetest.TestTraffic(t, suiteStore(testutil.Dynalite(t)))
}

func TestStubs(t *testing.T) {
	t.Parallel()
	storetest.TestStubs(t, suiteStore(testutil.Dynalite(t)))
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw     string
		want    URL
		wantErr string // a substring of the error; "" = no error
	}{
		{raw: "dynamodb://", want: URL{}},
		{raw: "dynamodb:", want: URL{}},
		{raw: "dynamodb://?region=eu-west-1", want: URL{Region: "eu-west-1"}},
		{
			raw:  "dynamodb://?region=R&endpoint=http://127.0.0.1:8000&table-prefix=team_a.",
			want: URL{Region: "R", Endpoint: "http://127.0.0.1:8000", TablePrefix: "team_a."},
		},
		{raw: "dynamodb:///?endpoint=https%3A%2F%2Fdynamodb.example%3A443", want: URL{Endpoint: "https://dynamodb.example:443"}},
		{raw: "dynamodb://?regoin=x", wantErr: `unknown query parameter "regoin"`},
		{raw: "dynamodb://?region=", wantErr: `"region" is empty`},
		{raw: "dynamodb://?region=a&region=b", wantErr: `"region" given 2 times`},
		{raw: "dynamodb://?endpoint=localhost:8000", wantErr: `"endpoint"`},
		{raw: "dynamodb://?endpoint=ftp://h", wantErr: `"endpoint"`},
		{raw: "dynamodb://?table-prefix=a/b", wantErr: `"table-prefix"`},
		{raw: "dynamodb://?table-prefix=" + strings.Repeat("p", 250), wantErr: `"table-prefix"`},
		{raw: "dynamodb://?table-prefix=%zz", wantErr: "query"},
		{raw: "dynamodb://host?region=r", wantErr: "only query parameters"},
		{raw: "dynamodb://?region=r#frag", wantErr: "only query parameters"},
		{raw: "bolt:/tmp/x", wantErr: "scheme"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.raw)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", tt.raw, err)
		}
		got, err := ParseURL(u)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ParseURL(%q): %v", tt.raw, err)
		case tt.wantErr == "" && got != tt.want:
			t.Errorf("ParseURL(%q) = %+v, want %+v", tt.raw, got, tt.want)
		case tt.wantErr != "" && (!errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseURL(%q): got error %v, want ErrBadURL containing %q", tt.raw, err, tt.wantErr)
		}
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	o := Options{LoadOptions: []func(*config.LoadOptions) error{staticCredentials()}}
	if _, err := Open(ctx, "dynamodb://?bogus=1", o); !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("Open with an unknown parameter: %v", err)
	}
	// An endpoint without a region signs for the default region.
	st, err := Open(ctx, "dynamodb://?endpoint=http://127.0.0.1:1&table-prefix=p-", o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if want := []string{"p-sessions", "p-stubs", "p-proxy-traffic"}; strings.Join(st.Tables(), " ") != strings.Join(want, " ") {
		t.Errorf("Tables() = %v, want %v", st.Tables(), want)
	}
	if got := st.String(); !strings.Contains(got, "region=us-east-1") || !strings.Contains(got, "endpoint=http://127.0.0.1:1") {
		t.Errorf("String() = %q", got)
	}
	st, err = Open(ctx, "dynamodb://?region=eu-west-3&endpoint=http://127.0.0.1:1", o)
	if err != nil || !strings.Contains(st.String(), "region=eu-west-3") {
		t.Errorf("Open with a region: %v, %v", st, err)
	}
}

// rawClient returns a client for d outside any store.
func rawClient(d *testutil.DynaliteServer) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(d.Endpoint),
	})
}

func TestInitIdempotent(t *testing.T) {
	t.Parallel()
	d := testutil.Dynalite(t)
	ctx := t.Context()
	st := openStore(t, d, Options{}) // Init once
	for range 2 {
		if err := st.Init(ctx); err != nil {
			t.Fatalf("Init again: %v", err)
		}
	}
	// Several instances starting at once on new tables.
	raw := storeURL(d)
	o := Options{LoadOptions: []func(*config.LoadOptions) error{staticCredentials()}}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := Open(ctx, raw, o)
			if err == nil {
				err = s.Init(ctx)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Init: %v", err)
		}
	}
	s, err := Open(ctx, raw, o)
	if err != nil {
		t.Fatal(err)
	}
	db := rawClient(d)
	for _, name := range s.Tables() {
		out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		if err != nil {
			t.Fatalf("DescribeTable(%s): %v", name, err)
		}
		if out.Table.TableStatus != types.TableStatusActive {
			t.Errorf("table %s is %s", name, out.Table.TableStatus)
		}
		if bm := out.Table.BillingModeSummary; bm == nil || bm.BillingMode != types.BillingModePayPerRequest {
			t.Errorf("table %s: billing %+v, want PAY_PER_REQUEST", name, bm)
		}
	}
	// The store works on the tables the racing instances made.
	if err := s.CreateSession(ctx, store.Session{ID: "x", State: store.StateActive}); err != nil {
		t.Errorf("CreateSession: %v", err)
	}
}

func TestInitRefusesForeignTable(t *testing.T) {
	t.Parallel()
	d := testutil.Dynalite(t)
	ctx := t.Context()
	o := Options{LoadOptions: []func(*config.LoadOptions) error{staticCredentials()}}
	st, err := Open(ctx, storeURL(d), o)
	if err != nil {
		t.Fatal(err)
	}
	// A sessions table keyed by something else.
	_, err = rawClient(d).CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(st.sessions),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Init(ctx); err == nil || !strings.Contains(err.Error(), st.sessions) {
		t.Errorf("Init over a foreign table: got %v, want an error naming %s", err, st.sessions)
	}
}

func TestStubLimit(t *testing.T) {
	t.Parallel()
	d := testutil.Dynalite(t)
	ctx := t.Context()
	st := openStore(t, d, Options{MaxStubsPerSession: 2})
	put := func(session, id string, expires int64) error {
		return st.PutStub(ctx, store.Stub{SessionID: session, StubID: id, ExpiresAt: expires})
	}
	for _, id := range []string{"a", "b"} {
		if err := put("s", id, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := put("s", "c", 0); !errors.Is(err, store.ErrLimit) {
		t.Fatalf("third stub: got %v, want ErrLimit", err)
	}
	if err := put("s", "a", 0); err != nil {
		t.Errorf("replace at the bound: %v", err)
	}
	if err := put("other", "c", 0); err != nil {
		t.Errorf("another session at the bound: %v", err)
	}
	// An expired stub does not count (DynamoDB's TTL deletes it later).
	if err := put("s", "b", 1); err != nil {
		t.Fatal(err)
	}
	if err := put("s", "c", 0); err != nil {
		t.Errorf("with an expired stub: %v", err)
	}
	if err := put("s", "d", 0); !errors.Is(err, store.ErrLimit) {
		t.Errorf("past the bound again: got %v, want ErrLimit", err)
	}
	if err := st.DeleteStub(ctx, "s", "a"); err != nil {
		t.Fatal(err)
	}
	if err := put("s", "d", 0); err != nil {
		t.Errorf("after a delete: %v", err)
	}
}

func TestExpiresAtAttributes(t *testing.T) {
	t.Parallel()
	d := testutil.Dynalite(t)
	ctx := t.Context()
	st := openStore(t, d, Options{TrafficTTL: time.Hour})
	const ts = 1767323045_123456 // µs
	if err := st.AppendTraffic(ctx, newItems("s", ts, 1, 10)); err != nil {
		t.Fatal(err)
	}
	if err := st.PutStub(ctx, store.Stub{SessionID: "s", StubID: "x", ExpiresAt: 1767326645}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		table string
		key   item
		want  string
	}{
		{st.traffic, lastChunk(t, st, "s"), "1767326645"},
		{st.stubs, stubKey("s", "x"), "1767326645"},
	} {
		out, err := st.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(c.table), Key: c.key})
		if err != nil {
			t.Fatal(err)
		}
		n, ok := out.Item[attrExpiresAt].(*types.AttributeValueMemberN)
		if !ok || n.Value != c.want {
			t.Errorf("%s: expiresAt %v, want %s", c.table, out.Item[attrExpiresAt], c.want)
		}
	}
}

func TestSessionEdgeCases(t *testing.T) {
	t.Parallel()
	d := testutil.Dynalite(t)
	ctx := t.Context()
	st := openStore(t, d, Options{})
	base := time.Unix(1767323045, 123456789).UTC()
	if err := st.CreateSession(ctx, store.Session{ID: "e", State: store.StateActive, CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	// Label keys that need escaping in an expression, an empty value, and
	// more labels than one update sets.
	labels := map[string]string{"a.b": "1", "#x": "2", ":y": "3", "ü": "", "labels": "4"}
	for i := range 2*labelsPerUpdate + 3 {
		labels[fmt.Sprintf("k%03d", i)] = fmt.Sprint(i)
	}
	if err := st.LabelSession(ctx, "e", labels); err != nil {
		t.Fatalf("LabelSession: %v", err)
	}
	got, err := st.GetSession(ctx, "e")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Labels) != len(labels) {
		t.Errorf("%d labels stored, want %d", len(got.Labels), len(labels))
	}
	for k, v := range labels {
		if got.Labels[k] != v {
			t.Errorf("label %q = %q, want %q", k, got.Labels[k], v)
		}
	}
	if !got.CreatedAt.Equal(base) || !got.LastSeenAt.IsZero() {
		t.Errorf("times: created %v (want %v, to the nanosecond), last seen %v (want zero)", got.CreatedAt, base, got.LastSeenAt)
	}
	if err := st.LabelSession(ctx, "e", map[string]string{"": "x"}); err == nil {
		t.Errorf("LabelSession with an empty key succeeded")
	}
	// A touch with no lastSeenAt yet sets it; a zero time is a no-op.
	if err := st.TouchSession(ctx, "e", base); err != nil {
		t.Fatalf("TouchSession: %v", err)
	}
	if err := st.TouchSession(ctx, "e", time.Time{}); err != nil {
		t.Errorf("TouchSession(zero): %v", err)
	}
	if got, _ := st.GetSession(ctx, "e"); !got.LastSeenAt.Equal(base) {
		t.Errorf("LastSeenAt %v, want %v", got.LastSeenAt, base)
	}
	// Empty ids are unknown sessions, not DynamoDB validation errors.
	if _, err := st.GetSession(ctx, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSession(\"\"): %v", err)
	}
	if err := st.TouchSession(ctx, "", base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TouchSession(\"\"): %v", err)
	}
	if _, err := st.EndSession(ctx, "", store.StateClosed, base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EndSession(\"\"): %v", err)
	}
	if err := st.LabelSession(ctx, "", map[string]string{"a": "b"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LabelSession(\"\"): %v", err)
	}
	if err := st.DeleteStub(ctx, "", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteStub(\"\", \"\"): %v", err)
	}
	if got, err := st.ListStubs(ctx, ""); err != nil || len(got) != 0 {
		t.Errorf("ListStubs(\"\"): %v, %v", got, err)
	}
	if got, err := st.ListTraffic(ctx, "", 0, 0); err != nil || len(got) != 0 {
		t.Errorf("ListTraffic(\"\"): %v, %v", got, err)
	}
	// Ended at a zero time: no endedAt.
	ended, err := st.EndSession(ctx, "e", store.StateExpired, time.Time{})
	if err != nil || ended.State != store.StateExpired || !ended.EndedAt.IsZero() {
		t.Errorf("EndSession(zero time) = %+v, %v", ended, err)
	}
}

func TestTrafficUnindexedIDs(t *testing.T) {
	t.Parallel()
	d := testutil.Dynalite(t)
	ctx := t.Context()
	st := openStore(t, d, Options{})
	items := newItems("s", 1, 2, 10)
	items[0].ID = ""
	items[1].ID = strings.Repeat("i", maxIndexedID+1)
	if err := st.AppendTraffic(ctx, items); err != nil {
		t.Fatalf("AppendTraffic: %v", err)
	}
	got, err := st.ListTraffic(ctx, "s", 0, 0)
	if err != nil || len(got) != 2 || got[0].ID != "" || got[1].ID != items[1].ID {
		t.Fatalf("ListTraffic: %d items, %v", len(got), err)
	}
	for _, id := range []string{"", items[1].ID} {
		if _, err := st.GetTraffic(ctx, "s", id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetTraffic(id of %d bytes): got %v, want ErrNotFound", len(id), err)
		}
	}
	long := newItems(strings.Repeat("s", maxSessionID+1), 1, 1, 10)
	if err := st.AppendTraffic(ctx, append(newItems("s", 10, 1, 10), long...)); err == nil {
		t.Errorf("AppendTraffic with a %d-byte session id succeeded", maxSessionID+1)
	}
	if got, _ := st.ListTraffic(ctx, "s", 9, 0); len(got) != 0 {
		t.Errorf("a refused batch stored %d items", len(got))
	}
}

func TestOpenNoRegion(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	o := Options{LoadOptions: []func(*config.LoadOptions) error{staticCredentials()}}
	if _, err := Open(t.Context(), "dynamodb://?table-prefix=p", o); !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), "region") {
		t.Errorf("Open with no region anywhere: %v", err)
	}
	t.Setenv("AWS_REGION", "ap-south-1")
	st, err := Open(t.Context(), "dynamodb://", o)
	if err != nil || !strings.Contains(st.String(), "region=ap-south-1") {
		t.Errorf("Open with AWS_REGION: %v, %v", st, err)
	}
}
