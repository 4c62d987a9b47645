// Package trafficlog is store.Traffic on append-only segment files: the
// bolt store's traffic (docs/architecture.md, "Stores").
//
// # Why not a B+tree
//
// Captured traffic is written once, in arrival order, read rarely, and
// dropped oldest first. Kept in bbolt, each item cost ~28 µs of CPU
// (page writes, index puts, node spills, an fsync per batch) and a proxy
// on the bolt store ran at 0.57x of the memory store. Here a batch is one
// write of its items' binary encodings at the end of a file and the
// index lives in memory, so an item costs its encoding and its copy.
//
// # Files
//
// A directory of segments named by a 16-digit hexadecimal sequence number
// (0000000000000001.seg, ...), created 0600 in a 0700 directory. A segment
// starts with the line "proxyctl traffic segment 1\n" and holds records:
//
//	uint32 length of the body (little-endian) | uint32 CRC-32C of the body | body
//
// where the body is a type byte and then, for an item (type 1), the
// item's place (8 bytes, big-endian) and capture.Item's binary encoding,
// and for a frontier (type 2) the frontier (8 bytes).
//
// # Places, eviction and recovery
//
// Every item holds a place in the eviction order: a new item takes the
// next place number, and an item overwriting one with the same session
// and timestamp keeps the place of the item it replaces (as memstore
// does). Eviction always takes the lowest place, so the evicted places are
// exactly those below a frontier, which is written as a record after each
// append that moved it. Open replays the records in file order: the last
// record of a (session, timestamp) wins, and it is stored unless its place
// is below the frontier. That gives back the index as it was, including
// which of two items sharing an id GetTraffic finds.
//
// A segment is deleted once no stored item's document is in it; the
// records it held are all dead (evicted, or replaced by a later record),
// so deleting it changes nothing a replay finds. The last segment is the
// one appended to; a new one is started when it would pass
// Options.SegmentSize.
//
// # Durability
//
// An append is one write(2) of all its records: once AppendTraffic
// returns, the records survive the process (a crash, a SIGKILL). They
// are synced to the disk (fsync) before it returns when
// Options.SyncInterval is 0, and otherwise at most SyncInterval later, by
// a timer that the first append after a sync starts: a machine crash or
// power loss can lose that much of the latest traffic, the same bound the
// record command's tape has, for an fsync per second instead of one per
// batch (each one a journal commit, which on the 2-core bench machine
// cost more CPU than writing the records). A segment is synced when the
// next one starts, and at Close. After a machine crash the last segment
// may end in a torn record: Open cuts it off at the last whole record
// (its CRC checks). A bad record anywhere else is an error naming the
// file and the offset.
//
// # Memory
//
// The index holds per stored item its timestamp, place, document position
// and numbers for its session and id (index.go): about 90 bytes with the
// slots of the queues and the id map, 9 MB for the bolt store's default
// bound of 100,000 items, and no pointer for the garbage collector to
// follow.
package trafficlog

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/proxyctl/proxyctl/internal/capture"
	"github.com/proxyctl/proxyctl/internal/store"
	"github.com/proxyctl/proxyctl/internal/writeback"
)

const (
	segmentHeader = "proxyctl traffic segment 1\n"
	segmentExt    = ".seg"

	recordHeaderLen = 8 // length and CRC
	typeItem        = 1
	typeFrontier    = 2
	itemPrefixLen   = 1 + 8 // type and place
	frontierLen     = 1 + 8

	minSegmentSize = 1 << 20
	maxSegmentSize = 64 << 20
)

// checksum is a record body's CRC-32C (MakeTable caches the Castagnoli
// table after the first call).
func checksum(body []byte) uint32 {
	return crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))
}

// Options bounds a Log.
type Options struct {
	// MaxItems and MaxBytes bound the stored items and the sum of their
	// record sizes (both > 0): past either, the oldest are evicted.
	MaxItems int
	MaxBytes int64
	// SegmentSize is the size past which a new segment is started;
	// MaxBytes/16 within [1 MiB, 64 MiB] when <= 0 (tests set small ones).
	SegmentSize int64
	// SyncInterval is how long appended records may wait for their
	// fsync: the first append after a sync schedules the next one that
	// much later. 0 syncs every append before it returns.
	SyncInterval time.Duration
	// NoSync skips fsync altogether (tests, throw-away data).
	NoSync bool
}

