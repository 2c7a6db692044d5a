// Package loginbench is the load generator behind `onair bench logins`: real
// SDK engines, each with its own connection, log into rooms and out again,
// a fixed number at a time, for a duration, and the run reports what the
// room plane paid for each login: cycles per second, login latency, errors
// by vendor code, etcd revisions per cycle, server CPU per cycle (from
// /proc) and, optionally, how fast the business-server callbacks those
// logins set off arrive.
//
// It lives outside cmd/onair so an e2e test can run it against an
// in-process cluster and check its summary against what happened.
package loginbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/onair-dev/onair/internal/procstat"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/token04"
)

// Config is one run.
type Config struct {
	// Servers are the room service's gRPC addresses; engine i tries them
	// starting at i mod len(Servers), so the load is spread.
	Servers []string
	AppID   uint32
	// Secret is the app's ServerSecret, to mint the users' tokens.
	Secret string
	// Workers log in at the same time, each with an engine of its own.
	Workers int
	// Rate, if positive, bounds the cycles started per second, all workers
	// together: latency at a given load rather than at the most the
	// workers can do.
	Rate float64
	// Rooms the cycles are spread over, round robin (1: a single room).
	Rooms    int
	Duration time.Duration
	// Stay keeps every user logged in (a room filling up): a cycle is one
	// login with a new engine, and the engines log out after the run, off
	// the clock.
	Stay bool
	// FreshEngines makes every cycle create (and destroy) its engine, so
	// each login also pays a new connection.
	FreshEngines bool
	// UserUpdates turns on IsUserStatusNotify: every engine is told who
	// comes and goes.
	UserUpdates bool
	// CallTimeout bounds each LoginRoom and LogoutRoom call.
	CallTimeout time.Duration
	// RoomPrefix names the rooms and users; runs side by side need
	// different ones.
	RoomPrefix string
	// PIDs are the server processes whose CPU is charged to the cycles.
	PIDs []int
	// EtcdEndpoints, if set, let the run read etcd's revision before and
	// after (revisions per cycle) and the callback outbox's depth.
	EtcdEndpoints []string
	// Callbacks, if set, starts a receiver for the app's callbacks.
	Callbacks *CallbackConfig
	// Users, with Stay, ends the run after that many logins (Duration
	// still bounds it).
	Users int
	// Lean, with Stay, logs the users in as lean clients (lean.go), not
	// SDK engines: for crowds whose engines would not fit in the bench.
	Lean bool
	// SeeAll, with Stay and UserUpdates, waits after the logins until
	// every user was told of every other user of its room, at most
	// SeeTimeout (crowd.go).
	SeeAll     bool
	SeeTimeout time.Duration
	// HeapPprof are the room replicas' pprof addresses (host:port): the
	// run reads their heaps before the logins and after SeeAll.
	HeapPprof []string
	// Hold keeps a crowd run's users logged in this long after its
	// measurements (to profile the replicas meanwhile).
	Hold time.Duration
	// Drain is how long the run waits after the clock stops for the
	// callbacks of its logins and logouts.
	Drain time.Duration
}

// check reports a config the run cannot start with.
func (c *Config) check() error {
	switch {
	case len(c.Servers) == 0:
		return errors.New("no room server address")
	case c.AppID == 0 || c.Secret == "":
		return errors.New("the AppID and the app's ServerSecret are required")
	case c.Workers <= 0 || c.Rooms <= 0 || c.Duration <= 0:
		return errors.New("workers, rooms and duration must be positive")
	case c.Rate < 0:
		return errors.New("the rate must not be negative")
	case c.CallTimeout <= 0:
		return errors.New("the call timeout must be positive")
	case (c.Users > 0 || c.Lean || c.SeeAll) && !c.Stay:
		return errors.New("users, lean clients and see-all need logins that stay")
	case (c.Lean || c.SeeAll) && !c.UserUpdates:
		return errors.New("lean clients and see-all need user updates")
	}
	if c.Callbacks != nil {
		return c.Callbacks.check()
	}
	return nil
}

// ErrorKey is a failed call: which call and its vendor code (0: none,
// e.g. the context's deadline).
type ErrorKey struct {
	Op   string // "login" or "logout"
	Code int
}

