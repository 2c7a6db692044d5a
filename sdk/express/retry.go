package express

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/onair-dev/onair/errcode"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// Logins and logouts ride through a server or etcd that is briefly away (an
// etcd leader election takes a second or two): a call that fails with
// UNAVAILABLE is made again, after a short pause, until it gets an answer
// or its caller's deadline passes. A login carries one attempt ID through
// all its tries, so a try whose reply was lost is found by the next one
// instead of making a second session. What a login or logout the caller saw
// fail may have left is removed in the background (cleanupBound).

const (
	// retryBound is how long LoginRoom and LogoutRoom keep trying when the
	// caller's context has no deadline: longer than an etcd election and
	// the server's own wait for one (5 s).
	retryBound = 10 * time.Second
	// cleanupBound is how long the engine keeps trying, in the background,
	// to remove a session whose login or logout failed: past it the
	// server's heartbeat timeout removes the session anyway.
	cleanupBound = 30 * time.Second
	firstPause   = 100 * time.Millisecond
	maxPause     = time.Second
)

// transient reports whether err says the server (or its store) could not
// answer now, so the same call may succeed in a moment.
func transient(err error) bool {
	if errcode.Of(err) == errcode.ServiceUnavailable {
		return true
	}
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Unavailable
}

// retrying calls try until it returns nil or an error that is not
// transient, or ctx ends (then the last try's error is returned); without
// a deadline in ctx it stops after retryBound.
func retrying(ctx context.Context, try func(ctx context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, retryBound)
		defer cancel()
	}
	pause := firstPause
	for {
		err := try(ctx)
		if err == nil || !transient(err) {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(2*pause, maxPause)
	}
}

// newAttemptID is a login's attempt ID: random, so only its client knows it.
func newAttemptID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// inBackground runs f with a context bounded by cleanupBound and ended by
// the engine's destruction deadline; DestroyEngine closes the connection
// once every such task has returned.
func (e *Engine) inBackground(f func(ctx context.Context)) {
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		ctx, cancel := context.WithTimeout(e.bgCtx, cleanupBound)
		defer cancel()
		f(ctx)
	}()
}

// logout ends a session, retrying; a session already gone counts as ended.
func (e *Engine) logout(ctx context.Context, req *roomv1.LogoutRoomRequest) error {
	return retrying(ctx, func(ctx context.Context) error {
		_, err := e.rooms.LogoutRoom(ctx, req)
		if errcode.Of(err) == errcode.SessionNotFound {
			return nil
		}
		return err
	})
}