// segment is one segment file.
type segment struct {
	seq  uint64
	path string
	f    *os.File
	size int64 // bytes written

	// trail keeps what appends wrote out of the page cache (made at the
	// segment's first append; nil for a file that does not support it).
	trail    *writeback.Trail
	followed bool
}

// Log is store.Traffic on segment files in one directory. It is safe for
// concurrent use: appends run one at a time, reads in parallel with each
// other. The caller keeps other processes out of the directory (the bolt
// store holds its file's lock).
type Log struct {
	dir string
	opt Options

	wmu sync.Mutex // appends, one at a time
	buf []byte     // the batch being written (under wmu)

	mu        sync.RWMutex // everything below
	segs      []*segment   // by sequence; the last is appended to
	segBySeq  map[uint64]*segment
	nextPlace uint64
	frontier  uint64 // places below it are evicted
	written   uint64 // the frontier last written to the active segment
	ix        *index
	err       error // set when the log can no longer be used
	closed    bool

	syncMu    sync.Mutex
	syncTimer *time.Timer // pending sync of the active segment, nil if none
	syncErr   error       // a scheduled sync's failure, for the next append
}

// Open opens the log in dir, creating it, and replays its segments.
func Open(dir string, o Options) (*Log, error) {
	if o.MaxItems <= 0 || o.MaxBytes <= 0 {
		return nil, errors.New("open traffic log: bounds must be positive")
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = min(max(o.MaxBytes/16, minSegmentSize), maxSegmentSize)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open traffic log: %w", err)
	}
	l := &Log{dir: dir, opt: o}
	if err := l.load(); err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("open traffic log %s: %w", dir, err)
	}
	return l, nil
}

// load (re)builds the index from the segment files and prepares the last
// segment for appending.
func (l *Log) load() error {
	l.closeFiles()
	l.segs, l.segBySeq = nil, map[uint64]*segment{}
	l.nextPlace, l.frontier, l.written = 0, 0, 0
	l.ix = newIndex()
	names, err := segmentNames(l.dir)
	if err != nil {
		return err
	}
	for i, name := range names {
		seq, _ := strconv.ParseUint(strings.TrimSuffix(name, segmentExt), 16, 64)
		seg := &segment{seq: seq, path: filepath.Join(l.dir, name)}
		if seg.f, err = os.OpenFile(seg.path, os.O_RDWR, 0); err != nil {
			return err
		}
		l.segs = append(l.segs, seg)
		l.segBySeq[seq] = seg
		if err := l.replay(seg, i == len(names)-1); err != nil {
			return err
		}
	}
	l.evict()
	if len(l.segs) == 0 || l.active().size >= l.opt.SegmentSize {
		if err := l.addSegment(); err != nil {
			return err
		}
	}
	// The active segment must hold the latest frontier: the segments that
	// held it so far may be deleted.
	if err := l.writeFrontier(); err != nil {
		return err
	}
	l.dropEmpty()
	return nil
}

// segmentNames lists the segment files of dir in sequence order.
func segmentNames(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, de := range des {
		name := de.Name()
		hexPart, ok := strings.CutSuffix(name, segmentExt)
		if !ok || len(hexPart) != 16 {
			continue
		}
		if _, err := strconv.ParseUint(hexPart, 16, 64); err != nil {
			continue
		}
		if !de.Type().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", filepath.Join(dir, name))
		}
		names = append(names, name)
	}
	slices.Sort(names) // fixed-width hex: byte order is sequence order
	return names, nil
}

// corruptError reports a bad record in a segment that is not the last.
type corruptError struct {
	path string
	off  int64
	why  string
}

func (e *corruptError) Error() string {
	return fmt.Sprintf("%s: %s at offset %d (move the traffic directory away to start afresh)", e.path, e.why, e.off)
}

