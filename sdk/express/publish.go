package express

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"google.golang.org/grpc"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/iceloopback"
	"github.com/onair-dev/onair/internal/whipclient"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
)

// PublisherState has the vendor's values.
type PublisherState int

// Publisher states.
const (
	PublisherStateNoPublish         PublisherState = 0
	PublisherStatePublishRequesting PublisherState = 1
	PublisherStatePublishing        PublisherState = 2
)

// PlayerState has the vendor's values.
type PlayerState int

// Player states.
const (
	PlayerStateNoPlay         PlayerState = 0
	PlayerStatePlayRequesting PlayerState = 1
	PlayerStatePlaying        PlayerState = 2
)

// ResourceMode has the vendor's values. Default and OnlyL3 play at the
// least loaded edge, which relays the stream; OnlyRTC and the CDN and
// custom modes (no such tier in OnAir) play from the stream's origin edge.
// The numbers are mediav1.ResourceMode's too (Default is its UNSPECIFIED).
type ResourceMode int

// Resource modes.
const (
	ResourceModeDefault ResourceMode = 0
	ResourceModeOnlyCDN ResourceMode = 1
	ResourceModeOnlyL3  ResourceMode = 2
	ResourceModeOnlyRTC ResourceMode = 3
	ResourceModeCDNPlus ResourceMode = 4
	ResourceModeCustom  ResourceMode = 5
)

// PublishStreamQuality is reported every 3 seconds while publishing.
type PublishStreamQuality struct {
	VideoFPS       float64
	VideoKBPS      float64
	AudioKBPS      float64
	RTT            time.Duration
	PacketLossRate float64 // 0..1, as the edge reports it
}

// PlayStreamQuality is reported every 3 seconds while playing.
type PlayStreamQuality struct {
	VideoFPS       float64 // decodable frames per second
	VideoKBPS      float64
	AudioKBPS      float64
	RTT            time.Duration // not measured by a receive-only peer yet: 0
	PacketLossRate float64       // 0..1
	// VideoLayer is the simulcast layer played (VideoLayerAuto: the
	// stream has no layers, or the edge has not said yet); VideoPaused is
	// set while the edge holds video back because even the lowest layer
	// does not fit the player's bandwidth (audio plays on).
	VideoLayer  VideoLayer
	VideoPaused bool
}

// MediaSource is what a publisher sends: pion local tracks (for example
// webrtc.TrackLocalStaticSample fed by the caller, or NewTestPattern).
// Tracks with the same ID, stream ID and kind and different RIDs are the
// simulcast layers of one track (at most three; simulcast.go). A
// source may be published again after a reconnection, so its tracks must
// allow binding to a new peer connection (pion's static tracks do).
type MediaSource interface {
	Tracks() []webrtc.TrackLocal
}

// KeyframeRequester is implemented by sources that can make a keyframe on
// demand; the SDK calls it when the edge asks (PLI/FIR). Sources with
// simulcast layers may implement LayerKeyframeRequester as well.
type KeyframeRequester interface {
	RequestKeyframe()
}

// PublisherConfig configures StartPublishingStream.
type PublisherConfig struct {
	// ExtraInfo is the stream's extra info (under 1024 bytes).
	ExtraInfo string
}

// mediaState is the engine's publishers and players.
type mediaState struct {
	mu       sync.Mutex
	settings func(*webrtc.SettingEngine)
	edges    map[string]*grpc.ClientConn
	pubs     map[string]*publisher
	players  map[string]*player
}

// SetMediaSettings lets the caller adjust the WebRTC SettingEngine of the
// peer connections created afterwards (interfaces, ports, timeouts). Tests
// restrict ICE to loopback with it (see LoopbackOnly).
func (e *Engine) SetMediaSettings(f func(*webrtc.SettingEngine)) {
	e.media.mu.Lock()
	e.media.settings = f
	e.media.mu.Unlock()
}

// LoopbackOnly restricts ICE to loopback: loopback candidates on, every
// other interface and address filtered out, IPv4 UDP, no mDNS.
func LoopbackOnly(se *webrtc.SettingEngine) { iceloopback.Restrict(se) }

