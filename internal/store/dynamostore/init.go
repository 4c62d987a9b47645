package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attribute names.
const (
	attrSession   = "sessionId"
	attrStubID    = "stubId"
	attrExpiresAt = "expiresAt" // the TTL attribute of stubs and traffic
)

// Table creation waits: DescribeTable is polled from tableMinDelay up to
// tableMaxDelay apart, for at most tableMaxWait.
const (
	tableMinDelay = 100 * time.Millisecond
	tableMaxDelay = 2 * time.Second
	tableMaxWait  = 5 * time.Minute
)

type keyAttr struct {
	name string
	typ  types.ScalarAttributeType
}

// tableSpec is one table's key schema.
type tableSpec struct {
	name     string
	hash     keyAttr
	rng      *keyAttr
	ttl      bool // TTL on expiresAt
	describe string
}

func (s *Store) specs() []tableSpec {
	sessionKey := keyAttr{attrSession, types.ScalarAttributeTypeS}
	return []tableSpec{
		{name: s.sessions, hash: sessionKey, describe: "sessions"},
		{name: s.stubs, hash: sessionKey, rng: &keyAttr{attrStubID, types.ScalarAttributeTypeS}, ttl: true, describe: "stubs"},
		{name: s.traffic, hash: sessionKey, rng: &keyAttr{attrTimestamp, types.ScalarAttributeTypeN}, ttl: true, describe: "traffic"},
	}
}

// Init creates the tables that are missing (on-demand billing), waits until
// every table is ACTIVE, checks their keys and enables the TTL on
// expiresAt for stubs and traffic. It is idempotent: tables that exist are
// left as they are, and several instances may run it at once.
//
// A DynamoDB-compatible server that does not implement UpdateTimeToLive
// (dynalite) gets no TTL: expired stubs and traffic are then not deleted,
// which the store's contract allows.
func (s *Store) Init(ctx context.Context) error {
	specs := s.specs()
	for _, t := range specs {
		if err := s.createTable(ctx, t); err != nil {
			return err
		}
	}
	waiter := dynamodb.NewTableExistsWaiter(s.db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = tableMinDelay, tableMaxDelay
	})
	for _, t := range specs {
		out, err := waiter.WaitForOutput(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(t.name)}, tableMaxWait)
		if err != nil {
			return fmt.Errorf("wait for table %s to be active: %w", t.name, err)
		}
		if err := t.check(out.Table); err != nil {
			return err
		}
	}
	for _, t := range specs {
		if t.ttl {
			if err := s.enableTTL(ctx, t.name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Store) createTable(ctx context.Context, t tableSpec) error {
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(t.name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(t.hash.name), AttributeType: t.hash.typ},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(t.hash.name), KeyType: types.KeyTypeHash},
		},
	}
	if t.rng != nil {
		in.AttributeDefinitions = append(in.AttributeDefinitions,
			types.AttributeDefinition{AttributeName: aws.String(t.rng.name), AttributeType: t.rng.typ})
		in.KeySchema = append(in.KeySchema,
			types.KeySchemaElement{AttributeName: aws.String(t.rng.name), KeyType: types.KeyTypeRange})
	}
	_, err := s.db.CreateTable(ctx, in)
	if _, inUse := errors.AsType[*types.ResourceInUseException](err); err != nil && !inUse { // in use: it exists (or is being created)
		return fmt.Errorf("create %s table %s: %w", t.describe, t.name, err)
	}
	return nil
}

// check verifies that an existing table has the keys (and index) the store
// needs: a table of the same name made by something else is an error, not
// a source of confusing failures later.
func (t tableSpec) check(d *types.TableDescription) error {
	want := []string{t.hash.name + " HASH"}
	if t.rng != nil {
		want = append(want, t.rng.name+" RANGE")
	}
	if got := keyString(d.KeySchema); !slices.Equal(got, want) {
		return fmt.Errorf("table %s has keys %v, want %v: it was not made by proxyctl store init", t.name, got, want)
	}
	return nil
}

func keyString(ks []types.KeySchemaElement) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = aws.ToString(k.AttributeName) + " " + string(k.KeyType)
	}
	return out
}

// enableTTL turns the table's TTL on for expiresAt unless it already is.
func (s *Store) enableTTL(ctx context.Context, table string) error {
	d, err := s.db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		return fmt.Errorf("describe TTL of table %s: %w", table, err)
	}
	if ttl := d.TimeToLiveDescription; ttl != nil {
		switch ttl.TimeToLiveStatus {
		case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
			if name := aws.ToString(ttl.AttributeName); name != attrExpiresAt {
				return fmt.Errorf("table %s has TTL on %q, want %q", table, name, attrExpiresAt)
			}
			return nil
		}
	}
	_, err = s.db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(attrExpiresAt),
			Enabled:       aws.Bool(true),
		},
	})
	switch {
	case err == nil, isCode(err, "UnknownOperationException"): // an emulator without TTL
		return nil
	case isCode(err, "ValidationException"):
		// Another instance may have enabled it meanwhile.
		d, derr := s.db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
		if derr == nil && d.TimeToLiveDescription != nil && aws.ToString(d.TimeToLiveDescription.AttributeName) == attrExpiresAt &&
			(d.TimeToLiveDescription.TimeToLiveStatus == types.TimeToLiveStatusEnabled ||
				d.TimeToLiveDescription.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
			return nil
		}
	}
	return fmt.Errorf("enable TTL on table %s: %w", table, err)
}
