package express

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/whipclient"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
)

// PlayerConfig configures StartPlayingStream.
type PlayerConfig struct {
	// ResourceMode: Default and OnlyL3 play at the edge the cluster chooses
	// (the least loaded, which relays the stream from its origin); OnlyRTC
	// plays from the stream's origin edge.
	ResourceMode ResourceMode
	// VideoLayer picks the simulcast layer to play when the publisher sends
	// several: VideoLayerAuto (the default) follows the player's bandwidth,
	// the others pin a layer. OnPlayerQualityUpdate reports the layer played.
	// Any other value is refused with 1000002 (InvalidParameter).
	VideoLayer VideoLayer
}

// VideoLayer is a simulcast layer of a video stream, or a choice of one.
type VideoLayer int

// Video layers. Auto lets the edge choose by the player's bandwidth; when
// even the lowest layer does not fit, video pauses and audio plays on.
const (
	VideoLayerAuto VideoLayer = iota
	VideoLayerLow
	VideoLayerMedium
	VideoLayerHigh
)

// MediaSink receives a played stream. WriteRTP gets every RTP packet of
// every track as it arrives (the codec tells which); nil sinks discard.
type MediaSink interface {
	WriteRTP(codec webrtc.RTPCodecParameters, pkt *rtp.Packet)
}

// VideoFrameSink is an optional MediaSink extension: for VP8 video it gets
// each reassembled frame, starting with a keyframe.
type VideoFrameSink interface {
	WriteVideoFrame(frame media.Sample, keyframe bool)
}

// MediaSinkFunc adapts a function to MediaSink.
type MediaSinkFunc func(codec webrtc.RTPCodecParameters, pkt *rtp.Packet)

// WriteRTP calls f.
func (f MediaSinkFunc) WriteRTP(codec webrtc.RTPCodecParameters, pkt *rtp.Packet) { f(codec, pkt) }

type player struct {
	e        *Engine
	streamID string
	sink     MediaSink
	config   PlayerConfig
	count    counters
	frames   atomic.Int64
	first    atomic.Bool
	// layer and paused are what the edge last said of the video layer
	// played (WatchSession).
	layer  atomic.Int32
	paused atomic.Bool
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	sessionID string
	client    mediav1.MediaServiceClient
	pc        *webrtc.PeerConnection
}

// StartPlayingStream plays streamID into sink. It returns once the edge has
// answered (1004002 if the stream does not exist, 1004003 for a bad token);
// the handler sees PlayRequesting, Playing when media flows, and
// OnPlayerRecvVideoFirstFrame at the first decodable video frame. If the
// edge connection breaks the SDK plays again by itself; when the stream
// ends the player goes to NoPlay with 1004002.
//
// "Decodable" here: for VP8, a frame reassembled from its RTP packets
// (pion's VP8 depacketizer and sample builder, no gaps) that is a keyframe
// with a valid VP8 keyframe header (start code 9d 01 2a and a non-zero
// size), or any later complete frame. Other codecs are passed to the sink
// without that check.
func (e *Engine) StartPlayingStream(ctx context.Context, streamID string, sink MediaSink, config PlayerConfig) error {
	if config.VideoLayer < VideoLayerAuto || config.VideoLayer > VideoLayerHigh {
		return errcode.Newf(errcode.InvalidParameter, "video layer %d: want VideoLayerAuto, Low, Medium or High", config.VideoLayer)
	}
	rs, err := e.session("")
	if err != nil {
		return err
	}
	e.media.mu.Lock()
	if len(e.media.players) >= 12 {
		e.media.mu.Unlock()
		return errcode.New(errcode.TooManyPlays, "at most 12 streams can be played at once")
	}
	if e.media.players[streamID] != nil {
		e.media.mu.Unlock()
		return errcode.Newf(errcode.InvalidParameter, "stream %q is already being played", streamID)
	}
	p := &player{e: e, streamID: streamID, sink: sink, config: config, done: make(chan struct{})}
	if e.media.players == nil {
		e.media.players = map[string]*player{}
	}
	e.media.players[streamID] = p
	e.media.mu.Unlock()
	token := func() string {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		return rs.config.Token
	}
	user := rs.user.UserID

	e.emit(func(h EventHandler) { h.OnPlayerStateUpdate(PlayerStatePlayRequesting, 0, "{}", streamID) })
	ended, err := p.attempt(ctx, user, token())
	if err != nil {
		p.forget()
		code := ErrorCode(err)
		if code == 0 {
			code = int(errcode.ConnectFailed)
		}
		e.emit(func(h EventHandler) { h.OnPlayerStateUpdate(PlayerStateNoPlay, code, "{}", streamID) })
		return err
	}
	rctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.run(rctx, ended, user, token)
	go p.quality(rctx)
	return nil
}

