// Package dynamostore is a store.Store on Amazon DynamoDB (aws-sdk-go-v2),
// shared by every proxyctl instance that names the same tables.
//
// # URL
//
//	dynamodb://?region=R&endpoint=URL&table-prefix=P
//
// Every query parameter is optional. Region and credentials otherwise come
// from the standard AWS configuration chain (environment, shared config
// files, SSO, instance roles); endpoint replaces the service's endpoint
// (dynalite, DynamoDB Local, a VPC endpoint) and then the region defaults
// to us-east-1, which such servers ignore. table-prefix is prepended to the
// three table names. Any other parameter is an error that names it.
//
// # Tables
//
// Store.Init (proxyctl store init) creates the tables, on-demand
// (PAY_PER_REQUEST), if they are missing:
//
//	{prefix}sessions       PK sessionId (S)
//	{prefix}stubs          PK sessionId (S), SK stubId (S); TTL expiresAt
//	{prefix}proxy-traffic  PK sessionId (S), SK timestamp (N); TTL expiresAt
//
// A sessions item holds state (S), kind (S, absent when empty), labels (M of
// S, always present, possibly empty) and createdAt, lastSeenAt, expiresAt and
// endedAt as unix nanoseconds (N, absent when zero). Sessions are not
// deleted by a TTL: an EXPIRED session must stay to be refused.
//
// A stubs item holds the stub's JSON (the admin API's form) in stub (S) and,
// when the stub expires, expiresAt in unix seconds (N): DynamoDB's TTL
// deletes expired stubs, typically within a few days; until then ListStubs
// returns them and package stub ignores them, as the contract allows.
//
// # Traffic chunks
//
// Traffic items are not stored one per DynamoDB item: AppendTraffic packs
// the items of one session whose timestamps fall in the same 10 ms bucket
// (BucketMicros) into chunks of up to 256 KiB (ChunkRawMax) before
// compression. A chunk item of proxy-traffic holds:
//
//   - timestamp (N, the sort key): the bucket's first timestamp, and as
//     the fraction a write stamp (19 digits: wall-clock nanoseconds,
//     strictly growing per Store) and the writer (3 digits, random per
//     Store), for example 1767323045120000.1795000000123456789042: 38
//     digits, DynamoDB's precision, for timestamps until the year 2286.
//     Chunks therefore sort by bucket, then in the order they were
//     written, and a bucket's chunks lie between its first timestamp and
//     the next bucket's. Timestamps before 1970 are refused.
//   - items (B): one record per item, each the item's timestamp (varint),
//     the length of its encoding (4 bytes, big-endian) and
//     capture.Item.AppendBinary's encoding (the bolt store's format: no
//     JSON, no base64); the whole
//     zstd-compressed when that is smaller and at least 1 KiB (then
//     itemEncoding (S) is "zstd").
//   - ids (S): a newline, then each item id followed by a newline, for
//     GetTraffic's filter (ids over 1,024 bytes are left out: GetTraffic
//     does not find those, nor empty ids).
//   - expiresAt (unix seconds, N) of its newest item when
//     Options.TrafficTTL sets a retention.
//
// Why: on DynamoDB every item written costs a request's share of work and
// at least one write unit, and one session is one partition (about 1,000
// write units per second). Items of one session are written together and
// are alike (the same headers, often the same bodies), so a chunk
// compresses them together: bench/store.sh's 1.5 KB exchanges take ~30
// bytes each. Against dynalite the emulator's CPU per captured exchange
// went from ~100 us to ~4 us (docs/performance.md).
//
// Overwrites: an item appended again with the same (session, timestamp)
// lands in the same bucket, in a later chunk; readers merge a bucket's
// chunks in key order, so the last write wins, as with one DynamoDB item
// per key. Redelivered batches therefore leave duplicates in storage
// (reads hide them) until the TTL removes their chunks.
//
// Rows written before chunks (one DynamoDB item per traffic item: its
// timestamp as the sort key, its JSON in item (B), gzipped when
// itemEncoding is "gzip", its id in id (S)) are still read, as older than
// any chunk of their bucket; the "by-id" index those versions created is
// no longer used and may be deleted.
//
// # Item size
//
// DynamoDB refuses items over 400 KB (409,600 bytes, attribute names
// included). A chunk of several items holds at most ChunkRawMax bytes of
// records and ids, well under the limit. An item larger than that is a
// chunk of its own, sized before it is written: the attributes besides
// the blob (names, keys, ids, encoding, expiresAt) are counted at their
// largest, and the blob gets what remains less a 64-byte margin, never
// more than capture.DefaultItemBudget (390,000 bytes, the budget the
// capture pipeline already fits items to). An encoding over that budget
// which compresses under it is stored whole; otherwise the item is cut
// with capture.Item.FitTo to the budget (measured on the JSON encoding,
// never smaller than the binary one: bodies first, marked truncated,
// their original size and SHA-256 kept) and encoded again. A stored item
// therefore always fits, whatever its bodies: two 350 KB binary bodies
// are cut (to about 285 KB of data in all), while two 350 KB bodies of
// repetitive text are stored whole, unless the caller cut them already
// (the capture pipeline's store sink applies FitTo before the store).
//
// # Consistency and cost
//
// Reads are strongly consistent, so a session closed or a stub deleted
// through one instance is seen by the next read of every other instance.
// Session state changes are conditional writes: CreateSession only creates,
// EndSession only ends an ACTIVE session, TouchSession only moves
// lastSeenAt forward on an ACTIVE session; a stale writer cannot reopen a
// CLOSED session.
//
// ListSessions is ordered by id, as the contract requires, and a Scan is
// not: each page therefore scans the whole sessions table (consistent
// reads, filtered to ids after the cursor) and keeps the page's smallest
// ids in a bounded heap. Memory stays at one page, but every page costs
// about (table size / 4 KB) read units. It serves the admin API's and the
// CLI's listings, never the request path (which uses GetSession).
//
// ListTraffic queries the session's chunks from the bucket of its after
// timestamp on (pages of up to 64 chunks) and returns a bucket's items once
// all of its chunks are read, merged and ordered: a page of items reads
// whole buckets (at 25k exchanges/s in one session, ~250 items), and only
// the items returned are decoded.
//
// GetTraffic finds an item's chunk with a Query filtered on the chunks' ids
// attribute (the filter saves transfer and decoding, not read units: the
// chunks the Query passes are paid for). For ids made by capture.NewID,
// whose first 12 hex digits are the time the exchange ended (after its
// timestamp), it starts at that time and goes back, so it usually reads a
// page of chunks; other ids are searched from the session's start. An id
// that is not there costs a Query over the whole session. The item's
// bucket is then read whole, so an item overwritten at its timestamp is
// not returned.
//
// AppendTraffic writes with BatchWriteItem, 25 chunks per call, one call
// after the other. Chunks DynamoDB leaves unprocessed (throttling) are sent
// again with jittered exponential backoff, 8 attempts per call at most
// (about 5 s of waiting at worst); what is still unprocessed then is an
// error, and the caller (the capture pipeline) retries the batch later.
//
// # Stub bounds
//
// PutStub refuses a new stub with store.ErrLimit when its session already
// holds Options.MaxStubsPerSession live (unexpired) stubs
// (DefaultMaxStubsPerSession, 10,000). The count is a Query over the
// session's stubs before the write, so the bound is approximate under
// concurrent puts to one session (each racing writer can add one), and
// every put costs a Query over the session's stubs (read units by their
// size). There is no bound on the stubs of all sessions.
package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/proxyctl/proxyctl/internal/store"
)

