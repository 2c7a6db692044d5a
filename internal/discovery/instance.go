package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/client/v3/naming/endpoints"
)

// AttachFunc puts keys that belong to a live instance under its lease. It
// runs when it is attached and again whenever the instance takes a fresh
// lease, so it must be idempotent and write only what is still true.
type AttachFunc func(ctx context.Context, lease clientv3.LeaseID) error

// InstanceConfig configures an Instance.
type InstanceConfig struct {
	// TTL of the lease; DefaultTTL if zero. A stall longer than this loses
	// the lease.
	TTL time.Duration
	// OnServing is told when the instance stops (false) or starts again
	// (true) holding a lease with everything attached; it is called from
	// one goroutine, in order.
	OnServing func(serving bool)
	// Logger; slog.Default() if nil.
	Logger *slog.Logger
}

// Instance is one process's presence in etcd: a lease kept alive by a
// concurrency.Session and the keys attached to it.
//
// A live process whose lease is lost (its keep-alive ended because etcd was
// away or the process stalled past the TTL) is not dead. The instance goes
// not serving, takes the lease back if etcd still holds it or a fresh one
// if not, runs every AttachFunc again under it, and serves again; it keeps
// trying, with jittered backoff, for as long as the process runs.
type Instance struct {
	cli *clientv3.Client
	ttl int
	cfg InstanceConfig
	log *slog.Logger

	mu       sync.Mutex
	sess     *concurrency.Session
	attached []AttachFunc
	serving  bool

	cancel context.CancelFunc
	done   chan struct{}
}

// NewInstance takes a lease and keeps it, healing as described on
// Instance, until Close, Abandon or ctx ends. It fails if etcd does not
// grant the first lease.
func NewInstance(ctx context.Context, cli *clientv3.Client, cfg InstanceConfig) (*Instance, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	i := &Instance{cli: cli, ttl: int((cfg.TTL + time.Second - 1) / time.Second), cfg: cfg, log: cfg.Logger,
		serving: true, done: make(chan struct{})}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	i.cancel = cancel
	sess, err := i.session(runCtx, clientv3.NoLease)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("discovery: grant lease: %w", err)
	}
	i.sess = sess
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-runCtx.Done():
		}
	}()
	go i.run(runCtx)
	return i, nil
}

// session keeps lease alive, or a new lease when lease is NoLease.
func (i *Instance) session(ctx context.Context, lease clientv3.LeaseID) (*concurrency.Session, error) {
	return concurrency.NewSession(i.cli, concurrency.WithTTL(i.ttl), concurrency.WithContext(ctx), concurrency.WithLease(lease))
}

// run waits for the session to end and heals it, until ctx ends.
func (i *Instance) run(ctx context.Context) {
	defer close(i.done)
	for {
		i.mu.Lock()
		sess := i.sess
		i.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-sess.Done():
		}
		if ctx.Err() != nil {
			return
		}
		i.setServing(false)
		i.log.Warn("discovery: lease lost; going not serving until a lease is back", "lease", fmt.Sprintf("%x", sess.Lease()))
		if !i.heal(ctx, sess.Lease()) {
			return
		}
		i.setServing(true)
	}
}

// heal gets a lease back and re-attaches everything, retrying until it
// works or ctx ends.
func (i *Instance) heal(ctx context.Context, old clientv3.LeaseID) bool {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		sess, resumed, err := i.renew(ctx, old)
		if err == nil {
			if err = i.attachAll(ctx, sess); err == nil {
				i.log.Info("discovery: serving again", "lease", fmt.Sprintf("%x", sess.Lease()), "resumed", resumed, "attempts", attempt)
				return true
			}
			// Keep the lease to try again with: it stays ours if etcd
			// still holds it.
			old = sess.Lease()
			sess.Orphan()
		}
		if ctx.Err() != nil {
			return false
		}
		i.log.Debug("discovery: cannot get a lease back yet", "err", err, "attempt", attempt)
		// Full jitter, so instances that lost etcd together do not come
		// back in lockstep.
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Duration(rand.Int64N(int64(backoff))) + 50*time.Millisecond):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// renew resumes old when etcd still holds it (an outage that ended before
// the lease expired: nothing attached to it was lost), and grants a new
// lease otherwise.
func (i *Instance) renew(ctx context.Context, old clientv3.LeaseID) (sess *concurrency.Session, resumed bool, err error) {
	if old != clientv3.NoLease {
		ttl, err := i.cli.TimeToLive(ctx, old)
		if err != nil {
			return nil, false, err
		}
		if ttl.TTL > 0 {
			sess, err := i.session(ctx, old)
			return sess, err == nil, err
		}
	}
	sess, err = i.session(ctx, clientv3.NoLease)
	return sess, false, err
}

