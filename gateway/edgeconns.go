package gateway

import (
	"errors"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
)

// edgeConns keeps one client connection per media edge, for the calls that
// must reach one edge in particular (the one holding a session, or the
// one chosen for a stream) rather than any. Edges come and go (a
// restarted pod has a new address), so connections to edges no longer
// registered are closed when a caller passes the registered set.
type edgeConns struct {
	opts []grpc.DialOption

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by edge address
}

// newEdgeConns dials with opts after insecure credentials, as discovery
// does: an option given (TLS) takes precedence, and the rest (telemetry,
// the interceptors that keep the internal key out) apply as to every
// other service.
func newEdgeConns(opts []grpc.DialOption) *edgeConns {
	all := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	return &edgeConns{opts: all, conns: map[string]*grpc.ClientConn{}}
}

// get is the MediaService of the edge at addr.
func (e *edgeConns) get(addr string) (mediav1.MediaServiceClient, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cc := e.conns[addr]
	if cc == nil {
		var err error
		if cc, err = grpc.NewClient(addr, e.opts...); err != nil {
			return nil, err
		}
		e.conns[addr] = cc
	}
	return mediav1.NewMediaServiceClient(cc), nil
}

// prune closes the connections to edges not in registered.
func prune[V any](e *edgeConns, registered map[string]V) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for a, cc := range e.conns {
		if _, ok := registered[a]; !ok {
			_ = cc.Close()
			delete(e.conns, a)
		}
	}
}

// Close closes every connection.
func (e *edgeConns) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for _, cc := range e.conns {
		errs = append(errs, cc.Close())
	}
	e.conns = map[string]*grpc.ClientConn{}
	return errors.Join(errs...)
}
