// Package room is the room service: logins and sessions, room membership,
// room extra info and messages, and the revision-ordered event stream that
// tells every client in a room who and what comes and goes.
//
// The service is stateless: etcd holds every session (under a lease per
// session, so a client that stops heartbeating vanishes after the timeout)
// and every replica can serve every client. Each replica keeps one hub per
// active room that watches the room once and fans events out to its local
// subscribers.
package room

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/etcdclient"
	"github.com/onair-dev/onair/internal/ids"
	"github.com/onair-dev/onair/internal/keys"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// Defaults, from the vendor where it has one.
const (
	DefaultSessionTimeout      = 90 * time.Second
	DefaultLoginRate           = 200 // logins per second per room
	DefaultMessageRate         = 10  // broadcast messages per second per room
	DefaultOnlineCountInterval = 30 * time.Second
	DefaultUserBatchWindow     = 50 * time.Millisecond
	// TokenWarning is how long before expiry a client is told to renew.
	TokenWarning = 30 * time.Second

	maxExtraInfoKey   = 128
	maxExtraInfoValue = 4096
	maxMessage        = 1024
	maxKick           = 5
)

// Config configures the room service.
type Config struct {
	Etcd    *clientv3.Client
	Auth    authv1.AuthServiceClient
	Streams streamv1.StreamServiceClient
	// SessionTimeout removes a session that has not sent a heartbeat for
	// this long (the vendor's is 90 s).
	SessionTimeout time.Duration
	// LoginRate limits logins per room per second on each replica.
	LoginRate float64
	// MessageRate limits broadcast messages per room per second per replica.
	MessageRate float64
	// NATS carries room messages between replicas (see messages.go); nil
	// delivers them to this replica's own subscribers only (one replica).
	NATS *nats.Conn
	// OnlineCountInterval is how often subscribers get the online count
	// when it changed.
	OnlineCountInterval time.Duration
	// UserBatchWindow is how long user updates are collected into one
	// message in rooms of more than a hundred users.
	UserBatchWindow time.Duration
	// HubLinger keeps an idle room hub (and its resume history) this long
	// after its last subscriber left.
	HubLinger time.Duration
	// Lease is the replica's current lease (its discovery lease): the
	// lifecycle watcher's leadership and the callback deliverer's room
	// claims live under it. Without it the replica runs neither, and
	// leaves both to other replicas.
	Lease func() clientv3.LeaseID
	// CallbackRetryBase and CallbackTimeout tune callback delivery (see
	// callback.Config); zero means the vendor's 2, 4, 8, 16, 32 s and 5 s.
	CallbackRetryBase time.Duration
	CallbackTimeout   time.Duration
	// Meter measures callback delivery, room messages and the NATS
	// connection; no metrics if nil.
	Meter  metric.MeterProvider
	Logger *slog.Logger
	Now    func() time.Time
}

// Server implements the client and business-server room APIs.
type Server struct {
	roomv1.UnimplementedRoomServiceServer
	cfg Config
	log *slog.Logger
	ctx context.Context
	// stop ends every hub and background task.
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu       sync.Mutex
	hubs     map[roomKey]*hub
	limiters map[roomKey]*roomLimits
	msgs     *relay
}

type roomKey struct {
	app  uint32
	room string
}

type roomLimits struct {
	login, message *rate.Limiter
}

// member is the value of a room user key.
type member struct {
	UserID        string `json:"user_id"`
	UserName      string `json:"user_name"`
	SessionID     string `json:"session_id"`
	RoomSessionID string `json:"room_session_id,omitempty"`
	LoginTimeMs   int64  `json:"login_time_ms"`
	TokenExpire   int64  `json:"token_expire"`
	// Left marks a member on its way out, with why; the key is deleted
	// right after. It is how watchers learn the reason.
	Left   bool                   `json:"left,omitempty"`
	Reason roomv1.UserLeaveReason `json:"reason,omitempty"`
	Code   errcode.Code           `json:"code,omitempty"`
}

