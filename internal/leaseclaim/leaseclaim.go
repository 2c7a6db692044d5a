// Package leaseclaim claims an etcd key under a lease: whoever's lease the
// key lives under holds it, until it deletes the key or its lease ends.
//
// It is the one "claim under my lease" of OnAir, shaped like etcd's
// client/v3/concurrency Mutex, without the queue: a claim is taken only if
// nobody holds it (Acquire fails at once with ErrHeld otherwise), and the
// holder guards every write it makes as the holder with IsOwner in the
// write's transaction. A holder that stalls past its lease's TTL loses the
// claim without knowing it; IsOwner then fails its writes, so two holders
// never both write as one.
//
// The room service's lifecycle watcher takes keys.LifecycleLeader this way,
// and the callback deliverer each room's keys.CallbackClaim.
package leaseclaim

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrHeld is Acquire's error when the key is held under another lease.
var ErrHeld = errors.New("leaseclaim: held under another lease")

// Claim is a key held under a lease.
type Claim struct {
	cli   *clientv3.Client
	key   string
	lease clientv3.LeaseID
}

// Acquire claims key under lease: it writes the key (empty, attached to
// lease) if nobody holds it, and succeeds as well if lease holds it already
// (a claim outlives the Claim value that took it: a holder may acquire
// again what it never released). It fails with ErrHeld if another lease
// holds it, and with etcd's error if etcd did not answer (the claim may or
// may not have been taken: acquire again).
func Acquire(ctx context.Context, cli *clientv3.Client, key string, lease clientv3.LeaseID) (*Claim, error) {
	if lease == clientv3.NoLease {
		return nil, errors.New("leaseclaim: no lease")
	}
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, "", clientv3.WithLease(lease))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		// Gone since the comparison (no kvs) counts as held: the caller
		// tries again when the key's deletion reaches it.
		if len(kvs) == 0 || clientv3.LeaseID(kvs[0].Lease) != lease {
			return nil, ErrHeld
		}
	}
	return &Claim{cli: cli, key: key, lease: lease}, nil
}

// Key is the claimed key.
func (c *Claim) Key() string { return c.key }

// Lease is the lease the claim lives under.
func (c *Claim) Lease() clientv3.LeaseID { return c.lease }

// IsOwner is the comparison that holds while the claim is still this
// lease's: put it in the If of every transaction that may happen only
// under the claim.
func (c *Claim) IsOwner() clientv3.Cmp {
	return clientv3.Compare(clientv3.LeaseValue(c.key), "=", c.lease)
}

// Release deletes the claim if it is still held and the comparisons also
// hold (e.g. "nothing is left to do", checked in the same transaction as
// the release, so no work arrives between the check and the release
// unnoticed). released is false if a comparison failed or the claim was
// lost already.
func (c *Claim) Release(ctx context.Context, also ...clientv3.Cmp) (released bool, err error) {
	resp, err := c.cli.Txn(ctx).If(append([]clientv3.Cmp{c.IsOwner()}, also...)...).Then(clientv3.OpDelete(c.key)).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}
