// Package stream is the stream registry: stream IDs unique per AppID by an
// etcd transaction, each stream living under the lease of its owner (the
// publisher's room session or the media edge serving it), and a resumable,
// revision-ordered watch of a room's streams.
//
// The registry is internal: every RPC needs the internal key, because its
// records name media edges and leases and its writes trust the caller to have
// checked the publisher. Clients and business servers reach streams through
// the room service, as public Streams.
package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/grpcserver"
	"github.com/onair-dev/onair/internal/ids"
	"github.com/onair-dev/onair/internal/keys"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// MaxExtraInfo is the vendor's limit: extra info must be under 1024 bytes.
const MaxExtraInfo = 1024

// Config configures the registry.
type Config struct {
	Etcd *clientv3.Client
	// Auth verifies publishers' tokens.
	Auth authv1.AuthServiceClient
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// Server implements streamv1.StreamServiceServer.
type Server struct {
	streamv1.UnimplementedStreamServiceServer
	cfg Config
}

// New returns a stream registry.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg}
}

// RegisterStream makes a stream live under its owner's lease. The same
// publisher registering again (say, after reconnecting to another edge)
// takes its stream over; anybody else gets 1003028.
func (s *Server) RegisterStream(ctx context.Context, req *streamv1.RegisterStreamRequest) (*streamv1.RegisterStreamResponse, error) {
	if err := grpcserver.RequireInternal(ctx); err != nil {
		return nil, err
	}
	if err := ids.Stream(req.GetStreamId()); err != nil {
		return nil, err
	}
	if err := ids.Room(req.GetRoomId()); err != nil {
		return nil, err
	}
	if err := ids.User(req.GetUserId()); err != nil {
		return nil, err
	}
	if len(req.GetExtraInfo()) >= MaxExtraInfo {
		return nil, errcode.New(errcode.StreamExtraInfoTooLong, "stream extra info must be under 1024 bytes")
	}
	// The media edge passes the publisher's token on; the registry checks
	// it again so that a stream's privilege is checked where it is written.
	if req.GetToken() != "" {
		if _, err := s.cfg.Auth.VerifyToken(ctx, &authv1.VerifyTokenRequest{
			AppId: req.GetAppId(), UserId: req.GetUserId(), Token: req.GetToken(),
			Action: authv1.Action_ACTION_PUBLISH, RoomId: req.GetRoomId(), StreamId: req.GetStreamId(),
		}); err != nil {
			return nil, err
		}
	}
	st := &streamv1.StreamRecord{
		AppId: req.GetAppId(), StreamId: req.GetStreamId(), RoomId: req.GetRoomId(),
		UserId: req.GetUserId(), UserName: req.GetUserName(), ExtraInfo: req.GetExtraInfo(),
		EdgeId: req.GetEdgeId(), EdgeAddr: req.GetEdgeAddr(), CreateTimeMs: s.cfg.Now().UnixMilli(),
	}
	for {
		var conds []clientv3.Cmp
		roomSessionID := ""
		if req.GetOwnerLease() != 0 {
			st.OwnerKind, st.OwnerLease = streamv1.OwnerKind_OWNER_KIND_EDGE, req.GetOwnerLease()
		} else {
			sess, rev, err := s.session(ctx, req.GetAppId(), req.GetUserId())
			if err != nil {
				return nil, err
			}
			if sess == nil || sess.RoomID != req.GetRoomId() {
				return nil, errcode.Newf(errcode.PublishForbidden, "user %q is not logged into room %q", req.GetUserId(), req.GetRoomId())
			}
			if st.UserName == "" {
				st.UserName = sess.UserName
			}
			st.OwnerKind, st.OwnerLease = streamv1.OwnerKind_OWNER_KIND_SESSION, sess.Lease
			roomSessionID = sess.RoomSessionID
			// The session must still be the one we read when the stream is
			// written, or a stream could outlive a logout.
			conds = append(conds, clientv3.Compare(clientv3.ModRevision(keys.Session(req.GetAppId(), req.GetUserId())), "=", rev))
		}
		idKey := keys.Stream(st.AppId, st.StreamId)
		old, oldRev, err := s.get(ctx, idKey)
		if err != nil {
			return nil, err
		}
		if old != nil && !old.Ended && (old.UserId != st.UserId || old.RoomId != st.RoomId) {
			return nil, errcode.Newf(errcode.StreamIDExists, "stream %q is already being published", st.StreamId)
		}
		if old != nil && !old.Ended {
			st.CreateTimeMs = old.CreateTimeMs
		}
		ops := putOps(st, clientv3.WithLease(clientv3.LeaseID(st.OwnerLease)))
		if old != nil && old.RoomId != st.RoomId {
			ops = append(ops, clientv3.OpDelete(keys.RoomStream(old.AppId, old.RoomId, old.StreamId)))
		}
		if old == nil || old.Ended {
			// A new stream, not its publisher taking it over: stream_create.
			ops = append(ops, callback.Ops(s.cfg.Now(), callback.Event{Event: callback.StreamCreate, AppID: st.AppId,
				RoomID: st.RoomId, RoomSessionID: roomSessionID, UserID: st.UserId, UserName: st.UserName, StreamID: st.StreamId})...)
		}
		conds = append(conds, clientv3.Compare(clientv3.ModRevision(idKey), "=", oldRev))
		resp, err := s.cfg.Etcd.Txn(ctx).If(conds...).Then(ops...).Commit()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return nil, errcode.New(errcode.PublishForbidden, "the publisher's session or edge is gone")
		}
		if err != nil {
			return nil, errcode.Unavailable(err)
		}
		if resp.Succeeded {
			return &streamv1.RegisterStreamResponse{Stream: st, Revision: resp.Header.Revision}, nil
		}
		// Somebody changed the stream or session in between: read again.
	}
}

