package relay

import (
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// pool is the relay's connections to other edges: one per edge, shared by
// every stream pulled from it (HTTP/2 streams over one TCP connection).
type pool struct {
	opts []grpc.DialOption // the internal key, TLS

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// conn is a connection to another edge, with the internal key.
func (pl *pool) conn(addr string) (*grpc.ClientConn, error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if cc := pl.conns[addr]; cc != nil {
		return cc, nil
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, pl.opts...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	if pl.conns == nil {
		pl.conns = map[string]*grpc.ClientConn{}
	}
	pl.conns[addr] = cc
	return cc, nil
}

// close closes the connections.
func (pl *pool) close() {
	pl.mu.Lock()
	conns := pl.conns
	pl.conns = nil
	pl.mu.Unlock()
	for _, cc := range conns {
		_ = cc.Close()
	}
}
