package dynamostore

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/proxyctl/proxyctl/internal/store"
)

// Sessions table attributes (besides sessionId).
const (
	attrState      = "state"
	attrKind       = "kind"
	attrLabels     = "labels"
	attrCreatedAt  = "createdAt"
	attrLastSeenAt = "lastSeenAt"
	attrEndedAt    = "endedAt"
)

// labelsPerUpdate bounds the labels set by one UpdateItem, keeping its
// expression well under DynamoDB's 4 KB expression limit.
const labelsPerUpdate = 50

func sessionKey(id string) item { return item{attrSession: attrS(id)} }

func encodeSession(sess store.Session) item {
	labels := make(item, len(sess.Labels))
	for k, v := range sess.Labels {
		labels[k] = attrS(v)
	}
	m := item{
		attrSession: attrS(sess.ID),
		attrState:   attrS(string(sess.State)),
		attrLabels:  &types.AttributeValueMemberM{Value: labels},
	}
	if sess.Kind != "" {
		m[attrKind] = attrS(sess.Kind)
	}
	putTime(m, attrCreatedAt, sess.CreatedAt)
	putTime(m, attrLastSeenAt, sess.LastSeenAt)
	putTime(m, attrExpiresAt, sess.ExpiresAt)
	putTime(m, attrEndedAt, sess.EndedAt)
	return m
}

func decodeSession(m item) (store.Session, error) {
	var (
		sess store.Session
		errs []error
		err  error
	)
	str := func(name string) string {
		v, err := getS(m, name)
		errs = append(errs, err)
		return v
	}
	tm := func(name string) time.Time {
		v, err := getTime(m, name)
		errs = append(errs, err)
		return v
	}
	sess.ID = str(attrSession)
	sess.State = store.SessionState(str(attrState))
	sess.Kind = str(attrKind)
	sess.CreatedAt = tm(attrCreatedAt)
	sess.LastSeenAt = tm(attrLastSeenAt)
	sess.ExpiresAt = tm(attrExpiresAt)
	sess.EndedAt = tm(attrEndedAt)
	switch l := m[attrLabels].(type) {
	case nil:
	case *types.AttributeValueMemberM:
		if len(l.Value) > 0 {
			sess.Labels = make(map[string]string, len(l.Value))
			for k := range l.Value {
				sess.Labels[k], err = getS(l.Value, k)
				errs = append(errs, err)
			}
		}
	default:
		errs = append(errs, fmt.Errorf("attribute %s: %T, want a map", attrLabels, l))
	}
	if err := errors.Join(errs...); err != nil {
		return store.Session{}, fmt.Errorf("decode session %q: %w", sess.ID, err)
	}
	return sess, nil
}

// CreateSession implements store.Sessions: a conditional put that only
// creates.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	if sess.ID == "" {
		return errors.New("create session: empty id")
	}
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(s.sessions),
		Item:                     encodeSession(sess),
		ConditionExpression:      aws.String("attribute_not_exists(#id)"),
		ExpressionAttributeNames: map[string]string{"#id": attrSession},
	})
	if _, ok := conditionFailed(err); ok {
		return fmt.Errorf("session %s: %w", sess.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create session %s: %w", sess.ID, err)
	}
	return nil
}

// getSession reads a session with a consistent read; found is false when
// there is none.
func (s *Store) getSession(ctx context.Context, id string) (sess store.Session, found bool, err error) {
	if id == "" { // not a valid key: no such session
		return store.Session{}, false, nil
	}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.sessions),
		Key:            sessionKey(id),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return store.Session{}, false, fmt.Errorf("get session %s: %w", id, err)
	}
	if out.Item == nil {
		return store.Session{}, false, nil
	}
	sess, err = decodeSession(out.Item)
	return sess, err == nil, err
}

