package callback

// Group commit of the deliverer's outbox writes.
//
// Every callback delivered is a delete from the outbox (a retry is a put of
// its new state), and each must hold only while its room's claim does.
// Written one by one, a busy deliverer makes one etcd transaction, one Raft
// proposal and one revision per callback, which is the etcd load of a login
// again. So the batcher commits the requests of every room worker of this
// replica (a worker has one in flight: the delete of the callback it just
// delivered, or a retried one's new state) as one transaction of nested
// ones, each guarded by its own room's claim (a lost claim fails its own
// request only).
//
// Bounds, and why:
//   - One batch in flight: a request waits at most for the batch being
//     committed and its own; an idle deliverer adds no delay, a busy one's
//     batches grow with the load (the room service's committer does the
//     same for sessions, services/room/commit.go).
//   - maxAckBatch requests per batch: etcd refuses more than --max-txn-ops
//     (128 by default) operations at one level of a transaction (a request
//     is one nested transaction of one or two writes).
//   - A room worker has at most one request in flight and rooms' outbox keys
//     are disjoint, so a batch never writes a key twice.

import (
	"context"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const maxAckBatch = 100

// ackReq is one room's guarded writes and, once committed, their outcome.
type ackReq struct {
	guard clientv3.Cmp
	ops   []clientv3.Op
	held  bool
	err   error
	done  chan struct{}
}

// batcher commits room workers' outbox writes together.
type batcher struct {
	etcd *clientv3.Client
	kick chan struct{}

	mu    sync.Mutex
	queue []*ackReq
}

func newBatcher(etcd *clientv3.Client) *batcher {
	return &batcher{etcd: etcd, kick: make(chan struct{}, 1)}
}

// commit applies ops if guard holds, with other rooms' writes. held false
// and no error: the guard failed (the room's claim is lost), nothing was
// written. An error: etcd did not answer; the writes may or may not have
// been made (all of them or none), and the same request is right to repeat.
func (b *batcher) commit(ctx context.Context, guard clientv3.Cmp, ops []clientv3.Op) (held bool, err error) {
	r := &ackReq{guard: guard, ops: ops, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, r)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.held, r.err
	case <-ctx.Done():
		// Left to the batcher, which finishes it or fails it as it stops.
		return false, ctx.Err()
	}
}

// run commits batches until ctx ends; requests then still queued fail.
func (b *batcher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			b.mu.Lock()
			q := b.queue
			b.queue = nil
			b.mu.Unlock()
			for _, r := range q {
				r.err = ctx.Err()
				close(r.done)
			}
			return
		case <-b.kick:
		}
		for {
			b.mu.Lock()
			n := min(len(b.queue), maxAckBatch)
			batch := b.queue[:n:n]
			b.queue = b.queue[n:]
			b.mu.Unlock()
			if n == 0 {
				break
			}
			b.commitBatch(ctx, batch)
		}
	}
}

func (b *batcher) commitBatch(ctx context.Context, batch []*ackReq) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ops := make([]clientv3.Op, len(batch))
	for i, r := range batch {
		ops[i] = clientv3.OpTxn([]clientv3.Cmp{r.guard}, r.ops, nil)
	}
	resp, err := b.etcd.Txn(cctx).Then(ops...).Commit()
	for i, r := range batch {
		if err != nil {
			r.err = err
		} else {
			r.held = resp.Responses[i].Response.(*pb.ResponseOp_ResponseTxn).ResponseTxn.Succeeded
		}
		close(r.done)
	}
}