// StopPlayingStream stops playing streamID.
func (e *Engine) StopPlayingStream(ctx context.Context, streamID string) error {
	e.media.mu.Lock()
	p := e.media.players[streamID]
	e.media.mu.Unlock()
	if p == nil {
		return errcode.Newf(errcode.InvalidParameter, "stream %q is not being played", streamID)
	}
	p.stop()
	return nil
}

func (p *player) forget() {
	p.e.media.mu.Lock()
	if p.e.media.players[p.streamID] == p {
		delete(p.e.media.players, p.streamID)
	}
	p.e.media.mu.Unlock()
}

func (p *player) closeSession() {
	p.mu.Lock()
	id, client, pc := p.sessionID, p.client, p.pc
	p.sessionID, p.pc = "", nil
	p.mu.Unlock()
	if id != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, _ = client.Stop(ctx, &mediav1.StopRequest{SessionId: id})
		cancel()
	}
	if pc != nil {
		_ = pc.Close()
	}
}

func (p *player) stop() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	p.closeSession()
	p.forget()
	p.e.emit(func(h EventHandler) { h.OnPlayerStateUpdate(PlayerStateNoPlay, 0, "{}", p.streamID) })
}

// sessionEnd is how a media session ended: the edge's final event, or nil
// when the connection broke.
type sessionEnd struct {
	ev *mediav1.SessionEvent
}

// attempt plays once: the edge the engine is connected to answers, or
// redirects (placed) to the edge chosen for the player (internal/placement)
// or, for OnlyRTC, to the stream's origin; that edge serves the play.
func (p *player) attempt(ctx context.Context, user, token string) (<-chan sessionEnd, error) {
	pc, err := p.e.newPeerConnection(&p.count, nil)
	if err != nil {
		return nil, err
	}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			_ = pc.Close()
			return nil, err
		}
	}
	connected := make(chan struct{})
	ended := make(chan sessionEnd, 1)
	var conce, eonce sync.Once
	end := func(ev *mediav1.SessionEvent) {
		eonce.Do(func() { ended <- sessionEnd{ev} })
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			conce.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			// The edge's own word on why (stream ended, or not) travels
			// on WatchSession and may arrive just after the connection
			// closes: give it a moment to win.
			time.AfterFunc(time.Second, func() { end(nil) })
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { p.read(t) })
	offer, err := whipclient.Offer(ctx, pc)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	req := &mediav1.PlayRequest{AppId: p.e.profile.AppID, StreamId: p.streamID, UserId: user, Token: token,
		SdpOffer: offer, ResourceMode: mediav1.ResourceMode(p.config.ResourceMode), VideoLayer: mediav1.VideoLayer(p.config.VideoLayer)}
	var client mediav1.MediaServiceClient
	var resp *mediav1.PlayResponse
	addr := ""
	for hop := 0; ; hop++ {
		if client, err = p.e.mediaClient(addr); err == nil {
			resp, err = client.Play(ctx, req)
		}
		if err != nil {
			_ = pc.Close()
			return nil, err
		}
		if resp.GetRedirectAddr() == "" {
			break
		}
		if hop > 0 {
			_ = pc.Close()
			return nil, errcode.New(errcode.ServiceUnavailable, "the stream's edge redirected again")
		}
		addr = resp.GetRedirectAddr()
		req.Placed = true
	}
	p.mu.Lock()
	p.sessionID, p.client, p.pc = resp.GetSessionId(), client, pc
	p.mu.Unlock()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: resp.GetSdpAnswer()}); err != nil {
		p.closeSession()
		return nil, err
	}
	watch, err := client.WatchSession(context.WithoutCancel(ctx), &mediav1.WatchSessionRequest{SessionId: resp.GetSessionId()})
	if err != nil {
		p.closeSession()
		return nil, err
	}
	go func() {
		for {
			ev, err := watch.Recv()
			if err != nil {
				end(nil)
				return
			}
			p.layer.Store(int32(ev.GetVideoLayer()))
			p.paused.Store(ev.GetVideoPaused())
			if st := ev.GetState(); st == mediav1.SessionEvent_STATE_FAILED || st == mediav1.SessionEvent_STATE_CLOSED {
				end(ev)
				return
			}
		}
	}()
	select {
	case <-connected:
	case e := <-ended:
		p.closeSession()
		if e.ev != nil && e.ev.GetErrorCode() != 0 {
			return nil, errcode.New(errcode.Code(e.ev.GetErrorCode()), e.ev.GetMessage())
		}
		return nil, errcode.New(errcode.ConnectFailed, "the media connection to the edge failed")
	case <-ctx.Done():
		p.closeSession()
		return nil, ctx.Err()
	}
	p.e.emit(func(h EventHandler) { h.OnPlayerStateUpdate(PlayerStatePlaying, 0, "{}", p.streamID) })
	return ended, nil
}