// replay applies the records of seg to the index. In the last segment a
// bad or incomplete record and everything after it are cut off (a write
// torn by a crash); elsewhere they are an error.
func (l *Log) replay(seg *segment, last bool) error {
	r := bufio.NewReaderSize(seg.f, 1<<20)
	head := make([]byte, len(segmentHeader))
	n, err := io.ReadFull(r, head)
	if err != nil || string(head) != segmentHeader {
		if last && isPrefix(head[:n], segmentHeader) {
			return l.startOver(seg)
		}
		return &corruptError{path: seg.path, off: 0, why: "not a proxyctl traffic segment"}
	}
	off := int64(len(segmentHeader))
	var rh [recordHeaderLen]byte
	var body []byte
	for {
		torn := ""
		_, err := io.ReadFull(r, rh[:])
		if err == io.EOF {
			break
		}
		size := binary.LittleEndian.Uint32(rh[:])
		switch {
		case err != nil:
			torn = "incomplete record header"
		case size < 1 || size > math.MaxInt32:
			torn = "bad record length"
		default:
			if cap(body) < int(size) {
				body = make([]byte, size)
			}
			body = body[:size]
			if _, err := io.ReadFull(r, body); err != nil {
				torn = "incomplete record"
			} else if checksum(body) != binary.LittleEndian.Uint32(rh[4:]) {
				torn = "record checksum mismatch"
			}
		}
		if torn != "" {
			if !last {
				return &corruptError{path: seg.path, off: off, why: torn}
			}
			// A torn append: keep what precedes it.
			if err := seg.f.Truncate(off); err != nil {
				return err
			}
			break
		}
		// A whole record that does not parse is not a torn write.
		if err := l.apply(seg, off, body); err != nil {
			return &corruptError{path: seg.path, off: off, why: err.Error()}
		}
		off += recordHeaderLen + int64(size)
	}
	seg.size = off
	return nil
}

func isPrefix(b []byte, s string) bool { return strings.HasPrefix(s, string(b)) }

// startOver rewrites the header of a last segment whose creation was cut
// short.
func (l *Log) startOver(seg *segment) error {
	if err := seg.f.Truncate(0); err != nil {
		return err
	}
	if _, err := seg.f.WriteAt([]byte(segmentHeader), 0); err != nil {
		return err
	}
	seg.size = int64(len(segmentHeader))
	return nil
}

// apply replays one record, at offset off of seg.
func (l *Log) apply(seg *segment, off int64, body []byte) error {
	switch body[0] {
	case typeFrontier:
		if len(body) != frontierLen {
			return errors.New("bad frontier record")
		}
		l.frontier = max(l.frontier, binary.BigEndian.Uint64(body[1:]))
		l.nextPlace = max(l.nextPlace, l.frontier)
		l.evictBelowFrontier()
		return nil
	case typeItem:
		if len(body) < itemPrefixLen {
			return errors.New("bad item record")
		}
		place := binary.BigEndian.Uint64(body[1:])
		if place >= math.MaxInt64 {
			return errors.New("bad item place")
		}
		sidb, ts, idb, err := capture.BinaryKey(body[itemPrefixLen:])
		if err != nil {
			return err
		}
		sid, id := string(sidb), string(idb)
		e := entry{
			ts: ts, place: place, seg: seg.seq,
			off: off + recordHeaderLen + itemPrefixLen, n: uint32(len(body) - itemPrefixLen), //nolint:gosec // below MaxInt32
			size: recordHeaderLen + int64(len(body)),
		}
		l.nextPlace = max(l.nextPlace, place+1)
		s, i, r, found := l.ix.lookup(sid, ts)
		switch {
		case !found:
			if place >= l.frontier {
				l.ix.insert(sid, id, e, i)
			}
		case l.ix.at(r).place == place:
			l.ix.replace(r, id, e)
		default: // r was evicted before this item took a new place
			l.ix.remove(r, s, i)
			if place >= l.frontier {
				_, i, _, _ = l.ix.lookup(sid, ts)
				l.ix.insert(sid, id, e, i)
			}
		}
		return nil
	}
	return fmt.Errorf("unknown record type %d", body[0])
}

// evictBelowFrontier drops the entries whose place is below the frontier.
func (l *Log) evictBelowFrontier() {
	for l.ix.len() > 0 && l.ix.oldestPlace() < l.frontier {
		l.ix.evictOldest()
	}
}

