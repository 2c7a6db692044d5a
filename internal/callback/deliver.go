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
	// Linger is how long a room worker keeps an idle room's claim, waiting
	// for its next callback, before it releases it; 2 s if zero. A busy
	// room's callbacks then cost no claim and release each (two etcd
	// writes), and an idle room's claim goes soon enough for its replica's
	// share of rooms to follow the load.
	Linger time.Duration
	// MaxSends bounds the attempts in flight (all rooms): rooms deliver in
	// parallel, and a business server behind a few thousand busy rooms gets
	// at most this many requests at once; 64 if zero.
	MaxSends int
	Meter    metric.MeterProvider
	Logger   *slog.Logger
	Now      func() time.Time
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

	// acks commits the room workers' outbox writes together (acks.go).
	acks *batcher
	// sends holds a token per attempt in flight (Config.MaxSends).
	sends chan struct{}

	mu sync.Mutex
	// active are the rooms with a worker here, and how to tell it the
	// room's outbox changed.
	active map[roomKey]chan struct{}
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
	if cfg.Linger <= 0 {
		cfg.Linger = 2 * time.Second
	}
	if cfg.MaxSends <= 0 {
		cfg.MaxSends = 64
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
	d := &Deliverer{cfg: cfg, log: cfg.Logger, sender: NewSender(cfg.Timeout, cfg.MaxSends),
		acks: newBatcher(cfg.Etcd), sends: make(chan struct{}, cfg.MaxSends),
		schedule: Schedule(cfg.RetryBase, cfg.Retries),
		failed:   sharedlease.New(cfg.Etcd, cfg.FailedTTL, min(time.Hour, cfg.FailedTTL/4)),
		active:   map[roomKey]chan struct{}{}, others: map[roomKey]bool{}, moved: make(chan struct{})}
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
	d.wg.Add(3)
	go func() { defer d.wg.Done(); d.acks.run(ctx) }()
	go func() { defer d.wg.Done(); d.follow(ctx, keys.LifecycleCursor, false, d.onCursor, nil) }()
	go func() { defer d.wg.Done(); d.follow(ctx, keys.CallbackClaims, true, d.onClaim, nil) }()
	// The outbox: every room with callbacks gets a worker somewhere. Its
	// keys are enough to find the rooms, and only new ones matter: etcd
	// leaves the deletes (one per callback delivered, as many as the puts)
	// out of the watch instead of sending them to every replica.
	d.follow(ctx, keys.CallbackOutbox, true, d.onOutbox, []clientv3.OpOption{clientv3.WithFilterDelete()}, clientv3.WithKeysOnly())
}

// follow reads prefix (or key) and then watches it, calling on for every
// key read and every change; it starts over after a broken watch and every
// Rescan, so nothing is missed for long. watchOpts apply to the watch only,
// getOpts to the read only.
func (d *Deliverer) follow(ctx context.Context, key string, prefix bool, on func(ctx context.Context, kv *mvccpb.KeyValue, deleted bool),
	watchOpts []clientv3.OpOption, getOpts ...clientv3.OpOption) {
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
		watch := d.cfg.Etcd.Watch(wctx, key, append(append(opts, watchOpts...), clientv3.WithRev(resp.Header.Revision+1))...)
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