// read delivers a track to the sink; VP8 is also reassembled into frames.
func (p *player) read(t *webrtc.TrackRemote) {
	codec := t.Codec()
	var sb *samplebuilder.SampleBuilder
	vfs, _ := p.sink.(VideoFrameSink)
	if t.Kind() == webrtc.RTPCodecTypeVideo && codec.MimeType == webrtc.MimeTypeVP8 {
		sb = samplebuilder.New(256, &codecs.VP8Packet{}, codec.ClockRate)
	}
	waitKey := true
	for {
		pkt, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		if p.sink != nil {
			p.sink.WriteRTP(codec, pkt)
		}
		if sb == nil {
			continue
		}
		sb.Push(pkt)
		for s := sb.Pop(); s != nil; s = sb.Pop() {
			_, _, key := VP8Keyframe(s.Data)
			if waitKey && !key {
				continue
			}
			if s.PrevDroppedPackets > 0 && !key {
				// A gap: wait for the next keyframe rather than show garbage.
				waitKey = true
				continue
			}
			waitKey = false
			p.frames.Add(1)
			if p.first.CompareAndSwap(false, true) {
				p.e.emit(func(h EventHandler) { h.OnPlayerRecvVideoFirstFrame(p.streamID) })
			}
			if vfs != nil {
				vfs.WriteVideoFrame(*s, key)
			}
		}
	}
}

// run plays again whenever the media session breaks, until stopped or the
// stream ends.
func (p *player) run(ctx context.Context, ended <-chan sessionEnd, user string, token func() string) {
	defer close(p.done)
	for {
		var end sessionEnd
		select {
		case <-ctx.Done():
			return
		case end = <-ended:
		}
		p.mu.Lock()
		old := p.pc
		p.sessionID, p.pc = "", nil
		p.mu.Unlock()
		if old != nil {
			go old.Close()
		}
		if end.ev != nil && end.ev.GetState() == mediav1.SessionEvent_STATE_CLOSED {
			code := int(end.ev.GetErrorCode())
			p.forget()
			p.e.emit(func(h EventHandler) { h.OnPlayerStateUpdate(PlayerStateNoPlay, code, "{}", p.streamID) })
			return
		}
		p.e.emit(func(h EventHandler) {
			h.OnPlayerStateUpdate(PlayerStatePlayRequesting, int(errcode.ConnectionBroken), "{}", p.streamID)
		})
		// 1004002 is retried too: the stream may be coming back (its
		// publisher reconnecting to another edge).
		err := retry(ctx, p.e.profile.ReconnectTimeout, func(actx context.Context) error {
			e, err := p.attempt(actx, user, token())
			if err == nil {
				ended = e
			}
			return err
		}, func(c errcode.Code) bool { return c == errcode.PlayAuthError })
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c := errcode.Of(err)
			p.forget()
			p.e.emit(func(h EventHandler) { h.OnPlayerStateUpdate(PlayerStateNoPlay, int(c), "{}", p.streamID) })
			return
		}
	}
}

func (p *player) quality(ctx context.Context) {
	t := time.NewTicker(qualityInterval)
	defer t.Stop()
	last := p.count.snapshot()
	lastFrames := p.frames.Load()
	var lastRecv, lastLost int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := p.count.snapshot()
		q := PlayStreamQuality{VideoLayer: VideoLayer(p.layer.Load()), VideoPaused: p.paused.Load()}
		q.VideoKBPS, q.AudioKBPS, _ = now.rates(last)
		frames := p.frames.Load()
		q.VideoFPS = float64(frames-lastFrames) / now.at.Sub(last.at).Seconds()
		last, lastFrames = now, frames
		p.mu.Lock()
		pc := p.pc
		p.mu.Unlock()
		if pc != nil {
			var recv, lost int64
			for _, s := range pc.GetStats() {
				switch r := s.(type) {
				case webrtc.InboundRTPStreamStats:
					recv += int64(r.PacketsReceived)
					lost += int64(r.PacketsLost)
				}
			}
			if dr, dl := recv-lastRecv, lost-lastLost; dr+dl > 0 && dl > 0 {
				q.PacketLossRate = float64(dl) / float64(dr+dl)
			}
			lastRecv, lastLost = recv, lost
		}
		p.e.emit(func(h EventHandler) { h.OnPlayerQualityUpdate(q, p.streamID) })
	}
}
