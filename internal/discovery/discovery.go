// Package discovery registers service instances in etcd and dials services
// by name: a gRPC resolver follows the registered instances in etcd.
//
// Every instance holds one lease. Its discovery entry is attached to that
// lease, so an instance that dies drops out of every caller's rotation when
// the lease expires, and one that shuts down cleanly drops out at once. The
// same lease is the one services attach their other live keys to.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
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

// Registration is one instance's presence in etcd.
type Registration struct {
	cli     *clientv3.Client
	service string
	key     string
	lease   clientv3.LeaseID
	cancel  context.CancelFunc
	done    chan struct{}

	mu   sync.Mutex
	lost bool
}

// Register puts addr under service with a fresh lease of the given TTL and
// keeps the lease alive until Close or ctx ends. meta is stored with the
// endpoint (a media edge puts its load there).
func Register(ctx context.Context, cli *clientv3.Client, service, addr string, ttl time.Duration, meta any) (*Registration, error) {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	grant, err := cli.Grant(ctx, secs)
	if err != nil {
		return nil, fmt.Errorf("discovery: grant lease: %w", err)
	}
	em, err := endpoints.NewManager(cli, prefix(service))
	if err != nil {
		return nil, err
	}
	key := prefix(service) + "/" + addr
	if err := em.AddEndpoint(ctx, key, endpoints.Endpoint{Addr: addr, Metadata: meta}, clientv3.WithLease(grant.ID)); err != nil {
		_, _ = cli.Revoke(context.WithoutCancel(ctx), grant.ID)
		return nil, fmt.Errorf("discovery: register %s: %w", service, err)
	}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ch, err := cli.KeepAlive(kctx, grant.ID)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("discovery: keep lease alive: %w", err)
	}
	r := &Registration{cli: cli, service: service, key: key, lease: grant.ID, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for range ch {
		}
		// The channel closes when kctx ends or the lease is gone for good.
		if kctx.Err() == nil {
			r.mu.Lock()
			r.lost = true
			r.mu.Unlock()
			slog.Error("discovery: lease lost", "service", service, "addr", addr)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-kctx.Done():
		}
	}()
	return r, nil
}

// Lease is the instance's lease; keys attached to it live as long as the
// instance does.
func (r *Registration) Lease() clientv3.LeaseID { return r.lease }

// Lost reports whether the lease expired while the instance was running
// (for example after a long partition from etcd).
func (r *Registration) Lost() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost
}

// Done is closed when the lease is no longer kept alive.
func (r *Registration) Done() <-chan struct{} { return r.done }

// UpdateMeta rewrites the endpoint's metadata under the same lease.
func (r *Registration) UpdateMeta(ctx context.Context, addr string, meta any) error {
	em, err := endpoints.NewManager(r.cli, prefix(r.service))
	if err != nil {
		return err
	}
	return em.AddEndpoint(ctx, r.key, endpoints.Endpoint{Addr: addr, Metadata: meta}, clientv3.WithLease(r.lease))
}

// Abandon stops keeping the lease alive without revoking it, as a crashed
// process would: the instance's keys vanish when the lease expires.
func (r *Registration) Abandon() {
	r.cancel()
	<-r.done
}

// Close stops the keep-alive and revokes the lease, which removes the
// endpoint and every key the instance attached to it.
func (r *Registration) Close(ctx context.Context) error {
	r.cancel()
	<-r.done
	_, err := r.cli.Revoke(ctx, r.lease)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("discovery: revoke: %w", err)
	}
	return nil
}

// Dial returns a client connection to service that follows its registered
// instances and balances calls over them round-robin.
func Dial(cli *clientv3.Client, service string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	all := append([]grpc.DialOption{
		grpc.WithResolvers(builder{cli: cli}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
	}, opts...)
	return grpc.NewClient(scheme+"://"+prefix(service), all...)
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
