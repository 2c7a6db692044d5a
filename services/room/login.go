package room

// Logging in: one transaction makes the session, its member key and its
// callbacks, and finds the session an earlier try of the same attempt made.

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/ids"
	"github.com/onair-dev/onair/internal/keys"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// LoginRoom starts a session. See the package doc for what lives where.
func (s *Server) LoginRoom(ctx context.Context, req *roomv1.LoginRoomRequest) (*roomv1.LoginRoomResponse, error) {
	user := req.GetUser()
	if err := ids.Room(req.GetRoomId()); err != nil {
		return nil, err
	}
	if err := ids.User(user.GetUserId()); err != nil {
		return nil, err
	}
	if err := ids.UserName(user.GetUserName()); err != nil {
		return nil, err
	}
	if req.GetToken() == "" {
		return nil, errcode.New(errcode.NoToken, "no token given: log in with a Token04 token")
	}
	if len(req.GetAttemptId()) > maxAttemptID {
		return nil, errcode.Newf(errcode.InvalidParameter, "attempt_id is longer than %d characters", maxAttemptID)
	}
	k := roomKey{req.GetAppId(), req.GetRoomId()}
	if !s.limits(k).login.Allow() {
		return nil, errcode.Newf(errcode.TooManyRequests, "too many logins into room %q: at most %v per second", req.GetRoomId(), s.cfg.LoginRate)
	}
	claims, err := s.cfg.Auth.VerifyToken(ctx, &authv1.VerifyTokenRequest{
		AppId: req.GetAppId(), UserId: user.GetUserId(), Token: req.GetToken(),
		Action: authv1.Action_ACTION_LOGIN, RoomId: req.GetRoomId(),
	})
	if err != nil {
		return nil, err
	}
	// A retried login finds the session its first try made (the reply was
	// lost): same attempt, same session. Without an attempt ID from the
	// client, the server's own retries of the transaction below still need
	// one.
	attempt := req.GetAttemptId()
	if attempt == "" {
		attempt = "server-" + newID()
	}
	// The session's lease: a pooled empty one or a new grant (session.go),
	// taken once the login is known not to be a retry of one that went
	// through.
	var rs *roomSession
	now := s.cfg.Now()
	rec := keys.SessionRecord{
		SessionID: newID(),
		AppID:     req.GetAppId(), RoomID: req.GetRoomId(), UserID: user.GetUserId(), UserName: user.GetUserName(),
		TokenExpire: claims.GetExpireUnix(),
		UserNotify:  req.GetConfig().GetIsUserStatusNotify(), LoginTimeMs: now.UnixMilli(), AttemptID: attempt,
	}
	sessKey := keys.Session(rec.AppID, rec.UserID)
	usersPrefix := keys.RoomUsers(rec.AppID, rec.RoomID)
	metaKey := keys.RoomMeta(rec.AppID, rec.RoomID)
	// What the transaction expects, guessed without reading: the user has
	// no session, and the room is as this replica last saw it. A wrong
	// guess fails the transaction's comparisons, whose Else reads the
	// truth for the next try: a login costs no read of its own.
	var old *keys.SessionRecord
	var oldRev int64
	meta, metaCreated := s.metas.get(roomKey{rec.AppID, rec.RoomID})
	callbacks := s.callbacksFor(ctx, rec.AppID)
	for {
		if sameAttempt(old, attempt, rec.RoomID) {
			rs.abandon() // empty: nothing of this try was written
			return s.loginResponse(old, oldRev), nil
		}
		if rs == nil {
			var err error
			if rs, err = s.sess.grant(ctx); err != nil {
				return nil, errcode.Unavailable(err)
			}
		}
		var events []callback.Event
		var ops []clientv3.Op
		conds := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(sessKey), "=", oldRev),
			clientv3.Compare(clientv3.CreateRevision(metaKey), "=", metaCreated), rs.guard()}
		m := meta
		if m == nil {
			// The room is created by this login (see lifecycle.go); its
			// room session ID is every session's.
			m = &roomMeta{RoomSessionID: strconv.FormatUint(randUint64(), 10), CreateTimeMs: now.UnixMilli()}
			b, _ := json.Marshal(m)
			ops = append(ops, clientv3.OpPut(metaKey, string(b)))
			events = append(events, callback.Event{Event: callback.RoomCreate, AppID: rec.AppID, RoomID: rec.RoomID,
				RoomSessionID: m.RoomSessionID, UserID: rec.UserID, UserName: rec.UserName})
		}
		rec.RoomSessionID = m.RoomSessionID
		if max := req.GetConfig().GetMaxMemberCount(); max > 0 {
			cnt, err := s.cfg.Etcd.Get(ctx, usersPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				rs.abandon()
				return nil, errcode.Unavailable(err)
			}
			n := cnt.Count
			if old != nil && old.RoomID == rec.RoomID {
				n-- // the user replaces itself
			}
			if n >= int64(max) {
				rs.abandon()
				return nil, errcode.Newf(errcode.MemberLimit, "room %q is full (%d members)", rec.RoomID, max)
			}
			// Nobody joined since we counted, or we count again.
			conds = append(conds, clientv3.Compare(clientv3.ModRevision(usersPrefix), "<", cnt.Header.Revision+1).WithPrefix())
		}
		ops = append(ops, rs.attach(&rec)...)
		if old != nil {
			// The earlier session leaves (relogin: reason 3) before this
			// one arrives, in its room or this one.
			events = append([]callback.Event{logoutEvent(old, roomv1.UserLeaveReason_USER_LEAVE_REASON_KICKED)}, events...)
			ops = append(ops, clientv3.OpDelete(keys.SessionID(old.SessionID)))
			if old.RoomID != rec.RoomID {
				ops = append(ops, clientv3.OpPut(keys.RoomUser(old.AppID, old.RoomID, old.UserID),
					leftJSON(old, roomv1.UserLeaveReason_USER_LEAVE_REASON_KICKED, errcode.KickedSameUser), clientv3.WithIgnoreLease()))
			}
		}
		events = append(events, callback.Event{Event: callback.RoomLogin, AppID: rec.AppID, RoomID: rec.RoomID,
			RoomSessionID: rec.RoomSessionID, UserID: rec.UserID, UserName: rec.UserName})
		if callbacks {
			ops = append(ops, callback.Ops(now, events...)...)
		}
		// Committed with other logins and logouts (commit.go); it may be
		// committed again after a try whose reply was lost in an etcd
		// leader change: its comparisons then fail, and the Else finds
		// the session by its attempt ID.
		resp, err := s.commit.Txn(ctx, conds, ops, []clientv3.Op{clientv3.OpGet(sessKey), clientv3.OpGet(metaKey), rs.fenceRead()})
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// A pooled lease that expired after all: a fresh one.
			rs = nil
			continue
		}
		if err != nil {
			// The login fails, and whatever a try of it may have written
			// goes with its lease: a failed login leaves no session.
			rs.revoke()
			return nil, errcode.Unavailable(err)
		}
		if !resp.Succeeded {
			if rs.fenced(resp.Responses[2]) {
				// A late try of an earlier login committed on this
				// pooled lease (session.go): its keys go with it.
				rs.revoke()
				rs = nil
			}
			if old, oldRev, err = sessionOf(resp.Responses[0]); err != nil {
				rs.abandon()
				return nil, err
			}
			if meta, metaCreated, err = metaOf(resp.Responses[1]); err != nil {
				rs.abandon()
				return nil, err
			}
			s.metas.put(roomKey{rec.AppID, rec.RoomID}, meta, metaCreated)
			continue
		}
		s.writes.wrote(roomKey{rec.AppID, rec.RoomID}, resp.Header.Revision)
		if old != nil && old.RoomID != rec.RoomID {
			s.writes.wrote(roomKey{old.AppID, old.RoomID}, resp.Header.Revision)
		}
		if meta == nil {
			s.metas.put(roomKey{rec.AppID, rec.RoomID}, m, resp.Header.Revision)
		}
		rs.established(&rec, resp.Header.Revision)
		if old != nil {
			// The earlier session is over: it hears KickOut 1002050 from its
			// room's watch; its streams end as "repeated login".
			s.finishSession(context.WithoutCancel(ctx), old, streamv1.DeleteReason_DELETE_REASON_REPEATED_LOGIN, old.RoomID != rec.RoomID)
		}
		return s.loginResponse(&rec, resp.Header.Revision), nil
	}
}

