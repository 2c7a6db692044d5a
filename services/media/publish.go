package media

import (
	"context"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/errcode"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/services/media/relay"
	"github.com/onair-dev/onair/services/media/sfu"
)

// Publish answers a publisher's offer and registers its stream under the
// edge's lease. With join_room the token's user is kept logged into the
// room for the stream's life. The same user publishing a stream that is
// live here again (a retry after a broken connection) takes it over: its
// players stay on and get the new tracks.
func (s *Server) Publish(ctx context.Context, req *mediav1.PublishRequest) (*mediav1.PublishResponse, error) {
	if req.GetToken() == "" {
		return nil, errcode.New(errcode.PublishAuthError, "a token is required to publish")
	}
	expected, err := expectedTracks(req.GetSdpOffer())
	if err != nil {
		return nil, errcode.Newf(errcode.InvalidParameter, "bad SDP offer: %v", err)
	}
	if expected == 0 {
		return nil, errcode.New(errcode.InvalidParameter, "the offer sends no audio or video")
	}
	vt, err := s.cfg.Auth.VerifyToken(ctx, &authv1.VerifyTokenRequest{AppId: req.GetAppId(), UserId: req.GetUserId(),
		Token: req.GetToken(), Action: authv1.Action_ACTION_PUBLISH, RoomId: req.GetRoomId(), StreamId: req.GetStreamId()})
	if err != nil {
		return nil, err
	}
	userID, userName := vt.GetUserId(), req.GetUserName()
	if userName == "" {
		userName = userID
	}
	key := relay.StreamKey{App: req.GetAppId(), Stream: req.GetStreamId()}
	ss := s.newSession(false)
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	ss.pc = pc
	var tmu sync.Mutex
	var tracks []*sfu.UpTrack
	byRemote := map[*webrtc.TrackRemote]*sfu.UpTrack{}
	var early []*webrtc.TrackRemote
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		tmu.Lock()
		u := byRemote[t]
		if u == nil {
			early = append(early, t)
		}
		tmu.Unlock()
		if u != nil {
			u.Attach(t)
		}
	})
	sdpAnswer, err := answer(ctx, pc, req.GetSdpOffer())
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	// The tracks the publisher negotiated, known before any packet: players
	// are answered from them at once. A simulcast track is one uptrack per
	// layer (RID), in one layer group.
	tmu.Lock()
	for _, tr := range pc.GetTransceivers() {
		r := tr.Receiver()
		if r == nil || tr.Direction() != webrtc.RTPTransceiverDirectionRecvonly {
			continue
		}
		var c webrtc.RTPCodecParameters
		for _, cp := range r.GetParameters().Codecs {
			if cp.MimeType != webrtc.MimeTypeRTX {
				c = cp
				break
			}
		}
		if c.MimeType == "" {
			continue
		}
		remotes := r.Tracks()
		if len(remotes) > sfu.MaxLayers {
			tmu.Unlock()
			_ = pc.Close()
			return nil, errcode.Newf(errcode.InvalidParameter, "a track may have at most %d simulcast layers, the offer has %d", sfu.MaxLayers, len(remotes))
		}
		group := &sfu.LayerGroup{}
		for _, t := range remotes {
			u := sfu.NewUpTrack(pc, tr.Kind(), c, s.cfg.PLIInterval)
			u.SetLayer(group, t.RID())
			tracks = append(tracks, u)
			byRemote[t] = u
		}
	}
	pending := early
	early = nil
	tmu.Unlock()
	for _, t := range pending {
		if u := byRemote[t]; u != nil {
			u.Attach(t)
		}
	}
	if len(tracks) == 0 {
		_ = pc.Close()
		return nil, errcode.New(errcode.InvalidParameter, "the offer sends no audio or video this edge can take")
	}

	s.mu.Lock()
	o := s.origins[key]
	s.mu.Unlock()
	takeover := false
	if o != nil {
		o.mu.Lock()
		takeover = !o.ended && o.userID == userID && o.roomID == req.GetRoomId()
		o.mu.Unlock()
	}
	var room *roomLogin
	if req.GetJoinRoom() && (!takeover || !o.hasRoom()) {
		room, err = s.joinRoom(ctx, req, userID, userName)
		if err != nil {
			_ = pc.Close()
			return nil, err
		}
	}
	var lease int64
	if s.cfg.Lease != nil {
		lease = s.cfg.Lease()
	}
	if _, err := s.cfg.Streams.RegisterStream(ctx, &streamv1.RegisterStreamRequest{
		AppId: req.GetAppId(), RoomId: req.GetRoomId(), StreamId: req.GetStreamId(), UserId: userID, UserName: userName,
		Token: req.GetToken(), ExtraInfo: req.GetExtraInfo(), EdgeId: s.cfg.EdgeID, EdgeAddr: s.cfg.EdgeAddr, OwnerLease: lease,
	}); err != nil {
		_ = pc.Close()
		if room != nil {
			room.stop(true)
		}
		return nil, err
	}
	if err := s.add(ss); err != nil {
		_ = pc.Close()
		return nil, err
	}
	if !takeover || !o.adopt(ss, tracks) {
		prev := o
		o = newStream(s, key, req.GetRoomId(), userID)
		o.adopt(ss, tracks)
		s.mu.Lock()
		s.origins[key] = o
		s.mu.Unlock()
		if prev != nil {
			// Another user's or room's stream of that ID, which the
			// registry let go: it is over here.
			prev.mu.Lock()
			prev.registered = false
			prev.mu.Unlock()
			prev.end(streamv1.DeleteReason_DELETE_REASON_STOPPED)
		}
	}
	ss.stream = o
	o.mu.Lock()
	o.registered = true
	o.userName, o.extraInfo, o.lease = userName, req.GetExtraInfo(), lease
	if room != nil {
		if o.room != nil {
			go o.room.stop(false)
		}
		o.room = room
	}
	o.mu.Unlock()

	ss.mu.Lock()
	ss.onEnd = append(ss.onEnd, func() { o.publisherEnded(ss) })
	ss.mu.Unlock()
	failed := func(code errcode.Code, msg string) {
		if o.publisher() == ss {
			o.setReason(streamv1.DeleteReason_DELETE_REASON_DISCONNECTED)
		}
		ss.finish(mediav1.SessionEvent_STATE_FAILED, int32(code), msg)
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			ss.setState(mediav1.SessionEvent_STATE_CONNECTED)
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			failed(errcode.Disconnected, "the publisher's connection was lost")
		}
	})
	time.AfterFunc(s.cfg.ConnectTimeout, func() {
		if pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
			failed(errcode.ConnectFailed, "the publisher never connected")
		}
	})
	// A failure that raced with registration still ends the session.
	if st := pc.ConnectionState(); st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
		failed(errcode.Disconnected, "the publisher's connection was lost")
	}
	return &mediav1.PublishResponse{SessionId: ss.id, SdpAnswer: sdpAnswer}, nil
}