func (s *Server) session(ctx context.Context, appID uint32, userID string) (*keys.SessionRecord, int64, error) {
	resp, err := s.cfg.Etcd.Get(ctx, keys.Session(appID, userID))
	if err != nil {
		return nil, 0, errcode.Unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	var rec keys.SessionRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return nil, 0, fmt.Errorf("stream: decode session: %w", err)
	}
	return &rec, resp.Kvs[0].ModRevision, nil
}

// putOps writes a stream under both its keys: by ID (uniqueness) and in
// its room (what the room watches).
func putOps(st *streamv1.StreamRecord, opt clientv3.OpOption) []clientv3.Op {
	b, _ := proto.Marshal(st)
	return []clientv3.Op{
		clientv3.OpPut(keys.Stream(st.AppId, st.StreamId), string(b), opt),
		clientv3.OpPut(keys.RoomStream(st.AppId, st.RoomId, st.StreamId), string(b), opt),
	}
}

// get reads a stream record and its mod revision (0 if absent).
func (s *Server) get(ctx context.Context, key string, opts ...clientv3.OpOption) (*streamv1.StreamRecord, int64, error) {
	resp, err := s.cfg.Etcd.Get(ctx, key, opts...)
	if err != nil {
		return nil, 0, errcode.Unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	st := new(streamv1.StreamRecord)
	if err := proto.Unmarshal(resp.Kvs[0].Value, st); err != nil {
		return nil, 0, fmt.Errorf("stream: decode %s: %w", key, err)
	}
	return st, resp.Kvs[0].ModRevision, nil
}

// live reads a stream that is live, with its mod revision, or fails with
// 1004002.
func (s *Server) live(ctx context.Context, appID uint32, streamID string) (*streamv1.StreamRecord, int64, error) {
	st, rev, err := s.get(ctx, keys.Stream(appID, streamID))
	if err != nil {
		return nil, 0, err
	}
	if st == nil || st.Ended {
		return nil, 0, errcode.Newf(errcode.StreamNotFound, "stream %q does not exist", streamID)
	}
	return st, rev, nil
}

// authorizeOwner checks, when the caller passes a token on, that userID is
// the stream's publisher with a token that allows it. A caller with no token
// acts on its own authority, which RequireInternal has established.
func (s *Server) authorizeOwner(ctx context.Context, st *streamv1.StreamRecord, userID, token string) error {
	if token == "" {
		return nil
	}
	if userID != st.UserId {
		return errcode.Newf(errcode.PublishAuthError, "stream %q is not published by user %q", st.StreamId, userID)
	}
	_, err := s.cfg.Auth.VerifyToken(ctx, &authv1.VerifyTokenRequest{
		AppId: st.AppId, UserId: userID, Token: token,
		Action: authv1.Action_ACTION_PUBLISH, RoomId: st.RoomId, StreamId: st.StreamId,
	})
	return err
}

// UnregisterStream ends a stream. It first marks the stream ended with its
// reason and then deletes it: a transaction can't put and delete one key,
// and the mark is how watchers learn the reason.
func (s *Server) UnregisterStream(ctx context.Context, req *streamv1.UnregisterStreamRequest) (*streamv1.UnregisterStreamResponse, error) {
	if err := grpcserver.RequireInternal(ctx); err != nil {
		return nil, err
	}
	idKey := keys.Stream(req.GetAppId(), req.GetStreamId())
	for {
		st, rev, err := s.live(ctx, req.GetAppId(), req.GetStreamId())
		if err != nil {
			return nil, err
		}
		if err := s.authorizeOwner(ctx, st, req.GetUserId(), req.GetToken()); err != nil {
			return nil, err
		}
		reason := req.GetReason()
		if reason == streamv1.DeleteReason_DELETE_REASON_UNSPECIFIED {
			reason = streamv1.DeleteReason_DELETE_REASON_STOPPED
		}
		st.Ended, st.DeleteReason = true, reason
		roomKey := keys.RoomStream(st.AppId, st.RoomId, st.StreamId)
		ops := append(putOps(st, clientv3.WithIgnoreLease()), callback.Ops(s.cfg.Now(), callback.Event{Event: callback.StreamClose,
			AppID: st.AppId, RoomID: st.RoomId, UserID: st.UserId, UserName: st.UserName, StreamID: st.StreamId, Reason: int(reason)})...)
		resp, err := s.cfg.Etcd.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(idKey), "=", rev)).
			Then(ops...).Commit()
		if err != nil {
			return nil, errcode.Unavailable(err)
		}
		if !resp.Succeeded {
			continue
		}
		if _, err := s.cfg.Etcd.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(idKey), "=", resp.Header.Revision)).
			Then(clientv3.OpDelete(idKey), clientv3.OpDelete(roomKey)).Commit(); err != nil {
			// The ended mark stays until its owner's lease ends; readers
			// treat it as gone, so nothing is lost.
			return nil, errcode.Unavailable(err)
		}
		return &streamv1.UnregisterStreamResponse{Revision: resp.Header.Revision}, nil
	}
}

