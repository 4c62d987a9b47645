// Package boltstore is a store.Store in one local file, on go.etcd.io/bbolt:
// the embedded default (--store bolt:PATH), for a single proxyctl process
// whose sessions, stubs and traffic survive a restart.
//
// # Locking
//
// The file is locked (flock) while a Store has it open. Open waits at most
// Options.LockTimeout (DefaultLockTimeout, 1 s) for the lock and then fails
// with "store PATH is in use by another proxyctl process" (the error wraps
// bbolt's errors.ErrTimeout). Several instances share a store through
// DynamoDB, not through one bolt file.
//
// # Layout
//
// A store is two things next to each other: the bolt file PATH, for
// sessions and stubs, and the directory PATH.traffic, for traffic items,
// kept by package trafficlog in append-only segment files with an index in
// memory (docs/architecture.md says why: in bolt, traffic cost the proxy
// 40% of its throughput). Move or delete both together.
//
// The buckets mirror the DynamoDB tables, so that both backends answer the
// same queries with the same ordering and pagination:
//
//	sessions                 sessionId -> JSON store.Session
//	stubs / <sessionId>      stubId -> JSON store.Stub (one nested bucket per session id, "*" included)
//	stubCounts               sessionId -> uint64 stubs stored under that session id
//	meta                     "version", "stubs" -> uint64
//
// Integers are big-endian so that bolt's byte order is numeric order.
//
// ListSessions is ordered by session id (byte order) and its cursor is
// opaque: the last id of the page, tagged so that a cursor issued by
// another backend is refused with store.ErrBadCursor. ListTraffic is
// ordered by timestamp, oldest first.
//
// # Traffic retention
//
// At most Options.MaxTrafficItems items (DefaultMaxTrafficItems, 100,000)
// and Options.MaxTrafficBytes (DefaultMaxTrafficBytes, 256 MiB) of stored
// traffic are kept. When an append goes over either bound the oldest
// items, in global insertion order across all sessions, are deleted until
// both hold again, item by item within the append, exactly as memstore
// does: an item larger than MaxTrafficBytes on its own is not kept, and
// overwriting an item (same session and timestamp) keeps its place in that
// order. Open applies smaller bounds to traffic written with larger ones.
// An item's size is its record in the segment file (its binary encoding
// and 17 bytes); the directory holds the stored items plus the dead
// records of segments not yet deleted (a segment goes when none of its
// items is stored any more).
//
// AppendTraffic writes a whole batch with one write; it is synced within
// Options.TrafficSyncInterval (1 s; see package trafficlog, Durability). Items are immutable and already truncated and fitted
// by the capture pipeline.
//
// # Stub bounds
//
// As memstore: at most Options.MaxStubsPerSession stubs per session id and
// Options.MaxStubs in all; a new stub past either bound is refused with
// store.ErrLimit once the session's expired stubs have been dropped;
// replacing a stub is always allowed.
//
// Sessions are not bounded here: the session manager enforces the maximum
// number of sessions.
package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/store/trafficlog"
)

var _ store.Store = (*Store)(nil)

// Defaults for Options (see the package documentation).
const (
	DefaultMaxTrafficItems          = 100_000
	DefaultMaxTrafficBytes    int64 = 256 << 20
	DefaultMaxStubsPerSession       = 10_000
	DefaultMaxStubs                 = 100_000
	DefaultLockTimeout              = time.Second
	// DefaultTrafficSyncInterval bounds how long captured traffic waits
	// for its fsync (trafficlog.Options.SyncInterval).
	DefaultTrafficSyncInterval = time.Second
)

