package gateway

import (
	"context"

	"google.golang.org/grpc"

	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
)

// mediaRouter is the MediaService behind the REST routes (mediaEdges):
// Publish and Play start a session at the edge internal/placement chooses,
// and the calls on a session (Stop, WatchSession) go to the edge that
// holds it, found by the tag its ID starts with (internal/mediasession).
type mediaRouter struct{ edges *mediaEdges }

// Close closes the connections to the edges.
func (m *mediaRouter) Close() error { return m.edges.Close() }

// Publish starts a publish session at the chosen edge.
func (m *mediaRouter) Publish(ctx context.Context, in *mediav1.PublishRequest, opts ...grpc.CallOption) (*mediav1.PublishResponse, error) {
	return m.edges.publish(ctx, in, opts...)
}

// Play starts a play session at the chosen edge (mediaEdges.play).
func (m *mediaRouter) Play(ctx context.Context, in *mediav1.PlayRequest, opts ...grpc.CallOption) (*mediav1.PlayResponse, error) {
	return m.edges.play(ctx, in, opts...)
}

// Stop ends the session at the edge that holds it.
func (m *mediaRouter) Stop(ctx context.Context, in *mediav1.StopRequest, opts ...grpc.CallOption) (*mediav1.StopResponse, error) {
	c, err := m.edges.owner(ctx, in.GetSessionId())
	if err != nil {
		return nil, err
	}
	return c.Stop(ctx, in, opts...)
}

// WatchSession follows the session at the edge that holds it.
func (m *mediaRouter) WatchSession(ctx context.Context, in *mediav1.WatchSessionRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[mediav1.SessionEvent], error) {
	c, err := m.edges.owner(ctx, in.GetSessionId())
	if err != nil {
		return nil, err
	}
	return c.WatchSession(ctx, in, opts...)
}
