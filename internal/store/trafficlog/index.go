package trafficlog

import (
	"hash/maphash"

	"github.com/proxyctl/proxyctl/internal/store/queue"
)

// The index holds no pointer per item, so that the garbage collector has
// nothing to scan in it however many items are stored: entries live in
// one slice and are referred to by number (ref), sessions and segments by
// number too, and the id index is keyed by a hash of (session, id). With
// pointers (strings and *entry in every slot) the bolt store's default
// 100,000 items made each GC cycle of a busy proxy 2-3x longer than on
// the memory store.
//
// The id hash is maphash with a seed chosen at random per Log, so ids
// cannot be picked to collide. Two stored ids with the same 64-bit hash
// (about 10^-9 for a million items) would share a slot: GetTraffic
// checks the id of the item it reads and answers ErrNotFound for the one
// that lost it.

// ref is an entry's number in index.slab.
type ref uint32

// entry is one stored item.
type entry struct {
	ts    int64
	place uint64
	off   int64  // the item's binary encoding: bytes [off, off+n) of segment seg
	size  int64  // its record's size
	idh   uint64 // idHash of (session, id)
	seg   uint64 // segment sequence number
	n     uint32
	sess  uint32 // session number
}

// session is the index of one session's entries, by timestamp.
type session struct {
	name    string
	entries queue.Queue[ref]
}

type idKey struct{ session, id string }

// index is the in-memory part of a Log, guarded by its mu.
type index struct {
	slab     []entry
	free     []ref
	order    queue.Queue[ref] // by place: the eviction order
	sessNum  map[string]uint32
	sessions []*session // by number; nil for a free number
	freeSess []uint32
	byID     map[uint64]ref
	seed     maphash.Seed
	bytes    int64 // sum of the entries' sizes

	// segLive counts, per segment, the entries whose document is in it.
	segLive map[uint64]int

	tsOf, placeOf func(ref) int64
}

func newIndex() *index {
	x := &index{
		sessNum: map[string]uint32{},
		byID:    map[uint64]ref{},
		seed:    maphash.MakeSeed(),
		segLive: map[uint64]int{},
	}
	x.tsOf = func(r ref) int64 { return x.slab[r].ts }
	x.placeOf = func(r ref) int64 { return int64(x.slab[r].place) } //nolint:gosec // places stay below 2^63
	return x
}

func (x *index) idHash(sid, id string) uint64 {
	return maphash.Comparable(x.seed, idKey{sid, id})
}

func (x *index) len() int { return x.order.Len() }

func (x *index) at(r ref) *entry { return &x.slab[r] }

// lookup finds the entry of (sid, ts): the session (nil if it has no
// entries), the position of ts in its index, and the entry there if any.
func (x *index) lookup(sid string, ts int64) (s *session, i int, r ref, found bool) {
	num, ok := x.sessNum[sid]
	if !ok {
		return nil, 0, 0, false
	}
	s = x.sessions[num]
	i, found = s.entries.Search(ts, x.tsOf)
	if found {
		r = s.entries.At(i)
	}
	return s, i, r, found
}

// session returns the session named sid, creating it.
func (x *index) session(sid string) (*session, uint32) {
	if num, ok := x.sessNum[sid]; ok {
		return x.sessions[num], num
	}
	s := &session{name: sid}
	var num uint32
	if n := len(x.freeSess); n > 0 {
		num = x.freeSess[n-1]
		x.freeSess = x.freeSess[:n-1]
		x.sessions[num] = s
	} else {
		num = uint32(len(x.sessions)) //nolint:gosec // fewer than 2^32 sessions hold items at once
		x.sessions = append(x.sessions, s)
	}
	x.sessNum[sid] = num
	return s, num
}

// insert stores e, a new entry of session sid (e.sess and e.idh are set
// here), at position i of the session's index.
func (x *index) insert(sid, id string, e entry, i int) {
	s, num := x.session(sid)
	e.sess = num
	e.idh = x.idHash(s.name, id)
	var r ref
	if n := len(x.free); n > 0 {
		r = x.free[n-1]
		x.free = x.free[:n-1]
		x.slab[r] = e
	} else {
		r = ref(len(x.slab)) //nolint:gosec // bounded by MaxItems
		x.slab = append(x.slab, e)
	}
	s.entries.Insert(i, r)
	if n := x.order.Len(); n == 0 || x.slab[x.order.At(n-1)].place < e.place {
		x.order.Insert(n, r)
	} else { // replay of an older place (its earlier holder was evicted)
		j, _ := x.order.Search(x.placeOf(r), x.placeOf)
		x.order.Insert(j, r)
	}
	x.byID[e.idh] = r
	x.bytes += e.size
	x.segLive[e.seg]++
}

// replace gives entry r (same session, timestamp and place) the document
// of e, of item id.
func (x *index) replace(r ref, id string, e entry) {
	cur := &x.slab[r]
	if x.byID[cur.idh] == r {
		delete(x.byID, cur.idh)
	}
	x.segLive[cur.seg]--
	x.bytes += e.size - cur.size
	cur.idh = x.idHash(x.sessions[cur.sess].name, id)
	cur.seg, cur.off, cur.n, cur.size = e.seg, e.off, e.n, e.size
	x.segLive[cur.seg]++
	x.byID[cur.idh] = r
}

// remove drops entry r, at position i of its session s's index.
func (x *index) remove(r ref, s *session, i int) {
	e := &x.slab[r]
	s.entries.Remove(i)
	if s.entries.Len() == 0 {
		delete(x.sessNum, s.name)
		x.sessions[e.sess] = nil
		x.freeSess = append(x.freeSess, e.sess)
	}
	if j, found := x.order.Search(x.placeOf(r), x.placeOf); found {
		x.order.Remove(j)
	}
	if x.byID[e.idh] == r {
		delete(x.byID, e.idh)
	}
	x.bytes -= e.size
	x.segLive[e.seg]--
	x.free = append(x.free, r)
}

// evictOldest drops the entry of the lowest place and returns its place.
func (x *index) evictOldest() uint64 {
	r := x.order.At(0)
	e := x.slab[r]
	s := x.sessions[e.sess]
	i, _ := s.entries.Search(e.ts, x.tsOf)
	x.remove(r, s, i)
	return e.place
}

// oldestPlace returns the lowest place stored; the index must not be
// empty.
func (x *index) oldestPlace() uint64 { return x.slab[x.order.At(0)].place }
