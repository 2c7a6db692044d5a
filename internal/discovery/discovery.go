// Package discovery registers service instances in etcd and dials services
// by name: a gRPC resolver follows the registered instances in etcd.
//
// Every instance holds one lease (Instance). Its discovery entries are
// attached to that lease, so an instance that dies drops out of every
// caller's rotation when the lease expires, and one that shuts down cleanly
// drops out at once. The same lease is the one services attach their other
// live keys to. A live instance that loses its lease heals: see Instance.
package discovery

import (
	"context"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/onair-dev/onair/errcode"
)

// Service names as they appear in etcd.
const (
	Auth   = "auth"
	Room   = "room"
	Stream = "stream"
	Media  = "media"
)

// DefaultTTL is the lease TTL used when none is configured: short enough that
// a dead replica leaves rotation within seconds.
const DefaultTTL = 5 * time.Second

// prefix is where service endpoints live; the resolver watches one prefix per
// service.
func prefix(service string) string { return "/onair/services/" + service }

// Dial returns a client connection to service that follows its registered
// instances and balances calls over them round-robin.
//
// A call that finds no instance fails at once with Unavailable and the
// vendor's ServiceUnavailable code, in words that name the service ("room
// service unavailable: no instance registered") rather than gRPC's
// balancer internals.
func Dial(cli *clientv3.Client, service string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	b := builder{cli: cli, instances: new(atomic.Int64)}
	name := func(err error) error { return nameUnavailable(err, service, b.instances.Load()) }
	all := append([]grpc.DialOption{
		grpc.WithResolvers(b),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return name(invoker(ctx, method, req, reply, cc, opts...))
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			return cs, name(err)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
	}, opts...)
	return grpc.NewClient(scheme+"://"+prefix(service), all...)
}

// nameUnavailable rewords an Unavailable that gRPC raised itself (no
// vendor code: the call never reached a service that could answer).
func nameUnavailable(err error, service string, instances int64) error {
	if status.Code(err) != codes.Unavailable || errcode.Of(err) != 0 {
		return err
	}
	if instances == 0 {
		return errcode.Newf(errcode.ServiceUnavailable, "%s service unavailable: no instance registered", service)
	}
	return errcode.Newf(errcode.ServiceUnavailable, "%s service unavailable: no instance reachable (%s)", service, status.Convert(err).Message())
}

// Instances lists the registered addresses of service and their metadata.
func Instances(ctx context.Context, cli *clientv3.Client, service string) (map[string]any, error) {
	em, err := endpoints.NewManager(cli, prefix(service))
	if err != nil {
		return nil, err
	}
	eps, err := em.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(eps))
	for _, ep := range eps {
		out[ep.Addr] = ep.Metadata
	}
	return out, nil
}