// Options configures a Store. The zero value gives the defaults.
type Options struct {
	// MaxTrafficItems caps the traffic items kept; DefaultMaxTrafficItems
	// when <= 0.
	MaxTrafficItems int
	// MaxTrafficBytes caps the size of the stored traffic values;
	// DefaultMaxTrafficBytes when <= 0.
	MaxTrafficBytes int64
	// MaxStubsPerSession caps the stubs kept per session id;
	// DefaultMaxStubsPerSession when <= 0.
	MaxStubsPerSession int
	// MaxStubs caps the stubs kept in all; DefaultMaxStubs when <= 0.
	MaxStubs int
	// NoSync skips the fsync of every commit: much faster writes, but a
	// machine crash (not a process crash) can lose or corrupt recent
	// writes. For tests and throw-away data.
	NoSync bool
	// TrafficSyncInterval is how long appended traffic may wait for its
	// fsync (sessions and stubs are synced at every commit);
	// DefaultTrafficSyncInterval when 0, every append when < 0.
	TrafficSyncInterval time.Duration
	// LockTimeout is how long Open waits for another process to release
	// the file; DefaultLockTimeout when <= 0.
	LockTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.MaxTrafficItems <= 0 {
		o.MaxTrafficItems = DefaultMaxTrafficItems
	}
	if o.MaxTrafficBytes <= 0 {
		o.MaxTrafficBytes = DefaultMaxTrafficBytes
	}
	if o.MaxStubsPerSession <= 0 {
		o.MaxStubsPerSession = DefaultMaxStubsPerSession
	}
	if o.MaxStubs <= 0 {
		o.MaxStubs = DefaultMaxStubs
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	switch {
	case o.TrafficSyncInterval == 0:
		o.TrafficSyncInterval = DefaultTrafficSyncInterval
	case o.TrafficSyncInterval < 0:
		o.TrafficSyncInterval = 0
	}
	return o
}

// Bucket names and meta keys (see the package documentation).
const (
	bucketSessions   = "sessions"
	bucketStubs      = "stubs"
	bucketStubCounts = "stubCounts"
	bucketMeta       = "meta"

	metaVersion = "version"
	metaStubs   = "stubs"
)

// formatVersion is the layout described in the package documentation.
// Versions 1 and 2 kept traffic in bolt buckets; such files are refused
// (olderFormatError).
const formatVersion = 3

// trafficDirSuffix names the traffic directory after the bolt file.
const trafficDirSuffix = ".traffic"

// olderFormatError is init's error for a file of an older format version;
// Open reports it as "store PATH has an older format: move it away".
type olderFormatError struct{ version int64 }

func (e *olderFormatError) Error() string {
	return fmt.Sprintf("format version %d, this proxyctl reads version %d", e.version, formatVersion)
}

// Store is a store.Store in a bolt file. It is safe for concurrent use:
// reads run in parallel, writes one at a time (bolt has a single writer).
// Values are encoded going in and decoded coming out, so a caller never
// shares a map or a byte slice with the store.
type Store struct {
	db      *bolt.DB
	opt     Options
	traffic *trafficlog.Log
}

// inUseError is Open's error when another process holds the file.
type inUseError struct {
	path string
	err  error // bbolt's ErrTimeout
}

func (e *inUseError) Error() string {
	return "store " + e.path + " is in use by another proxyctl process"
}

func (e *inUseError) Unwrap() error { return e.err }

// Open opens the store in the bolt file at path, creating the file (0600)
// and its parent directory (0700) when they do not exist. It fails after
// Options.LockTimeout when another process has the file open.
func Open(path string, o Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("open store: empty path")
	}
	o = o.withDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      o.LockTimeout,
		NoSync:       o.NoSync,
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, &inUseError{path: path, err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, opt: o}
	if err := s.init(); err != nil {
		_ = db.Close() // the init error is the one to report
		if older := (*olderFormatError)(nil); errors.As(err, &older) {
			return nil, fmt.Errorf("store %s has an older format: move it away (%w)", path, err)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// The traffic directory is opened under the bolt file's lock.
	s.traffic, err = trafficlog.Open(path+trafficDirSuffix, trafficlog.Options{
		MaxItems:     o.MaxTrafficItems,
		MaxBytes:     o.MaxTrafficBytes,
		SyncInterval: o.TrafficSyncInterval,
		NoSync:       o.NoSync,
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// init creates the buckets of a new file and checks the format version of
// an existing one.
func (s *Store) init() error {
	ready := false
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte(bucketMeta))
		if meta == nil {
			// A new file, unless it holds buckets of another program.
			return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				return fmt.Errorf("not a proxyctl store: it holds a bucket %q", name)
			})
		}
		if err := checkVersion(meta); err != nil {
			return err
		}
		for _, name := range allBuckets() {
			if tx.Bucket([]byte(name)) == nil {
				return nil
			}
		}
		ready = true
		return nil
	})
	if err != nil || ready {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets() {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket([]byte(bucketMeta))
		if meta.Get([]byte(metaVersion)) == nil {
			return putCount(meta, metaVersion, formatVersion)
		}
		return checkVersion(meta)
	})
}

func allBuckets() []string {
	return []string{
		bucketSessions, bucketStubs, bucketStubCounts, bucketMeta,
	}
}

func checkVersion(meta *bolt.Bucket) error {
	v := meta.Get([]byte(metaVersion))
	if v == nil {
		return errors.New("not a proxyctl store: no format version")
	}
	if n := getCount(meta, metaVersion); n < formatVersion {
		return &olderFormatError{version: n}
	} else if n != formatVersion {
		return fmt.Errorf("store format version %d, this proxyctl reads version %d", n, formatVersion)
	}
	return nil
}

// Close implements store.Store: it syncs the traffic and releases the
// file (and its lock).
func (s *Store) Close() error {
	terr := s.traffic.Close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.db.Path(), err)
	}
	if terr != nil {
		return fmt.Errorf("close store %s: traffic: %w", s.db.Path(), terr)
	}
	return nil
}

// AppendTraffic implements store.Traffic.
func (s *Store) AppendTraffic(ctx context.Context, items []*capture.Item) error {
	return s.traffic.AppendTraffic(ctx, items)
}

// ListTraffic implements store.Traffic.
func (s *Store) ListTraffic(ctx context.Context, sessionID string, after int64, limit int) ([]capture.Item, error) {
	return s.traffic.ListTraffic(ctx, sessionID, after, limit)
}

// GetTraffic implements store.Traffic.
func (s *Store) GetTraffic(ctx context.Context, sessionID, id string) (capture.Item, error) {
	return s.traffic.GetTraffic(ctx, sessionID, id)
}

// errRollback ends an Update that has nothing to write: returning it rolls
// the transaction back, which saves a commit (and its fsync). The caller
// maps it to nil.
var errRollback = errors.New("nothing to write")

// update runs fn in a write transaction; fn returning errRollback is a
// success that writes nothing.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	err := s.db.Update(fn)
	if errors.Is(err, errRollback) {
		return nil
	}
	return err
}

// getCount reads a count (or size, or version) stored under key: an
// 8-byte big-endian unsigned integer; 0 when there is none.
func getCount(b *bolt.Bucket, key string) int64 {
	v := b.Get([]byte(key))
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v) & math.MaxInt64) //nolint:gosec // masked to 63 bits
}

// putCount stores n (0 if negative) under key.
func putCount(b *bolt.Bucket, key string, n int64) error {
	return b.Put([]byte(key), binary.BigEndian.AppendUint64(nil, uint64(max(n, 0)))) //nolint:gosec // not negative
}
