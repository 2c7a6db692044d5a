package room

// Group commit: the session writes of many clients in one etcd transaction.
//
// A login and a logout are each one conditional transaction (login.go,
// ending.go). Committed one by one, every one of them is a Raft proposal,
// a WAL write and a revision, and under a flash crowd etcd spends its CPU
// on the per-request part. So a replica's committer queues them and commits
// what has queued as one transaction whose operations are the requests'
// own transactions, nested: each keeps its own comparisons and its own
// outcome (etcd evaluates a nested transaction's If by itself), and the
// batch costs one proposal and one revision.
//
// Bounds, and why:
//   - One batch in flight at a time. A request waits at most for the batch
//     being committed (a few milliseconds on a healthy etcd) and its own:
//     with nothing in flight it goes at once, so an idle replica adds no
//     delay, and under load the batch size grows with the load by itself
//     (the classic group commit). One in flight also keeps requests that
//     touch the same key in the order they arrived.
//   - maxBatch requests per batch: etcd refuses a transaction with more
//     than --max-txn-ops (128 by default) operations at one level, and a
//     request larger than 1.5 MiB; 64 requests of a few KiB each stay well
//     inside both and already make a revision cost 1/64 of a login.
//   - Requests that write a key another request of the batch writes wait
//     for the next batch: etcd refuses a transaction whose branches write
//     one key twice, and the next batch sees the first one's outcome.
//
// Every request must check its own outcome (etcdclient.Retryable): a batch
// whose reply was lost in an etcd leader change is committed again, and its
// requests' comparisons then fail, as their callers expect.
//
// A batch that etcd refuses for one request's sake (a lease that expired,
// say) is committed again one request at a time, so the others do not fail
// with it.

import (
	"context"
	"errors"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/etcdclient"
)

// maxBatch bounds the requests of one batch (see above).
const maxBatch = 64

// commitTimeout bounds one batch's commit, ride-through of a leader change
// included (etcdclient.DefaultRideThrough), for requests whose callers have
// gone.
const commitTimeout = 10 * time.Second

// txnReq is one request's transaction and, once committed, its outcome.
type txnReq struct {
	ctx       context.Context
	cmps      []clientv3.Cmp
	then, els []clientv3.Op
	writes    []string
	resp      *clientv3.TxnResponse
	err       error
	done      chan struct{}
	ranged    bool // writes a range: alone in its batch
	cancelled bool
}

// committer batches a replica's session transactions.
type committer struct {
	etcd *clientv3.Client
	kick chan struct{}

	mu    sync.Mutex
	queue []*txnReq
}

func newCommitter(etcd *clientv3.Client) *committer {
	return &committer{etcd: etcd, kick: make(chan struct{}, 1)}
}

// Txn commits cmps/then/els with other requests and returns its own
// outcome; the response's header is the batch's.
func (c *committer) Txn(ctx context.Context, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	r := &txnReq{ctx: ctx, cmps: cmps, then: then, els: els, done: make(chan struct{})}
	r.writes, r.ranged = writesOf(append(append([]clientv3.Op(nil), then...), els...))
	c.mu.Lock()
	c.queue = append(c.queue, r)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.resp, r.err
	case <-ctx.Done():
		c.mu.Lock()
		r.cancelled = true // dropped if still queued; committed if taken
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

// run commits batches until ctx ends.
func (c *committer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			c.mu.Lock()
			q := c.queue
			c.queue = nil
			c.mu.Unlock()
			for _, r := range q {
				r.err = ctx.Err()
				close(r.done)
			}
			return
		case <-c.kick:
		}
		for {
			batch := c.take()
			if len(batch) == 0 {
				break
			}
			c.commit(ctx, batch)
		}
	}
}

// take removes the next batch from the queue: requests in order, those
// that write what an earlier one of the batch writes left for later.
func (c *committer) take() []*txnReq {
	c.mu.Lock()
	defer c.mu.Unlock()
	var batch, rest []*txnReq
	written := map[string]bool{}
	for _, r := range c.queue {
		if r.cancelled {
			r.err = context.Canceled
			close(r.done)
			continue
		}
		if len(batch) == maxBatch || r.ranged && len(batch) > 0 || len(batch) == 1 && batch[0].ranged || conflicts(written, r.writes) {
			rest = append(rest, r)
			continue
		}
		for _, k := range r.writes {
			written[k] = true
		}
		batch = append(batch, r)
	}
	c.queue = rest
	return batch
}

func conflicts(written map[string]bool, keys []string) bool {
	for _, k := range keys {
		if written[k] {
			return true
		}
	}
	return false
}

// writesOf lists the keys ops put or delete, nested transactions
// included, and whether one of them is a range.
func writesOf(ops []clientv3.Op) (keys []string, ranged bool) {
	for _, op := range ops {
		switch {
		case op.IsTxn():
			_, then, els := op.Txn()
			k, rg := writesOf(append(append([]clientv3.Op(nil), then...), els...))
			keys, ranged = append(keys, k...), ranged || rg
		case op.IsPut():
			keys = append(keys, string(op.KeyBytes()))
		case op.IsDelete():
			keys = append(keys, string(op.KeyBytes()))
			ranged = ranged || len(op.RangeBytes()) > 0
		}
	}
	return keys, ranged
}

// commit commits batch as one transaction and hands each request its part.
func (c *committer) commit(ctx context.Context, batch []*txnReq) {
	cctx, cancel := context.WithTimeout(etcdclient.Retryable(ctx), commitTimeout)
	defer cancel()
	ops := make([]clientv3.Op, len(batch))
	for i, r := range batch {
		ops[i] = clientv3.OpTxn(r.cmps, r.then, r.els)
	}
	resp, err := c.etcd.Txn(cctx).Then(ops...).Commit()
	if err != nil && len(batch) > 1 && refusedForOne(err) {
		for _, r := range batch {
			c.commit(ctx, []*txnReq{r})
		}
		return
	}
	for i, r := range batch {
		if err != nil {
			r.err = err
		} else {
			sub := resp.Responses[i].Response.(*pb.ResponseOp_ResponseTxn).ResponseTxn
			sub.Header = resp.Header
			r.resp = (*clientv3.TxnResponse)(sub)
		}
		close(r.done)
	}
}

// refusedForOne reports whether etcd refused a batch for what one of its
// requests holds (a lease it no longer knows, a value too large), rather
// than for being away.
func refusedForOne(err error) bool {
	return errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrRequestTooLarge) ||
		errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrDuplicateKey)
}
