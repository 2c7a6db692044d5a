package etcdclient

// Riding through a leader change, failing fast without a quorum.
//
// When an etcd leader stops (a crash, a SIGSTOP, a slow disk), its
// followers notice after an election timeout (1 s by default) and elect a
// new one within another one or two: writes cannot commit for 1-3 s, and a
// proposal a follower forwarded to the stopped leader is lost, so its call
// waits for its deadline. When a majority of members is gone instead, no
// leader comes back until they do.
//
// A call whose try fails for lack of a leader (the try's deadline, etcd's
// "no leader", "leader changed" or "request timed out", or gRPC
// UNAVAILABLE) therefore asks which of the two it is: the members are
// probed (Status, each at its own client URL, in parallel, at most
// probeTimeout each). If more than half of them answer, a quorum is there
// and a leader is being elected: the call is tried again, after a short
// pause, until RideThrough has passed since it began (5 s, longer than an
// election with its randomized timeouts). If half or fewer answer, the
// quorum is lost: the call fails at once with ErrUnavailable, so a request
// fails in about a second (one try plus the probe) rather than after the
// ride-through. One probe answers every call for a while (probeFresh,
// lostFresh), so an outage costs the members a few probes a second, not
// one per call.
//
// Only calls that are safe to repeat are tried again after a try whose
// outcome is unknown: reads, puts and deletes (they leave the same state),
// lease calls, and transactions whose caller says it checks its own
// outcome (Retryable). Any call is tried again after "no leader", which a
// member answers before proposing anything.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultRideThrough is how long a call keeps trying while a quorum of
// members answers but no leader does: longer than an election (1-2 s with
// etcd's defaults, up to about 3 s when a randomized timeout splits the
// vote), shorter than the SDK's default deadline for a login.
const DefaultRideThrough = 5 * time.Second

const (
	// probeTimeout bounds the Status of one member: a member that does not
	// answer that fast is as good as stopped for a user waiting.
	probeTimeout = 300 * time.Millisecond
	// probeFresh is how long one probe's "a quorum answers" stands for
	// every call, and lostFresh its "no quorum": an outage costs the
	// members a probe a second, and a call in it no probe at all.
	probeFresh = 250 * time.Millisecond
	lostFresh  = time.Second
	// membersFresh is how long the member list is kept.
	membersFresh = 30 * time.Second
)

type retryableKey struct{}

// tryTimeoutKey carries a shorter per-try deadline than the guard's, for
// calls with a deadline of their own to keep (lease renewals).
type tryTimeoutKey struct{}

// Retryable marks a context whose transactions may be committed again after
// a try whose outcome is unknown (its reply was lost while etcd changed
// leaders): the caller's comparisons make a second commit fail, or succeed
// harmlessly, when the first one went through, and the caller finds out
// which by reading.
func Retryable(ctx context.Context) context.Context {
	return context.WithValue(ctx, retryableKey{}, true)
}

// kind is how safe a call is to repeat.
type kind int

const (
	// idempotent calls leave the same state when made twice.
	idempotent kind = iota
	// conditional calls (transactions) are repeated after an unknown
	// outcome only when the caller said so (Retryable).
	conditional
)

// guard runs calls with the per-try deadline and the ride-through rule.
type guard struct {
	cli     *clientv3.Client
	timeout time.Duration
	ride    time.Duration

	mu       sync.Mutex
	probedAt time.Time
	quorum   error // nil: a quorum answered at probedAt
	probing  chan struct{}
	members  []string
	listedAt time.Time

	// all is the configured endpoints, excluded those taken out of them
	// for not answering (health.go).
	all         []string
	excluded    map[string]bool
	readmitting bool
}

func newGuard(cli *clientv3.Client, cfg Config) *guard {
	g := &guard{cli: cli, timeout: cfg.CallTimeout, ride: cfg.RideThrough,
		all: slices.Clone(cfg.Endpoints), excluded: map[string]bool{}}
	if g.timeout <= 0 {
		g.timeout = DefaultCallTimeout
	}
	if g.ride == 0 {
		g.ride = DefaultRideThrough
	}
	return g
}

// failure is what a failed try says about etcd.
type failure int

const (
	ok         failure = iota // not a failure of etcd's: the caller's own, or an answer
	notApplied                // no leader: refused before anything was proposed
	unknown                   // the try may or may not have been applied
)

// classify sorts a try's error; deadline is whether the try's own deadline
// ended it.
func classify(err error, deadline bool) failure {
	if err == nil {
		return ok
	}
	if deadline {
		return unknown
	}
	switch rpctypes.Error(err) {
	case rpctypes.ErrNoLeader:
		return notApplied
	case rpctypes.ErrLeaderChanged, rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost:
		return unknown
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return ok // the caller's
	}
	if s, isStatus := status.FromError(err); isStatus && s.Code() == codes.Unavailable {
		return unknown
	}
	return ok
}