func (o *stream) hasRoom() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.room != nil
}

// roomLogin keeps a WHIP publisher logged into its room.
type roomLogin struct {
	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
	logout func()
}

// stop ends the heartbeats and, with logout, logs the publisher out.
func (r *roomLogin) stop(logout bool) {
	r.once.Do(func() {
		r.cancel()
		<-r.done
		if logout {
			r.logout()
		}
	})
}

// joinRoom logs the publisher into its room and keeps the session alive.
func (s *Server) joinRoom(ctx context.Context, req *mediav1.PublishRequest, userID, userName string) (*roomLogin, error) {
	if s.cfg.Rooms == nil {
		return nil, errcode.New(errcode.ServiceUnavailable, "this edge cannot reach the room service")
	}
	resp, err := s.cfg.Rooms.LoginRoom(ctx, &roomv1.LoginRoomRequest{AppId: req.GetAppId(), RoomId: req.GetRoomId(),
		User: &roomv1.User{UserId: userID, UserName: userName}, Token: req.GetToken()})
	if err != nil {
		return nil, err
	}
	every := time.Duration(resp.GetHeartbeatIntervalMs()) * time.Millisecond
	if every <= 0 {
		every = 10 * time.Second
	}
	hctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				c, cc := context.WithTimeout(hctx, every)
				_, _ = s.cfg.Rooms.Heartbeat(c, &roomv1.HeartbeatRequest{SessionId: resp.GetSessionId()})
				cc()
			}
		}
	}()
	return &roomLogin{cancel: cancel, done: done, logout: func() {
		c, cc := context.WithTimeout(context.Background(), 5*time.Second)
		defer cc()
		_, _ = s.cfg.Rooms.LogoutRoom(c, &roomv1.LogoutRoomRequest{SessionId: resp.GetSessionId()})
	}}, nil
}