var _ store.Store = (*Store)(nil)

// Scheme is the URL scheme of a DynamoDB store.
const Scheme = "dynamodb"

// Table names without the prefix.
const (
	SessionsTable = "sessions"
	StubsTable    = "stubs"
	TrafficTable  = "proxy-traffic"
)

// ErrBadURL wraps every problem with a store URL (and a missing region):
// a configuration error, which the message explains naming the query
// parameter.
var ErrBadURL = errors.New("invalid dynamodb store URL")

// DefaultMaxStubsPerSession is the default of Options.MaxStubsPerSession.
const DefaultMaxStubsPerSession = 10_000

// defaultEndpointRegion is the signing region used with an endpoint and no
// region from the URL or the AWS configuration.
const defaultEndpointRegion = "us-east-1"

// Options configures a Store. The zero value gives the defaults.
type Options struct {
	// LoadOptions are passed to config.LoadDefaultConfig before the URL's
	// region (which wins), for example static credentials.
	LoadOptions []func(*config.LoadOptions) error
	// TrafficTTL, when > 0, is how long traffic items are kept: each gets
	// an expiresAt of its timestamp plus TrafficTTL, and DynamoDB's TTL
	// deletes it some time after that.
	TrafficTTL time.Duration
	// MaxStubsPerSession bounds the live stubs of one session id;
	// DefaultMaxStubsPerSession when <= 0.
	MaxStubsPerSession int
}