// sessionOf decodes the session a login's Else read.
func sessionOf(r *etcdserverpb.ResponseOp) (*keys.SessionRecord, int64, error) {
	kvs := r.GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return nil, 0, nil
	}
	rec := new(keys.SessionRecord)
	if err := json.Unmarshal(kvs[0].Value, rec); err != nil {
		return nil, 0, err
	}
	return rec, kvs[0].ModRevision, nil
}

// metaOf decodes the room meta a login's Else read.
func metaOf(r *etcdserverpb.ResponseOp) (*roomMeta, int64, error) {
	kvs := r.GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return nil, 0, nil
	}
	m := new(roomMeta)
	if err := json.Unmarshal(kvs[0].Value, m); err != nil {
		return nil, 0, err
	}
	return m, kvs[0].CreateRevision, nil
}

// metaCache is what this replica last saw of each room's meta: a login's
// guess (see LoginRoom), checked by its transaction.
type metaCache struct {
	mu sync.Mutex
	m  map[roomKey]cachedMeta
}

type cachedMeta struct {
	meta    *roomMeta
	created int64
}

func (c *metaCache) get(k roomKey) (*roomMeta, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[k]
	return e.meta, e.created
}

func (c *metaCache) put(k roomKey, m *roomMeta, created int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 100_000 {
		c.m = map[roomKey]cachedMeta{}
	}
	if m == nil {
		delete(c.m, k)
		return
	}
	c.m[k] = cachedMeta{m, created}
}