// Result is what one run measured.
type Result struct {
	Config Config
	// Elapsed is the measured time: from the first cycle to the last
	// worker's last one.
	Elapsed time.Duration
	// Cycles completed without an error: a login and a logout (with Stay:
	// a login).
	Cycles          int64
	Logins, Logouts int64
	// LoginTimes are the successful LoginRoom calls' durations (the
	// engine's event stream open included, as a user waits for it).
	LoginTimes  []time.Duration
	LogoutTimes []time.Duration
	Errors      map[ErrorKey]int64
	// FirstError is the text of the first failed call, for the summary.
	FirstError string
	// Revisions is how far etcd's revision moved over the run (-1: not
	// measured).
	Revisions int64
	// CPU is each of Config.PIDs' CPU time over the run.
	CPU []time.Duration
	// OwnCPU is the bench's own CPU time over the run: on a machine it
	// shares with the servers it tells whether the bench was the limit.
	OwnCPU    time.Duration
	Callbacks *CallbackResult
	// Crowd is what a crowd run measured after its logins (SeeAll).
	Crowd *CrowdResult
}

// ErrorCount is the number of failed calls.
func (r *Result) ErrorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// TotalCPU is the CPU of every measured process.
func (r *Result) TotalCPU() time.Duration {
	var t time.Duration
	for _, c := range r.CPU {
		t += c
	}
	return t
}

// counters are the live totals the progress line shows.
type counters struct {
	cycles, logins, logouts, errors atomic.Int64
}

// worker is one of Config.Workers: its engines and what it measured.
type worker struct {
	id     int
	c      *Config
	tokens map[string]string
	kept   []kept // Stay: users still logged in
	// lastLogin is when this worker's last successful login returned.
	lastLogin time.Time
	// issued counts the logins started, against Config.Users.
	issued  *atomic.Int64
	login   []time.Duration
	logout  []time.Duration
	errs    map[ErrorKey]int64
	firstEr error
	// limit paces the cycles (Config.Rate; nil: no pacing); paced ends
	// with the run.
	limit *rate.Limiter
	paced context.Context
}

