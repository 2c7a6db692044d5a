package gateway

import (
	"context"
	"errors"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/mediasession"
	"github.com/onair-dev/onair/internal/placement"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
)

// mediaEdges is how the gateway reaches media edges, for WHIP/WHEP and the
// REST media routes alike: a new session goes to the edge
// internal/placement chooses, and a call on a session to the edge that
// holds it (internal/mediasession), never to whichever edge a balancer
// picks. Each call reads the registered edges from discovery (one etcd
// read), so an edge that is gone is never called.
type mediaEdges struct {
	etcd    *clientv3.Client
	conns   *edgeConns
	chooser placement.Chooser
}

func newMediaEdges(etcd *clientv3.Client, opts []grpc.DialOption) *mediaEdges {
	return &mediaEdges{etcd: etcd, conns: newEdgeConns(opts)}
}

// list is the registered edges; connections to others are closed.
func (m *mediaEdges) list(ctx context.Context) ([]placement.Edge, error) {
	edges, err := placement.List(ctx, m.etcd)
	if err != nil {
		return nil, errcode.Unavailable(err)
	}
	m.conns.prune(edges)
	return edges, nil
}

// place chooses the edge for a new session of kind.
func (m *mediaEdges) place(ctx context.Context, kind placement.Kind) (string, mediav1.MediaServiceClient, error) {
	edges, err := m.list(ctx)
	if err != nil {
		return "", nil, err
	}
	addr := m.chooser.Choose(edges, kind)
	if addr == "" {
		return "", nil, errcode.New(errcode.ServiceUnavailable, "media service unavailable: no instance registered")
	}
	c, err := m.conns.get(addr)
	return addr, c, err
}

// owner is the edge that holds session id (SessionNotFound if no
// registered edge can: an ID without a registered edge's tag).
func (m *mediaEdges) owner(ctx context.Context, id string) (mediav1.MediaServiceClient, error) {
	edges, err := m.list(ctx)
	if err != nil {
		return nil, err
	}
	addr, found := mediasession.Owner(edges, id)
	if !found {
		return nil, errcode.Newf(errcode.SessionNotFound, "media session %q does not exist", id)
	}
	return m.conns.get(addr)
}

// publish starts a publish session at the chosen edge.
func (m *mediaEdges) publish(ctx context.Context, req *mediav1.PublishRequest, opts ...grpc.CallOption) (*mediav1.PublishResponse, error) {
	_, c, err := m.place(ctx, placement.Publisher)
	if err != nil {
		return nil, err
	}
	return c.Publish(ctx, req, opts...)
}

// play starts a play session at the chosen edge, marked placed so that it
// serves the play itself. Only an OnlyRTC play of a stream published on
// another edge is redirected, to the stream's origin (which only the
// registry knows), and followed here: a client always gets a session or an
// error, never an internal address.
func (m *mediaEdges) play(ctx context.Context, req *mediav1.PlayRequest, opts ...grpc.CallOption) (*mediav1.PlayResponse, error) {
	_, c, err := m.place(ctx, placement.Player)
	if err != nil {
		return nil, err
	}
	placed := proto.CloneOf(req)
	placed.Placed = true
	resp, err := c.Play(ctx, placed, opts...)
	if err != nil || resp.GetRedirectAddr() == "" {
		return resp, err
	}
	edges, err := m.list(ctx)
	if err != nil {
		return nil, err
	}
	registered := false
	for _, e := range edges {
		registered = registered || e.Addr == resp.GetRedirectAddr()
	}
	if !registered {
		return nil, errcode.New(errcode.ServiceUnavailable, "the stream's edge is gone: play again")
	}
	if c, err = m.conns.get(resp.GetRedirectAddr()); err != nil {
		return nil, err
	}
	if resp, err = c.Play(ctx, placed, opts...); err != nil {
		return nil, err
	}
	if resp.GetRedirectAddr() != "" || resp.GetSessionId() == "" {
		return nil, errcode.New(errcode.ServiceUnavailable, "the stream's edge could not be reached: play again")
	}
	return resp, nil
}

// Close closes the edge connections.
func (m *mediaEdges) Close() error { return m.conns.Close() }

// edgeConns keeps one client connection per media edge. Edges come and go
// (a restarted pod has a new address), so connections to edges no longer
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
func (e *edgeConns) prune(registered []placement.Edge) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for a, cc := range e.conns {
		found := false
		for _, r := range registered {
			found = found || r.Addr == a
		}
		if !found {
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
