package callback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/onair-dev/onair/internal/keys"
	"github.com/onair-dev/onair/internal/sharedlease"
)

// ErrNoTarget is what Config.Target returns for an app that takes no
// callbacks (no callback_url, or the app is gone): its events are dropped.
var ErrNoTarget = errors.New("callback: the app has no callback URL")

// Config configures a Deliverer.
type Config struct {
	Etcd *clientv3.Client
	// Lease is the replica's current lease; room claims live under it, so
	// they end with the replica.
	Lease func() clientv3.LeaseID
	// Target looks an app's callback URL and secret up (ErrNoTarget: none).
	Target func(ctx context.Context, appID uint32) (Target, error)
	// RetryBase and Retries make the retry schedule (see Schedule):
	// DefaultRetryBase and DefaultRetries, the vendor's 2, 4, 8, 16, 32 s.
	RetryBase time.Duration
	Retries   int
	// Timeout bounds one attempt; 5 s if zero.
	Timeout time.Duration
	// Rescan is how often the outbox is scanned for rooms nobody delivers
	// (watches find them at once; this is the safety net); 10 s if zero.
	Rescan time.Duration
	// FailedTTL is how long a failed callback stays listed; 72 h if zero.
	FailedTTL time.Duration
	Meter     metric.MeterProvider
	Logger    *slog.Logger
	Now       func() time.Time
}

type roomKey struct {
	app  uint32
	room string
}

// Deliverer delivers the outbox. Every room replica runs one.
type Deliverer struct {
	cfg      Config
	log      *slog.Logger
	sender   *Sender
	schedule []time.Duration
	failed   *sharedlease.Pool

	mu     sync.Mutex
	active map[roomKey]bool
	// others are rooms claimed under another replica's lease.
	others map[roomKey]bool
	cursor Cursor
	// moved is closed and replaced whenever cursor moves.
	moved chan struct{}
	wg    sync.WaitGroup

	sent, retried, failedN, dropped metric.Int64Counter
	delay                           metric.Float64Histogram
}

// New returns a Deliverer; Run runs it.
func New(cfg Config) *Deliverer {
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = DefaultRetryBase
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = 10 * time.Second
	}
	if cfg.FailedTTL <= 0 {
		cfg.FailedTTL = 72 * time.Hour
	}
	if cfg.Meter == nil {
		cfg.Meter = noop.NewMeterProvider()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := &Deliverer{cfg: cfg, log: cfg.Logger, sender: NewSender(cfg.Timeout),
		schedule: Schedule(cfg.RetryBase, cfg.Retries),
		failed:   sharedlease.New(cfg.Etcd, cfg.FailedTTL, min(time.Hour, cfg.FailedTTL/4)),
		active:   map[roomKey]bool{}, others: map[roomKey]bool{}, moved: make(chan struct{})}
	m := cfg.Meter.Meter("github.com/onair-dev/onair/internal/callback")
	d.sent, _ = m.Int64Counter("onair.callbacks.sent", metric.WithDescription("callbacks the business server accepted (2xx)"))
	d.retried, _ = m.Int64Counter("onair.callbacks.retried", metric.WithDescription("failed callback attempts that will be retried"))
	d.failedN, _ = m.Int64Counter("onair.callbacks.failed", metric.WithDescription("callbacks given up on after every retry, kept as failed"))
	d.dropped, _ = m.Int64Counter("onair.callbacks.dropped", metric.WithDescription("callbacks of apps without a callback URL"))
	d.delay, _ = m.Float64Histogram("onair.callbacks.delivery_delay", metric.WithUnit("s"),
		metric.WithDescription("from the change to the business server's 2xx"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
	_, _ = m.Int64ObservableGauge("onair.callbacks.outbox_depth", metric.WithDescription("callbacks waiting in the outbox (all apps)"),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			resp, err := cfg.Etcd.Get(ctx, keys.CallbackOutbox, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				return err
			}
			o.Observe(resp.Count)
			return nil
		}))
	return d
}

