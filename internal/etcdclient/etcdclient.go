// Package etcdclient opens the etcd client every OnAir process uses, made
// to fail fast when etcd cannot serve.
//
// A plain clientv3 call waits for its caller's deadline when the member it
// talks to has lost its leader or is stopped: it retries reads and blocks
// writes. OnAir answers users, so every unary call (KV and lease) carries
// etcd's require-leader flag, which makes a leaderless member refuse at
// once, and a short deadline of its own, which bounds a call to a stalled
// member. Watches and lease keep-alives are long-lived and left alone; the
// code that holds them recovers them itself.
package etcdclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultCallTimeout bounds one etcd call. A healthy etcd answers in
// milliseconds. Without a leader, reads are retried inside the client until
// this runs out, so it is what a request that needs etcd waits before it
// fails: well inside the two seconds OnAir promises.
const DefaultCallTimeout = time.Second

// Config says how to reach etcd.
type Config struct {
	// Endpoints are the members' client URLs.
	Endpoints []string
	// TLS, when set, is used to connect to the members.
	TLS *tls.Config
	// CallTimeout bounds every unary call; DefaultCallTimeout if zero.
	CallTimeout time.Duration
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
		// Probing the connection finds a stopped member within seconds, so
		// calls stop going to it.
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, err
	}
	timeout := cfg.CallTimeout
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	cli.KV = &kv{KV: cli.KV, timeout: timeout}
	cli.Lease = &lease{Lease: cli.Lease, timeout: timeout}
	return cli, nil
}

// ErrUnavailable is what a call returns when etcd did not answer within the
// call timeout while its caller was still waiting: no leader, or no member
// that answers. It is not a context error, so callers report it as the
// store being unavailable rather than as their own deadline.
var ErrUnavailable = errors.New("etcd did not answer in time (no leader or no reachable member)")

// bound gives a call the require-leader flag and the call deadline, unless
// the caller's deadline is sooner. done turns the call's error into
// ErrUnavailable when it was this deadline, not the caller's, that ended it.
func bound(ctx context.Context, timeout time.Duration) (context.Context, func(error) error) {
	cctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), timeout)
	return cctx, func(err error) error {
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return err
	}
}

type kv struct {
	clientv3.KV
	timeout time.Duration
}

func (k *kv) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	ctx, done := bound(ctx, k.timeout)
	resp, err := k.KV.Put(ctx, key, val, opts...)
	return resp, done(err)
}

func (k *kv) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, done := bound(ctx, k.timeout)
	resp, err := k.KV.Get(ctx, key, opts...)
	return resp, done(err)
}

func (k *kv) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	ctx, done := bound(ctx, k.timeout)
	resp, err := k.KV.Delete(ctx, key, opts...)
	return resp, done(err)
}

func (k *kv) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error) {
	ctx, done := bound(ctx, k.timeout)
	resp, err := k.KV.Compact(ctx, rev, opts...)
	return resp, done(err)
}

func (k *kv) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	ctx, done := bound(ctx, k.timeout)
	resp, err := k.KV.Do(ctx, op)
	return resp, done(err)
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

func (t *txn) Commit() (*clientv3.TxnResponse, error) {
	ctx, done := bound(t.ctx, t.kv.timeout)
	resp, err := t.kv.KV.Txn(ctx).If(t.cmps...).Then(t.thenOps...).Else(t.elseOps...).Commit()
	return resp, done(err)
}

type lease struct {
	clientv3.Lease
	timeout time.Duration
}

func (l *lease) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	ctx, done := bound(ctx, l.timeout)
	resp, err := l.Lease.Grant(ctx, ttl)
	return resp, done(err)
}

func (l *lease) Revoke(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseRevokeResponse, error) {
	ctx, done := bound(ctx, l.timeout)
	resp, err := l.Lease.Revoke(ctx, id)
	return resp, done(err)
}

func (l *lease) TimeToLive(ctx context.Context, id clientv3.LeaseID, opts ...clientv3.LeaseOption) (*clientv3.LeaseTimeToLiveResponse, error) {
	ctx, done := bound(ctx, l.timeout)
	resp, err := l.Lease.TimeToLive(ctx, id, opts...)
	return resp, done(err)
}

func (l *lease) KeepAliveOnce(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
	ctx, done := bound(ctx, l.timeout)
	resp, err := l.Lease.KeepAliveOnce(ctx, id)
	return resp, done(err)
}