// api is the part of *dynamodb.Client the store uses (tests wrap it).
type api interface {
	CreateTable(context.Context, *dynamodb.CreateTableInput, ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	DescribeTimeToLive(context.Context, *dynamodb.DescribeTimeToLiveInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error)
	UpdateTimeToLive(context.Context, *dynamodb.UpdateTimeToLiveInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	Scan(context.Context, *dynamodb.ScanInput, ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	BatchWriteItem(context.Context, *dynamodb.BatchWriteItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
}

var _ api = (*dynamodb.Client)(nil)

// Store is a store.Store on DynamoDB. It is safe for concurrent use and
// holds no data itself: every call reads or writes the tables.
type Store struct {
	db                           api
	sessions, stubs, traffic     string // table names
	trafficTTL                   time.Duration
	maxStubs                     int
	retry                        backoff       // for BatchWriteItem's unprocessed items
	zenc                         *zstd.Encoder // EncodeAll and DecodeAll are safe for concurrent use
	zdec                         *zstd.Decoder
	arenas                       sync.Pool     // *[]byte: a batch's chunks before they are written
	zbufs                        sync.Pool     // *[]byte: a chunk compressed, before it is copied
	lastStamp                    atomic.Uint64 // the last chunk write stamp (writeStamp)
	writer                       uint32        // this Store's part of its chunk keys
	clientRegion, clientEndpoint string        // for String
	conns                        *connSet      // the SDK client's connections (Open's), closed by Close
}

// Open opens the store named by a dynamodb:// URL (see the package
// documentation). It reads the AWS configuration but does not contact
// DynamoDB: call Init to create the tables.
func Open(ctx context.Context, rawURL string, o Options) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	return OpenURL(ctx, u, o)
}

// URL is a parsed dynamodb:// URL.
type URL struct {
	Region, Endpoint, TablePrefix string
}

// ParseURL checks a dynamodb:// URL and returns its parameters.
func ParseURL(u *url.URL) (URL, error) {
	var out URL
	if u.Scheme != Scheme {
		return out, fmt.Errorf("%w: scheme %q, want %q", ErrBadURL, u.Scheme, Scheme)
	}
	if u.User != nil || u.Host != "" || u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return out, fmt.Errorf("%w %q: only query parameters are allowed (dynamodb://?region=R&endpoint=URL&table-prefix=P)", ErrBadURL, u.Redacted())
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return out, fmt.Errorf("%w: query: %w", ErrBadURL, err)
	}
	for name, vs := range q {
		if len(vs) != 1 {
			return out, fmt.Errorf("%w: query parameter %q given %d times", ErrBadURL, name, len(vs))
		}
		v := vs[0]
		switch name {
		case "region":
			if v == "" {
				return out, fmt.Errorf("%w: query parameter \"region\" is empty", ErrBadURL)
			}
			out.Region = v
		case "endpoint":
			e, err := url.Parse(v)
			if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
				return out, fmt.Errorf("%w: query parameter \"endpoint\" %q: want an http or https URL", ErrBadURL, v)
			}
			out.Endpoint = v
		case "table-prefix":
			if err := checkPrefix(v); err != nil {
				return out, fmt.Errorf("%w: query parameter \"table-prefix\" %q: %w", ErrBadURL, v, err)
			}
			out.TablePrefix = v
		default:
			return out, fmt.Errorf("%w: unknown query parameter %q (want region, endpoint, table-prefix)", ErrBadURL, name)
		}
	}
	return out, nil
}

// checkPrefix checks that prefix makes valid table names: [A-Za-z0-9_.-],
// at most 255 characters in all.
func checkPrefix(prefix string) error {
	if len(prefix)+len(TrafficTable) > 255 {
		return fmt.Errorf("too long: table names are at most 255 characters")
	}
	for _, r := range prefix {
		if !tableNameChar(r) {
			return fmt.Errorf("character %q not allowed in a table name (want A-Z a-z 0-9 _ - .)", r)
		}
	}
	return nil
}

func tableNameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.'
}