// evict drops the oldest entries until both bounds hold.
func (l *Log) evict() {
	for l.ix.len() > 0 && (l.ix.len() > l.opt.MaxItems || l.ix.bytes > l.opt.MaxBytes) {
		l.frontier = max(l.frontier, l.ix.evictOldest()+1)
	}
}

func (l *Log) active() *segment { return l.segs[len(l.segs)-1] }

// addSegment starts a new segment after the last one.
func (l *Log) addSegment() error {
	seq := uint64(1)
	if len(l.segs) > 0 {
		seq = l.active().seq + 1
		if !l.opt.NoSync {
			// The segment is complete: later appends sync only the new one.
			if err := l.active().f.Sync(); err != nil {
				return err
			}
		}
	}
	path := filepath.Join(l.dir, fmt.Sprintf("%016x%s", seq, segmentExt))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	seg := &segment{seq: seq, path: path, f: f}
	if _, err := f.Write([]byte(segmentHeader)); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	seg.size = int64(len(segmentHeader))
	if !l.opt.NoSync {
		if err := syncDir(l.dir); err != nil {
			_ = f.Close()
			_ = os.Remove(path)
			return err
		}
	}
	l.segs = append(l.segs, seg)
	l.segBySeq[seq] = seg
	// The active segment always holds the frontier a replay needs.
	l.written = math.MaxUint64
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}

// writeFrontier appends a frontier record to the active segment.
func (l *Log) writeFrontier() error {
	rec := appendFrontier(nil, l.frontier)
	seg := l.active()
	if _, err := seg.f.WriteAt(rec, seg.size); err != nil {
		return err
	}
	seg.size += int64(len(rec))
	l.written = l.frontier
	if l.opt.NoSync {
		return nil
	}
	return seg.f.Sync()
}

func appendFrontier(dst []byte, frontier uint64) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, recordHeaderLen)...)
	dst = append(dst, typeFrontier)
	dst = binary.BigEndian.AppendUint64(dst, frontier)
	sealRecord(dst[start:])
	return dst
}

// sealRecord fills in the header of the record rec.
func sealRecord(rec []byte) {
	body := rec[recordHeaderLen:]
	binary.LittleEndian.PutUint32(rec, uint32(len(body))) //nolint:gosec // checked against MaxInt32
	binary.LittleEndian.PutUint32(rec[4:], checksum(body))
}

// dropEmpty removes the segments, but the active one, that hold no stored
// item's document, and returns them.
func (l *Log) dropEmpty() []*segment {
	var gone []*segment
	l.segs = slices.DeleteFunc(l.segs, func(s *segment) bool {
		if s != l.active() && l.ix.segLive[s.seq] == 0 {
			gone = append(gone, s)
			delete(l.ix.segLive, s.seq)
			delete(l.segBySeq, s.seq)
			return true
		}
		return false
	})
	for _, s := range gone {
		_ = s.f.Close()
		_ = os.Remove(s.path)
	}
	return gone
}

// closeFiles closes the segment files.
func (l *Log) closeFiles() {
	for _, s := range l.segs {
		if s.f != nil {
			_ = s.f.Close()
		}
	}
}

// AppendTraffic implements store.Traffic: one write of the batch's records
// at the end of the active segment, then one fsync. The whole batch is
// checked first: a nil item or one without a session id stores none.
func (l *Log) AppendTraffic(ctx context.Context, items []*capture.Item) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := store.CheckItems(items); err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	// Encode without the index lock: readers go on meanwhile.
	buf := l.buf[:0]
	offs := make([]int, len(items)+1)
	for i, it := range items {
		offs[i] = len(buf)
		buf = slices.Grow(buf, recordHeaderLen+itemPrefixLen+it.BinarySize())
		buf = append(buf, make([]byte, recordHeaderLen+itemPrefixLen)...)
		buf, _ = it.AppendBinary(buf)
		if len(buf)-offs[i]-recordHeaderLen > math.MaxInt32 {
			return fmt.Errorf("append traffic: item %d (%s) is over 2 GiB", i, it.ID)
		}
	}
	offs[len(items)] = len(buf)
	err := l.append(items, buf, offs)
	if cap(buf) <= 8<<20 {
		l.buf = buf[:0] // keep a usual batch's buffer, not a huge one
	} else {
		l.buf = nil
	}
	if err != nil {
		return fmt.Errorf("append traffic: %w", err)
	}
	return nil
}