// maxAttemptID bounds a client's login attempt ID.
const maxAttemptID = 128

// sameAttempt reports whether rec is the session a try of login attempt
// made in roomID.
func sameAttempt(rec *keys.SessionRecord, attempt, roomID string) bool {
	return rec != nil && attempt != "" && rec.AttemptID == attempt && rec.RoomID == roomID
}

func (s *Server) loginResponse(rec *keys.SessionRecord, rev int64) *roomv1.LoginRoomResponse {
	return &roomv1.LoginRoomResponse{
		SessionId: rec.SessionID, RoomSessionId: rec.RoomSessionID, Revision: rev,
		HeartbeatIntervalMs: s.heartbeatInterval().Milliseconds(), SessionTimeoutMs: s.cfg.SessionTimeout.Milliseconds(),
		TokenExpireUnix: rec.TokenExpire,
	}
}

func (s *Server) sessionByUser(ctx context.Context, appID uint32, userID string) (*keys.SessionRecord, int64, error) {
	resp, err := s.cfg.Etcd.Get(ctx, keys.Session(appID, userID))
	if err != nil {
		return nil, 0, errcode.Unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	rec := new(keys.SessionRecord)
	if err := json.Unmarshal(resp.Kvs[0].Value, rec); err != nil {
		return nil, 0, err
	}
	return rec, resp.Kvs[0].ModRevision, nil
}

// session looks a session up by ID.
func (s *Server) session(ctx context.Context, id string) (*keys.SessionRecord, error) {
	if id == "" {
		return nil, errcode.New(errcode.SessionNotFound, "no session ID given: log in first")
	}
	resp, err := s.cfg.Etcd.Get(ctx, keys.SessionID(id))
	if err != nil {
		return nil, errcode.Unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errcode.New(errcode.SessionNotFound, "the session does not exist or has ended: log in again")
	}
	rec := new(keys.SessionRecord)
	if err := json.Unmarshal(resp.Kvs[0].Value, rec); err != nil {
		return nil, err
	}
	return rec, nil
}
