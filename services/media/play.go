package media

import (
	"context"
	"slices"

	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/errcode"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/services/media/sfu"
)

// Play answers a player's offer for a stream published on this edge, at
// once: the player's tracks are the ones the publisher negotiated (their
// codecs are known from its SDP), so a track announced but not sent yet
// delays nothing. Once connected, the player gets each video track's
// latest keyframe group from the cache, then the live packets; audio starts
// with the next packet.
func (s *Server) Play(ctx context.Context, req *mediav1.PlayRequest) (*mediav1.PlayResponse, error) {
	if err := ValidOffer(req.GetSdpOffer()); err != nil {
		return nil, errcode.Newf(errcode.InvalidParameter, "bad SDP offer: %v", err)
	}
	if l := req.GetVideoLayer(); l < mediav1.VideoLayer_VIDEO_LAYER_UNSPECIFIED || l > mediav1.VideoLayer_VIDEO_LAYER_HIGH {
		return nil, errcode.Newf(errcode.InvalidParameter, "video layer %d: want unspecified (auto), low, medium or high", l)
	}
	// A play that is not placed yet (an SDK's) goes to the edge placement
	// chooses, before anything is looked up: that edge looks up the token
	// and the stream, once (edgechoice.go).
	if next := s.placeFirst(ctx, req); next != "" {
		return &mediav1.PlayResponse{RedirectAddr: next}, nil
	}
	if _, err := s.cfg.Auth.VerifyToken(ctx, &authv1.VerifyTokenRequest{AppId: req.GetAppId(), UserId: req.GetUserId(),
		Token: req.GetToken(), Action: authv1.Action_ACTION_PLAY, StreamId: req.GetStreamId()}); err != nil {
		return nil, err
	}
	st, err := s.cfg.Streams.GetStream(ctx, &streamv1.GetStreamRequest{AppId: req.GetAppId(), StreamId: req.GetStreamId()})
	if err != nil {
		return nil, err
	}
	// OnlyRTC plays from the origin; Default and OnlyL3 here, relayed if
	// this edge is not the origin (edgechoice.go, package relay).
	o, redirect, err := s.placePlay(ctx, req, st.GetStream())
	if err != nil {
		return nil, err
	}
	if redirect != "" {
		return &mediav1.PlayResponse{RedirectAddr: redirect}, nil
	}
	tracks := o.Tracks()
	if len(tracks) == 0 {
		return nil, errcode.Newf(errcode.StreamNotFound, "stream %q has no media", req.GetStreamId())
	}
	ss := s.newSession(true)
	ss.stream = o
	sub := sfu.NewPlayer(nil, s.fwd, &s.Egress, &s.edgeDelay)
	pc, err := s.playerPCs.NewPeerConnection(sub)
	if err != nil {
		return nil, err
	}
	ss.pc = pc
	ss.sub = sub
	sub.OnLayer(ss.setLayer)
	for i, u := range tracks {
		if slices.ContainsFunc(tracks[:i], func(x *sfu.UpTrack) bool { return x.Kind() == u.Kind() }) {
			continue // one downtrack per kind, for the first track's layers
		}
		if err := sub.AddTrack(u, req.GetStreamId(), sfu.Layer(req.GetVideoLayer())); err != nil {
			_ = pc.Close()
			return nil, err
		}
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			ss.setState(mediav1.SessionEvent_STATE_CONNECTED)
			sub.Connected()
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			ss.finish(mediav1.SessionEvent_STATE_FAILED, int32(errcode.Disconnected), "the player's connection was lost")
		}
	})
	ss.onEnd = append(ss.onEnd, func() { o.removePlayer(ss) })
	sdpAnswer, err := answer(ctx, pc, req.GetSdpOffer())
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	if err := s.add(ss); err != nil {
		_ = pc.Close()
		return nil, err
	}
	if !o.addPlayer(ss) {
		ss.finish(mediav1.SessionEvent_STATE_CLOSED, int32(errcode.StreamNotFound), "the stream ended")
		return nil, errcode.Newf(errcode.StreamNotFound, "stream %q ended", req.GetStreamId())
	}
	// Subscribe to the stream's current tracks (a publisher may have come
	// back since tracks were read: adopt has switched this player already
	// if so, since it is in o.players now).
	o.mu.Lock()
	sub.SwitchTo(o.tracks)
	o.mu.Unlock()
	sub.Start()
	return &mediav1.PlayResponse{SessionId: ss.id, SdpAnswer: sdpAnswer}, nil
}
