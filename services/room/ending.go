package room

// Ending a session: logout, kick, relogin and token expiry all mark the
// member left with a reason, drop the session keys and write room_logout in
// one transaction, then end its streams and its lease.

import (
	"context"
	"encoding/json"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/ids"
	"github.com/onair-dev/onair/internal/keys"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// leftJSON is the member value of a session on its way out, with why.
func leftJSON(rec *keys.SessionRecord, reason roomv1.UserLeaveReason, code errcode.Code) string {
	m := memberOf(rec)
	m.TokenExpire, m.Left, m.Reason, m.Code = 0, true, callback.LogoutReason(reason), code
	b, _ := json.Marshal(m)
	return string(b)
}

// logoutEvent is the room_logout callback of a session that ends.
func logoutEvent(rec *keys.SessionRecord, reason roomv1.UserLeaveReason) callback.Event {
	return callback.Event{Event: callback.RoomLogout, AppID: rec.AppID, RoomID: rec.RoomID, RoomSessionID: rec.RoomSessionID,
		UserID: rec.UserID, UserName: rec.UserName, Reason: callback.LogoutReason(reason)}
}

// endSession removes a live session with a reason: the member is marked
// left (watchers learn why) and its session keys go, with the room_logout
// callback, in one transaction; then finishSession.
func (s *Server) endSession(ctx context.Context, rec *keys.SessionRecord, reason roomv1.UserLeaveReason, code errcode.Code, streamReason streamv1.DeleteReason) error {
	userKey := keys.RoomUser(rec.AppID, rec.RoomID, rec.UserID)
	ops := leavingOps(rec, reason, code)
	if s.callbacksFor(ctx, rec.AppID) {
		ops = append(ops, callback.Ops(s.cfg.Now(), logoutEvent(rec, reason))...)
	}
	// The room's streams, read in the same transaction: the ones the
	// session published end next, and none can be added under its lease
	// after it (a publish checks the session key this deletes).
	ops = append(ops, clientv3.OpGet(keys.RoomStreams(rec.AppID, rec.RoomID), clientv3.WithPrefix()))
	// The session-ID key goes in this transaction: a second commit of it
	// (a retry after a lost reply) fails instead of reporting the logout
	// twice. Committed with other logins and logouts (commit.go).
	resp, err := s.commit.Txn(ctx,
		[]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(userKey), "=", rec.Lease),
			clientv3.Compare(clientv3.CreateRevision(keys.SessionID(rec.SessionID)), ">", 0)},
		ops, []clientv3.Op{clientv3.OpGet(userKey)})
	if err != nil {
		return errcode.Unavailable(err)
	}
	if !resp.Succeeded && !markedLeft(resp, rec) {
		s.sess.forget(rec.SessionID)
		return errcode.New(errcode.SessionNotFound, "the session has already ended")
	}
	// Done now, or by an earlier try whose reply was lost (or a concurrent
	// end of the same session): the rest is idempotent.
	if resp.Succeeded {
		s.writes.wrote(roomKey{rec.AppID, rec.RoomID}, resp.Header.Revision)
		s.finish(ctx, rec, streamReason, true, streamsOf(resp.Responses[len(ops)-1], rec.UserID), resp.Header.Revision)
	} else {
		s.finishSession(ctx, rec, streamReason, true)
	}
	return nil
}

// streamsOf decodes the streams of user among a room's stream records.
func streamsOf(r *etcdserverpb.ResponseOp, user string) []*streamv1.StreamRecord {
	var out []*streamv1.StreamRecord
	for _, kv := range r.GetResponseRange().GetKvs() {
		st := new(streamv1.StreamRecord)
		if proto.Unmarshal(kv.Value, st) == nil && st.GetUserId() == user {
			out = append(out, st)
		}
	}
	return out
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
	s.finish(ctx, rec, streamReason, deleteMember, nil, 0)
}

// finish is finishSession right after endSession's transaction, which
// marked the member left at revision markedAt and read the session's
// streams, or (markedAt 0) with the streams to be listed. A session that
// had no stream and whose member key goes here leaves its lease empty,
// which its end (session.go) may pool. With markedAt the member key is
// deleted only if it is still that one. Its lease alone does not say so
// once the lease may be pooled: a late try of this delete (session.go)
// would remove the member of the next session on the lease, the same user
// back in the same room.
func (s *Server) finish(ctx context.Context, rec *keys.SessionRecord, streamReason streamv1.DeleteReason, deleteMember bool, streams []*streamv1.StreamRecord, markedAt int64) {
	known := markedAt > 0
	if !known {
		list, err := s.cfg.Streams.ListStreams(ctx, &streamv1.ListStreamsRequest{AppId: rec.AppID, RoomId: rec.RoomID})
		if err != nil {
			s.log.Warn("list streams of finished session", "err", err)
		}
		for _, st := range list.GetStreams() {
			if st.GetUserId() == rec.UserID {
				streams = append(streams, st)
			}
		}
	}
	for _, st := range streams {
		if _, err := s.cfg.Streams.UnregisterStream(ctx, &streamv1.UnregisterStreamRequest{
			AppId: rec.AppID, StreamId: st.GetStreamId(), Reason: streamReason}); err != nil && errcode.Of(err) != errcode.StreamNotFound {
			s.log.Warn("end stream of finished session", "stream", st.GetStreamId(), "err", err)
		}
	}
	emptied := false
	if deleteMember {
		userKey := keys.RoomUser(rec.AppID, rec.RoomID, rec.UserID)
		still := clientv3.Compare(clientv3.LeaseValue(userKey), "=", rec.Lease)
		if known {
			still = clientv3.Compare(clientv3.ModRevision(userKey), "=", markedAt)
		}
		resp, err := s.commit.Txn(ctx, []clientv3.Cmp{still}, []clientv3.Op{clientv3.OpDelete(userKey)}, nil)
		emptied = err == nil && resp.Succeeded
		if emptied {
			s.writes.wrote(roomKey{rec.AppID, rec.RoomID}, resp.Header.Revision)
		}
	}
	s.sess.end(rec, emptied && known && len(streams) == 0)
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
	// A session logged in here needs no read: endSession's comparisons
	// check it is still what this replica remembers.
	var rec *keys.SessionRecord
	if live, ok := s.sess.recall(req.GetSessionId()); ok {
		rec = &live.rec
	} else {
		var err error
		if rec, err = s.session(ctx, req.GetSessionId()); err != nil {
			return nil, err
		}
	}
	if err := s.endSession(ctx, rec, roomv1.UserLeaveReason_USER_LEAVE_REASON_LOGOUT, 0, streamv1.DeleteReason_DELETE_REASON_STOPPED); err != nil {
		return nil, err
	}
	return &roomv1.LogoutRoomResponse{}, nil
}