// append indexes the encoded batch buf (record i at buf[offs[i]:offs[i+1]],
// its header and place not yet filled in) and writes it.
func (l *Log) append(items []*capture.Item, buf []byte, offs []int) error {
	l.mu.Lock()
	if err := l.usable(); err != nil {
		l.mu.Unlock()
		return err
	}
	if seg := l.active(); seg.size > int64(len(segmentHeader)) && seg.size+int64(len(buf)) > l.opt.SegmentSize {
		if err := l.addSegment(); err != nil {
			l.mu.Unlock()
			return err
		}
	}
	seg := l.active()
	start := seg.size
	if !seg.followed {
		seg.trail, seg.followed = writeback.New(seg.f, start), true
	}
	for i, it := range items {
		rec := buf[offs[i]:offs[i+1]]
		e := entry{
			ts: it.Timestamp, seg: seg.seq,
			off:  start + int64(offs[i]) + recordHeaderLen + itemPrefixLen,
			n:    uint32(len(rec) - recordHeaderLen - itemPrefixLen), //nolint:gosec // checked against MaxInt32
			size: int64(len(rec)),
		}
		if _, j, r, found := l.ix.lookup(it.SessionID, it.Timestamp); found {
			e.place = l.ix.at(r).place
			l.ix.replace(r, it.ID, e)
		} else {
			e.place = l.nextPlace
			l.nextPlace++
			// A new session's name is cloned: not a view of a larger string.
			sid := it.SessionID
			if _, ok := l.ix.sessNum[sid]; !ok {
				sid = strings.Clone(sid)
			}
			l.ix.insert(sid, it.ID, e, j)
		}
		rec[recordHeaderLen] = typeItem
		binary.BigEndian.PutUint64(rec[recordHeaderLen+1:], e.place)
		sealRecord(rec)
		l.evict()
	}
	if l.frontier != l.written {
		buf = appendFrontier(buf, l.frontier)
	}
	_, err := seg.f.WriteAt(buf, start)
	if err == nil {
		seg.size += int64(len(buf))
		l.written = l.frontier
		l.dropEmpty()
	} else {
		err = l.recover(seg, start, err)
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	// Outside l.mu: this may wait for the disk, and readers need not. The
	// segment stays open (only Close, which takes wmu, closes the active
	// one; a closed file turns the trail off).
	if err := seg.trail.Wrote(seg.size); err != nil {
		return err
	}
	if l.opt.NoSync {
		return nil
	}
	if l.opt.SyncInterval > 0 {
		return l.scheduleSync()
	}
	return seg.f.Sync()
}

// scheduleSync makes sure a sync is due within SyncInterval, and reports
// the failure of the last scheduled one.
func (l *Log) scheduleSync() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if err := l.syncErr; err != nil {
		l.syncErr = nil
		return fmt.Errorf("sync: %w", err)
	}
	if l.syncTimer == nil {
		l.syncTimer = time.AfterFunc(l.opt.SyncInterval, l.syncLater)
	}
	return nil
}

// syncLater is the scheduled sync of the active segment (older ones were
// synced when the next was started). It holds the index's read lock, so
// that the segment is not closed meanwhile.
func (l *Log) syncLater() {
	l.syncMu.Lock()
	l.syncTimer = nil
	l.syncMu.Unlock()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed || l.err != nil {
		return
	}
	if err := l.active().f.Sync(); err != nil {
		l.syncMu.Lock()
		l.syncErr = err
		l.syncMu.Unlock()
	}
}

// recover undoes a failed write of a batch at offset start of seg: the
// segment is cut back and the index rebuilt from the files. If that fails
// too the log is unusable until reopened.
func (l *Log) recover(seg *segment, start int64, cause error) error {
	if err := os.Truncate(seg.path, start); err != nil {
		l.err = fmt.Errorf("traffic log unusable after a failed write (%w): %w", cause, err)
		return l.err
	}
	if err := l.load(); err != nil {
		l.err = fmt.Errorf("traffic log unusable after a failed write (%w): %w", cause, err)
		return l.err
	}
	return cause
}

