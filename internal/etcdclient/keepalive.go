package etcdclient

// Keeping a lease alive through a stalled member and a leader change.
//
// clientv3's KeepAlive sends every lease's keep-alives on one long-lived
// stream, opened on whichever member the balancer picked. When that member
// stalls, the stream stays open and silent until gRPC's keepalive gives up
// on the connection (12 s, health.go), longer than a service's lease: the
// lease expires though a quorum was there all along. So KeepAlive here
// renews with KeepAliveOnce, a short stream each, through the guard: a try
// that goes to a stalled member times out and is made again elsewhere, and
// one that finds no leader is made again until a leader answers (a new
// leader extends every lease by an election timeout when it takes over,
// so a lease whose TTL is longer than the time to reach it survives).

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// minRenewEvery bounds how often one lease is renewed, whatever its TTL.
const minRenewEvery = 500 * time.Millisecond

// KeepAlive keeps id alive until ctx ends or etcd says the lease is gone,
// sending each renewal's response on the returned channel and closing it at
// the end, as clientv3's does. The first renewal is made before it returns,
// so a lease that is already gone is an error here. The channel also
// closes when a renewal fails for lack of a quorum (ErrUnavailable) after
// the lease's TTL has passed since the last one that succeeded: the lease
// is then likely gone, and its holder finds out by asking etcd.
func (l *lease) KeepAlive(ctx context.Context, id clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	first, err := l.KeepAliveOnce(tryCtx(ctx, 0), id)
	if err != nil {
		return nil, err
	}
	ch := make(chan *clientv3.LeaseKeepAliveResponse, 1)
	go l.keepAlive(ctx, id, first, ch)
	return ch, nil
}

func (l *lease) keepAlive(ctx context.Context, id clientv3.LeaseID, last *clientv3.LeaseKeepAliveResponse, ch chan<- *clientv3.LeaseKeepAliveResponse) {
	defer close(ch)
	lastAt := time.Now()
	deliver(ch, last)
	// Renew at a third of the TTL, as clientv3 does: two renewals can be
	// lost before the lease is at risk.
	wait := max(time.Duration(last.TTL)*time.Second/3, minRenewEvery)
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		resp, err := l.KeepAliveOnce(tryCtx(ctx, last.TTL), id)
		switch {
		case err == nil:
			last, lastAt = resp, time.Now()
			deliver(ch, resp)
			wait = max(time.Duration(resp.TTL)*time.Second/3, minRenewEvery)
		case ctx.Err() != nil, errors.Is(err, rpctypes.ErrLeaseNotFound):
			return
		case time.Since(lastAt) > time.Duration(last.TTL)*time.Second:
			return
		default:
			// The guard has ridden through what it could; try again
			// soon, while the lease may still be there.
			wait = minRenewEvery
		}
	}
}

// tryCtx bounds each try of a renewal to a quarter of the lease's TTL
// (and a fifth of a second at least): a renewal answers in milliseconds,
// and one lost to a stalled member must leave time, before the lease
// expires, for a try elsewhere. ttl 0 (not known yet) keeps the guard's
// per-try deadline.
func tryCtx(ctx context.Context, ttl int64) context.Context {
	if ttl <= 0 {
		return ctx
	}
	return context.WithValue(ctx, tryTimeoutKey{}, max(time.Duration(ttl)*time.Second/4, 200*time.Millisecond))
}

// deliver hands a response to a reader that keeps up and drops it for one
// that does not, as clientv3 does: only the latest matters.
func deliver(ch chan<- *clientv3.LeaseKeepAliveResponse, resp *clientv3.LeaseKeepAliveResponse) {
	select {
	case ch <- resp:
	default:
	}
}
