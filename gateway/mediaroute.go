package gateway

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/mediasession"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
)

// mediaRouter is the MediaService behind the REST routes. A media session
// lives in the memory of one edge, so the calls on a session (Stop,
// WatchSession) go to the edge that holds it, found by the tag its ID
// starts with (internal/mediasession), not round-robin over every edge,
// which would reach another edge that answers "no such session". Publish
// and Play start sessions and go round-robin: whichever edge answers holds
// the session, or, for Play, the edge that one redirects to.
type mediaRouter struct {
	// rr balances over every registered edge: Publish, Play, and session
	// IDs without a tag (from an edge older than tags).
	rr    mediav1.MediaServiceClient
	etcd  *clientv3.Client
	conns *edgeConns
}

func newMediaRouter(rr *grpc.ClientConn, etcd *clientv3.Client, opts []grpc.DialOption) *mediaRouter {
	return &mediaRouter{rr: mediav1.NewMediaServiceClient(rr), etcd: etcd, conns: newEdgeConns(opts)}
}

// owner is the MediaService of the edge that holds session id.
func (m *mediaRouter) owner(ctx context.Context, id string) (mediav1.MediaServiceClient, error) {
	if _, tagged := mediasession.Tag(id); !tagged {
		return m.rr, nil
	}
	edges, err := discovery.Instances(ctx, m.etcd, discovery.Media)
	if err != nil {
		return nil, errcode.Unavailable(err)
	}
	addr, _, found := mediasession.Edge(edges, id)
	if !found {
		// The edge that held the session is gone, and the session with it.
		prune(m.conns, edges)
		return nil, errcode.Newf(errcode.SessionNotFound, "media session %q does not exist", id)
	}
	return m.conn(edges, addr)
}

// edge is the MediaService of the registered edge at addr.
func (m *mediaRouter) edge(ctx context.Context, addr string) (mediav1.MediaServiceClient, error) {
	edges, err := discovery.Instances(ctx, m.etcd, discovery.Media)
	if err != nil {
		return nil, errcode.Unavailable(err)
	}
	if _, ok := edges[addr]; !ok {
		prune(m.conns, edges)
		return nil, errcode.New(errcode.ServiceUnavailable, "the stream's edge is gone: play again")
	}
	return m.conn(edges, addr)
}

// conn is a connection to addr, one of the registered edges.
func (m *mediaRouter) conn(edges map[string]any, addr string) (mediav1.MediaServiceClient, error) {
	prune(m.conns, edges)
	return m.conns.get(addr)
}

// Close closes the connections to single edges.
func (m *mediaRouter) Close() error { return m.conns.Close() }

// Publish starts a publish session on any edge.
func (m *mediaRouter) Publish(ctx context.Context, in *mediav1.PublishRequest, opts ...grpc.CallOption) (*mediav1.PublishResponse, error) {
	return m.rr.Publish(ctx, in, opts...)
}

// Play starts a play session on any edge and, when that edge redirects,
// at the edge it names, as WHEP does: a REST client could not follow the
// redirect (an edge's internal gRPC address, which should not leave the
// cluster anyway), so it always gets a session or an error.
func (m *mediaRouter) Play(ctx context.Context, in *mediav1.PlayRequest, opts ...grpc.CallOption) (*mediav1.PlayResponse, error) {
	resp, err := m.rr.Play(ctx, in, opts...)
	if err != nil || resp.GetRedirectAddr() == "" {
		return resp, err
	}
	c, err := m.edge(ctx, resp.GetRedirectAddr())
	if err != nil {
		return nil, err
	}
	placed := proto.CloneOf(in)
	placed.Placed = true
	if resp, err = c.Play(ctx, placed, opts...); err != nil {
		return nil, err
	}
	if resp.GetRedirectAddr() != "" || resp.GetSessionId() == "" {
		return nil, errcode.New(errcode.ServiceUnavailable, "the stream's edge could not be reached: play again")
	}
	return resp, nil
}

// Stop ends the session at the edge that holds it.
func (m *mediaRouter) Stop(ctx context.Context, in *mediav1.StopRequest, opts ...grpc.CallOption) (*mediav1.StopResponse, error) {
	c, err := m.owner(ctx, in.GetSessionId())
	if err != nil {
		return nil, err
	}
	return c.Stop(ctx, in, opts...)
}

// WatchSession follows the session at the edge that holds it.
func (m *mediaRouter) WatchSession(ctx context.Context, in *mediav1.WatchSessionRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[mediav1.SessionEvent], error) {
	c, err := m.owner(ctx, in.GetSessionId())
	if err != nil {
		return nil, err
	}
	return c.WatchSession(ctx, in, opts...)
}
