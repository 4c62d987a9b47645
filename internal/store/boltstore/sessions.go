package boltstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/proxyctl/proxyctl/internal/store"
)

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if sess.ID == "" {
		return errors.New("create session: empty id")
	}
	v, err := json.Marshal(sess)
	if err != nil {
		return fmt.Errorf("create session %s: %w", sess.ID, err)
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketSessions))
		if b.Get([]byte(sess.ID)) != nil {
			return fmt.Errorf("session %s: %w", sess.ID, store.ErrExists)
		}
		if err := b.Put([]byte(sess.ID), v); err != nil {
			return fmt.Errorf("create session %s: %w", sess.ID, err)
		}
		return nil
	})
}

// getSession reads session id from the sessions bucket b.
func getSession(b *bolt.Bucket, id string) (store.Session, error) {
	v := b.Get([]byte(id))
	if v == nil {
		return store.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	return decodeSession(id, v)
}

func decodeSession(id string, v []byte) (store.Session, error) {
	var sess store.Session
	if err := json.Unmarshal(v, &sess); err != nil {
		return store.Session{}, fmt.Errorf("decode session %s: %w", id, err)
	}
	return sess, nil
}

// putSession writes sess back to the sessions bucket b.
func putSession(b *bolt.Bucket, sess store.Session) error {
	v, err := json.Marshal(sess)
	if err != nil {
		return fmt.Errorf("encode session %s: %w", sess.ID, err)
	}
	if err := b.Put([]byte(sess.ID), v); err != nil {
		return fmt.Errorf("write session %s: %w", sess.ID, err)
	}
	return nil
}

// GetSession implements store.Sessions.
func (s *Store) GetSession(ctx context.Context, id string) (store.Session, error) {
	if err := ctx.Err(); err != nil {
		return store.Session{}, err
	}
	var sess store.Session
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		sess, err = getSession(tx.Bucket([]byte(bucketSessions)), id)
		return err
	})
	if err != nil {
		return store.Session{}, err
	}
	return sess, nil
}

// EndSession implements store.Sessions. The check of the state and the
// write are one transaction.
func (s *Store) EndSession(ctx context.Context, id string, to store.SessionState, at time.Time) (store.Session, error) {
	if err := ctx.Err(); err != nil {
		return store.Session{}, err
	}
	if to != store.StateClosed && to != store.StateExpired {
		return store.Session{}, fmt.Errorf("end session %s: invalid target state %q", id, to)
	}
	var sess store.Session
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketSessions))
		var err error
		if sess, err = getSession(b, id); err != nil {
			return err
		}
		if sess.State != store.StateActive {
			return fmt.Errorf("end session %s (%s): %w", id, sess.State, store.ErrConflict)
		}
		sess.State = to
		sess.EndedAt = at
		return putSession(b, sess)
	})
	switch {
	case errors.Is(err, store.ErrConflict):
		return sess, err // the stored session, as the contract says
	case err != nil:
		return store.Session{}, err
	}
	return sess, nil
}

// TouchSession implements store.Sessions. A touch that does not move
// LastSeenAt forward writes nothing.
func (s *Store) TouchSession(ctx context.Context, id string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketSessions))
		sess, err := getSession(b, id)
		if err != nil {
			return err
		}
		if sess.State != store.StateActive {
			return fmt.Errorf("touch session %s (%s): %w", id, sess.State, store.ErrConflict)
		}
		if !at.After(sess.LastSeenAt) {
			return errRollback
		}
		sess.LastSeenAt = at
		return putSession(b, sess)
	})
}

// LabelSession implements store.Sessions.
func (s *Store) LabelSession(ctx context.Context, id string, labels map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketSessions))
		sess, err := getSession(b, id)
		if err != nil {
			return err
		}
		if len(labels) == 0 {
			return errRollback
		}
		if sess.Labels == nil {
			sess.Labels = make(map[string]string, len(labels))
		}
		maps.Copy(sess.Labels, labels)
		return putSession(b, sess)
	})
}

// sessionCursorTag marks the cursors ListSessions issues, so that a cursor
// of another backend (or another list) is refused rather than misread.
const sessionCursorTag = "bolt-sessions:"

// ListSessions implements store.Sessions. The cursor is the last id of the
// previous page, tagged and base64url-encoded.
func (s *Store) ListSessions(ctx context.Context, p store.Page) ([]store.Session, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	var after []byte
	if p.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(p.Cursor)
		if err != nil || len(b) <= len(sessionCursorTag) || !bytes.HasPrefix(b, []byte(sessionCursorTag)) {
			return nil, "", fmt.Errorf("list sessions: %w", store.ErrBadCursor)
		}
		after = b[len(sessionCursorTag):]
	}
	limit := p.EffectiveLimit()
	var (
		items []store.Session
		more  bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketSessions)).Cursor()
		k, v := c.First()
		if after != nil {
			k, v = c.Seek(after)
			if bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if len(items) == limit {
				more = true
				break
			}
			sess, err := decodeSession(string(k), v)
			if err != nil {
				return err
			}
			items = append(items, sess)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list sessions: %w", err)
	}
	var next string
	if more {
		next = base64.RawURLEncoding.EncodeToString([]byte(sessionCursorTag + items[len(items)-1].ID))
	}
	if items == nil {
		items = []store.Session{}
	}
	return items, next, nil
}
