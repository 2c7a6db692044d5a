package room

import (
	"context"
	"errors"
	"sync"
	"time"

	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/callback"
)

// The apps' callback settings as the room service sees them: whether a
// change writes a callback at all, and where a deliverer sends it.

// callbacksFor reports whether a change in appID's rooms writes its
// callback: not when the app is known to take none (no callback_url, as
// of the targets cache, a few seconds). Its deliverer would drop it
// anyway, after an outbox put, a read, a delete and their watch events: a
// login and logout of an app without callbacks cost twice the etcd work.
// An app whose callback URL was just set gets the callbacks of changes
// from the cache's TTL later at most, as delivery's own lookup has it.
//
// It never waits: an app not in the cache, or whose entry is older than the
// TTL, is looked up in the background (a login must not wait on the auth
// service, least of all while etcd is away), and meanwhile the callbacks
// are written (the deliverer drops them if the app takes none).
func (s *Server) callbacksFor(_ context.Context, appID uint32) bool {
	if s.targets == nil {
		return true
	}
	e, _, fresh := s.targets.peek(appID)
	if !fresh {
		s.targets.refresh(s.ctx, &s.wg, appID)
		return true
	}
	return !errors.Is(e.err, callback.ErrNoTarget)
}

// targets caches the apps' callback settings for a few seconds.
type targets struct {
	auth authv1.AuthServiceClient
	ttl  time.Duration
	mu   sync.Mutex
	m    map[uint32]targetEntry
	// refreshing holds the apps looked up in the background now.
	refreshing map[uint32]bool
}

// peek returns app's entry without a lookup: ok if there is one, fresh if
// it is within the TTL.
func (t *targets) peek(appID uint32) (e targetEntry, ok, fresh bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok = t.m[appID]
	return e, ok, ok && time.Since(e.at) < t.ttl
}

// refresh looks app up in the background, one lookup per app at a time.
func (t *targets) refresh(ctx context.Context, wg *sync.WaitGroup, appID uint32) {
	t.mu.Lock()
	if t.refreshing == nil {
		t.refreshing = map[uint32]bool{}
	}
	if t.refreshing[appID] || ctx.Err() != nil {
		t.mu.Unlock()
		return
	}
	t.refreshing[appID] = true
	t.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, _ = t.lookup(lctx, appID)
		t.mu.Lock()
		delete(t.refreshing, appID)
		t.mu.Unlock()
	}()
}

type targetEntry struct {
	t   callback.Target
	err error
	at  time.Time
}

// lookup is callback.Config.Target: the app's URL and secret, through the
// auth service (an internal call).
func (t *targets) lookup(ctx context.Context, appID uint32) (callback.Target, error) {
	t.mu.Lock()
	e, ok := t.m[appID]
	t.mu.Unlock()
	if ok && time.Since(e.at) < t.ttl {
		return e.t, e.err
	}
	resp, err := t.auth.GetApp(ctx, &authv1.GetAppRequest{AppId: appID})
	switch {
	case errcode.Of(err) == errcode.AppNotFound:
		e = targetEntry{err: callback.ErrNoTarget}
	case err != nil:
		return callback.Target{}, err
	case resp.GetApp().GetCallbackUrl() == "":
		e = targetEntry{err: callback.ErrNoTarget}
	default:
		app := resp.GetApp()
		e = targetEntry{t: callback.Target{URL: app.GetCallbackUrl(), Secret: app.GetCallbackSecret(), AllowLocal: app.GetCallbackAllowLocal()}}
	}
	e.at = time.Now()
	t.mu.Lock()
	if len(t.m) > 10_000 {
		clear(t.m)
	}
	t.m[appID] = e
	t.mu.Unlock()
	return e.t, e.err
}