// GetStream returns a live stream or 1004002.
func (s *Server) GetStream(ctx context.Context, req *streamv1.GetStreamRequest) (*streamv1.GetStreamResponse, error) {
	if err := grpcserver.RequireInternal(ctx); err != nil {
		return nil, err
	}
	st, _, err := s.live(ctx, req.GetAppId(), req.GetStreamId())
	if err != nil {
		return nil, err
	}
	return &streamv1.GetStreamResponse{Stream: st}, nil
}

// ListStreams lists a room's live streams, at a past revision if asked.
func (s *Server) ListStreams(ctx context.Context, req *streamv1.ListStreamsRequest) (*streamv1.ListStreamsResponse, error) {
	if err := grpcserver.RequireInternal(ctx); err != nil {
		return nil, err
	}
	if err := ids.Room(req.GetRoomId()); err != nil {
		return nil, err
	}
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if req.GetRevision() > 0 {
		opts = append(opts, clientv3.WithRev(req.GetRevision()))
	}
	resp, err := s.cfg.Etcd.Get(ctx, keys.RoomStreams(req.GetAppId(), req.GetRoomId()), opts...)
	if errors.Is(err, rpctypes.ErrCompacted) {
		return nil, errcode.Newf(errcode.InvalidParameter, "revision %d is compacted", req.GetRevision())
	}
	if err != nil {
		return nil, errcode.Unavailable(err)
	}
	out := &streamv1.ListStreamsResponse{Revision: resp.Header.Revision}
	if req.GetRevision() > 0 {
		out.Revision = req.GetRevision()
	}
	for _, kv := range resp.Kvs {
		st := new(streamv1.StreamRecord)
		if err := proto.Unmarshal(kv.Value, st); err != nil {
			return nil, err
		}
		if !st.Ended {
			out.Streams = append(out.Streams, st)
		}
	}
	return out, nil
}

