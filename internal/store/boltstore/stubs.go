package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/proxyctl/proxyctl/internal/store"
)

// stubsTx is the stubs part of one transaction: the stubs bucket, the
// per-session counts and the total.
type stubsTx struct {
	stubs  *bolt.Bucket
	counts *bolt.Bucket
	meta   *bolt.Bucket
}

func openStubs(tx *bolt.Tx) stubsTx {
	return stubsTx{
		stubs:  tx.Bucket([]byte(bucketStubs)),
		counts: tx.Bucket([]byte(bucketStubCounts)),
		meta:   tx.Bucket([]byte(bucketMeta)),
	}
}

func (st stubsTx) count(sessionID string) int64 { return getCount(st.counts, sessionID) }

// add changes the counts of sessionID and of the store by delta, dropping
// the session's bucket and count when it has no stubs left.
func (st stubsTx) add(sessionID string, delta int) error {
	n := st.count(sessionID) + int64(delta)
	if n <= 0 {
		if err := st.counts.Delete([]byte(sessionID)); err != nil {
			return err
		}
		if st.stubs.Bucket([]byte(sessionID)) != nil {
			if err := st.stubs.DeleteBucket([]byte(sessionID)); err != nil {
				return err
			}
		}
	} else if err := putCount(st.counts, sessionID, n); err != nil {
		return err
	}
	return putCount(st.meta, metaStubs, getCount(st.meta, metaStubs)+int64(delta))
}

// PutStub implements store.Stubs. A new stub beyond Options.MaxStubsPerSession
// for its session or Options.MaxStubs in all is refused with store.ErrLimit,
// after the session's expired stubs have been dropped to make room.
func (s *Store) PutStub(ctx context.Context, sb store.Stub) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch {
	case sb.SessionID == "":
		return errors.New("put stub: empty session id")
	case sb.StubID == "":
		return errors.New("put stub: empty stub id")
	}
	v, err := json.Marshal(sb)
	if err != nil {
		return fmt.Errorf("put stub %s: %w", sb.StubID, err)
	}
	perSession, maxStubs := int64(s.opt.MaxStubsPerSession), int64(s.opt.MaxStubs)
	return s.update(func(tx *bolt.Tx) error {
		st := openStubs(tx)
		b, err := st.stubs.CreateBucketIfNotExists([]byte(sb.SessionID))
		if err != nil {
			return fmt.Errorf("put stub %s: %w", sb.StubID, err)
		}
		if b.Get([]byte(sb.StubID)) == nil { // new, not a replacement
			n, total := st.count(sb.SessionID), getCount(st.meta, metaStubs)
			if n >= perSession || total >= maxStubs {
				if err := st.dropExpired(b, sb.SessionID, time.Now().Unix()); err != nil {
					return fmt.Errorf("put stub %s: %w", sb.StubID, err)
				}
				n, total = st.count(sb.SessionID), getCount(st.meta, metaStubs)
				// dropExpired may have deleted the session's bucket.
				if b, err = st.stubs.CreateBucketIfNotExists([]byte(sb.SessionID)); err != nil {
					return fmt.Errorf("put stub %s: %w", sb.StubID, err)
				}
			}
			switch {
			case n >= perSession:
				return fmt.Errorf("put stub %s: session %s has %d stubs: %w", sb.StubID, sb.SessionID, n, store.ErrLimit)
			case total >= maxStubs:
				return fmt.Errorf("put stub %s: the store holds %d stubs: %w", sb.StubID, total, store.ErrLimit)
			}
			if err := st.add(sb.SessionID, 1); err != nil {
				return fmt.Errorf("put stub %s: %w", sb.StubID, err)
			}
		}
		if err := b.Put([]byte(sb.StubID), v); err != nil {
			return fmt.Errorf("put stub %s: %w", sb.StubID, err)
		}
		return nil
	})
}

// dropExpired deletes the stubs of session bucket b that expired by now
// (unix seconds).
func (st stubsTx) dropExpired(b *bolt.Bucket, sessionID string, now int64) error {
	var expired [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var probe struct {
			ExpiresAt int64 `json:"expiresAt"`
		}
		if err := json.Unmarshal(v, &probe); err != nil {
			return fmt.Errorf("decode stub %s of session %s: %w", k, sessionID, err)
		}
		if probe.ExpiresAt != 0 && probe.ExpiresAt <= now {
			expired = append(expired, bytes.Clone(k))
		}
		return nil
	})
	if err != nil || len(expired) == 0 {
		return err
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return st.add(sessionID, -len(expired))
}

// DeleteStub implements store.Stubs.
func (s *Store) DeleteStub(ctx context.Context, sessionID, stubID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		st := openStubs(tx)
		b := st.stubs.Bucket([]byte(sessionID))
		if b == nil || b.Get([]byte(stubID)) == nil {
			return fmt.Errorf("stub %s of session %s: %w", stubID, sessionID, store.ErrNotFound)
		}
		if err := b.Delete([]byte(stubID)); err != nil {
			return fmt.Errorf("delete stub %s: %w", stubID, err)
		}
		if err := st.add(sessionID, -1); err != nil {
			return fmt.Errorf("delete stub %s: %w", stubID, err)
		}
		return nil
	})
}

// ListStubs implements store.Stubs: the session's stubs by stub id. Expired
// stubs are included.
func (s *Store) ListStubs(ctx context.Context, sessionID string) ([]store.Stub, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []store.Stub{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketStubs)).Bucket([]byte(sessionID))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var sb store.Stub
			if err := json.Unmarshal(v, &sb); err != nil {
				return fmt.Errorf("decode stub %s of session %s: %w", k, sessionID, err)
			}
			out = append(out, sb)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