// Run delivers until ctx ends, then waits for its room workers.
func (d *Deliverer) Run(ctx context.Context) {
	defer d.wg.Wait()
	d.wg.Add(2)
	go func() { defer d.wg.Done(); d.follow(ctx, keys.LifecycleCursor, false, d.onCursor) }()
	go func() { defer d.wg.Done(); d.follow(ctx, keys.CallbackClaims, true, d.onClaim) }()
	// The outbox: every room with callbacks gets a worker somewhere. Its
	// keys are enough to find the rooms.
	d.follow(ctx, keys.CallbackOutbox, true, d.onOutbox, clientv3.WithKeysOnly())
}

// follow reads prefix (or key) and then watches it, calling on for every
// key read and every change; it starts over after a broken watch and every
// Rescan, so nothing is missed for long.
func (d *Deliverer) follow(ctx context.Context, key string, prefix bool, on func(ctx context.Context, kv *mvccpb.KeyValue, deleted bool), getOpts ...clientv3.OpOption) {
	opts := []clientv3.OpOption{}
	if prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		resp, err := d.cfg.Etcd.Get(ctx, key, append(getOpts, opts...)...)
		if err != nil {
			d.sleep(ctx, backoff)
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		for _, kv := range resp.Kvs {
			on(ctx, kv, false)
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		watch := d.cfg.Etcd.Watch(wctx, key, append(opts, clientv3.WithRev(resp.Header.Revision+1))...)
		rescan := time.After(d.cfg.Rescan + rand.N(d.cfg.Rescan/4+1))
	events:
		for {
			select {
			case <-ctx.Done():
				break events
			case <-rescan:
				break events
			case w, ok := <-watch:
				if !ok || w.Err() != nil || w.Canceled {
					break events
				}
				for _, ev := range w.Events {
					on(ctx, ev.Kv, ev.Type == mvccpb.DELETE)
				}
			}
		}
		cancel()
	}
}

func (d *Deliverer) sleep(ctx context.Context, dt time.Duration) bool {
	t := time.NewTimer(dt)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (d *Deliverer) onCursor(_ context.Context, kv *mvccpb.KeyValue, deleted bool) {
	if deleted {
		return
	}
	c, err := ParseCursor(string(kv.Value))
	if err != nil {
		d.log.Warn("callback: lifecycle cursor", "err", err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.Rev > d.cursor.Rev || c.Rev == d.cursor.Rev && c.N > d.cursor.N {
		d.cursor = c
		close(d.moved)
		d.moved = make(chan struct{})
	}
}

// roomOf parses the app and room out of a key under prefix.
func roomOf(prefix, key string) (roomKey, bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return roomKey{}, false
	}
	a, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return roomKey{}, false
	}
	var app uint32
	if _, err := fmt.Sscan(a, &app); err != nil {
		return roomKey{}, false
	}
	room, _, _ := strings.Cut(rest, "/")
	return roomKey{app, room}, room != ""
}

func (d *Deliverer) onClaim(ctx context.Context, kv *mvccpb.KeyValue, deleted bool) {
	k, ok := roomOf(keys.CallbackClaims, string(kv.Key))
	if !ok {
		return
	}
	d.mu.Lock()
	if deleted {
		delete(d.others, k)
	} else if clientv3.LeaseID(kv.Lease) != d.cfg.Lease() {
		d.others[k] = true
	}
	d.mu.Unlock()
	if deleted {
		// Its deliverer finished or died: if callbacks are left, take over.
		// Only then: a claim released over an empty outbox would otherwise
		// wake every replica to claim and release it again, forever (two
		// etcd writes per round). A callback written meanwhile starts a
		// worker through the outbox watch.
		left, err := d.cfg.Etcd.Get(ctx, keys.CallbackRoomOutbox(k.app, k.room), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && left.Count == 0 {
			return
		}
		d.start(ctx, k)
	}
}

func (d *Deliverer) onOutbox(ctx context.Context, kv *mvccpb.KeyValue, deleted bool) {
	if deleted {
		return
	}
	if k, ok := roomOf(keys.CallbackOutbox, string(kv.Key)); ok {
		d.start(ctx, k)
	}
}

// start runs a worker for room k unless one runs here or elsewhere.
func (d *Deliverer) start(ctx context.Context, k roomKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active[k] || d.others[k] || ctx.Err() != nil {
		return
	}
	d.active[k] = true
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.work(ctx, k)
		d.mu.Lock()
		delete(d.active, k)
		d.mu.Unlock()
	}()
}

// work claims room k and delivers its callbacks in order until none are
// left or the claim is lost.
func (d *Deliverer) work(ctx context.Context, k roomKey) {
	lease := d.cfg.Lease()
	if lease == clientv3.NoLease {
		return
	}
	claim := keys.CallbackClaim(k.app, k.room)
	resp, err := d.cfg.Etcd.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(claim), "=", 0)).
		Then(clientv3.OpPut(claim, "", clientv3.WithLease(lease))).Else(clientv3.OpGet(claim)).Commit()
	if err != nil {
		return // the rescan tries again
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 || clientv3.LeaseID(kvs[0].Lease) != lease {
			d.mu.Lock()
			d.others[k] = true
			d.mu.Unlock()
			return
		}
		// Ours already, from an earlier worker of this replica.
	}
	held := clientv3.Compare(clientv3.LeaseValue(claim), "=", lease)
	outbox := keys.CallbackRoomOutbox(k.app, k.room)
	for ctx.Err() == nil {
		// The cursor first: the records read after it include every one
		// that reports a change before it.
		d.mu.Lock()
		cur := d.cursor
		d.mu.Unlock()
		recs, err := d.pending(ctx, held, outbox)
		if err != nil {
			if !d.sleep(ctx, time.Second) {
				return
			}
			continue
		}
		if len(recs) == 0 {
			rel, err := d.cfg.Etcd.Txn(ctx).If(held, clientv3.Compare(clientv3.CreateRevision(outbox), "=", 0).WithPrefix()).
				Then(clientv3.OpDelete(claim)).Commit()
			if err == nil && rel.Succeeded {
				return
			}
			// A callback came in meanwhile, or etcd is away: read again.
			if err != nil && !d.sleep(ctx, time.Second) {
				return
			}
			continue
		}
		for _, r := range recs {
			if !cur.Passed(r.order) {
				// The lifecycle watcher may still write a callback that
				// belongs before this one: wait for it, then read again.
				if !d.waitCursor(ctx, r.order) {
					return
				}
				break
			}
			done, ok := d.deliver(ctx, held, r)
			if !ok {
				return
			}
			if !done {
				break // retry later: read the room again, in order
			}
		}
	}
}

