package callback

// A room worker: one room's callbacks, delivered by this replica in order.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/onair-dev/onair/internal/keys"
	"github.com/onair-dev/onair/internal/leaseclaim"
)

// start runs a worker for room k unless one runs here or elsewhere; if one
// runs here, it is told that the room's outbox changed.
func (d *Deliverer) start(ctx context.Context, k roomKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if kick, ok := d.active[k]; ok {
		select {
		case kick <- struct{}{}:
		default:
		}
		return
	}
	if d.others[k] || ctx.Err() != nil {
		return
	}
	kick := make(chan struct{}, 1)
	d.active[k] = kick
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.work(ctx, k, kick)
		d.mu.Lock()
		delete(d.active, k)
		// A callback written after the worker's last read and after its
		// claim's release kicked a worker that was about to go: start
		// another (start holds d.mu while kicking, so none is missed).
		again := len(kick) > 0
		d.mu.Unlock()
		if again {
			d.start(ctx, k)
		}
	}()
}

// roomWork is one room's delivery: its claim, and the outbox writes of the
// callbacks delivered (deletes) or retried (puts of their new state) not
// yet committed.
//
// A delivered callback's delete is committed before the next callback is
// sent, so a replica that dies mid-delivery leaves behind, to be sent again
// by the next holder, only the callback it was sending. The commits of
// every room worker of the replica share etcd transactions (acks.go): the
// wait is one commit's time, not one etcd write per callback.
type roomWork struct {
	d     *Deliverer
	claim *leaseclaim.Claim
	kick  chan struct{}
	ops   []clientv3.Op
}

// add collects an outbox write.
func (w *roomWork) add(op clientv3.Op) { w.ops = append(w.ops, op) }

// work claims room k and delivers its callbacks in order until none have
// come for Linger or the claim is lost.
func (d *Deliverer) work(ctx context.Context, k roomKey, kick chan struct{}) {
	claim, err := leaseclaim.Acquire(ctx, d.cfg.Etcd, keys.CallbackClaim(k.app, k.room), d.cfg.Lease())
	if errors.Is(err, leaseclaim.ErrHeld) {
		d.mu.Lock()
		d.others[k] = true
		d.mu.Unlock()
		return
	}
	if err != nil {
		return // no lease or etcd away: the rescan tries again
	}
	w := &roomWork{d: d, claim: claim, kick: kick}
	outbox := keys.CallbackRoomOutbox(k.app, k.room)
	// queue is the room's outbox as known here, in delivery order: the
	// callbacks not yet delivered. Only the claim's holder removes any, so
	// each read needs to fetch only those created since the last one.
	var queue []*Record
	var readRev int64
	var cur Cursor
	// read is false when every record read has been delivered: a callback
	// written since the last read kicks this worker (the outbox watch), so
	// it waits for that kick instead of reading again to find nothing.
	read := true
	for ctx.Err() == nil {
		if read {
			// The cursor first: the records read after it include every
			// one that reports a change before it.
			d.mu.Lock()
			cur = d.cursor
			d.mu.Unlock()
			recs, rev, err := d.pending(ctx, claim, outbox, readRev)
			if err != nil {
				if !d.sleep(ctx, time.Second) {
					return
				}
				continue
			}
			readRev = rev
			if len(recs) > 0 {
				queue = append(queue, recs...)
				sortRecords(queue)
			}
		}
		read = true
		if len(queue) == 0 {
			// Keep the claim a while: a busy room's next callback then
			// costs no claim and release (two etcd writes).
			if w.idle(ctx) {
				continue
			}
			if !w.flush(ctx) {
				return
			}
			released, err := claim.Release(ctx, clientv3.Compare(clientv3.CreateRevision(outbox), "=", 0).WithPrefix())
			if err == nil && released {
				return
			}
			// A callback came in meanwhile, or etcd is away: read again.
			if err != nil && !d.sleep(ctx, time.Second) {
				return
			}
			continue
		}
		n, ok := w.round(ctx, cur, queue)
		if !ok {
			return
		}
		queue = queue[n:]
		read = len(queue) > 0
	}
}

