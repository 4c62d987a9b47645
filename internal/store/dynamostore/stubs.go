package dynamostore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/proxyctl/proxyctl/internal/store"
)

// attrStub holds a stub's JSON.
const attrStub = "stub"

func stubKey(sessionID, stubID string) item {
	return item{attrSession: attrS(sessionID), attrStubID: attrS(stubID)}
}

// PutStub implements store.Stubs. A new stub is refused with
// store.ErrLimit when its session holds Options.MaxStubsPerSession live
// stubs already (an approximate bound: see the package documentation).
func (s *Store) PutStub(ctx context.Context, sb store.Stub) error {
	switch {
	case sb.SessionID == "":
		return errors.New("put stub: empty session id")
	case sb.StubID == "":
		return errors.New("put stub: empty stub id")
	}
	js, err := json.Marshal(sb)
	if err != nil {
		return fmt.Errorf("put stub %s: %w", sb.StubID, err)
	}
	live, exists, err := s.countStubs(ctx, sb.SessionID, sb.StubID)
	if err != nil {
		return err
	}
	if !exists && live >= s.maxStubs {
		return fmt.Errorf("put stub %s: session %s has %d stubs: %w", sb.StubID, sb.SessionID, live, store.ErrLimit)
	}
	m := stubKey(sb.SessionID, sb.StubID)
	m[attrStub] = attrS(string(js))
	if sb.ExpiresAt != 0 {
		m[attrExpiresAt] = attrN(sb.ExpiresAt)
	}
	if _, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.stubs), Item: m}); err != nil {
		return fmt.Errorf("put stub %s of session %s: %w", sb.StubID, sb.SessionID, err)
	}
	return nil
}

// countStubs counts the session's unexpired stubs and tells whether stubID
// is among its stubs (expired or not).
func (s *Store) countStubs(ctx context.Context, sessionID, stubID string) (live int, exists bool, err error) {
	now := time.Now().Unix()
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.stubs),
		KeyConditionExpression:    aws.String("#s = :s"),
		ProjectionExpression:      aws.String("#id, #exp"),
		ExpressionAttributeNames:  map[string]string{"#s": attrSession, "#id": attrStubID, "#exp": attrExpiresAt},
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": attrS(sessionID)},
		ConsistentRead:            aws.Bool(true),
	}
	for {
		out, err := s.db.Query(ctx, in)
		if err != nil {
			return 0, false, fmt.Errorf("count stubs of session %s: %w", sessionID, err)
		}
		for _, m := range out.Items {
			id, err := getS(m, attrStubID)
			if err != nil {
				return 0, false, err
			}
			exp, err := getN(m, attrExpiresAt)
			if err != nil {
				return 0, false, err
			}
			exists = exists || id == stubID
			if exp == 0 || exp > now {
				live++
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return live, exists, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// DeleteStub implements store.Stubs: a delete conditional on the stub
// existing.
func (s *Store) DeleteStub(ctx context.Context, sessionID, stubID string) error {
	notFound := fmt.Errorf("stub %s of session %s: %w", stubID, sessionID, store.ErrNotFound)
	if sessionID == "" || stubID == "" {
		return notFound
	}
	_, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                aws.String(s.stubs),
		Key:                      stubKey(sessionID, stubID),
		ConditionExpression:      aws.String("attribute_exists(#id)"),
		ExpressionAttributeNames: map[string]string{"#id": attrStubID},
	})
	if _, ok := conditionFailed(err); ok {
		return notFound
	}
	if err != nil {
		return fmt.Errorf("delete stub %s of session %s: %w", stubID, sessionID, err)
	}
	return nil
}

// ListStubs implements store.Stubs: a consistent Query on the session's
// stubs, expired ones included until DynamoDB's TTL deletes them.
func (s *Store) ListStubs(ctx context.Context, sessionID string) ([]store.Stub, error) {
	out := []store.Stub{}
	if sessionID == "" {
		return out, nil
	}
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.stubs),
		KeyConditionExpression:    aws.String("#s = :s"),
		ExpressionAttributeNames:  map[string]string{"#s": attrSession},
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": attrS(sessionID)},
		ConsistentRead:            aws.Bool(true),
	}
	for {
		page, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list stubs of session %s: %w", sessionID, err)
		}
		for _, m := range page.Items {
			sb, err := decodeStub(m)
			if err != nil {
				return nil, err
			}
			out = append(out, sb)
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

func decodeStub(m item) (store.Stub, error) {
	var sb store.Stub
	session, err := getS(m, attrSession)
	if err != nil {
		return sb, err
	}
	id, err := getS(m, attrStubID)
	if err != nil {
		return sb, err
	}
	js, err := getS(m, attrStub)
	if err != nil {
		return sb, err
	}
	if err := json.Unmarshal([]byte(js), &sb); err != nil {
		return sb, fmt.Errorf("stub %s of session %s: %w", id, session, err)
	}
	sb.SessionID, sb.StubID = session, id // the keys are authoritative
	return sb, nil
}