// attachAll runs every AttachFunc under sess's lease and makes sess the
// current one. The functions run without the lock (they may call other
// services); those attached meanwhile run under it at the end.
func (i *Instance) attachAll(ctx context.Context, sess *concurrency.Session) error {
	ctx, cancel := context.WithTimeout(ctx, attachTimeout)
	defer cancel()
	i.mu.Lock()
	fns := append([]AttachFunc(nil), i.attached...)
	i.mu.Unlock()
	for _, f := range fns {
		if err := f(ctx, sess.Lease()); err != nil {
			return err
		}
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	for _, f := range i.attached[len(fns):] {
		if err := f(ctx, sess.Lease()); err != nil {
			return err
		}
	}
	i.sess = sess
	return nil
}

// attachTimeout bounds one round of re-attaching, which may call other
// services as well as etcd.
const attachTimeout = 10 * time.Second

func (i *Instance) setServing(v bool) {
	i.mu.Lock()
	changed := i.serving != v
	i.serving = v
	i.mu.Unlock()
	if changed && i.cfg.OnServing != nil {
		i.cfg.OnServing(v)
	}
}

// Serving reports whether the instance holds a lease with everything
// attached: what readiness reports.
func (i *Instance) Serving() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.serving
}

// Lease is the instance's current lease.
func (i *Instance) Lease() clientv3.LeaseID {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.sess.Lease()
}

// Attach runs f under the current lease and remembers it, so it runs again
// under every fresh lease. It returns f's error and then does not remember
// it.
func (i *Instance) Attach(ctx context.Context, f AttachFunc) error {
	// Held across f so a heal cannot run between f and its remembering,
	// which would leave f's keys on a lease that is already gone.
	i.mu.Lock()
	defer i.mu.Unlock()
	if err := f(ctx, i.sess.Lease()); err != nil {
		return err
	}
	i.attached = append(i.attached, f)
	return nil
}

// Advertise registers addr as an instance of service, with meta stored
// beside it (a media edge puts its load there), for as long as the
// instance lives. The returned Endpoint updates the metadata.
func (i *Instance) Advertise(ctx context.Context, service, addr string, meta any) (*Endpoint, error) {
	em, err := endpoints.NewManager(i.cli, prefix(service))
	if err != nil {
		return nil, err
	}
	ep := &Endpoint{inst: i, em: em, key: prefix(service) + "/" + addr, addr: addr, meta: meta}
	if err := i.Attach(ctx, ep.put); err != nil {
		return nil, fmt.Errorf("discovery: register %s: %w", service, err)
	}
	return ep, nil
}

// Close stops keeping the lease alive and revokes it, which removes every
// key attached to it at once.
func (i *Instance) Close(ctx context.Context) error {
	i.cancel()
	<-i.done
	i.mu.Lock()
	sess := i.sess
	i.mu.Unlock()
	_, err := i.cli.Revoke(ctx, sess.Lease())
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("discovery: revoke: %w", err)
	}
	return nil
}

// Abandon stops keeping the lease alive without revoking it, as a crashed
// process would: the attached keys vanish when the lease expires.
func (i *Instance) Abandon() {
	i.cancel()
	<-i.done
}

// Endpoint is a service address an Instance advertises.
type Endpoint struct {
	inst *Instance
	em   endpoints.Manager
	key  string
	addr string

	mu   sync.Mutex
	meta any
}

func (e *Endpoint) put(ctx context.Context, lease clientv3.LeaseID) error {
	e.mu.Lock()
	meta := e.meta
	e.mu.Unlock()
	return e.em.AddEndpoint(ctx, e.key, endpoints.Endpoint{Addr: e.addr, Metadata: meta}, clientv3.WithLease(lease))
}

// SetMeta replaces the endpoint's metadata. It is kept even when the write
// fails, so the next heal writes it.
func (e *Endpoint) SetMeta(ctx context.Context, meta any) error {
	e.mu.Lock()
	e.meta = meta
	e.mu.Unlock()
	return e.put(ctx, e.inst.Lease())
}

// Register is NewInstance followed by Advertise: one service at addr, for
// a process that runs only that.
func Register(ctx context.Context, cli *clientv3.Client, service, addr string, ttl time.Duration, meta any) (*Instance, error) {
	inst, err := NewInstance(ctx, cli, InstanceConfig{TTL: ttl})
	if err != nil {
		return nil, err
	}
	if _, err := inst.Advertise(ctx, service, addr, meta); err != nil {
		_ = inst.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return inst, nil
}