// New returns a room service. Close stops its hubs.
func New(cfg Config) *Server {
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.LoginRate <= 0 {
		cfg.LoginRate = DefaultLoginRate
	}
	if cfg.MessageRate <= 0 {
		cfg.MessageRate = DefaultMessageRate
	}
	if cfg.OnlineCountInterval <= 0 {
		cfg.OnlineCountInterval = DefaultOnlineCountInterval
	}
	if cfg.UserBatchWindow <= 0 {
		cfg.UserBatchWindow = DefaultUserBatchWindow
	}
	if cfg.HubLinger <= 0 {
		cfg.HubLinger = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: cfg.Logger, ctx: ctx, stop: stop,
		hubs: map[roomKey]*hub{}, limiters: map[roomKey]*roomLimits{},
		msgs: newRelay(cfg)}
	if cfg.Lease != nil {
		tg := &targets{auth: cfg.Auth, ttl: 5 * time.Second, m: map[uint32]targetEntry{}}
		d := callback.New(callback.Config{Etcd: cfg.Etcd, Lease: cfg.Lease, Target: tg.lookup,
			RetryBase: cfg.CallbackRetryBase, Timeout: cfg.CallbackTimeout, Meter: cfg.Meter, Logger: cfg.Logger, Now: cfg.Now})
		s.wg.Add(2)
		go func() { defer s.wg.Done(); s.runLifecycle(ctx) }()
		go func() { defer s.wg.Done(); d.Run(ctx) }()
	}
	return s
}

// Close stops every hub. Sessions stay in etcd: clients resume them on
// another replica.
func (s *Server) Close() {
	s.stop()
	s.wg.Wait()
}

func (s *Server) limits(k roomKey) *roomLimits {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.limiters[k]
	if !ok {
		l = &roomLimits{
			login:   rate.NewLimiter(rate.Limit(s.cfg.LoginRate), int(s.cfg.LoginRate)),
			message: rate.NewLimiter(rate.Limit(s.cfg.MessageRate), int(s.cfg.MessageRate)),
		}
		// The map only grows with rooms that had logins on this replica;
		// forget them all when it gets large rather than track idleness.
		if len(s.limiters) > 100_000 {
			clear(s.limiters)
		}
		s.limiters[k] = l
	}
	return l
}

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
	// The session's lease is granted once the login is known not to be a
	// retry of one that went through.
	lease := &clientv3.LeaseGrantResponse{ID: clientv3.NoLease}
	// The transaction below may be committed again after a try whose reply
	// was lost in an etcd leader change: its comparisons then fail, and
	// the loop finds the session by its attempt ID.
	txnCtx := etcdclient.Retryable(ctx)
	now := s.cfg.Now()
	rec := keys.SessionRecord{
		SessionID: newID(),
		AppID:     req.GetAppId(), RoomID: req.GetRoomId(), UserID: user.GetUserId(), UserName: user.GetUserName(),
		Lease: int64(lease.ID), TokenExpire: claims.GetExpireUnix(),
		UserNotify: req.GetConfig().GetIsUserStatusNotify(), LoginTimeMs: now.UnixMilli(), AttemptID: attempt,
	}
	sessKey := keys.Session(rec.AppID, rec.UserID)
	usersPrefix := keys.RoomUsers(rec.AppID, rec.RoomID)
	metaKey := keys.RoomMeta(rec.AppID, rec.RoomID)
	for {
		old, oldRev, err := s.sessionByUser(ctx, rec.AppID, rec.UserID)
		if err != nil {
			s.revoke(lease.ID)
			return nil, err
		}
		if sameAttempt(old, attempt, rec.RoomID) {
			return s.loginResponse(old, oldRev), nil
		}
		if lease.ID == clientv3.NoLease {
			if lease, err = s.cfg.Etcd.Grant(ctx, int64((s.cfg.SessionTimeout+time.Second-1)/time.Second)); err != nil {
				return nil, errcode.Unavailable(err)
			}
			rec.Lease = int64(lease.ID)
		}
		// The room: created by this login if it does not exist (see
		// lifecycle.go); its room session ID is every session's.
		meta, metaCreated, err := s.readMeta(ctx, rec.AppID, rec.RoomID)
		if err != nil {
			s.revoke(lease.ID)
			return nil, err
		}
		var events []callback.Event
		var ops []clientv3.Op
		conds := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(sessKey), "=", oldRev),
			clientv3.Compare(clientv3.CreateRevision(metaKey), "=", metaCreated)}
		if meta == nil {
			meta = &roomMeta{RoomSessionID: strconv.FormatUint(randUint64(), 10), CreateTimeMs: now.UnixMilli()}
			b, _ := json.Marshal(meta)
			ops = append(ops, clientv3.OpPut(metaKey, string(b)))
			events = append(events, callback.Event{Event: callback.RoomCreate, AppID: rec.AppID, RoomID: rec.RoomID,
				RoomSessionID: meta.RoomSessionID, UserID: rec.UserID, UserName: rec.UserName})
		}
		rec.RoomSessionID = meta.RoomSessionID
		m := member{UserID: rec.UserID, UserName: rec.UserName, SessionID: rec.SessionID, RoomSessionID: rec.RoomSessionID,
			LoginTimeMs: rec.LoginTimeMs, TokenExpire: rec.TokenExpire}
		recJSON, _ := json.Marshal(rec)
		memberJSON, _ := json.Marshal(m)
		if max := req.GetConfig().GetMaxMemberCount(); max > 0 {
			cnt, err := s.cfg.Etcd.Get(ctx, usersPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				s.revoke(lease.ID)
				return nil, errcode.Unavailable(err)
			}
			n := cnt.Count
			if old != nil && old.RoomID == rec.RoomID {
				n-- // the user replaces itself
			}
			if n >= int64(max) {
				s.revoke(lease.ID)
				return nil, errcode.Newf(errcode.MemberLimit, "room %q is full (%d members)", rec.RoomID, max)
			}
			// Nobody joined since we counted, or we count again.
			conds = append(conds, clientv3.Compare(clientv3.ModRevision(usersPrefix), "<", cnt.Header.Revision+1).WithPrefix())
		}
		ops = append(ops,
			clientv3.OpPut(sessKey, string(recJSON), clientv3.WithLease(lease.ID)),
			clientv3.OpPut(keys.SessionID(rec.SessionID), string(recJSON), clientv3.WithLease(lease.ID)),
			clientv3.OpPut(keys.RoomUser(rec.AppID, rec.RoomID, rec.UserID), string(memberJSON), clientv3.WithLease(lease.ID)),
		)
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
		ops = append(ops, callback.Ops(now, events...)...)
		resp, err := s.cfg.Etcd.Txn(txnCtx).If(conds...).Then(ops...).Commit()
		if err != nil {
			// The login fails, and whatever a try of it may have written
			// goes with its lease: a failed login leaves no session.
			s.revoke(lease.ID)
			return nil, errcode.Unavailable(err)
		}
		if !resp.Succeeded {
			continue
		}
		if old != nil {
			// The earlier session is over: it hears KickOut 1002050 from its
			// room's watch; its streams end as "repeated login".
			s.finishSession(context.WithoutCancel(ctx), old, streamv1.DeleteReason_DELETE_REASON_REPEATED_LOGIN, old.RoomID != rec.RoomID)
		}
		return s.loginResponse(&rec, resp.Header.Revision), nil
	}
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