// SetStreamExtraInfo replaces a stream's extra info.
func (s *Server) SetStreamExtraInfo(ctx context.Context, req *streamv1.SetStreamExtraInfoRequest) (*streamv1.SetStreamExtraInfoResponse, error) {
	if err := grpcserver.RequireInternal(ctx); err != nil {
		return nil, err
	}
	if len(req.GetExtraInfo()) >= MaxExtraInfo {
		return nil, errcode.New(errcode.StreamExtraInfoTooLong, "stream extra info must be under 1024 bytes")
	}
	idKey := keys.Stream(req.GetAppId(), req.GetStreamId())
	for {
		st, rev, err := s.live(ctx, req.GetAppId(), req.GetStreamId())
		if err != nil {
			return nil, err
		}
		if err := s.authorizeOwner(ctx, st, req.GetUserId(), req.GetToken()); err != nil {
			return nil, err
		}
		st.ExtraInfo = req.GetExtraInfo()
		resp, err := s.cfg.Etcd.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(idKey), "=", rev)).
			Then(putOps(st, clientv3.WithIgnoreLease())...).Commit()
		if err != nil {
			return nil, errcode.Unavailable(err)
		}
		if resp.Succeeded {
			return &streamv1.SetStreamExtraInfoResponse{Stream: st, Revision: resp.Header.Revision}, nil
		}
	}
}

// WatchStreams sends one event for every change of a stream key in the room
// after from_revision: Add, Delete (with reason), ExtraInfo, or Progress for
// a change that means nothing to a client (an ended stream's removal). A
// consumer that also watches the room prefix can therefore wait for exactly
// the revisions it saw, and merge without guessing.
func (s *Server) WatchStreams(req *streamv1.WatchStreamsRequest, srv streamv1.StreamService_WatchStreamsServer) error {
	if err := grpcserver.RequireInternal(srv.Context()); err != nil {
		return err
	}
	if err := ids.Room(req.GetRoomId()); err != nil {
		return err
	}
	// Headers now, so an HTTP client behind the gateway sees the stream
	// open before the first event.
	if err := srv.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(srv.Context()))
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
	if req.GetFromRevision() > 0 {
		opts = append(opts, clientv3.WithRev(req.GetFromRevision()+1))
	}
	for resp := range s.cfg.Etcd.Watch(ctx, keys.RoomStreams(req.GetAppId(), req.GetRoomId()), opts...) {
		if resp.CompactRevision != 0 {
			return errcode.Newf(errcode.InvalidParameter, "revision %d is compacted (oldest %d)", req.GetFromRevision(), resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return errcode.Unavailable(err)
		}
		for _, ev := range resp.Events {
			out, err := Event(ev)
			if err != nil {
				return err
			}
			if err := srv.Send(out); err != nil {
				return err
			}
		}
	}
	return errcode.Unavailable(ctx.Err())
}

// Event turns a change of a room stream key into a StreamEvent.
func Event(ev *clientv3.Event) (*streamv1.StreamEvent, error) {
	out := &streamv1.StreamEvent{Kind: streamv1.StreamEvent_KIND_PROGRESS, Revision: ev.Kv.ModRevision}
	var prev *streamv1.StreamRecord
	if ev.PrevKv != nil {
		prev = new(streamv1.StreamRecord)
		if err := proto.Unmarshal(ev.PrevKv.Value, prev); err != nil {
			return nil, err
		}
	}
	if ev.Type == mvccpb.DELETE {
		if prev == nil || prev.Ended {
			return out, nil
		}
		// The key went with its owner's lease: the publisher's session timed
		// out, or its edge died.
		out.Kind, out.Stream = streamv1.StreamEvent_KIND_DELETE, prev
		out.Reason = streamv1.DeleteReason_DELETE_REASON_DISCONNECTED
		if prev.OwnerKind == streamv1.OwnerKind_OWNER_KIND_SESSION {
			out.Reason = streamv1.DeleteReason_DELETE_REASON_HEARTBEAT_TIMEOUT
		}
		return out, nil
	}
	cur := new(streamv1.StreamRecord)
	if err := proto.Unmarshal(ev.Kv.Value, cur); err != nil {
		return nil, err
	}
	out.Stream = cur
	switch {
	case cur.Ended && (prev == nil || !prev.Ended):
		out.Kind, out.Reason = streamv1.StreamEvent_KIND_DELETE, cur.DeleteReason
	case cur.Ended:
	case prev == nil || prev.Ended:
		out.Kind = streamv1.StreamEvent_KIND_ADD
	case prev.ExtraInfo != cur.ExtraInfo:
		out.Kind = streamv1.StreamEvent_KIND_EXTRA_INFO
	}
	return out, nil
}