// pending reads a room's outbox in delivery order.
func (d *Deliverer) pending(ctx context.Context, held clientv3.Cmp, outbox string) ([]*Record, error) {
	var recs []*Record
	from, end := outbox, clientv3.GetPrefixRangeEnd(outbox)
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(512)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev)) // one snapshot across pages
		}
		list, err := d.cfg.Etcd.Get(ctx, from, opts...)
		if err != nil {
			return nil, err
		}
		rev = list.Header.Revision
		for _, kv := range list.Kvs {
			r, err := Decode(kv)
			if err != nil {
				d.log.Error("callback: dropping an unreadable outbox entry", "err", err)
				_, _ = d.cfg.Etcd.Txn(ctx).If(held).Then(clientv3.OpDelete(string(kv.Key))).Commit()
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
	return recs, nil
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

// deliver makes one attempt at r when it is due and records the outcome
// while the claim holds. done: r left the outbox; ok false: stop working
// the room (the claim is lost or ctx ended).
func (d *Deliverer) deliver(ctx context.Context, held clientv3.Cmp, r *Record) (done, ok bool) {
	if wait := time.UnixMilli(r.NextAttemptMs).Sub(d.cfg.Now()); r.NextAttemptMs > 0 && wait > 0 {
		if !d.sleep(ctx, wait) {
			return false, false
		}
	}
	ev := r.Event
	attrs := metric.WithAttributes(attribute.String("event", ev.Event))
	t, err := d.cfg.Target(ctx, ev.AppID)
	if errors.Is(err, ErrNoTarget) {
		if !d.commit(ctx, held, clientv3.OpDelete(r.key)) {
			return false, false
		}
		d.dropped.Add(ctx, 1, attrs)
		return true, true
	}
	if err != nil {
		// Not the business server's fault: try again without counting.
		d.log.Warn("callback: cannot read the app's callback settings", "app", ev.AppID, "err", err)
		return false, d.sleep(ctx, time.Second)
	}
	now := d.cfg.Now()
	status, err := d.sender.Send(ctx, t, ev, now)
	if ctx.Err() != nil {
		return false, false
	}
	if err == nil {
		if !d.commit(ctx, held, clientv3.OpDelete(r.key)) {
			return false, false
		}
		d.sent.Add(ctx, 1, attrs)
		d.delay.Record(ctx, d.cfg.Now().Sub(time.UnixMilli(ev.EventTimeMs)).Seconds(), attrs)
		return true, true
	}
	r.Attempts++
	r.LastStatus, r.LastError = status, err.Error()
	if r.Attempts > len(d.schedule) {
		r.FailedMs = now.UnixMilli()
		r.NextAttemptMs = 0
		b, _ := json.Marshal(r)
		failedKey := keys.CallbackFailed(ev.AppID) + fmt.Sprintf("%020d-%s", r.FailedMs, ev.EventID)
		werr := d.failed.Do(ctx, func(lease clientv3.LeaseID) error {
			resp, err := d.cfg.Etcd.Txn(ctx).If(held).
				Then(clientv3.OpDelete(r.key), clientv3.OpPut(failedKey, string(b), clientv3.WithLease(lease))).Commit()
			if err == nil && !resp.Succeeded {
				return errLostClaim
			}
			return err
		})
		if werr != nil {
			return false, false
		}
		d.failedN.Add(ctx, 1, attrs)
		d.log.Warn("callback: giving up", "app", ev.AppID, "room", ev.RoomID, "event", ev.Event, "event_id", ev.EventID, "attempts", r.Attempts, "err", err)
		return true, true
	}
	r.NextAttemptMs = now.Add(d.schedule[r.Attempts-1]).UnixMilli()
	b, _ := json.Marshal(r)
	if !d.commit(ctx, held, clientv3.OpPut(r.key, string(b))) {
		return false, false
	}
	d.retried.Add(ctx, 1, attrs)
	d.log.Debug("callback: attempt failed; retrying", "event_id", ev.EventID, "attempt", r.Attempts, "err", err)
	return false, true
}

var errLostClaim = errors.New("callback: room claim lost")

// commit applies op if the claim still holds.
func (d *Deliverer) commit(ctx context.Context, held clientv3.Cmp, op clientv3.Op) bool {
	for ctx.Err() == nil {
		resp, err := d.cfg.Etcd.Txn(ctx).If(held).Then(op).Commit()
		if err == nil {
			return resp.Succeeded
		}
		// etcd away: the claim may still be ours when it is back.
		if !d.sleep(ctx, 500*time.Millisecond) {
			return false
		}
	}
	return false
}

// ListFailed pages through an app's failed callbacks, oldest first; after
// is the previous page's next token.
func ListFailed(ctx context.Context, cli *clientv3.Client, appID uint32, size int, after string) ([]*Record, string, error) {
	if size <= 0 || size > 500 {
		size = 100
	}
	prefix := keys.CallbackFailed(appID)
	from := prefix
	if after != "" {
		from = prefix + after + "\x00"
	}
	resp, err := cli.Get(ctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithLimit(int64(size)+1))
	if err != nil {
		return nil, "", err
	}
	var out []*Record
	next := ""
	for i, kv := range resp.Kvs {
		if i == size {
			next = strings.TrimPrefix(string(resp.Kvs[i-1].Key), prefix)
			break
		}
		r := new(Record)
		if json.Unmarshal(kv.Value, r) == nil {
			out = append(out, r)
		}
	}
	return out, next, nil
}