func (s *Server) heartbeatInterval() time.Duration {
	return min(s.cfg.SessionTimeout/3, 30*time.Second)
}

func leftJSON(rec *keys.SessionRecord, reason roomv1.UserLeaveReason, code errcode.Code) string {
	b, _ := json.Marshal(member{UserID: rec.UserID, UserName: rec.UserName, SessionID: rec.SessionID,
		RoomSessionID: rec.RoomSessionID, LoginTimeMs: rec.LoginTimeMs, Left: true, Reason: reason, Code: code})
	return string(b)
}

// logoutEvent is the room_logout callback of a session that ends.
func logoutEvent(rec *keys.SessionRecord, reason roomv1.UserLeaveReason) callback.Event {
	return callback.Event{Event: callback.RoomLogout, AppID: rec.AppID, RoomID: rec.RoomID, RoomSessionID: rec.RoomSessionID,
		UserID: rec.UserID, UserName: rec.UserName, Reason: int(reason)}
}

// endSession removes a live session with a reason: the member is marked
// left (watchers learn why) and its session keys go, with the room_logout
// callback, in one transaction; then finishSession.
func (s *Server) endSession(ctx context.Context, rec *keys.SessionRecord, reason roomv1.UserLeaveReason, code errcode.Code, streamReason streamv1.DeleteReason) error {
	sessKey := keys.Session(rec.AppID, rec.UserID)
	userKey := keys.RoomUser(rec.AppID, rec.RoomID, rec.UserID)
	ops := append([]clientv3.Op{clientv3.OpPut(userKey, leftJSON(rec, reason, code), clientv3.WithIgnoreLease()),
		clientv3.OpDelete(keys.SessionID(rec.SessionID)),
		// The session key goes only if it is still this session's (a
		// relogin may have replaced it).
		clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(sessKey), "=", rec.Lease)},
			[]clientv3.Op{clientv3.OpDelete(sessKey)}, nil)},
		callback.Ops(s.cfg.Now(), logoutEvent(rec, reason))...)
	// The session-ID key goes in this transaction: a second commit of it
	// (a retry after a lost reply) fails instead of reporting the logout
	// twice.
	resp, err := s.cfg.Etcd.Txn(etcdclient.Retryable(ctx)).
		If(clientv3.Compare(clientv3.LeaseValue(userKey), "=", rec.Lease),
			clientv3.Compare(clientv3.CreateRevision(keys.SessionID(rec.SessionID)), ">", 0)).
		Then(ops...).Else(clientv3.OpGet(userKey)).Commit()
	if err != nil {
		return errcode.Unavailable(err)
	}
	if !resp.Succeeded && !markedLeft(resp, rec) {
		return errcode.New(errcode.SessionNotFound, "the session has already ended")
	}
	// Done now, or by an earlier try whose reply was lost (or a concurrent
	// end of the same session): the rest is idempotent.
	s.finishSession(ctx, rec, streamReason, true)
	return nil
}

