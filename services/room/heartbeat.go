package room

// Keeping a session: heartbeats renew its lease, RenewToken its token.

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/etcdclient"
	"github.com/onair-dev/onair/internal/keys"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

func (s *Server) heartbeatInterval() time.Duration {
	return min(s.cfg.SessionTimeout/3, 30*time.Second)
}

// Heartbeat renews the session's lease. An expired token ends the session
// (1002056): the policy is that a session lives no longer than its token.
//
// The session comes from the replica's watch cache when it can (cache.go):
// a heartbeat costs the lease renewal and no read.
func (s *Server) Heartbeat(ctx context.Context, req *roomv1.HeartbeatRequest) (*roomv1.HeartbeatResponse, error) {
	rec, err := s.cachedSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	// Before anything else, the token-expiry end of the session included:
	// a caller whose token is not the session's changes nothing.
	if a := req.GetAppId(); a != 0 && a != rec.AppID {
		return nil, errcode.New(errcode.TokenAppIDMismatch, "the session belongs to another app than the token's")
	}
	if u := req.GetUserId(); u != "" && u != rec.UserID {
		return nil, errcode.New(errcode.TokenUserIDMismatch, "the session belongs to another user than the token's")
	}
	if r := req.GetRoomId(); r != "" && r != rec.RoomID {
		return nil, errcode.New(errcode.PublishForbidden, "the session is in another room than the one to publish into")
	}
	if rec.TokenExpire > 0 && s.cfg.Now().Unix() >= rec.TokenExpire {
		// Expired as the cache has it: etcd decides (a renewal may not
		// have reached the cache yet).
		if rec, err = s.session(ctx, req.GetSessionId()); err != nil {
			return nil, err
		}
	}
	if rec.TokenExpire > 0 && s.cfg.Now().Unix() >= rec.TokenExpire {
		_ = s.endSession(ctx, rec, roomv1.UserLeaveReason_USER_LEAVE_REASON_TOKEN_EXPIRED, errcode.KickedTokenExpired, streamv1.DeleteReason_DELETE_REASON_KICKED)
		return nil, errcode.New(errcode.KickedTokenExpired, "the token expired; the session is over")
	}
	if err := s.sess.keepAlive(ctx, rec); err != nil {
		return nil, err
	}
	return &roomv1.HeartbeatResponse{TokenExpireUnix: rec.TokenExpire}, nil
}

// RenewToken verifies a new token for the session's user and room and
// stores its expiry in the session and the member record, so whichever
// replica serves the session's events sees it.
func (s *Server) RenewToken(ctx context.Context, req *roomv1.RenewTokenRequest) (*roomv1.RenewTokenResponse, error) {
	rec, err := s.cachedSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	claims, err := s.cfg.Auth.VerifyToken(ctx, &authv1.VerifyTokenRequest{
		AppId: rec.AppID, UserId: rec.UserID, Token: req.GetToken(), Action: authv1.Action_ACTION_LOGIN, RoomId: rec.RoomID})
	if err != nil {
		return nil, err
	}
	rec.TokenExpire = claims.GetExpireUnix()
	userKey := keys.RoomUser(rec.AppID, rec.RoomID, rec.UserID)
	resp, err := s.cfg.Etcd.Txn(etcdclient.Retryable(ctx)).
		If(clientv3.Compare(clientv3.LeaseValue(userKey), "=", rec.Lease)).
		Then(sessionPuts(rec, clientv3.WithIgnoreLease())...).Commit()
	if err != nil {
		return nil, errcode.Unavailable(err)
	}
	s.writes.wrote(roomKey{rec.AppID, rec.RoomID}, resp.Header.Revision)
	if !resp.Succeeded {
		return nil, errcode.New(errcode.SessionNotFound, "the session has ended")
	}
	return &roomv1.RenewTokenResponse{TokenExpireUnix: rec.TokenExpire}, nil
}