// OpenURL is Open with a parsed URL.
func OpenURL(ctx context.Context, u *url.URL, o Options) (*Store, error) {
	p, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	opts := append([]func(*config.LoadOptions) error(nil), o.LoadOptions...)
	if p.Region != "" {
		opts = append(opts, config.WithRegion(p.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("dynamodb store: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		if p.Endpoint == "" {
			return nil, fmt.Errorf("%w: no AWS region: set ?region= in the store URL, or AWS_REGION", ErrBadURL)
		}
		cfg.Region = defaultEndpointRegion
	}
	conns := new(connSet)
	client := dynamodb.NewFromConfig(cfg, func(co *dynamodb.Options) {
		if p.Endpoint != "" {
			co.BaseEndpoint = aws.String(p.Endpoint)
		}
		co.HTTPClient = conns.track(co.HTTPClient)
	})
	s := newStore(client, p.TablePrefix, o)
	s.clientRegion, s.clientEndpoint = cfg.Region, p.Endpoint
	s.conns = conns
	return s, nil
}

func newStore(db api, prefix string, o Options) *Store {
	s := &Store{
		db:         db,
		sessions:   prefix + SessionsTable,
		stubs:      prefix + StubsTable,
		traffic:    prefix + TrafficTable,
		trafficTTL: o.TrafficTTL,
		maxStubs:   o.MaxStubsPerSession,
		retry:      backoff{base: retryBase, max: retryMax, attempts: retryAttempts},
		writer:     rand.Uint32(), //nolint:gosec // tells writers apart, not a secret
	}
	if s.maxStubs <= 0 {
		s.maxStubs = DefaultMaxStubsPerSession
	}
	s.arenas.New = func() any { return new([]byte) }
	s.zbufs.New = func() any { return new([]byte) }
	// Valid options: no errors.
	s.zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true))
	s.zdec, _ = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxDecoded), zstd.WithDecoderLowmem(true), zstd.WithDecoderConcurrency(0))
	return s
}

// Tables returns the names of the sessions, stubs and traffic tables.
func (s *Store) Tables() []string { return []string{s.sessions, s.stubs, s.traffic} }

// String describes the store for logs: region, endpoint and tables.
func (s *Store) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dynamodb region=%s", s.clientRegion)
	if s.clientEndpoint != "" {
		fmt.Fprintf(&b, " endpoint=%s", s.clientEndpoint)
	}
	fmt.Fprintf(&b, " tables=%s", strings.Join(s.Tables(), ","))
	return b.String()
}

// Close implements store.Store: it closes the connections the SDK's HTTP
// client holds (and so their goroutines). The store stays usable: later
// calls dial again.
func (s *Store) Close() error {
	if s.conns != nil {
		s.conns.closeAll()
	}
	return nil
}

// isCode reports whether err is a DynamoDB API error with that code.
func isCode(err error, code string) bool {
	ae, ok := errors.AsType[smithy.APIError](err)
	return ok && ae.ErrorCode() == code
}

// conditionFailed returns the ConditionalCheckFailedException in err, if
// any.
func conditionFailed(err error) (*types.ConditionalCheckFailedException, bool) {
	return errors.AsType[*types.ConditionalCheckFailedException](err)
}