// markedLeft reports whether the Else read of endSession found rec's member
// already marked left: an earlier try of this end went through.
func markedLeft(resp *clientv3.TxnResponse, rec *keys.SessionRecord) bool {
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) != 1 || kvs[0].Lease != rec.Lease {
		return false
	}
	var m member
	return json.Unmarshal(kvs[0].Value, &m) == nil && m.Left && m.SessionID == rec.SessionID
}

// finishSession ends what a session owned once it is marked over: its
// streams (with streamReason), its member key if still marked left, and its
// lease.
func (s *Server) finishSession(ctx context.Context, rec *keys.SessionRecord, streamReason streamv1.DeleteReason, deleteMember bool) {
	if list, err := s.cfg.Streams.ListStreams(ctx, &streamv1.ListStreamsRequest{AppId: rec.AppID, RoomId: rec.RoomID}); err == nil {
		for _, st := range list.GetStreams() {
			if st.GetUserId() != rec.UserID {
				continue
			}
			if _, err := s.cfg.Streams.UnregisterStream(ctx, &streamv1.UnregisterStreamRequest{
				AppId: rec.AppID, StreamId: st.GetStreamId(), Reason: streamReason}); err != nil && errcode.Of(err) != errcode.StreamNotFound {
				s.log.Warn("end stream of finished session", "stream", st.GetStreamId(), "err", err)
			}
		}
	} else {
		s.log.Warn("list streams of finished session", "err", err)
	}
	if deleteMember {
		userKey := keys.RoomUser(rec.AppID, rec.RoomID, rec.UserID)
		_, _ = s.cfg.Etcd.Txn(etcdclient.Retryable(ctx)).
			If(clientv3.Compare(clientv3.LeaseValue(userKey), "=", rec.Lease)).
			Then(clientv3.OpDelete(userKey)).Commit()
	}
	s.revoke(clientv3.LeaseID(rec.Lease))
}

// revoke ends a session's lease, and with it every key still attached. It
// rides through an etcd leader change (etcdclient); when etcd has no
// quorum it keeps trying in the background until the lease would have
// expired anyway, so a session this replica gave up on does not stay for a
// whole heartbeat timeout once etcd is back.
func (s *Server) revoke(id clientv3.LeaseID) {
	if id == clientv3.NoLease || s.revokeOnce(id) {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		until := time.Now().Add(s.cfg.SessionTimeout)
		for time.Now().Before(until) {
			s.sleep(s.ctx, time.Second)
			if s.ctx.Err() != nil || s.revokeOnce(id) {
				return
			}
		}
	}()
}