func (l *Log) usable() error {
	switch {
	case l.closed:
		return errors.New("traffic log closed")
	case l.err != nil:
		return l.err
	}
	return nil
}

// location is where an item's binary encoding is.
type location struct {
	seg *segment
	off int64
	n   int
}

// location returns where the document of entry r is; the caller holds mu.
func (l *Log) location(r ref) location {
	e := l.ix.at(r)
	return location{l.segBySeq[e.seg], e.off, int(e.n)}
}

// read reads and decodes the items at locs; the caller holds mu for
// reading (segments are not deleted meanwhile).
func read(locs []location) ([]capture.Item, error) {
	total := 0
	for _, loc := range locs {
		total += loc.n
	}
	buf := make([]byte, total)
	out := make([]capture.Item, len(locs))
	for i, loc := range locs {
		b := buf[:loc.n]
		buf = buf[loc.n:]
		if _, err := loc.seg.f.ReadAt(b, loc.off); err != nil {
			return nil, fmt.Errorf("read %s at %d: %w", loc.seg.path, loc.off, err)
		}
		if err := out[i].UnmarshalBinary(b); err != nil {
			return nil, fmt.Errorf("decode %s at %d: %w", loc.seg.path, loc.off, err)
		}
	}
	return out, nil
}

// ListTraffic implements store.Traffic.
func (l *Log) ListTraffic(ctx context.Context, sessionID string, after int64, limit int) ([]capture.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit = store.Page{Limit: limit}.EffectiveLimit()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if err := l.usable(); err != nil {
		return nil, fmt.Errorf("list traffic: %w", err)
	}
	num, ok := l.ix.sessNum[sessionID]
	if !ok || after == math.MaxInt64 {
		return []capture.Item{}, nil
	}
	entries := &l.ix.sessions[num].entries
	start, found := entries.Search(after, l.ix.tsOf)
	if found {
		start++
	}
	end := min(start+limit, entries.Len())
	locs := make([]location, 0, max(end-start, 0))
	for _, r := range entries.Live()[start:end] {
		locs = append(locs, l.location(r))
	}
	out, err := read(locs)
	if err != nil {
		return nil, fmt.Errorf("list traffic: %w", err)
	}
	return out, nil
}

// GetTraffic implements store.Traffic.
func (l *Log) GetTraffic(ctx context.Context, sessionID, id string) (capture.Item, error) {
	if err := ctx.Err(); err != nil {
		return capture.Item{}, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if err := l.usable(); err != nil {
		return capture.Item{}, fmt.Errorf("get traffic: %w", err)
	}
	r, ok := l.ix.byID[l.ix.idHash(sessionID, id)]
	if !ok {
		return capture.Item{}, fmt.Errorf("traffic item %s in session %s: %w", id, sessionID, store.ErrNotFound)
	}
	out, err := read([]location{l.location(r)})
	if err != nil {
		return capture.Item{}, fmt.Errorf("get traffic: %w", err)
	}
	if out[0].SessionID != sessionID || out[0].ID != id { // a hash collision (see index)
		return capture.Item{}, fmt.Errorf("traffic item %s in session %s: %w", id, sessionID, store.ErrNotFound)
	}
	return out[0], nil
}

// Stats are a Log's totals.
type Stats struct {
	Items    int
	Bytes    int64 // the stored items' record sizes
	Segments int
}

// Stats returns the log's totals.
func (l *Log) Stats() Stats {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return Stats{Items: l.ix.len(), Bytes: l.ix.bytes, Segments: len(l.segs)}
}

// Close syncs the active segment and closes the files.
func (l *Log) Close() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.syncMu.Lock()
	if l.syncTimer != nil {
		l.syncTimer.Stop() // Close syncs below
		l.syncTimer = nil
	}
	l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var err error
	if len(l.segs) > 0 && !l.opt.NoSync && l.err == nil {
		err = l.active().f.Sync()
	}
	for _, s := range l.segs {
		if cerr := s.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