// idle waits up to Linger for the room's outbox to change: true if it did.
func (w *roomWork) idle(ctx context.Context) bool {
	t := time.NewTimer(w.d.cfg.Linger)
	defer t.Stop()
	select {
	case <-w.kick:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// round delivers the queue's callbacks in order as far as it can: up to
// the lifecycle cursor, and up to a callback that is not due or failed. It
// returns how many at the queue's front are done, their outbox writes
// committed. ok false: stop (the claim is lost or ctx ended).
func (w *roomWork) round(ctx context.Context, cur Cursor, queue []*Record) (n int, ok bool) {
	d := w.d
	for _, r := range queue {
		if !cur.Passed(r.order) {
			// The lifecycle watcher may still write a callback that
			// belongs before this one: wait for it, then read again.
			return n, d.waitCursor(ctx, r.order)
		}
		if wait := time.UnixMilli(r.NextAttemptMs).Sub(d.cfg.Now()); r.NextAttemptMs > 0 && wait > 0 {
			if !d.sleep(ctx, wait) {
				return n, false
			}
		}
		switch d.attempt(ctx, w, r) {
		case delivered:
			n++
		case later:
			// r keeps its new state (put in the outbox too); read what
			// came meanwhile, then try again in order.
			return n, w.flush(ctx)
		case stop:
			return n, false
		}
		if !w.flush(ctx) {
			return n, false
		}
	}
	return n, true
}

// flush commits the writes collected: false if the claim no longer holds
// (or ctx ended).
func (w *roomWork) flush(ctx context.Context) bool {
	if len(w.ops) == 0 {
		return ctx.Err() == nil
	}
	ops := w.ops
	w.ops = nil
	return w.commit(ctx, ops)
}

// commit applies ops while the claim holds: false if it no longer does (or
// ctx ended). etcd away: tried again, as the writes are right to repeat
// (deletes, and puts of a record's state).
func (w *roomWork) commit(ctx context.Context, ops []clientv3.Op) bool {
	for {
		held, err := w.d.acks.commit(ctx, w.claim.IsOwner(), ops)
		if err == nil {
			return held
		}
		if !w.d.sleep(ctx, 500*time.Millisecond) {
			return false
		}
	}
}

// pending reads the records of a room's outbox created after revision
// after (0: all), in delivery order, and the revision read at.
func (d *Deliverer) pending(ctx context.Context, claim *leaseclaim.Claim, outbox string, after int64) ([]*Record, int64, error) {
	var recs []*Record
	from, end := outbox, clientv3.GetPrefixRangeEnd(outbox)
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(512)}
		if after > 0 {
			opts = append(opts, clientv3.WithMinCreateRev(after+1))
		}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev)) // one snapshot across pages
		}
		list, err := d.cfg.Etcd.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, err
		}
		rev = list.Header.Revision
		for _, kv := range list.Kvs {
			r, err := Decode(kv)
			if err != nil {
				d.log.Error("callback: dropping an unreadable outbox entry", "err", err)
				_, _ = d.cfg.Etcd.Txn(ctx).If(claim.IsOwner()).Then(clientv3.OpDelete(string(kv.Key))).Commit()
				continue
			}
			recs = append(recs, r)
		}
		if !list.More || len(list.Kvs) == 0 {
			break
		}
		from = string(list.Kvs[len(list.Kvs)-1].Key) + "\x00"
	}
	sortRecords(recs)
	return recs, rev, nil
}

// waitCursor waits until the lifecycle cursor has passed rev.
func (d *Deliverer) waitCursor(ctx context.Context, rev int64) bool {
	for {
		d.mu.Lock()
		passed, moved := d.cursor.Passed(rev), d.moved
		d.mu.Unlock()
		if passed {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-moved:
		}
	}
}

// outcome is what an attempt leaves a room worker to do.
type outcome int

const (
	// delivered: the callback is done (its delete is among w's writes); go on.
	delivered outcome = iota
	// later: not done (its new state is among w's writes, or nothing changed);
	// read the room again.
	later
	// stop: the claim is lost or ctx ended.
	stop
)

// attempt makes one attempt at r and adds what it changes in the outbox to
// w's writes.
func (d *Deliverer) attempt(ctx context.Context, w *roomWork, r *Record) outcome {
	ev := r.Event
	attrs := metric.WithAttributes(attribute.String("event", ev.Event))
	t, err := d.cfg.Target(ctx, ev.AppID)
	if errors.Is(err, ErrNoTarget) {
		w.add(clientv3.OpDelete(r.key))
		d.dropped.Add(ctx, 1, attrs)
		return delivered
	}
	if err != nil {
		// Not the business server's fault: try again without counting.
		d.log.Warn("callback: cannot read the app's callback settings", "app", ev.AppID, "err", err)
		if !w.flush(ctx) || !d.sleep(ctx, time.Second) {
			return stop
		}
		return later
	}
	now := d.cfg.Now()
	select {
	case d.sends <- struct{}{}:
	case <-ctx.Done():
		return stop
	}
	status, err := d.sender.Send(ctx, t, ev, now)
	<-d.sends
	if ctx.Err() != nil {
		return stop
	}
	if err == nil {
		w.add(clientv3.OpDelete(r.key))
		d.sent.Add(ctx, 1, attrs)
		d.delay.Record(ctx, d.cfg.Now().Sub(time.UnixMilli(ev.EventTimeMs)).Seconds(), attrs)
		return delivered
	}
	r.Attempts++
	r.LastStatus, r.LastError = status, err.Error()
	if r.Attempts > len(d.schedule) {
		// Failed records live under a shared lease of their own: what is
		// done before it commits first.
		if !w.flush(ctx) {
			return stop
		}
		r.FailedMs = now.UnixMilli()
		r.NextAttemptMs = 0
		b, _ := json.Marshal(r)
		failedKey := keys.CallbackFailed(ev.AppID) + fmt.Sprintf("%020d-%s", r.FailedMs, ev.EventID)
		werr := d.failed.Do(ctx, func(lease clientv3.LeaseID) error {
			resp, err := d.cfg.Etcd.Txn(ctx).If(w.claim.IsOwner()).
				Then(clientv3.OpDelete(r.key), clientv3.OpPut(failedKey, string(b), clientv3.WithLease(lease))).Commit()
			if err == nil && !resp.Succeeded {
				return errLostClaim
			}
			return err
		})
		if werr != nil {
			return stop
		}
		d.failedN.Add(ctx, 1, attrs)
		d.log.Warn("callback: giving up", "app", ev.AppID, "room", ev.RoomID, "event", ev.Event, "event_id", ev.EventID, "attempts", r.Attempts, "err", err)
		return delivered
	}
	r.NextAttemptMs = now.Add(d.schedule[r.Attempts-1]).UnixMilli()
	b, _ := json.Marshal(r)
	w.add(clientv3.OpPut(r.key, string(b)))
	d.retried.Add(ctx, 1, attrs)
	d.log.Debug("callback: attempt failed; retrying", "event_id", ev.EventID, "attempt", r.Attempts, "err", err)
	return later
}

var errLostClaim = errors.New("callback: room claim lost")