// newPeerConnection builds a peer connection with the default codecs and
// interceptors plus one that counts what flows, for quality reports, and
// for a publisher (ids not nil) one that stamps its simulcast layers'
// packets with their RIDs.
func (e *Engine) newPeerConnection(c *counters, ids *simulcastIDs) (*webrtc.PeerConnection, error) {
	e.media.mu.Lock()
	settings := e.media.settings
	e.media.mu.Unlock()
	se := webrtc.SettingEngine{}
	se.SetICETimeouts(4*time.Second, 8*time.Second, time.Second)
	if settings != nil {
		settings(&se)
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if ids != nil {
		// First: closest to the network, so it also sees the NACK
		// responder's retransmissions.
		ir.Add(ids)
	}
	// The default interceptors register the mid and RID header extensions
	// simulcast needs (ConfigureSimulcastExtensionHeaders).
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	ir.Add(counterFactory{c})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	return api.NewPeerConnection(webrtc.Configuration{})
}

// mediaClient returns the MediaService on the engine's own connection, or
// on a direct connection to addr (an origin edge a play was redirected to).
func (e *Engine) mediaClient(addr string) (mediav1.MediaServiceClient, error) {
	if addr == "" {
		return mediav1.NewMediaServiceClient(e.conn), nil
	}
	e.media.mu.Lock()
	defer e.media.mu.Unlock()
	if cc := e.media.edges[addr]; cc != nil {
		return mediav1.NewMediaServiceClient(cc), nil
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(e.creds))
	if err != nil {
		return nil, err
	}
	if e.media.edges == nil {
		e.media.edges = map[string]*grpc.ClientConn{}
	}
	e.media.edges[addr] = cc
	return mediav1.NewMediaServiceClient(cc), nil
}

func (e *Engine) stopMedia() {
	e.media.mu.Lock()
	var pubs []*publisher
	for _, p := range e.media.pubs {
		pubs = append(pubs, p)
	}
	var players []*player
	for _, p := range e.media.players {
		players = append(players, p)
	}
	e.media.mu.Unlock()
	for _, p := range pubs {
		p.stop(true)
	}
	for _, p := range players {
		p.stop()
	}
	e.media.mu.Lock()
	for _, cc := range e.media.edges {
		_ = cc.Close()
	}
	e.media.edges = nil
	e.media.mu.Unlock()
}

// publisher is one published stream: it keeps a media session up,
// publishing again whenever the edge connection breaks.
type publisher struct {
	e        *Engine
	streamID string
	roomID   string
	user     User
	source   MediaSource
	config   PublisherConfig
	count    counters
	cancel   context.CancelFunc
	done     chan struct{}

	mu        sync.Mutex
	sessionID string
	client    mediav1.MediaServiceClient
	pc        *webrtc.PeerConnection
}

// StartPublishingStream publishes source as streamID in the room the engine
// is logged into. It returns once the edge has accepted the stream (or
// refused it: 1003028 when someone else publishes that ID, 1003072 without
// the publish privilege); the handler sees PublishRequesting, then
// Publishing when media flows. If the edge connection breaks, the SDK
// publishes again by itself (PublishRequesting with 1002051, then
// Publishing).
func (e *Engine) StartPublishingStream(ctx context.Context, streamID string, source MediaSource, config PublisherConfig) error {
	if source == nil || len(source.Tracks()) == 0 {
		return errcode.New(errcode.InvalidParameter, "the media source has no tracks")
	}
	rs, err := e.session("")
	if err != nil {
		return err
	}
	e.media.mu.Lock()
	if e.media.pubs[streamID] != nil {
		e.media.mu.Unlock()
		return errcode.Newf(errcode.AlreadyPublishing, "stream %q is already being published", streamID)
	}
	p := &publisher{e: e, streamID: streamID, roomID: rs.roomID, user: rs.user, source: source, config: config, done: make(chan struct{})}
	if e.media.pubs == nil {
		e.media.pubs = map[string]*publisher{}
	}
	e.media.pubs[streamID] = p
	e.media.mu.Unlock()

	e.emit(func(h EventHandler) { h.OnPublisherStateUpdate(PublisherStatePublishRequesting, 0, "{}", streamID) })
	token := func() string {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		return rs.config.Token
	}
	broken, err := p.attempt(ctx, token())
	if err != nil {
		e.media.mu.Lock()
		delete(e.media.pubs, streamID)
		e.media.mu.Unlock()
		code := ErrorCode(err)
		if code == 0 {
			code = int(errcode.ConnectFailed)
		}
		e.emit(func(h EventHandler) { h.OnPublisherStateUpdate(PublisherStateNoPublish, code, "{}", streamID) })
		return err
	}
	rctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.run(rctx, broken, token)
	go p.quality(rctx)
	return nil
}

// StopPublishingStream stops publishing streamID; the room sees the
// stream's Delete (reason 1).
func (e *Engine) StopPublishingStream(ctx context.Context, streamID string) error {
	e.media.mu.Lock()
	p := e.media.pubs[streamID]
	e.media.mu.Unlock()
	if p == nil {
		return errcode.Newf(errcode.InvalidParameter, "stream %q is not being published", streamID)
	}
	p.stop(false)
	return nil
}

// stop ends the publisher; the edge session is stopped (which unregisters
// the stream) unless the engine is going away without a word.
func (p *publisher) stop(quiet bool) {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	p.mu.Lock()
	id, client, pc := p.sessionID, p.client, p.pc
	p.sessionID, p.pc = "", nil
	p.mu.Unlock()
	if id != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = client.Stop(ctx, &mediav1.StopRequest{SessionId: id})
		cancel()
	}
	if pc != nil {
		_ = pc.Close()
	}
	p.e.media.mu.Lock()
	if p.e.media.pubs[p.streamID] == p {
		delete(p.e.media.pubs, p.streamID)
	}
	p.e.media.mu.Unlock()
	_ = quiet
	p.e.emit(func(h EventHandler) { h.OnPublisherStateUpdate(PublisherStateNoPublish, 0, "{}", p.streamID) })
}