// retry says whether a call of kind k tries again after f.
func retry(k kind, f failure, marked bool) bool {
	switch f {
	case notApplied:
		return true
	case unknown:
		return k == idempotent || marked
	}
	return false
}

// hasQuorum is the rule: more than half of the members answered.
func hasQuorum(answered, members int) bool { return members > 0 && 2*answered > members }

// run makes call, trying again by the rule above.
func (g *guard) run(ctx context.Context, k kind, call func(context.Context) error) error {
	start := time.Now()
	marked, _ := ctx.Value(retryableKey{}).(bool)
	pause := 50 * time.Millisecond
	timeout := g.timeout
	if d, ok := ctx.Value(tryTimeoutKey{}).(time.Duration); ok && d < timeout {
		timeout = d
	}
	for {
		tctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), timeout)
		err := call(tctx)
		deadline := err != nil && ctx.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded)
		cancel()
		f := classify(err, deadline)
		if f == ok || ctx.Err() != nil {
			return err
		}
		if g.ride < 0 || !retry(k, f, marked) || time.Since(start)+pause > g.ride {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		if qerr := g.quorumAnswers(ctx); qerr != nil {
			return fmt.Errorf("%w: %v (%v)", ErrUnavailable, err, qerr)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, 400*time.Millisecond)
	}
}

// quorumAnswers probes the members (or uses a fresh probe) and says why
// there is no quorum, or nil.
func (g *guard) quorumAnswers(ctx context.Context) error {
	g.mu.Lock()
	for {
		if time.Since(g.probedAt) < probeFresh || g.quorum != nil && time.Since(g.probedAt) < lostFresh {
			err := g.quorum
			g.mu.Unlock()
			return err
		}
		if g.probing == nil {
			break
		}
		ch := g.probing
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		g.mu.Lock()
	}
	ch := make(chan struct{})
	g.probing = ch
	members, listedAt := g.members, g.listedAt
	g.mu.Unlock()

	// The probe is the guard's, not this caller's: others wait for it. The
	// member list, when stale, is read at the same time, for the next
	// probe: this one counts the members it already knows (or, before the
	// first list, the endpoints it was given).
	pctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if members == nil {
		members = g.all
	}
	listed := make(chan []string, 1)
	if time.Since(listedAt) > membersFresh {
		go func() { listed <- g.listMembers(pctx) }()
	} else {
		listed <- nil
	}
	// The configured endpoints are probed too when they are not the
	// members' own URLs (a proxy, a load balancer): the quorum is counted
	// over the members, the endpoints kept off calls are chosen among the
	// configured ones (health.go).
	urls := slices.Clone(members)
	for _, ep := range g.all {
		if !slices.ContainsFunc(members, func(m string) bool { return hostPort(m) == hostPort(ep) }) {
			urls = append(urls, ep)
		}
	}
	res := g.probe(pctx, urls)
	answered := 0
	for _, m := range members {
		if res[m] {
			answered++
		}
	}
	var qerr error
	if !hasQuorum(answered, len(members)) {
		qerr = fmt.Errorf("no quorum: %d of %d etcd members answer", answered, len(members))
	} else {
		g.exclude(res)
	}
	g.mu.Lock()
	if m := <-listed; m != nil {
		g.members, g.listedAt = m, time.Now()
	}
	g.quorum, g.probedAt, g.probing = qerr, time.Now(), nil
	g.mu.Unlock()
	close(ch)
	return qerr
}

// listMembers returns one client URL per member, from any member's own
// view (serializable: no leader needed).
func (g *guard) listMembers(ctx context.Context) []string {
	resp, err := g.cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return nil
	}
	var urls []string
	for _, m := range resp.Members {
		if len(m.ClientURLs) > 0 {
			urls = append(urls, m.ClientURLs[0])
		} else {
			urls = append(urls, "") // a member not started yet counts, and does not answer
		}
	}
	return urls
}

// probe says, for each url, whether its member answers Status.
func (g *guard) probe(ctx context.Context, urls []string) map[string]bool {
	type answer struct {
		url string
		ok  bool
	}
	answers := make(chan answer, len(urls))
	for _, u := range urls {
		go func() {
			if u == "" {
				answers <- answer{u, false}
				return
			}
			_, err := g.cli.Status(ctx, u)
			answers <- answer{u, err == nil}
		}()
	}
	res := make(map[string]bool, len(urls))
	for range urls {
		a := <-answers
		res[a.url] = res[a.url] || a.ok
	}
	return res
}
