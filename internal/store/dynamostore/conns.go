package dynamostore

import (
	"context"
	"net"
	"net/http"
	"sync"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// connSet holds the connections the SDK's HTTP client dialed and has not
// closed, so that Store.Close can close them: the SDK's default client
// (awshttp.BuildableClient) keeps its http.Transport to itself and offers
// no CloseIdleConnections, and each pooled connection holds two goroutines
// until IdleConnTimeout.
type connSet struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

// track returns c (the client the SDK resolved) dialing through s, or c
// unchanged when it is not the SDK's default client (the caller's own
// client is the caller's to close).
func (s *connSet) track(c dynamodb.HTTPClient) dynamodb.HTTPClient {
	bc, ok := c.(*awshttp.BuildableClient)
	if !ok {
		return c
	}
	return bc.WithTransportOptions(func(tr *http.Transport) {
		dial := tr.DialContext
		if dial == nil {
			dial = bc.GetDialer().DialContext
		}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := &trackedConn{Conn: nc, set: s}
			s.mu.Lock()
			if s.conns == nil {
				s.conns = make(map[*trackedConn]struct{})
			}
			s.conns[tc] = struct{}{}
			s.mu.Unlock()
			return tc, nil
		}
	})
}

// closeAll closes every connection still open. Later requests dial anew.
func (s *connSet) closeAll() {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	set *connSet
}

func (c *trackedConn) Close() error {
	c.set.mu.Lock()
	delete(c.set.conns, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}