// Run runs the benchmark; progress gets a line a second. It stops early,
// with what it measured so far, when ctx ends.
func Run(ctx context.Context, c Config, progress io.Writer) (*Result, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	var etcd *clientv3.Client
	if len(c.EtcdEndpoints) > 0 {
		var err error
		etcd, err = clientv3.New(clientv3.Config{Endpoints: c.EtcdEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return nil, fmt.Errorf("etcd: %w", err)
		}
		defer etcd.Close()
	}
	var recv *receiver
	if c.Callbacks != nil {
		var err error
		if recv, err = startReceiver(ctx, c.AppID, *c.Callbacks); err != nil {
			return nil, err
		}
		defer recv.close()
		fmt.Fprintf(progress, "receiving the app's callbacks at %s\n", recv.url)
	}

	res := &Result{Config: c, Revisions: -1, Errors: map[ErrorKey]int64{}}
	var heap0, stack0 []int64
	if len(c.HeapPprof) > 0 {
		heap0, stack0, _ = heapStats(ctx, c.HeapPprof)
	}
	var issued atomic.Int64
	rev0, revErr := revision(ctx, etcd)
	cpu0 := procstat.CPU(c.PIDs)
	own0, _ := procstat.Read(os.Getpid())
	var live counters
	var roomNext atomic.Int64
	stop := make(chan struct{})
	// paced ends when the run's duration does: a worker waiting for its
	// turn (Rate) stops waiting then.
	paced, endPaced := context.WithCancel(ctx)
	defer endPaced()
	go func() {
		select {
		case <-stop:
		case <-paced.Done():
		}
		endPaced()
	}()
	var limit *rate.Limiter
	if c.Rate > 0 {
		limit = rate.NewLimiter(rate.Limit(c.Rate), 1)
	}
	workers := make([]*worker, c.Workers)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range workers {
		w := &worker{id: i, c: &c, tokens: map[string]string{}, errs: map[ErrorKey]int64{}, limit: limit, paced: paced, issued: &issued}
		workers[i] = w
		wg.Go(func() { w.run(ctx, stop, &roomNext, &live) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	res.Callbacks = watchProgress(ctx, progress, start, c.Duration, stop, done, &live, recv, etcd)
	res.Elapsed = time.Since(start)
	res.CPU = sub(procstat.CPU(c.PIDs), cpu0)
	own1, _ := procstat.Read(os.Getpid())
	res.OwnCPU = own1 - own0
	if rev1, err := revision(ctx, etcd); err == nil && revErr == nil {
		res.Revisions = rev1 - rev0
	}
	for _, w := range workers {
		res.LoginTimes = append(res.LoginTimes, w.login...)
		res.LogoutTimes = append(res.LogoutTimes, w.logout...)
		for k, v := range w.errs {
			res.Errors[k] += v
		}
		if res.FirstError == "" && w.firstEr != nil {
			res.FirstError = w.firstEr.Error()
		}
	}
	res.Cycles, res.Logins, res.Logouts = live.cycles.Load(), live.logins.Load(), live.logouts.Load()
	if c.SeeAll {
		var users []kept
		var last time.Time
		for _, w := range workers {
			users = append(users, w.kept...)
			if w.lastLogin.After(last) {
				last = w.lastLogin
			}
		}
		timeout := c.SeeTimeout
		if timeout <= 0 {
			timeout = time.Minute
		}
		res.Crowd = waitSeeAll(ctx, users, last, timeout, func(line string) { fmt.Fprintln(progress, line) })
		if len(c.HeapPprof) > 0 {
			// Idle sessions: what the last deliveries had in flight is
			// written by now.
			time.Sleep(2 * time.Second)
			res.Crowd.HeapBefore, res.Crowd.StackBefore = heap0, stack0
			res.Crowd.HeapAfter, res.Crowd.StackAfter, res.Crowd.Goroutines = heapStats(ctx, c.HeapPprof)
		}
		if c.Hold > 0 {
			fmt.Fprintf(progress, "holding the users logged in for %s\n", c.Hold)
			select {
			case <-ctx.Done():
			case <-time.After(c.Hold):
			}
		}
	}
	if recv != nil {
		// The callbacks of the run's own logins and logouts; the Stay
		// engines' logouts come later and are not waited for.
		recv.drain(ctx, res.Logins, res.Logouts, c.Drain)
		if depth, err := outboxDepth(ctx, etcd); err == nil {
			res.Callbacks.OutboxEnd = depth
		}
		res.Callbacks = recv.result(res.Callbacks)
	}
	teardown(workers, c.Workers)
	return res, nil
}

// watchProgress prints a line a second until the workers are done, closing
// stop when the duration is over; it returns the outbox depths it saw.
func watchProgress(ctx context.Context, out io.Writer, start time.Time, d time.Duration, stop chan struct{}, done <-chan struct{},
	live *counters, recv *receiver, etcd *clientv3.Client) *CallbackResult {
	cb := &CallbackResult{OutboxMax: -1, OutboxEnd: -1}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.After(d)
	var last int64
	for {
		select {
		case <-done:
			return cb
		case <-end:
			close(stop)
		case <-ctx.Done():
			select {
			case <-stop:
			default:
				close(stop)
			}
			<-done
			return cb
		case <-tick.C:
			n := live.cycles.Load()
			line := fmt.Sprintf("%5.0fs  cycles %d (%d/s)  logins %d  logouts %d  errors %d",
				time.Since(start).Seconds(), n, n-last, live.logins.Load(), live.logouts.Load(), live.errors.Load())
			last = n
			if recv != nil {
				line += fmt.Sprintf("  callbacks %d", recv.unique.Load())
				if depth, err := outboxDepth(ctx, etcd); err == nil {
					cb.OutboxMax = max(cb.OutboxMax, depth)
					cb.OutboxEnd = depth
					line += fmt.Sprintf("  outbox %d", depth)
				}
			}
			fmt.Fprintln(out, line)
		}
	}
}

func sub(a, b []time.Duration) []time.Duration {
	out := make([]time.Duration, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

// revision is etcd's current revision: the header of a read of one key
// (any key: the header carries the store's revision).
func revision(ctx context.Context, etcd *clientv3.Client) (int64, error) {
	if etcd == nil {
		return 0, errors.New("no etcd")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := etcd.Get(cctx, "/onair/bench/revision")
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// run does cycles until stop is closed; a cycle in flight finishes, so
// every login the run made is matched by its logout.
func (w *worker) run(ctx context.Context, stop <-chan struct{}, roomNext *atomic.Int64, live *counters) {
	var e *express.Engine
	defer func() {
		if e != nil && !w.c.Stay {
			e.DestroyEngine(nil)
		}
	}()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if w.limit != nil && w.limit.Wait(w.paced) != nil {
			return // the run is over
		}
		user := fmt.Sprintf("%s-u%d", w.c.RoomPrefix, w.id)
		if w.c.Stay {
			user = fmt.Sprintf("%s-u%d-%d", w.c.RoomPrefix, w.id, n)
		}
		if w.c.Users > 0 && w.issued.Add(1) > int64(w.c.Users) {
			return
		}
		if w.c.Lean {
			w.lean(ctx, user, roomNext, live)
			continue
		}
		var counter *countingHandler
		if w.c.SeeAll {
			counter = new(countingHandler)
		}
		if e == nil || w.c.Stay || w.c.FreshEngines {
			if e != nil && !w.c.Stay {
				e.DestroyEngine(nil)
			}
			var err error
			if e, err = w.engine(counter); err != nil {
				w.fail("login", err, live)
				return
			}
		}
		roomN := int(roomNext.Add(1) % int64(w.c.Rooms))
		room := fmt.Sprintf("%s-%d", w.c.RoomPrefix, roomN)
		tok, err := w.token(user)
		if err != nil {
			w.fail("login", err, live)
			return
		}
		cctx, cancel := context.WithTimeout(ctx, w.c.CallTimeout)
		t0 := time.Now()
		err = e.LoginRoom(cctx, room, express.User{UserID: user, UserName: user},
			express.RoomConfig{IsUserStatusNotify: w.c.UserUpdates, Token: tok})
		took := time.Since(t0)
		cancel()
		if err != nil {
			w.fail("login", err, live)
			if w.c.Users > 0 {
				w.issued.Add(-1) // another try
			}
			if w.c.Stay {
				e.DestroyEngine(nil)
				e = nil
			}
			continue
		}
		w.login = append(w.login, took)
		w.lastLogin = time.Now()
		live.logins.Add(1)
		if w.c.Stay {
			var s seer = engineSeer{e: e, h: counter}
			if counter == nil {
				s = engineSeer{e: e, h: new(countingHandler)}
			}
			w.kept = append(w.kept, kept{s: s, room: roomN})
			live.cycles.Add(1)
			continue
		}
		cctx, cancel = context.WithTimeout(ctx, w.c.CallTimeout)
		t0 = time.Now()
		err = e.LogoutRoom(cctx, room)
		took = time.Since(t0)
		cancel()
		if err != nil {
			w.fail("logout", err, live)
			continue
		}
		w.logout = append(w.logout, took)
		live.logouts.Add(1)
		live.cycles.Add(1)
	}
}

func (w *worker) engine(h *countingHandler) (*express.Engine, error) {
	s := w.c.Servers
	i := w.id % len(s)
	order := append(slices.Clone(s[i:]), s[:i]...)
	var eh express.EventHandler
	if h != nil {
		eh = h
	}
	return express.CreateEngine(express.EngineProfile{AppID: w.c.AppID, Server: strings.Join(order, ",")}, eh)
}

// lean is one login of a lean client (Config.Lean), which stays.
func (w *worker) lean(ctx context.Context, user string, roomNext *atomic.Int64, live *counters) {
	failed := func(err error) {
		w.fail("login", err, live)
		if w.c.Users > 0 {
			w.issued.Add(-1)
		}
	}
	l, err := newLean(w.c.Servers[w.id%len(w.c.Servers)])
	if err != nil {
		failed(err)
		return
	}
	roomN := int(roomNext.Add(1) % int64(w.c.Rooms))
	tok, err := w.token(user)
	if err != nil {
		l.close()
		failed(err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, w.c.CallTimeout)
	t0 := time.Now()
	err = l.login(cctx, w.c.AppID, fmt.Sprintf("%s-%d", w.c.RoomPrefix, roomN), user, tok)
	took := time.Since(t0)
	cancel()
	if err != nil {
		l.close()
		failed(err)
		return
	}
	w.login = append(w.login, took)
	w.lastLogin = time.Now()
	live.logins.Add(1)
	live.cycles.Add(1)
	w.kept = append(w.kept, kept{s: l, room: roomN})
}

// token mints user's token once: minting is the business server's work,
// not the room plane's.
func (w *worker) token(user string) (string, error) {
	if t, ok := w.tokens[user]; ok {
		return t, nil
	}
	t, err := token04.Mint(w.c.AppID, user, w.c.Secret, 2*time.Hour, nil)
	if err != nil {
		return "", err
	}
	if !w.c.Stay {
		w.tokens[user] = t
	}
	return t, nil
}

func (w *worker) fail(op string, err error, live *counters) {
	w.errs[ErrorKey{Op: op, Code: express.ErrorCode(err)}]++
	live.errors.Add(1)
	if w.firstEr == nil {
		w.firstEr = fmt.Errorf("%s: %w", op, err)
	}
}

// teardown destroys the engines that stayed logged in, n at a time.
func teardown(workers []*worker, n int) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, w := range workers {
		for _, k := range w.kept {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				k.s.close()
			})
		}
		w.kept = nil
	}
	wg.Wait()
}
