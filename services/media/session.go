package media

import (
	"context"
	"errors"
	"sync"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/mediasession"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/services/media/sfu"
)

// session is one publisher's or player's peer connection.
type session struct {
	s      *Server
	id     string
	player bool
	pc     *webrtc.PeerConnection
	stream *stream
	sub    *sfu.Player // a player's forwarding

	mu     sync.Mutex
	state  mediav1.SessionEvent_State
	code   int32
	msg    string
	notify chan struct{}
	ended  bool
	// A player's video layer and whether its video is paused.
	layer  mediav1.VideoLayer
	paused bool
	// final: the stream ends with this publisher session, with no grace
	// for the publisher to come back.
	final bool
	onEnd []func()
}

func (s *Server) newSession(player bool) *session {
	return &session{s: s, id: mediasession.NewID(s.tag), player: player, state: mediav1.SessionEvent_STATE_CONNECTING, notify: make(chan struct{})}
}

func (ss *session) snapshot() (*mediav1.SessionEvent, <-chan struct{}, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return &mediav1.SessionEvent{State: ss.state, ErrorCode: ss.code, Message: ss.msg, VideoLayer: ss.layer, VideoPaused: ss.paused},
		ss.notify, ss.ended
}

// setLayer records the player's video layer and pause, for WatchSession.
func (ss *session) setLayer(l sfu.Layer, paused bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended || (ss.layer == mediav1.VideoLayer(l) && ss.paused == paused) {
		return
	}
	ss.layer, ss.paused = mediav1.VideoLayer(l), paused
	close(ss.notify)
	ss.notify = make(chan struct{})
}

func (ss *session) setState(st mediav1.SessionEvent_State) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.ended || ss.state == st {
		return
	}
	ss.state = st
	close(ss.notify)
	ss.notify = make(chan struct{})
}

func (ss *session) setFinal() {
	ss.mu.Lock()
	ss.final = true
	ss.mu.Unlock()
}

func (ss *session) isFinal() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.final
}

// finish ends the session once: final state, peer connection closed, the
// end hooks run (outside the lock).
func (ss *session) finish(st mediav1.SessionEvent_State, code int32, msg string) {
	ss.mu.Lock()
	if ss.ended {
		ss.mu.Unlock()
		return
	}
	ss.ended, ss.state, ss.code, ss.msg = true, st, code, msg
	close(ss.notify)
	ss.notify = make(chan struct{})
	hooks := ss.onEnd
	ss.onEnd = nil
	ss.mu.Unlock()
	ss.s.mu.Lock()
	if ss.s.sessions[ss.id] == ss {
		delete(ss.s.sessions, ss.id)
	}
	ss.s.mu.Unlock()
	if ss.pc != nil {
		go func() { _ = ss.pc.Close() }()
	}
	for _, f := range hooks {
		f()
	}
}

// answer applies offer and returns the complete (non-trickle) answer.
func answer(ctx context.Context, pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", errcode.Newf(errcode.InvalidParameter, "bad SDP offer: %v", err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", errcode.Newf(errcode.InvalidParameter, "cannot answer the offer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", errcode.Newf(errcode.InvalidParameter, "cannot answer the offer: %v", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}

// expectedTracks counts the audio and video sections an offer sends.
func expectedTracks(offer string) (int, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return 0, err
	}
	n := 0
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != "audio" && m.MediaName.Media != "video" {
			continue
		}
		if m.MediaName.Port.Value == 0 {
			continue
		}
		_, recvonly := m.Attribute("recvonly")
		_, inactive := m.Attribute("inactive")
		if !recvonly && !inactive {
			n++
		}
	}
	return n, nil
}

// ValidOffer reports whether offer is an SDP offer an edge could answer.
func ValidOffer(offer string) error {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return err
	}
	if len(d.MediaDescriptions) == 0 {
		return errors.New("the offer has no media sections")
	}
	return nil
}

// Stop ends a session; stopping a publisher ends its stream (reason 1).
func (s *Server) Stop(_ context.Context, req *mediav1.StopRequest) (*mediav1.StopResponse, error) {
	ss, err := s.lookup(req.GetSessionId())
	if err != nil {
		return nil, err
	}
	if !ss.player {
		ss.stream.setReason(streamv1.DeleteReason_DELETE_REASON_STOPPED)
		ss.setFinal()
	}
	ss.finish(mediav1.SessionEvent_STATE_CLOSED, 0, "stopped")
	return &mediav1.StopResponse{}, nil
}

// WatchSession sends the session's state, then every change, until it ends.
func (s *Server) WatchSession(req *mediav1.WatchSessionRequest, srv mediav1.MediaService_WatchSessionServer) error {
	ss, err := s.lookup(req.GetSessionId())
	if err != nil {
		return err
	}
	var last *mediav1.SessionEvent
	for {
		ev, changed, ended := ss.snapshot()
		if last == nil || ev.State != last.State || ev.VideoLayer != last.VideoLayer || ev.VideoPaused != last.VideoPaused {
			if err := srv.Send(ev); err != nil {
				return err
			}
			last = ev
		}
		if ended {
			return nil
		}
		select {
		case <-changed:
		case <-srv.Context().Done():
			return srv.Context().Err()
		}
	}
}
