package room

import (
	"context"

	"github.com/onair-dev/onair/errcode"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// ListStreams lists the live streams of the session's room. The stream
// registry is internal; this is the client's way to read streams, so it
// gives only those of its own room and only their public fields.
func (s *Server) ListStreams(ctx context.Context, req *roomv1.ListStreamsRequest) (*roomv1.ListStreamsResponse, error) {
	rec, err := s.cachedSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	list, err := s.cfg.Streams.ListStreams(ctx, &streamv1.ListStreamsRequest{AppId: rec.AppID, RoomId: rec.RoomID})
	if err != nil {
		return nil, err
	}
	return &roomv1.ListStreamsResponse{Streams: streamv1.PublicStreams(list.GetStreams())}, nil
}

// SetStreamExtraInfo replaces the extra info of a stream that the session's
// user publishes in the session's room. The registry trusts its internal
// callers, so the ownership check is here.
func (s *Server) SetStreamExtraInfo(ctx context.Context, req *roomv1.SetStreamExtraInfoRequest) (*roomv1.SetStreamExtraInfoResponse, error) {
	rec, err := s.cachedSession(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	got, err := s.cfg.Streams.GetStream(ctx, &streamv1.GetStreamRequest{AppId: rec.AppID, StreamId: req.GetStreamId()})
	if err != nil && errcode.Of(err) != errcode.StreamNotFound {
		return nil, err
	}
	// A stream that is not there answers like one of another room or user,
	// so a client learns nothing about streams outside its room.
	if st := got.GetStream(); err != nil || st.GetRoomId() != rec.RoomID || st.GetUserId() != rec.UserID {
		return nil, errcode.Newf(errcode.PublishForbidden, "this session's user publishes no stream %q in its room", req.GetStreamId())
	}
	resp, err := s.cfg.Streams.SetStreamExtraInfo(ctx, &streamv1.SetStreamExtraInfoRequest{
		AppId: rec.AppID, StreamId: req.GetStreamId(), ExtraInfo: req.GetExtraInfo()})
	if err != nil {
		return nil, err
	}
	return &roomv1.SetStreamExtraInfoResponse{Stream: resp.GetStream().Public(), Revision: resp.GetRevision()}, nil
}
