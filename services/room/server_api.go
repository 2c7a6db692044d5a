package room

import (
	"context"
	"encoding/json"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/ids"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// ServerAPI is the business-server API: every call is signed with the app's
// ServerSecret (see authv1.ServerAuth) and checked by the auth service,
// which also refuses replayed nonces.
type ServerAPI struct {
	roomv1.UnimplementedRoomServerServiceServer
	s *Server
}

// ServerAPI returns the business-server API of s.
func (s *Server) ServerAPI() *ServerAPI { return &ServerAPI{s: s} }

func (a *ServerAPI) verify(ctx context.Context, auth *authv1.ServerAuth, roomID string) (uint32, error) {
	if roomID != "" {
		if err := ids.Room(roomID); err != nil {
			return 0, err
		}
	}
	resp, err := a.s.cfg.Auth.VerifyServerSignature(ctx, &authv1.VerifyServerSignatureRequest{Auth: auth})
	if err != nil {
		return 0, err
	}
	return resp.GetAppId(), nil
}

// KickUser removes up to 5 users from a room; they get KickOut 1002055.
func (a *ServerAPI) KickUser(ctx context.Context, req *roomv1.KickUserRequest) (*roomv1.KickUserResponse, error) {
	appID, err := a.verify(ctx, req.GetAuth(), req.GetRoomId())
	if err != nil {
		return nil, err
	}
	if len(req.GetUserIds()) == 0 || len(req.GetUserIds()) > maxKick {
		return nil, errcode.New(errcode.InvalidParameter, "kick 1 to 5 users at a time")
	}
	out := &roomv1.KickUserResponse{}
	for _, u := range req.GetUserIds() {
		rec, _, err := a.s.sessionByUser(ctx, appID, u)
		if err != nil {
			return nil, err
		}
		if rec == nil || rec.RoomID != req.GetRoomId() {
			continue
		}
		if err := a.s.endSession(ctx, rec, roomv1.UserLeaveReason_USER_LEAVE_REASON_KICKED, errcode.KickedByServer,
			streamv1.DeleteReason_DELETE_REASON_KICKED); err == nil {
			out.KickedUserIds = append(out.KickedUserIds, u)
		}
	}
	return out, nil
}

// CloseRoom kicks everyone out of a room (1002055), ends the streams left
// (removed by server), and closes it: room_close with reason 3.
func (a *ServerAPI) CloseRoom(ctx context.Context, req *roomv1.CloseRoomRequest) (*roomv1.CloseRoomResponse, error) {
	appID, err := a.verify(ctx, req.GetAuth(), req.GetRoomId())
	if err != nil {
		return nil, err
	}
	after := ""
	for {
		users, next, _, err := a.s.listUsers(ctx, appID, req.GetRoomId(), 500, after)
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			rec, _, err := a.s.sessionByUser(ctx, appID, u.UserId)
			if err != nil {
				return nil, err
			}
			if rec != nil && rec.RoomID == req.GetRoomId() {
				_ = a.s.endSession(ctx, rec, roomv1.UserLeaveReason_USER_LEAVE_REASON_KICKED, errcode.KickedByServer,
					streamv1.DeleteReason_DELETE_REASON_KICKED)
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	// Streams that outlive their publishers' sessions (a media edge's).
	list, err := a.s.cfg.Streams.ListStreams(ctx, &streamv1.ListStreamsRequest{AppId: appID, RoomId: req.GetRoomId()})
	if err != nil {
		return nil, err
	}
	for _, st := range list.GetStreams() {
		if _, err := a.s.cfg.Streams.UnregisterStream(ctx, &streamv1.UnregisterStreamRequest{AppId: appID, StreamId: st.GetStreamId(),
			Reason: streamv1.DeleteReason_DELETE_REASON_REMOVED_BY_SERVER}); err != nil && errcode.Of(err) != errcode.StreamNotFound {
			return nil, err
		}
	}
	if err := a.s.closeIfEmpty(ctx, appID, req.GetRoomId(), callback.LogoutKicked); err != nil {
		return nil, err
	}
	return &roomv1.CloseRoomResponse{}, nil
}

// ListFailedCallbacks pages through the app's failed callbacks.
func (a *ServerAPI) ListFailedCallbacks(ctx context.Context, req *roomv1.ListFailedCallbacksRequest) (*roomv1.ListFailedCallbacksResponse, error) {
	appID, err := a.verify(ctx, req.GetAuth(), "")
	if err != nil {
		return nil, err
	}
	recs, next, err := callback.ListFailed(ctx, a.s.cfg.Etcd, appID, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, errcode.Unavailable(err)
	}
	out := &roomv1.ListFailedCallbacksResponse{NextPageToken: next}
	for _, r := range recs {
		payload, _ := json.Marshal(r.Event)
		out.Callbacks = append(out.Callbacks, &roomv1.FailedCallback{EventId: r.Event.EventID, Event: r.Event.Event,
			RoomId: r.Event.RoomID, Payload: string(payload), Attempts: int32(r.Attempts), LastStatus: int32(r.LastStatus),
			LastError: r.LastError, EventTimeMs: r.Event.EventTimeMs, FailedTimeMs: r.FailedMs})
	}
	return out, nil
}

// DescribeUsers pages through a room's users.
func (a *ServerAPI) DescribeUsers(ctx context.Context, req *roomv1.DescribeUsersRequest) (*roomv1.DescribeUsersResponse, error) {
	appID, err := a.verify(ctx, req.GetAuth(), req.GetRoomId())
	if err != nil {
		return nil, err
	}
	users, next, count, err := a.s.listUsers(ctx, appID, req.GetRoomId(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &roomv1.DescribeUsersResponse{Users: users, NextPageToken: next, OnlineCount: count}, nil
}

// DescribeStreams lists a room's live streams.
func (a *ServerAPI) DescribeStreams(ctx context.Context, req *roomv1.DescribeStreamsRequest) (*roomv1.DescribeStreamsResponse, error) {
	appID, err := a.verify(ctx, req.GetAuth(), req.GetRoomId())
	if err != nil {
		return nil, err
	}
	list, err := a.s.cfg.Streams.ListStreams(ctx, &streamv1.ListStreamsRequest{AppId: appID, RoomId: req.GetRoomId()})
	if err != nil {
		return nil, err
	}
	return &roomv1.DescribeStreamsResponse{Streams: streamv1.PublicStreams(list.GetStreams())}, nil
}

// DeleteStream ends a stream with reason "removed by server".
func (a *ServerAPI) DeleteStream(ctx context.Context, req *roomv1.DeleteStreamRequest) (*roomv1.DeleteStreamResponse, error) {
	appID, err := a.verify(ctx, req.GetAuth(), "")
	if err != nil {
		return nil, err
	}
	if _, err := a.s.cfg.Streams.UnregisterStream(ctx, &streamv1.UnregisterStreamRequest{
		AppId: appID, StreamId: req.GetStreamId(), Reason: streamv1.DeleteReason_DELETE_REASON_REMOVED_BY_SERVER}); err != nil {
		return nil, err
	}
	return &roomv1.DeleteStreamResponse{}, nil
}
