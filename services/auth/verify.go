package auth

// Token verification.
//
// Every login verifies a token: a decryption with the app's secret. A
// Verifier does it over the watched copy of the apps (appcache.go), not a
// linearizable etcd read per login. Only the auth service runs one: the
// apps and their secrets are its own (DESIGN.md), and other services ask it
// over gRPC.
//
// Without the read, a login reaches the room's transaction sooner, and once
// that brought ghost users back in the etcd leader-change test (a
// transaction held by a stopped leader applied after the user's logout).
// The read only hid that race; the room's lease fence (services/room
// session.go) closes it.

import (
	"context"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/errcode"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	"github.com/onair-dev/onair/token04"
)

// Verifier verifies tokens against the apps in etcd; Close stops it.
type Verifier struct {
	etcd *clientv3.Client
	now  func() time.Time
	apps *appCache
	stop context.CancelFunc
	done chan struct{}
}

// NewVerifier starts a Verifier on etcd; now is the clock (time.Now if
// nil).
func NewVerifier(etcd *clientv3.Client, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	ctx, stop := context.WithCancel(context.Background())
	v := &Verifier{etcd: etcd, now: now, apps: &appCache{etcd: etcd}, stop: stop, done: make(chan struct{})}
	go func() { defer close(v.done); v.apps.run(ctx) }()
	return v
}

// Close stops the watch of the apps.
func (v *Verifier) Close() {
	v.stop()
	<-v.done
}

// VerifyToken verifies a token and the privilege for the requested action.
// Publish and play failures carry the publish/play auth codes (1003072,
// 1004003) with the token's own reason in the message.
func (v *Verifier) VerifyToken(ctx context.Context, req *authv1.VerifyTokenRequest) (*authv1.VerifyTokenResponse, error) {
	resp, err := v.verify(ctx, req)
	if err == nil {
		return resp, nil
	}
	var code errcode.Code
	switch req.GetAction() {
	case authv1.Action_ACTION_PUBLISH:
		code = errcode.PublishAuthError
	case authv1.Action_ACTION_PLAY:
		code = errcode.PlayAuthError
	default:
		return nil, err
	}
	if errcode.Of(err) == code {
		return nil, err
	}
	return nil, errcode.Newf(code, "%s", errcode.Message(err))
}

func (v *Verifier) verify(ctx context.Context, req *authv1.VerifyTokenRequest) (*authv1.VerifyTokenResponse, error) {
	if req.GetToken() == "" {
		return nil, errcode.New(errcode.NoToken, "no token given")
	}
	// The app as this replica last saw it; what that copy refuses is
	// checked again with etcd's own (appcache.go).
	if app, ok := v.apps.get(req.GetAppId()); ok && app != nil {
		if resp, err := v.verifyWith(app, req); err == nil {
			return resp, nil
		}
	}
	app, err := getApp(ctx, v.etcd, req.GetAppId())
	if errcode.Of(err) == errcode.AppNotFound {
		return nil, errcode.Newf(errcode.LoginAuthFailed, "app %d does not exist", req.GetAppId())
	}
	if err != nil {
		return nil, err
	}
	return v.verifyWith(app, req)
}

// verifyWith verifies req's token against app.
func (v *Verifier) verifyWith(app *authv1.App, req *authv1.VerifyTokenRequest) (*authv1.VerifyTokenResponse, error) {
	var err error
	if !slices.Contains(app.EnabledServices, authv1.Service_SERVICE_LIVE_STREAMING) {
		return nil, errcode.Newf(errcode.LoginAuthFailed, "live streaming is not enabled for app %d", app.AppId)
	}
	var claims *token04.Claims
	if req.GetUserId() == "" && (req.GetAction() == authv1.Action_ACTION_PUBLISH || req.GetAction() == authv1.Action_ACTION_PLAY) {
		// WHIP/WHEP name no user: the token's own user is the caller, and
		// the response tells who that is.
		claims, err = token04.VerifyAnyUser(req.GetToken(), req.GetAppId(), app.ServerSecret, v.now())
	} else {
		claims, err = token04.Verify(req.GetToken(), req.GetAppId(), req.GetUserId(), app.ServerSecret, v.now())
	}
	if err != nil {
		return nil, err
	}
	switch req.GetAction() {
	case authv1.Action_ACTION_LOGIN:
		if !claims.AllowsLogin(req.GetRoomId()) {
			return nil, errcode.Newf(errcode.LoginAuthFailed, "token does not allow logging into room %q", req.GetRoomId())
		}
	case authv1.Action_ACTION_PUBLISH:
		if !claims.AllowsPublish(req.GetRoomId(), req.GetStreamId()) {
			return nil, errcode.Newf(errcode.PublishAuthError, "token does not allow publishing stream %q in room %q", req.GetStreamId(), req.GetRoomId())
		}
	}
	out := &authv1.VerifyTokenResponse{
		AppId: claims.AppID, UserId: claims.UserID, ExpireUnix: claims.ExpireTime.Unix(),
		Privilege: &authv1.Privilege{AnyStreamId: true, Login: true, Publish: true},
	}
	if p := claims.Privilege; p != nil {
		out.Privilege = &authv1.Privilege{
			Restricted: true, RoomId: p.RoomID, Login: p.Login, Publish: p.Publish,
			StreamIds: p.StreamIDs, AnyStreamId: p.StreamIDs == nil,
		}
	}
	return out, nil
}
