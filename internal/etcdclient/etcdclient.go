// Package etcdclient opens the etcd client every OnAir process uses, made
// to fail fast when etcd cannot serve.
//
// A plain clientv3 call waits for its caller's deadline when the member it
// talks to has lost its leader or is stopped: it retries reads and blocks
// writes. OnAir answers users, so every unary call (KV and lease) carries
// etcd's require-leader flag, which makes a leaderless member refuse at
// once, and a short deadline of its own, which bounds a call to a stalled
// member. A member that does not answer is taken out of the endpoints
// while a quorum of others answers (health.go), and lease keep-alives
// follow the endpoints (keepalive.go). Watches are long-lived and left
// alone; the code that holds them recovers them itself.
package etcdclient

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultCallTimeout bounds one try of an etcd call. A healthy etcd answers
// in milliseconds; a try that takes a second went to a stalled member or
// lost its proposal to a leader that stopped, and is better made again (to
// another member, or to the new leader) than waited for.
const DefaultCallTimeout = time.Second

// Config says how to reach etcd.
type Config struct {
	// Endpoints are the members' client URLs.
	Endpoints []string
	// TLS, when set, is used to connect to the members.
	TLS *tls.Config
	// CallTimeout bounds every try of a unary call; DefaultCallTimeout if
	// zero.
	CallTimeout time.Duration
	// RideThrough is how long a call keeps trying while etcd elects a new
	// leader (see ride.go); DefaultRideThrough if zero, no retries if
	// negative.
	RideThrough time.Duration
}

// ParseEndpoints splits a comma-separated endpoint list, as flags give it.
func ParseEndpoints(s string) []string {
	var eps []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	return eps
}

// New connects to etcd. The connection is lazy: New does not wait for a
// member to answer.
func New(cfg Config) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         cfg.TLS,
		DialTimeout: 5 * time.Second,
		// Probing the connection ends it when its member stopped, and the
		// streams on it with it; gRPC pings no more often than every 10 s,
		// so a member that stalls for less is kept off calls by the guard
		// instead (health.go).
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, err
	}
	g := newGuard(cli, cfg)
	cli.KV = &kv{KV: cli.KV, g: g}
	cli.Lease = &lease{Lease: cli.Lease, g: g}
	return cli, nil
}

// ErrUnavailable is what a call returns when etcd did not answer within the
// call timeout while its caller was still waiting: no leader, or no member
// that answers. It is not a context error, so callers report it as the
// store being unavailable rather than as their own deadline.
var ErrUnavailable = errors.New("etcd did not answer in time (no leader or no reachable member)")

type kv struct {
	clientv3.KV
	g *guard
}

func (k *kv) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (resp *clientv3.PutResponse, err error) {
	err = k.g.run(ctx, idempotent, func(ctx context.Context) (err error) { resp, err = k.KV.Put(ctx, key, val, opts...); return err })
	return resp, err
}

func (k *kv) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (resp *clientv3.GetResponse, err error) {
	err = k.g.run(ctx, idempotent, func(ctx context.Context) (err error) { resp, err = k.KV.Get(ctx, key, opts...); return err })
	return resp, err
}

func (k *kv) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (resp *clientv3.DeleteResponse, err error) {
	err = k.g.run(ctx, idempotent, func(ctx context.Context) (err error) { resp, err = k.KV.Delete(ctx, key, opts...); return err })
	return resp, err
}

func (k *kv) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (resp *clientv3.CompactResponse, err error) {
	err = k.g.run(ctx, idempotent, func(ctx context.Context) (err error) { resp, err = k.KV.Compact(ctx, rev, opts...); return err })
	return resp, err
}

func (k *kv) Do(ctx context.Context, op clientv3.Op) (resp clientv3.OpResponse, err error) {
	kind := idempotent
	if op.IsTxn() {
		kind = conditional
	}
	err = k.g.run(ctx, kind, func(ctx context.Context) (err error) { resp, err = k.KV.Do(ctx, op); return err })
	return resp, err
}

// Txn collects the transaction and bounds only its Commit: the context
// given here is the one the commit runs under.
func (k *kv) Txn(ctx context.Context) clientv3.Txn {
	return &txn{ctx: ctx, kv: k}
}

type txn struct {
	ctx              context.Context
	kv               *kv
	cmps             []clientv3.Cmp
	thenOps, elseOps []clientv3.Op
}

func (t *txn) If(cs ...clientv3.Cmp) clientv3.Txn {
	t.cmps = append(t.cmps, cs...)
	return t
}

func (t *txn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.thenOps = append(t.thenOps, ops...)
	return t
}

func (t *txn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.elseOps = append(t.elseOps, ops...)
	return t
}

func (t *txn) Commit() (resp *clientv3.TxnResponse, err error) {
	kind := conditional
	if readOnly(t.thenOps) && readOnly(t.elseOps) {
		kind = idempotent
	}
	err = t.kv.g.run(t.ctx, kind, func(ctx context.Context) (err error) {
		resp, err = t.kv.KV.Txn(ctx).If(t.cmps...).Then(t.thenOps...).Else(t.elseOps...).Commit()
		return err
	})
	return resp, err
}

func readOnly(ops []clientv3.Op) bool {
	for _, op := range ops {
		if !op.IsGet() {
			return false
		}
	}
	return true
}

type lease struct {
	clientv3.Lease
	g *guard
}

// Grant is retried like a read: a grant whose reply was lost leaves a lease
// with no keys, which expires by itself.
func (l *lease) Grant(ctx context.Context, ttl int64) (resp *clientv3.LeaseGrantResponse, err error) {
	err = l.g.run(ctx, idempotent, func(ctx context.Context) (err error) { resp, err = l.Lease.Grant(ctx, ttl); return err })
	return resp, err
}

// Revoke is retried; a retry that finds the lease gone after a try whose
// reply was lost answers as that try would have.
func (l *lease) Revoke(ctx context.Context, id clientv3.LeaseID) (resp *clientv3.LeaseRevokeResponse, err error) {
	tries := 0
	err = l.g.run(ctx, idempotent, func(ctx context.Context) (err error) {
		tries++
		resp, err = l.Lease.Revoke(ctx, id)
		if tries > 1 && errors.Is(err, rpctypes.ErrLeaseNotFound) {
			resp, err = &clientv3.LeaseRevokeResponse{}, nil
		}
		return err
	})
	return resp, err
}

func (l *lease) TimeToLive(ctx context.Context, id clientv3.LeaseID, opts ...clientv3.LeaseOption) (resp *clientv3.LeaseTimeToLiveResponse, err error) {
	err = l.g.run(ctx, idempotent, func(ctx context.Context) (err error) { resp, err = l.Lease.TimeToLive(ctx, id, opts...); return err })
	return resp, err
}

func (l *lease) KeepAliveOnce(ctx context.Context, id clientv3.LeaseID) (resp *clientv3.LeaseKeepAliveResponse, err error) {
	err = l.g.run(ctx, idempotent, func(ctx context.Context) (err error) { resp, err = l.Lease.KeepAliveOnce(ctx, id); return err })
	return resp, err
}