func (s *Server) revokeOnce(id clientv3.LeaseID) bool {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	_, err := s.cfg.Etcd.Revoke(ctx, id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.log.Warn("revoke session lease", "err", err)
		return false
	}
	return true
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

// LogoutRoom ends a session; the room sees the user leave normally. A
// retry of a logout that went through answers SessionNotFound, which the
// SDKs take as done. With session ID "-" and an attempt ID it ends the
// session that login attempt made, if it is still the user's.
func (s *Server) LogoutRoom(ctx context.Context, req *roomv1.LogoutRoomRequest) (*roomv1.LogoutRoomResponse, error) {
	if id := req.GetSessionId(); (id == "" || id == "-") && req.GetAttemptId() != "" {
		if err := ids.User(req.GetUserId()); err != nil {
			return nil, err
		}
		rec, _, err := s.sessionByUser(ctx, req.GetAppId(), req.GetUserId())
		if err != nil {
			return nil, err
		}
		if rec == nil || rec.AttemptID != req.GetAttemptId() {
			return &roomv1.LogoutRoomResponse{}, nil
		}
		err = s.endSession(ctx, rec, roomv1.UserLeaveReason_USER_LEAVE_REASON_LOGOUT, 0, streamv1.DeleteReason_DELETE_REASON_STOPPED)
		if err != nil && errcode.Of(err) != errcode.SessionNotFound {
			return nil, err
		}
		return &roomv1.LogoutRoomResponse{}, nil
	}
	rec, err := s.session(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	if err := s.endSession(ctx, rec, roomv1.UserLeaveReason_USER_LEAVE_REASON_LOGOUT, 0, streamv1.DeleteReason_DELETE_REASON_STOPPED); err != nil {
		return nil, err
	}
	return &roomv1.LogoutRoomResponse{}, nil
}

// Heartbeat renews the session's lease. An expired token ends the session
// (1002056): the policy is that a session lives no longer than its token.
func (s *Server) Heartbeat(ctx context.Context, req *roomv1.HeartbeatRequest) (*roomv1.HeartbeatResponse, error) {
	rec, err := s.session(ctx, req.GetSessionId())
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
		_ = s.endSession(ctx, rec, roomv1.UserLeaveReason_USER_LEAVE_REASON_TOKEN_EXPIRED, errcode.KickedTokenExpired, streamv1.DeleteReason_DELETE_REASON_KICKED)
		return nil, errcode.New(errcode.KickedTokenExpired, "the token expired; the session is over")
	}
	if _, err := s.cfg.Etcd.KeepAliveOnce(ctx, clientv3.LeaseID(rec.Lease)); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return nil, errcode.New(errcode.SessionNotFound, "the session timed out: log in again")
		}
		return nil, errcode.Unavailable(err)
	}
	return &roomv1.HeartbeatResponse{TokenExpireUnix: rec.TokenExpire}, nil
}

