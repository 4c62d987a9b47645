package dynamostore

import (
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

type item = map[string]types.AttributeValue

func attrS(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

func attrN(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

// getS returns a string attribute; "" when it is absent.
func getS(m item, name string) (string, error) {
	switch v := m[name].(type) {
	case nil:
		return "", nil
	case *types.AttributeValueMemberS:
		return v.Value, nil
	default:
		return "", fmt.Errorf("attribute %s: %T, want a string", name, v)
	}
}

// getN returns an integer attribute; 0 when it is absent.
func getN(m item, name string) (int64, error) {
	switch v := m[name].(type) {
	case nil:
		return 0, nil
	case *types.AttributeValueMemberN:
		n, err := strconv.ParseInt(v.Value, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("attribute %s: %w", name, err)
		}
		return n, nil
	default:
		return 0, fmt.Errorf("attribute %s: %T, want a number", name, v)
	}
}

// getB returns a binary attribute; nil when it is absent.
func getB(m item, name string) ([]byte, error) {
	switch v := m[name].(type) {
	case nil:
		return nil, nil
	case *types.AttributeValueMemberB:
		return v.Value, nil
	default:
		return nil, fmt.Errorf("attribute %s: %T, want binary", name, v)
	}
}

// putTime sets a time attribute in unix nanoseconds; a zero time is left
// out.
func putTime(m item, name string, t time.Time) {
	if !t.IsZero() {
		m[name] = attrN(t.UnixNano())
	}
}

// getTime reads what putTime wrote: UTC, zero when absent.
func getTime(m item, name string) (time.Time, error) {
	if _, ok := m[name]; !ok {
		return time.Time{}, nil
	}
	n, err := getN(m, name)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, n).UTC(), nil
}