// attempt publishes once; the returned channel closes when that media
// session is over (edge gone, connection failed).
func (p *publisher) attempt(ctx context.Context, token string) (<-chan struct{}, error) {
	ids := &simulcastIDs{}
	pc, err := p.e.newPeerConnection(&p.count, ids)
	if err != nil {
		return nil, err
	}
	sent, err := addTracks(pc, p.source.Tracks(), ids)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	for _, st := range sent {
		readKeyframeRequests(st, p.source)
	}
	connected := make(chan struct{})
	broken := make(chan struct{})
	var once, bonce sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			once.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			bonce.Do(func() { close(broken) })
		}
	})
	offer, err := whipclient.Offer(ctx, pc)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	client, err := p.e.mediaClient("")
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	resp, err := client.Publish(ctx, &mediav1.PublishRequest{AppId: p.e.profile.AppID, RoomId: p.roomID, StreamId: p.streamID,
		UserId: p.user.UserID, UserName: p.user.UserName, Token: token, SdpOffer: offer, ExtraInfo: p.config.ExtraInfo})
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	stopRemote := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, _ = client.Stop(sctx, &mediav1.StopRequest{SessionId: resp.GetSessionId()})
		cancel()
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: resp.GetSdpAnswer()}); err != nil {
		_ = pc.Close()
		stopRemote()
		return nil, err
	}
	select {
	case <-connected:
	case <-broken:
		stopRemote()
		return nil, errcode.New(errcode.ConnectFailed, "the media connection to the edge failed")
	case <-ctx.Done():
		_ = pc.Close()
		stopRemote()
		return nil, ctx.Err()
	}
	p.mu.Lock()
	p.sessionID, p.client, p.pc = resp.GetSessionId(), client, pc
	p.mu.Unlock()
	// The edge's view of the session: a broken watch means the edge is gone.
	watch, err := client.WatchSession(context.WithoutCancel(ctx), &mediav1.WatchSessionRequest{SessionId: resp.GetSessionId()})
	if err == nil {
		go func() {
			for {
				ev, err := watch.Recv()
				if err != nil || ev.GetState() == mediav1.SessionEvent_STATE_FAILED || ev.GetState() == mediav1.SessionEvent_STATE_CLOSED {
					bonce.Do(func() { close(broken) })
					_ = pc.Close()
					return
				}
			}
		}()
	}
	p.e.emit(func(h EventHandler) { h.OnPublisherStateUpdate(PublisherStatePublishing, 0, "{}", p.streamID) })
	return broken, nil
}