// RenewToken verifies a new token for the session's user and room and
// stores its expiry in the session and the member record, so whichever
// replica serves the session's events sees it.
func (s *Server) RenewToken(ctx context.Context, req *roomv1.RenewTokenRequest) (*roomv1.RenewTokenResponse, error) {
	rec, err := s.session(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	claims, err := s.cfg.Auth.VerifyToken(ctx, &authv1.VerifyTokenRequest{
		AppId: rec.AppID, UserId: rec.UserID, Token: req.GetToken(), Action: authv1.Action_ACTION_LOGIN, RoomId: rec.RoomID})
	if err != nil {
		return nil, err
	}
	rec.TokenExpire = claims.GetExpireUnix()
	recJSON, _ := json.Marshal(rec)
	userKey := keys.RoomUser(rec.AppID, rec.RoomID, rec.UserID)
	m := member{UserID: rec.UserID, UserName: rec.UserName, SessionID: rec.SessionID, RoomSessionID: rec.RoomSessionID,
		LoginTimeMs: rec.LoginTimeMs, TokenExpire: rec.TokenExpire}
	memberJSON, _ := json.Marshal(m)
	resp, err := s.cfg.Etcd.Txn(etcdclient.Retryable(ctx)).
		If(clientv3.Compare(clientv3.LeaseValue(userKey), "=", rec.Lease)).
		Then(clientv3.OpPut(keys.Session(rec.AppID, rec.UserID), string(recJSON), clientv3.WithIgnoreLease()),
			clientv3.OpPut(keys.SessionID(rec.SessionID), string(recJSON), clientv3.WithIgnoreLease()),
			clientv3.OpPut(userKey, string(memberJSON), clientv3.WithIgnoreLease())).Commit()
	if err != nil {
		return nil, errcode.Unavailable(err)
	}
	if !resp.Succeeded {
		return nil, errcode.New(errcode.SessionNotFound, "the session has ended")
	}
	return &roomv1.RenewTokenResponse{TokenExpireUnix: rec.TokenExpire}, nil
}

// SetRoomExtraInfo sets one key of the room's extra info.
func (s *Server) SetRoomExtraInfo(ctx context.Context, req *roomv1.SetRoomExtraInfoRequest) (*roomv1.SetRoomExtraInfoResponse, error) {
	rec, err := s.session(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	switch {
	case req.GetKey() == "":
		return nil, errcode.New(errcode.InvalidParameter, "room extra info key is empty")
	case len(req.GetKey()) >= maxExtraInfoKey:
		return nil, errcode.New(errcode.RoomExtraInfoTooLong, "room extra info key must be under 128 bytes")
	case len(req.GetValue()) >= maxExtraInfoValue:
		return nil, errcode.New(errcode.RoomExtraInfoTooLong, "room extra info value must be under 4096 bytes")
	}
	info := &roomv1.RoomExtraInfo{Key: req.GetKey(), Value: req.GetValue(),
		UpdateUser: &roomv1.User{UserId: rec.UserID, UserName: rec.UserName}, UpdateTimeMs: s.cfg.Now().UnixMilli()}
	b, _ := marshal(info)
	resp, err := s.cfg.Etcd.Put(ctx, keys.RoomInfo(rec.AppID, rec.RoomID)+req.GetKey(), string(b))
	if err != nil {
		return nil, errcode.Unavailable(err)
	}
	return &roomv1.SetRoomExtraInfoResponse{Revision: resp.Header.Revision}, nil
}

// SendRoomMessage broadcasts a message or sends a custom command. It
// travels over NATS to the replicas with receivers in the room, never
// through etcd (see messages.go for what a client can count on).
func (s *Server) SendRoomMessage(ctx context.Context, req *roomv1.SendRoomMessageRequest) (*roomv1.SendRoomMessageResponse, error) {
	rec, err := s.senderSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	switch {
	case req.GetContent() == "":
		return nil, errcode.New(errcode.InvalidParameter, "message is empty")
	case len(req.GetContent()) > maxMessage:
		return nil, errcode.New(errcode.MessageTooLong, "message is longer than 1 KB")
	}
	kind := req.GetKind()
	switch kind {
	case roomv1.MessageKind_MESSAGE_KIND_UNSPECIFIED:
		kind = roomv1.MessageKind_MESSAGE_KIND_BROADCAST
	case roomv1.MessageKind_MESSAGE_KIND_CUSTOM_COMMAND:
		if len(req.GetToUserIds()) == 0 {
			return nil, errcode.New(errcode.InvalidParameter, "a custom command needs at least one receiver")
		}
	}
	if kind != roomv1.MessageKind_MESSAGE_KIND_CUSTOM_COMMAND && !s.limits(roomKey{rec.AppID, rec.RoomID}).message.Allow() {
		return nil, errcode.Newf(errcode.TooManyRequests, "too many messages in room %q: at most %v per second", rec.RoomID, s.cfg.MessageRate)
	}
	msg := &roomv1.RoomMessage{MessageId: strconv.FormatUint(randUint64(), 10), Kind: kind,
		FromUser: &roomv1.User{UserId: rec.UserID, UserName: rec.UserName}, Content: req.GetContent(), SendTimeMs: s.cfg.Now().UnixMilli()}
	if err := s.msgs.publish(s, roomKey{rec.AppID, rec.RoomID}, msg, req.GetToUserIds(), rec.SessionID); err != nil {
		return nil, err
	}
	return &roomv1.SendRoomMessageResponse{MessageId: msg.MessageId}, nil
}

// ListUsers pages through the session's room.
func (s *Server) ListUsers(ctx context.Context, req *roomv1.ListUsersRequest) (*roomv1.ListUsersResponse, error) {
	rec, err := s.session(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	users, next, count, err := s.listUsers(ctx, rec.AppID, rec.RoomID, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &roomv1.ListUsersResponse{Users: users, NextPageToken: next, OnlineCount: count}, nil
}

func (s *Server) listUsers(ctx context.Context, appID uint32, roomID string, size uint32, after string) ([]*roomv1.User, string, uint32, error) {
	if size == 0 || size > 500 {
		size = 100
	}
	prefix := keys.RoomUsers(appID, roomID)
	from := prefix
	if after != "" {
		from = prefix + after + "\x00"
	}
	resp, err := s.cfg.Etcd.Get(ctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithLimit(int64(size)+1))
	if err != nil {
		return nil, "", 0, errcode.Unavailable(err)
	}
	cnt, err := s.cfg.Etcd.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(resp.Header.Revision))
	if err != nil {
		return nil, "", 0, errcode.Unavailable(err)
	}
	var users []*roomv1.User
	next := ""
	for i, kv := range resp.Kvs {
		if i == int(size) {
			next = users[len(users)-1].UserId
			break
		}
		var m member
		if json.Unmarshal(kv.Value, &m) != nil || m.Left {
			continue
		}
		users = append(users, &roomv1.User{UserId: m.UserID, UserName: m.UserName})
	}
	return users, next, uint32(cnt.Count), nil
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) >> 1
}
