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
// # Key layout
//
// The buckets mirror the DynamoDB tables, so that both backends answer the
// same queries with the same ordering and pagination:
//
//	sessions                 sessionId -> JSON store.Session
//	stubs / <sessionId>      stubId -> JSON store.Stub (one nested bucket per session id, "*" included)
//	stubCounts               sessionId -> uint64 stubs stored under that session id
//	traffic / <sessionId>    timestamp key -> index value (one nested bucket per session)
//	trafficIds               uvarint(len(sessionId)) sessionId id -> timestamp key (GetTraffic)
//	trafficBatches           uint64 batch sequence, uint32 chunk number -> chunk of a batch value (the items of one AppendTraffic)
//	trafficBatchState        uint64 batch sequence -> 4 x uint32: places walked, places held, documents held, chunks
//	meta                     "version", "trafficItems", "trafficBytes", "stubs" -> uint64
//
// Integers are big-endian so that bolt's byte order is numeric order. A
// timestamp key is the item's int64 Timestamp (unix microseconds) as a
// big-endian uint64 with the sign bit flipped, so that cursor order is
// timestamp order for negative timestamps too.
//
// Each AppendTraffic batch is stored as one batch value: a compact list of
// its items' (session id, timestamp key, id, document length), then the
// items' JSON documents, concatenated, cut into chunks of 2000 bytes under
// consecutive keys (two fill a 4 KiB page; one value per batch, in bolt
// overflow pages, measured slower: bolt allocates and zeroes a buffer for
// each such value at every commit, while single pages come from a pool).
// So a batch costs its bytes in full pages plus two small index entries
// per item, and eviction deletes small entries and whole batches. An
// index value is the item's place in the
// eviction order, (batch sequence, index in that batch), followed, when
// the item's document is in another batch, by the (batch sequence, index)
// of the document: an overwrite (same session and timestamp) writes its
// document in its own batch but keeps the place of the item it replaced.
// The index decides which document is served: the replaced one stays in
// its batch, unread, until that batch is deleted.
//
// A batch is deleted once it holds neither a place of a stored item nor a
// stored item's document (trafficBatchState counts both), or once
// eviction has walked all its places. Dead documents (overwritten or
// evicted items) therefore stay in the file until their batch goes; they
// are not counted in the byte total. In the worst case (one item of each
// batch still stored) the file holds a whole batch per stored item.
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
// items, in global insertion order across all sessions (batch sequence,
// then index in the batch), are
// deleted until both hold again, item by item within the append, exactly
// as memstore does: an item larger than MaxTrafficBytes on its own is not
// kept, and overwriting an item (same session and timestamp) keeps its
// place in that order. The totals live in the meta bucket and are updated
// in the same transaction as the items, so they survive restarts; Open
// applies smaller bounds to a file written with larger ones.
//
// An item's size, for MaxTrafficBytes, is its JSON document (and a
// newline) plus its entry in the batch's list (session id, timestamp, id,
// length: some 12 bytes more than the two ids). The file is larger: bolt pages are partly filled,
// the two indexes take some 60 bytes per item plus once the session id and
// once the item id, dead documents wait for their batch to go (see
// above), and bolt
// never gives space back to the file system; pages freed by eviction are
// reused, so the file stops growing once retention has kicked in.
//
// AppendTraffic writes a whole batch in one bolt transaction (encoded
// before it starts): one commit
// (bolt syncs the data pages, then the meta page), unless Options.NoSync. Items are immutable and already truncated and
// fitted by the capture pipeline.
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
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/proxyctl/proxyctl/internal/store"
)

var _ store.Store = (*Store)(nil)

// Defaults for Options (see the package documentation).
const (
	DefaultMaxTrafficItems          = 100_000
	DefaultMaxTrafficBytes    int64 = 256 << 20
	DefaultMaxStubsPerSession       = 10_000
	DefaultMaxStubs                 = 100_000
	DefaultLockTimeout              = time.Second
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
	return o
}

// Bucket names and meta keys (see the package documentation).
const (
	bucketSessions       = "sessions"
	bucketStubs          = "stubs"
	bucketStubCounts     = "stubCounts"
	bucketTraffic        = "traffic"
	bucketTrafficIDs     = "trafficIds"
	bucketTrafficBatches = "trafficBatches"
	bucketTrafficState   = "trafficBatchState"
	bucketMeta           = "meta"

	metaVersion      = "version"
	metaTrafficItems = "trafficItems"
	metaTrafficBytes = "trafficBytes"
	metaStubs        = "stubs"
)

// formatVersion is the layout described in the package documentation.
// Version 1 stored each item as one value under traffic/<sessionId>, with a
// per-item trafficOrder bucket; such files are refused (olderFormatError).
const formatVersion = 2

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
	db  *bolt.DB
	opt Options
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
	return s, nil
}

// init creates the buckets of a new file, checks the format version of an
// existing one and applies the traffic bounds to it.
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
		ready = getCount(meta, metaTrafficItems) <= int64(s.opt.MaxTrafficItems) &&
			getCount(meta, metaTrafficBytes) <= s.opt.MaxTrafficBytes
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
			if err := putCount(meta, metaVersion, formatVersion); err != nil {
				return err
			}
		} else if err := checkVersion(meta); err != nil {
			return err
		}
		t := openTraffic(tx)
		if err := t.evict(s.opt); err != nil {
			return err
		}
		return t.finish()
	})
}

func allBuckets() []string {
	return []string{
		bucketSessions, bucketStubs, bucketStubCounts,
		bucketTraffic, bucketTrafficIDs, bucketTrafficBatches, bucketTrafficState, bucketMeta,
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

// Close implements store.Store: it releases the file (and its lock).
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.db.Path(), err)
	}
	return nil
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

// appendField appends s with its uvarint length in front.
func appendField(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// cutField splits a field written by appendField off the front of b.
func cutField(b []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) { //nolint:gosec // a length is not negative
		return nil, nil, false
	}
	end := w + int(n) //nolint:gosec // n <= len(b) checked above
	return b[w:end], b[end:], true
}
