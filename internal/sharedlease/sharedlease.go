// Package sharedlease hands one etcd lease to many short-lived keys (room
// messages, used signature nonces), so writing such a key costs no lease
// grant. A lease is used for a while, then a new one is granted; each lives
// its TTL from its grant, so every key outlives its writing by at least
// TTL minus the rotation period.
package sharedlease

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Pool is a rotating shared lease. The zero value is not usable; use New.
type Pool struct {
	etcd   *clientv3.Client
	ttl    time.Duration
	rotate time.Duration

	mu    sync.Mutex
	id    clientv3.LeaseID
	until time.Time
}

// New returns a pool whose leases live ttl and are replaced every rotate.
func New(etcd *clientv3.Client, ttl, rotate time.Duration) *Pool {
	return &Pool{etcd: etcd, ttl: ttl, rotate: rotate}
}

// Get returns the current lease, granting a new one when it is due.
func (p *Pool) Get(ctx context.Context) (clientv3.LeaseID, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.id != 0 && time.Now().Before(p.until) {
		return p.id, nil
	}
	g, err := p.etcd.Grant(ctx, int64((p.ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, err
	}
	p.id, p.until = g.ID, time.Now().Add(p.rotate)
	return g.ID, nil
}

// Do runs write with the current lease. A lease can be gone before its
// rotation is due (the process stalled past its TTL, etcd was away), so
// when write fails because etcd no longer knows the lease, Do forgets it
// and runs write once more with a fresh one.
func (p *Pool) Do(ctx context.Context, write func(clientv3.LeaseID) error) error {
	id, err := p.Get(ctx)
	if err != nil {
		return err
	}
	err = write(id)
	if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return err
	}
	p.mu.Lock()
	if p.id == id {
		p.id = 0
	}
	p.mu.Unlock()
	if id, err = p.Get(ctx); err != nil {
		return err
	}
	return write(id)
}