// run publishes again whenever the media session breaks, until stopped.
func (p *publisher) run(ctx context.Context, broken <-chan struct{}, token func() string) {
	defer close(p.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-broken:
		}
		p.mu.Lock()
		old := p.pc
		p.sessionID, p.pc = "", nil
		p.mu.Unlock()
		if old != nil {
			go old.Close()
		}
		p.e.emit(func(h EventHandler) {
			h.OnPublisherStateUpdate(PublisherStatePublishRequesting, int(errcode.ConnectionBroken), "{}", p.streamID)
		})
		// A publisher keeps trying until it is stopped or refused for good.
		err := retry(ctx, 0, func(actx context.Context) error {
			b, err := p.attempt(actx, token())
			if err == nil {
				broken = b
			}
			return err
		}, func(c errcode.Code) bool {
			return c == errcode.PublishAuthError || c == errcode.StreamIDExists || c == errcode.PublishForbidden
		})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c := errcode.Of(err)
			p.e.emit(func(h EventHandler) { h.OnPublisherStateUpdate(PublisherStateNoPublish, int(c), "{}", p.streamID) })
			p.e.media.mu.Lock()
			if p.e.media.pubs[p.streamID] == p {
				delete(p.e.media.pubs, p.streamID)
			}
			p.e.media.mu.Unlock()
			return
		}
	}
}

const qualityInterval = 3 * time.Second

// retry calls attempt (with a 15 s deadline each time) until it succeeds,
// ctx ends, fatal says the error is final, or giveUpAfter (0: never) has
// passed. It waits 200 ms, doubling up to 2 s, between tries, and returns
// the last error.
func retry(ctx context.Context, giveUpAfter time.Duration, attempt func(context.Context) error, fatal func(errcode.Code) bool) error {
	start := time.Now()
	backoff := 200 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := attempt(actx)
		cancel()
		if err == nil || ctx.Err() != nil || fatal(errcode.Of(err)) {
			return err
		}
		if giveUpAfter > 0 && time.Since(start) > giveUpAfter {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (p *publisher) quality(ctx context.Context) {
	t := time.NewTicker(qualityInterval)
	defer t.Stop()
	last := p.count.snapshot()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := p.count.snapshot()
		q := PublishStreamQuality{}
		q.VideoKBPS, q.AudioKBPS, q.VideoFPS = now.rates(last)
		last = now
		p.mu.Lock()
		pc := p.pc
		p.mu.Unlock()
		if pc != nil {
			for _, s := range pc.GetStats() {
				if r, ok := s.(webrtc.RemoteInboundRTPStreamStats); ok && r.Kind == "video" {
					q.RTT = time.Duration(r.RoundTripTime * float64(time.Second))
					q.PacketLossRate = r.FractionLost
				}
			}
		}
		p.e.emit(func(h EventHandler) { h.OnPublisherQualityUpdate(q, p.streamID) })
	}
}

// counters count the RTP that flows through a peer connection.
type counters struct {
	videoBytes, audioBytes, videoFrames atomic.Int64
}

type countSnapshot struct {
	at                                  time.Time
	videoBytes, audioBytes, videoFrames int64
}

func (c *counters) snapshot() countSnapshot {
	return countSnapshot{time.Now(), c.videoBytes.Load(), c.audioBytes.Load(), c.videoFrames.Load()}
}

func (s countSnapshot) rates(prev countSnapshot) (videoKBPS, audioKBPS, fps float64) {
	d := s.at.Sub(prev.at).Seconds()
	if d <= 0 {
		return 0, 0, 0
	}
	return float64(s.videoBytes-prev.videoBytes) * 8 / 1000 / d, float64(s.audioBytes-prev.audioBytes) * 8 / 1000 / d,
		float64(s.videoFrames-prev.videoFrames) / d
}

func (c *counters) add(video bool, n int, marker bool) {
	if video {
		c.videoBytes.Add(int64(n))
		if marker {
			c.videoFrames.Add(1)
		}
	} else {
		c.audioBytes.Add(int64(n))
	}
}

// counterFactory makes an interceptor that counts sent and received RTP
// (payload bytes, and video frames by the marker bit).
type counterFactory struct{ c *counters }

func (f counterFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &counterInterceptor{c: f.c}, nil
}

type counterInterceptor struct {
	interceptor.NoOp
	c *counters
}

func (ci *counterInterceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	video := strings.HasPrefix(strings.ToLower(info.MimeType), "video/")
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		ci.c.add(video, len(payload), h.Marker)
		return w.Write(h, payload, a)
	})
}

func (ci *counterInterceptor) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	video := strings.HasPrefix(strings.ToLower(info.MimeType), "video/")
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err == nil && n >= 12 {
			ci.c.add(video, n-12, b[1]&0x80 != 0)
		}
		return n, a, err
	})
}

var errPlayStopped = errors.New("express: play stopped")
