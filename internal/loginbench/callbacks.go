package loginbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/keys"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	"github.com/onair-dev/onair/services/auth"
)

// CallbackConfig starts a business server of the bench's own: an HTTP
// receiver on a loopback address that the app's callback_url is pointed at
// for the run (and pointed back after it).
type CallbackConfig struct {
	// Listen is the receiver's address: 127.0.0.1:0 picks a port.
	Listen string
	// AuthServer is the auth service's gRPC address, where the app's
	// callback URL is set (admin RPCs).
	AuthServer string
	// AdminKey opens the admin RPCs.
	AdminKey string
}

func (c *CallbackConfig) check() error {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("callback receiver address %q: %w", c.Listen, err)
	}
	// The receiver is for this machine only: the services send to
	// loopback only for an app with callback_allow_local, on a server in
	// dev mode.
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("callback receiver address %q: must be a loopback IP address", c.Listen)
	}
	if c.AuthServer == "" || c.AdminKey == "" {
		return errors.New("the callback receiver needs the auth service's address and the admin key (to set the app's callback URL)")
	}
	return nil
}

// CallbackResult is what the receiver saw.
type CallbackResult struct {
	// Received counts requests; Unique their distinct event_ids.
	Received, Unique int64
	// BadSignature counts requests whose signature did not verify with
	// the app's callback secret.
	BadSignature int64
	// ByEvent counts distinct events by name (room_login, ...).
	ByEvent map[string]int64
	// Delays are, for each distinct event, from its event_time_ms to its
	// first arrival.
	Delays []time.Duration
	// OutboxMax and OutboxEnd are the depths of etcd's callback outbox
	// (every app's): the most seen once a second during the run, and after
	// the drain (-1: not read).
	OutboxMax, OutboxEnd int64
	// Lives checks each room life's callbacks: one room_create first, at
	// most one room_close last.
	Lives RoomLives
}

// Duplicates is how many requests repeated an event_id already received.
func (r *CallbackResult) Duplicates() int64 { return r.Received - r.Unique }

// receiver counts the callbacks the app's rooms send.
type receiver struct {
	url string
	srv *http.Server
	// restore points the app's callback URL back at what it was.
	restore func()

	received, unique, bad atomic.Int64
	mu                    sync.Mutex
	secret                string
	seen                  map[string]bool
	byEvent               map[string]int64
	lives                 lives
	delays                []time.Duration
}

// startReceiver listens, then points the app's callbacks at the receiver.
func startReceiver(ctx context.Context, appID uint32, c CallbackConfig) (*receiver, error) {
	l, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("callback receiver: %w", err)
	}
	r := &receiver{url: "http://" + l.Addr().String() + "/onair-callback", seen: map[string]bool{}, byEvent: map[string]int64{}, lives: lives{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(l) }()
	if err := r.pointApp(ctx, appID, c); err != nil {
		_ = r.srv.Close()
		return nil, err
	}
	// The room replicas cache an app's callback settings (a few seconds):
	// the run starts once they know of the receiver, so every login's
	// callbacks are written and counted.
	t := time.NewTimer(settingsCacheTTL)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return r, nil
}

// settingsCacheTTL is longer than the room replicas keep an app's callback
// settings (services/room: targets).
const settingsCacheTTL = 6 * time.Second

// pointApp sets the app's callback URL to the receiver, learns the secret
// that signs its callbacks, and keeps how to put the old URL back.
func (r *receiver) pointApp(ctx context.Context, appID uint32, c CallbackConfig) error {
	cc, err := grpc.NewClient(c.AuthServer, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	cli := authv1.NewAuthServiceClient(cc)
	admin := func() (context.Context, context.CancelFunc) {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		return metadata.AppendToOutgoingContext(cctx, auth.AdminKeyHeader, c.AdminKey), cancel
	}
	actx, cancel := admin()
	defer cancel()
	old, err := cli.GetApp(actx, &authv1.GetAppRequest{AppId: appID})
	if err != nil {
		cc.Close()
		return fmt.Errorf("get app %d (admin): %w", appID, err)
	}
	url, local := r.url, true
	resp, err := cli.UpdateApp(actx, &authv1.UpdateAppRequest{AppId: appID, CallbackUrl: &url, CallbackAllowLocal: &local})
	if err != nil {
		cc.Close()
		return fmt.Errorf("point app %d's callbacks at %s (the auth service must run in dev mode, e.g. onair dev): %w", appID, url, err)
	}
	r.mu.Lock()
	r.secret = resp.GetApp().GetCallbackSecret()
	r.mu.Unlock()
	oldURL, oldLocal := old.GetApp().GetCallbackUrl(), old.GetApp().GetCallbackAllowLocal()
	r.restore = func() {
		defer cc.Close()
		actx, cancel := admin()
		defer cancel()
		_, _ = cli.UpdateApp(actx, &authv1.UpdateAppRequest{AppId: appID, CallbackUrl: &oldURL, CallbackAllowLocal: &oldLocal})
	}
	return nil
}

// request is a callback as it arrives: the event and its signature.
type request struct {
	callback.Event
	Timestamp string `json:"timestamp"`
	Nonce     string `json:"nonce"`
	Signature string `json:"signature"`
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	b, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	var g request
	if err == nil {
		err = json.Unmarshal(b, &g)
	}
	if err != nil || g.EventID == "" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.received.Add(1)
	r.mu.Lock()
	secret := r.secret
	r.mu.Unlock()
	if !callback.Verify(secret, g.Timestamp, g.Nonce, g.Signature) {
		// Counted and still accepted: a bench reports, it does not make
		// the room service retry.
		r.bad.Add(1)
	}
	r.mu.Lock()
	if !r.seen[g.EventID] {
		r.seen[g.EventID] = true
		r.byEvent[g.Event.Event]++
		r.lives.add(g.Event)
		r.delays = append(r.delays, now.Sub(time.UnixMilli(g.EventTimeMs)))
		r.unique.Add(1)
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// drain waits up to d for the room_login and room_logout callbacks of the
// run's logins and logouts.
func (r *receiver) drain(ctx context.Context, logins, logouts int64, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		r.mu.Lock()
		ok := r.byEvent[callback.RoomLogin] >= logins && r.byEvent[callback.RoomLogout] >= logouts
		r.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// result is what the receiver saw, with the outbox depths of cb.
func (r *receiver) result(cb *CallbackResult) *CallbackResult {
	out := &CallbackResult{OutboxMax: -1, OutboxEnd: -1}
	if cb != nil {
		out.OutboxMax, out.OutboxEnd = cb.OutboxMax, cb.OutboxEnd
	}
	out.Received, out.Unique, out.BadSignature = r.received.Load(), r.unique.Load(), r.bad.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	out.ByEvent = make(map[string]int64, len(r.byEvent))
	for k, v := range r.byEvent {
		out.ByEvent[k] = v
	}
	out.Delays = append([]time.Duration(nil), r.delays...)
	out.Lives = r.lives.check()
	return out
}

// close points the app back and stops the receiver.
func (r *receiver) close() {
	if r.restore != nil {
		r.restore()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
}

// outboxDepth counts the callbacks waiting in etcd's outbox.
func outboxDepth(ctx context.Context, etcd *clientv3.Client) (int64, error) {
	if etcd == nil {
		return 0, errors.New("no etcd")
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := etcd.Get(cctx, keys.CallbackOutbox, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}