// GetSession implements store.Sessions.
func (s *Store) GetSession(ctx context.Context, id string) (store.Session, error) {
	sess, found, err := s.getSession(ctx, id)
	switch {
	case err != nil:
		return store.Session{}, err
	case !found:
		return store.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	return sess, nil
}

// failedSession returns the session a failed conditional update saw: the
// one the exception carries (ReturnValuesOnConditionCheckFailure), else a
// fresh consistent read for servers that do not return it.
func (s *Store) failedSession(ctx context.Context, id string, cf *types.ConditionalCheckFailedException) (store.Session, bool, error) {
	if cf.Item != nil {
		sess, err := decodeSession(cf.Item)
		return sess, err == nil, err
	}
	return s.getSession(ctx, id)
}

// EndSession implements store.Sessions: an update conditional on the
// session being ACTIVE.
func (s *Store) EndSession(ctx context.Context, id string, to store.SessionState, at time.Time) (store.Session, error) {
	if to != store.StateClosed && to != store.StateExpired {
		return store.Session{}, fmt.Errorf("end session %s: invalid target state %q", id, to)
	}
	if id == "" {
		return store.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	update := "SET #state = :to REMOVE #endedAt"
	values := map[string]types.AttributeValue{
		":to":     attrS(string(to)),
		":active": attrS(string(store.StateActive)),
	}
	if !at.IsZero() {
		update = "SET #state = :to, #endedAt = :at"
		values[":at"] = attrN(at.UnixNano())
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           aws.String(s.sessions),
		Key:                                 sessionKey(id),
		UpdateExpression:                    aws.String(update),
		ConditionExpression:                 aws.String("#state = :active"),
		ExpressionAttributeNames:            map[string]string{"#state": attrState, "#endedAt": attrEndedAt},
		ExpressionAttributeValues:           values,
		ReturnValues:                        types.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if cf, ok := conditionFailed(err); ok {
		sess, found, err := s.failedSession(ctx, id, cf)
		switch {
		case err != nil:
			return store.Session{}, err
		case !found:
			return store.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
		}
		return sess, fmt.Errorf("end session %s (%s): %w", id, sess.State, store.ErrConflict)
	}
	if err != nil {
		return store.Session{}, fmt.Errorf("end session %s: %w", id, err)
	}
	return decodeSession(out.Attributes)
}

// TouchSession implements store.Sessions: an update conditional on the
// session being ACTIVE and lastSeenAt being older than at.
func (s *Store) TouchSession(ctx context.Context, id string, at time.Time) error {
	if !at.IsZero() && id != "" {
		_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                aws.String(s.sessions),
			Key:                      sessionKey(id),
			UpdateExpression:         aws.String("SET #seen = :at"),
			ConditionExpression:      aws.String("#state = :active AND (attribute_not_exists(#seen) OR #seen < :at)"),
			ExpressionAttributeNames: map[string]string{"#state": attrState, "#seen": attrLastSeenAt},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":at":     attrN(at.UnixNano()),
				":active": attrS(string(store.StateActive)),
			},
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		cf, failed := conditionFailed(err)
		if !failed {
			if err != nil {
				return fmt.Errorf("touch session %s: %w", id, err)
			}
			return nil
		}
		return s.touchFailed(ctx, id, cf)
	}
	// A zero time is never newer: only the checks remain.
	return s.touchFailed(ctx, id, &types.ConditionalCheckFailedException{})
}

// touchFailed tells why a touch did not apply: an unknown or ended session
// is an error, an older time is not.
func (s *Store) touchFailed(ctx context.Context, id string, cf *types.ConditionalCheckFailedException) error {
	sess, found, err := s.failedSession(ctx, id, cf)
	switch {
	case err != nil:
		return err
	case !found:
		return fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	case sess.State != store.StateActive:
		return fmt.Errorf("touch session %s (%s): %w", id, sess.State, store.ErrConflict)
	}
	return nil // lastSeenAt is already as recent
}

// LabelSession implements store.Sessions: labels are set one by one in the
// labels map (SET labels.#k = :v), so concurrent label updates of
// different keys do not overwrite each other. More than 50 labels take
// several updates, each atomic on its own. DynamoDB does not accept an
// empty label key.
func (s *Store) LabelSession(ctx context.Context, id string, labels map[string]string) error {
	if len(labels) == 0 {
		_, err := s.GetSession(ctx, id)
		return err
	}
	if id == "" {
		return fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	if _, ok := labels[""]; ok {
		return fmt.Errorf("label session %s: empty label key", id)
	}
	keys := slices.Sorted(maps.Keys(labels))
	for chunk := range slices.Chunk(keys, labelsPerUpdate) {
		names := map[string]string{"#id": attrSession, "#labels": attrLabels}
		values := make(map[string]types.AttributeValue, len(chunk))
		update := []byte("SET ")
		for i, k := range chunk {
			n := strconv.Itoa(i)
			if i > 0 {
				update = append(update, ", "...)
			}
			update = append(update, "#labels.#k"+n+" = :v"+n...)
			names["#k"+n] = k
			values[":v"+n] = attrS(labels[k])
		}
		_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 aws.String(s.sessions),
			Key:                       sessionKey(id),
			UpdateExpression:          aws.String(string(update)),
			ConditionExpression:       aws.String("attribute_exists(#id)"),
			ExpressionAttributeNames:  names,
			ExpressionAttributeValues: values,
		})
		if _, ok := conditionFailed(err); ok {
			return fmt.Errorf("session %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("label session %s: %w", id, err)
		}
	}
	return nil
}

// ListSessions implements store.Sessions, ordered by id. Each page scans
// the whole table (see the package documentation); the cursor is the last
// id of the previous page, base64url-encoded, as memstore's.
func (s *Store) ListSessions(ctx context.Context, p store.Page) ([]store.Session, string, error) {
	var after string
	if p.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(p.Cursor)
		if err != nil || len(b) == 0 || !utf8.Valid(b) {
			return nil, "", fmt.Errorf("list sessions: %w", store.ErrBadCursor)
		}
		after = string(b)
	}
	limit := p.EffectiveLimit()
	in := &dynamodb.ScanInput{
		TableName:      aws.String(s.sessions),
		ConsistentRead: aws.Bool(true),
	}
	if p.Cursor != "" {
		in.FilterExpression = aws.String("#id > :after")
		in.ExpressionAttributeNames = map[string]string{"#id": attrSession}
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":after": attrS(after)}
	}
	// Keep the limit+1 smallest ids after the cursor: the extra one tells
	// whether there is a next page.
	h := &sessionHeap{}
	for {
		out, err := s.db.Scan(ctx, in)
		if err != nil {
			return nil, "", fmt.Errorf("list sessions: %w", err)
		}
		for _, m := range out.Items {
			id, err := getS(m, attrSession)
			if err != nil {
				return nil, "", fmt.Errorf("list sessions: %w", err)
			}
			if (p.Cursor != "" && id <= after) || (h.Len() == limit+1 && id >= (*h)[0].id) {
				continue
			}
			heap.Push(h, heapEntry{id, m})
			if h.Len() > limit+1 {
				heap.Pop(h)
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	entries := []heapEntry(*h)
	slices.SortFunc(entries, func(a, b heapEntry) int { return cmp.Compare(a.id, b.id) })
	var next string
	if len(entries) > limit {
		entries = entries[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(entries[limit-1].id))
	}
	items := make([]store.Session, len(entries))
	for i, e := range entries {
		sess, err := decodeSession(e.m)
		if err != nil {
			return nil, "", err
		}
		items[i] = sess
	}
	return items, next, nil
}

type heapEntry struct {
	id string
	m  item
}

// sessionHeap is a max-heap by id: its root is the largest id kept.
type sessionHeap []heapEntry

func (h sessionHeap) Len() int           { return len(h) }
func (h sessionHeap) Less(i, j int) bool { return h[i].id > h[j].id }
func (h sessionHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *sessionHeap) Push(x any)        { *h = append(*h, x.(heapEntry)) }
func (h *sessionHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = heapEntry{}
	*h = old[:len(old)-1]
	return e
}
