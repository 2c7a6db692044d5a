// Package media is the media edge: a pion/webrtc SFU that takes a
// publisher's WebRTC tracks and forwards their RTP, untouched, to every
// player of the stream.
//
// One edge serves every session on one UDP port (ICE UDP mux), so it fits
// behind a k8s Service or hostPort; the address it advertises in its ICE
// candidates is Config.PublicIP. A publish registers the stream in the
// stream registry under the edge's own etcd lease, so the stream leaves its
// room when it is stopped (reason 1), when the publisher's peer connection
// dies (reason 5), or when the edge itself dies and its lease expires
// (reason 5 too, written by the registry's watcher).
//
// RTCP: the default pion interceptors run on both legs (NACK generator
// toward the publisher, NACK responder toward players, sender and receiver
// reports, stats). PLI/FIR from players is forwarded upstream, at most once
// per Config.PLIInterval per track; a player whose connection comes up
// triggers a keyframe request at once (throttled to one per 50 ms), so it
// gets a decodable picture after about one round trip to the publisher
// instead of waiting for the next natural keyframe. There is no keyframe
// cache: players share one local track per publisher track, so replaying a
// cached keyframe group to one late joiner would need per-player sequence
// rewriting, which this edge does not do yet.
//
// Play is OnlyRTC: a player is served by the stream's origin edge; an edge
// that is not the origin answers with PlayResponse.redirect_addr. An OnlyL3
// relay (this edge pulling the stream once from the origin) would slot in
// where the redirect is made.
package media

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/iceloopback"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// Defaults.
const (
	DefaultPLIInterval    = 500 * time.Millisecond
	DefaultConnectTimeout = 15 * time.Second
	// trackWait is how long a player waits for a just-registered
	// publisher's tracks to arrive.
	trackWait = 5 * time.Second
)

// Config is what an edge needs.
type Config struct {
	Streams streamv1.StreamServiceClient
	Auth    authv1.AuthServiceClient
	// Rooms keeps WHIP publishers in their room (PublishRequest.join_room).
	Rooms roomv1.RoomServiceClient
	// EdgeID names the edge in the registry; EdgeAddr is its gRPC address
	// that players are redirected to. EdgeID defaults to EdgeAddr.
	EdgeID   string
	EdgeAddr string
	// Lease returns the etcd lease the edge's streams live under: its own
	// discovery lease.
	Lease func() int64
	// UDPPort is the one UDP port of every session; 0 picks one.
	UDPPort int
	// PublicIP is advertised in ICE candidates. A loopback address (the
	// default under `onair dev`) also restricts ICE to loopback interfaces
	// and binds the UDP port on it; otherwise the port is bound on all
	// interfaces. Empty advertises the host's own addresses.
	PublicIP string
	// PLIInterval throttles keyframe requests sent to a publisher.
	PLIInterval time.Duration
	// ConnectTimeout: a publisher whose peer connection is not up by then
	// is dropped.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

type streamKey struct {
	app    uint32
	stream string
}

// Server implements mediav1.MediaServiceServer.
type Server struct {
	mediav1.UnimplementedMediaServiceServer
	cfg Config
	api *webrtc.API
	udp net.PacketConn
	mux ice.UDPMux
	log *slog.Logger

	mu       sync.Mutex
	origins  map[streamKey]*origin
	sessions map[string]*session
	closed   bool

	// Egress counts RTP packets written to players (benchmarks read it).
	Egress atomic.Int64
}

// New binds the UDP port and builds the WebRTC API.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.EdgeID == "" {
		cfg.EdgeID = cfg.EdgeAddr
	}
	if cfg.PLIInterval <= 0 {
		cfg.PLIInterval = DefaultPLIInterval
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	loopback := false
	bind := "0.0.0.0"
	if cfg.PublicIP != "" {
		ip := net.ParseIP(cfg.PublicIP)
		if ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("media: public IP %q is not an IPv4 address", cfg.PublicIP)
		}
		if ip.IsLoopback() {
			loopback, bind = true, ip.String()
		}
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(bind), Port: cfg.UDPPort})
	if err != nil {
		return nil, fmt.Errorf("media: listen udp: %w", err)
	}
	s := &Server{cfg: cfg, udp: udp, log: cfg.Logger, origins: map[streamKey]*origin{}, sessions: map[string]*session{}}
	s.mux = webrtc.NewICEUDPMux(nil, udp)
	se := webrtc.SettingEngine{}
	se.SetICEUDPMux(s.mux)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICETimeouts(4*time.Second, 8*time.Second, time.Second)
	if cfg.PublicIP != "" {
		se.SetNAT1To1IPs([]string{cfg.PublicIP}, webrtc.ICECandidateTypeHost)
	}
	if loopback {
		iceloopback.Restrict(&se)
	}
	api, err := NewAPI(se)
	if err != nil {
		_ = udp.Close()
		return nil, err
	}
	s.api = api
	return s, nil
}

// NewAPI is a WebRTC API with the default codecs (Opus, VP8, VP9, H.264,
// AV1) and the default interceptors (NACK, RTCP reports, stats, TWCC).
func NewAPI(se webrtc.SettingEngine) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// UDPAddr is the address of the edge's UDP port.
func (s *Server) UDPAddr() net.Addr { return s.udp.LocalAddr() }

// Load is what the edge puts in its discovery metadata.
func (s *Server) Load() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	players := 0
	for _, ss := range s.sessions {
		if ss.player {
			players++
		}
	}
	return map[string]int{"publishers": len(s.origins), "players": players}
}

// Close ends every session as a crash would, without touching the registry:
// a graceful shutdown revokes the edge's lease, which ends its streams.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	var all []*session
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	for _, ss := range all {
		// FAILED, not CLOSED: clients should come back (elsewhere).
		ss.finish(mediav1.SessionEvent_STATE_FAILED, int32(errcode.ServiceUnavailable), "the media edge shut down")
	}
	_ = s.mux.Close()
	_ = s.udp.Close()
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
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

// session is one publisher's or player's peer connection.
type session struct {
	s      *Server
	id     string
	player bool
	pc     *webrtc.PeerConnection
	origin *origin

	mu     sync.Mutex
	state  mediav1.SessionEvent_State
	code   int32
	msg    string
	notify chan struct{}
	ended  bool
	onEnd  []func()
}

func (s *Server) newSession(player bool) *session {
	return &session{s: s, id: newID(), player: player, state: mediav1.SessionEvent_STATE_CONNECTING, notify: make(chan struct{})}
}

func (ss *session) snapshot() (*mediav1.SessionEvent, <-chan struct{}, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return &mediav1.SessionEvent{State: ss.state, ErrorCode: ss.code, Message: ss.msg}, ss.notify, ss.ended
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

// origin is a stream published on this edge.
type origin struct {
	s        *Server
	key      streamKey
	roomID   string
	userID   string
	pub      *session
	expected int
	ready    chan struct{}

	mu      sync.Mutex
	tracks  []*forwarder
	players map[*session]struct{}
	// watching mirrors len(players) for the per-packet egress count, which
	// must not take mu.
	watching   atomic.Int64
	registered bool
	// userName and extraInfo are what the stream was registered with, and
	// lease the lease it lives under: enough to register it again when
	// the edge's lease is lost (Reregister).
	userName, extraInfo string
	lease               int64
	stopRoom            func()
	why                 *streamv1.DeleteReason
}

// forwarder carries one publisher track to the shared local track every
// player's sender is bound to.
type forwarder struct {
	o       *origin
	remote  *webrtc.TrackRemote
	local   *webrtc.TrackLocalStaticRTP
	lastPLI atomic.Int64
}

// joinPLIInterval throttles the keyframe requests of joining players, which
// must not wait out PLIInterval: a keyframe requested before their
// connection was up did not reach them.
const joinPLIInterval = 50 * time.Millisecond

// requestKeyframe asks the publisher for a keyframe, at most once per
// PLIInterval (joinPLIInterval for a player that just connected).
func (f *forwarder) requestKeyframe(join bool) {
	if f.remote.Kind() != webrtc.RTPCodecTypeVideo {
		return
	}
	every := f.o.s.cfg.PLIInterval
	if join {
		every = joinPLIInterval
	}
	now := time.Now().UnixNano()
	last := f.lastPLI.Load()
	if now-last < int64(every) || !f.lastPLI.CompareAndSwap(last, now) {
		return
	}
	_ = f.o.pub.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(f.remote.SSRC())}})
}

func (f *forwarder) run() {
	for {
		pkt, _, err := f.remote.ReadRTP()
		if err != nil {
			return
		}
		// A write error is one player's closed connection; the others
		// were written.
		_ = f.local.WriteRTP(pkt)
		f.o.s.Egress.Add(f.o.watching.Load())
	}
}

func (o *origin) addTrack(remote *webrtc.TrackRemote) {
	local, err := webrtc.NewTrackLocalStaticRTP(remote.Codec().RTPCodecCapability, remote.ID(), remote.StreamID())
	if err != nil {
		o.s.log.Warn("media: local track", "err", err)
		return
	}
	f := &forwarder{o: o, remote: remote, local: local}
	o.mu.Lock()
	o.tracks = append(o.tracks, f)
	if len(o.tracks) == o.expected {
		close(o.ready)
	}
	o.mu.Unlock()
	go f.run()
}

// end stops the stream: players are told and closed, the registry and the
// room are updated unless reason is 0 (the stream was taken over or the
// edge is going away).
func (o *origin) end(reason streamv1.DeleteReason) {
	o.s.mu.Lock()
	if o.s.origins[o.key] == o {
		delete(o.s.origins, o.key)
	}
	closing := o.s.closed
	o.s.mu.Unlock()
	o.mu.Lock()
	players := make([]*session, 0, len(o.players))
	for p := range o.players {
		players = append(players, p)
	}
	o.players = nil
	o.watching.Store(0)
	registered := o.registered
	o.registered = false
	stopRoom := o.stopRoom
	o.stopRoom = nil
	o.mu.Unlock()
	if closing {
		for _, p := range players {
			p.finish(mediav1.SessionEvent_STATE_FAILED, int32(errcode.ServiceUnavailable), "the media edge shut down")
		}
		return
	}
	if reason == streamv1.DeleteReason_DELETE_REASON_UNSPECIFIED {
		// Taken over by a new publish of the same stream: players should
		// come back for the new one.
		for _, p := range players {
			p.finish(mediav1.SessionEvent_STATE_FAILED, int32(errcode.ConnectionBroken), "the publisher reconnected")
		}
		return
	}
	for _, p := range players {
		p.finish(mediav1.SessionEvent_STATE_CLOSED, int32(errcode.StreamNotFound), "the stream ended")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if registered {
		// Only unregister what is still ours: a publisher that moved to
		// another edge has taken the stream over there.
		st, err := o.s.cfg.Streams.GetStream(ctx, &streamv1.GetStreamRequest{AppId: o.key.app, StreamId: o.key.stream})
		if err == nil && st.GetStream().GetEdgeId() == o.s.cfg.EdgeID {
			if _, err := o.s.cfg.Streams.UnregisterStream(ctx, &streamv1.UnregisterStreamRequest{
				AppId: o.key.app, StreamId: o.key.stream, Reason: reason}); err != nil && errcode.Of(err) != errcode.StreamNotFound {
				o.s.log.Warn("media: unregister stream", "stream", o.key.stream, "err", err)
			}
		}
	}
	if stopRoom != nil {
		stopRoom()
	}
}

func (s *Server) add(ss *session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errcode.New(errcode.ServiceUnavailable, "the media edge is shutting down")
	}
	s.sessions[ss.id] = ss
	return nil
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

// Publish answers a publisher's offer and registers its stream under the
// edge's lease. With join_room the token's user is kept logged into the
// room for the session's life.
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
	key := streamKey{req.GetAppId(), req.GetStreamId()}
	ss := s.newSession(false)
	o := &origin{s: s, key: key, roomID: req.GetRoomId(), userID: userID, pub: ss, expected: expected,
		ready: make(chan struct{}), players: map[*session]struct{}{}}
	ss.origin = o
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	ss.pc = pc
	ss.onEnd = append(ss.onEnd, func() { o.end(o.reason()) })
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { o.addTrack(t) })
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			ss.setState(mediav1.SessionEvent_STATE_CONNECTED)
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			o.setReason(streamv1.DeleteReason_DELETE_REASON_DISCONNECTED)
			ss.finish(mediav1.SessionEvent_STATE_FAILED, int32(errcode.Disconnected), "the publisher's connection was lost")
		}
	})
	sdpAnswer, err := answer(ctx, pc, req.GetSdpOffer())
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	if req.GetJoinRoom() {
		stop, err := s.joinRoom(ctx, req, userID, userName)
		if err != nil {
			_ = pc.Close()
			return nil, err
		}
		o.mu.Lock()
		o.stopRoom = stop
		o.mu.Unlock()
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
		o.mu.Lock()
		stop := o.stopRoom
		o.stopRoom = nil
		o.mu.Unlock()
		if stop != nil {
			stop()
		}
		return nil, err
	}
	if err := s.add(ss); err != nil {
		_ = pc.Close()
		return nil, err
	}
	s.mu.Lock()
	old := s.origins[key]
	s.origins[key] = o
	s.mu.Unlock()
	o.mu.Lock()
	o.registered = true
	o.userName, o.extraInfo, o.lease = userName, req.GetExtraInfo(), lease
	o.mu.Unlock()
	if old != nil {
		// The same publisher again (a retry): the new session takes over.
		old.setReason(streamv1.DeleteReason_DELETE_REASON_UNSPECIFIED)
		old.pub.finish(mediav1.SessionEvent_STATE_CLOSED, 0, "replaced by a new publish of the stream")
	}
	time.AfterFunc(s.cfg.ConnectTimeout, func() {
		if pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
			o.setReason(streamv1.DeleteReason_DELETE_REASON_DISCONNECTED)
			ss.finish(mediav1.SessionEvent_STATE_FAILED, int32(errcode.ConnectFailed), "the publisher never connected")
		}
	})
	// A failure that raced with registration still unregisters.
	if st := pc.ConnectionState(); st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
		ss.finish(mediav1.SessionEvent_STATE_FAILED, int32(errcode.Disconnected), "the publisher's connection was lost")
	}
	return &mediav1.PublishResponse{SessionId: ss.id, SdpAnswer: sdpAnswer}, nil
}

// reason is why the stream is ending when its publisher session ends;
// STOPPED unless the session failed.
func (o *origin) reason() streamv1.DeleteReason {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.why == nil {
		return streamv1.DeleteReason_DELETE_REASON_STOPPED
	}
	return *o.why
}

func (o *origin) setReason(r streamv1.DeleteReason) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.why == nil {
		o.why = &r
	}
}

// joinRoom logs the publisher into its room and keeps the session alive; the
// returned func logs it out.
func (s *Server) joinRoom(ctx context.Context, req *mediav1.PublishRequest, userID, userName string) (func(), error) {
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
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			c, cc := context.WithTimeout(context.Background(), 5*time.Second)
			defer cc()
			_, _ = s.cfg.Rooms.LogoutRoom(c, &roomv1.LogoutRoomRequest{SessionId: resp.GetSessionId()})
		})
	}, nil
}

// Play answers a player's offer for a stream published on this edge. The
// player gets every track of the stream and, at once, a keyframe request
// goes to the publisher.
func (s *Server) Play(ctx context.Context, req *mediav1.PlayRequest) (*mediav1.PlayResponse, error) {
	if err := ValidOffer(req.GetSdpOffer()); err != nil {
		return nil, errcode.Newf(errcode.InvalidParameter, "bad SDP offer: %v", err)
	}
	if _, err := s.cfg.Auth.VerifyToken(ctx, &authv1.VerifyTokenRequest{AppId: req.GetAppId(), UserId: req.GetUserId(),
		Token: req.GetToken(), Action: authv1.Action_ACTION_PLAY, StreamId: req.GetStreamId()}); err != nil {
		return nil, err
	}
	st, err := s.cfg.Streams.GetStream(ctx, &streamv1.GetStreamRequest{AppId: req.GetAppId(), StreamId: req.GetStreamId()})
	if err != nil {
		return nil, err
	}
	if st.GetStream().GetEdgeId() != s.cfg.EdgeID {
		// OnlyRTC (and, until edges relay, every mode) plays from the origin.
		return &mediav1.PlayResponse{RedirectAddr: st.GetStream().GetEdgeAddr()}, nil
	}
	key := streamKey{req.GetAppId(), req.GetStreamId()}
	s.mu.Lock()
	o := s.origins[key]
	s.mu.Unlock()
	if o == nil {
		return nil, errcode.Newf(errcode.StreamNotFound, "stream %q is not live on this edge", req.GetStreamId())
	}
	wctx, cancel := context.WithTimeout(ctx, trackWait)
	select {
	case <-o.ready:
	case <-wctx.Done():
	}
	cancel()
	o.mu.Lock()
	tracks := append([]*forwarder(nil), o.tracks...)
	o.mu.Unlock()
	if len(tracks) == 0 {
		return nil, errcode.Newf(errcode.StreamNotFound, "stream %q has no media yet", req.GetStreamId())
	}
	ss := s.newSession(true)
	ss.origin = o
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	ss.pc = pc
	for _, f := range tracks {
		sender, err := pc.AddTrack(f.local)
		if err != nil {
			_ = pc.Close()
			return nil, err
		}
		go readRTCP(sender, f)
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			ss.setState(mediav1.SessionEvent_STATE_CONNECTED)
			for _, f := range tracks {
				f.requestKeyframe(true)
			}
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			ss.finish(mediav1.SessionEvent_STATE_FAILED, int32(errcode.Disconnected), "the player's connection was lost")
		}
	})
	ss.onEnd = append(ss.onEnd, func() {
		o.mu.Lock()
		delete(o.players, ss)
		o.watching.Store(int64(len(o.players)))
		o.mu.Unlock()
	})
	sdpAnswer, err := answer(ctx, pc, req.GetSdpOffer())
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	if err := s.add(ss); err != nil {
		_ = pc.Close()
		return nil, err
	}
	o.mu.Lock()
	gone := o.players == nil
	if !gone {
		o.players[ss] = struct{}{}
		o.watching.Store(int64(len(o.players)))
	}
	o.mu.Unlock()
	if gone {
		ss.finish(mediav1.SessionEvent_STATE_CLOSED, int32(errcode.StreamNotFound), "the stream ended")
		return nil, errcode.Newf(errcode.StreamNotFound, "stream %q ended", req.GetStreamId())
	}
	return &mediav1.PlayResponse{SessionId: ss.id, SdpAnswer: sdpAnswer}, nil
}

// readRTCP drains a player's RTCP for one track (which also feeds the
// interceptors) and forwards keyframe requests upstream.
func readRTCP(sender *webrtc.RTPSender, f *forwarder) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				f.requestKeyframe(false)
			}
		}
	}
}

func (s *Server) lookup(id string) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[id]
	if ss == nil {
		return nil, errcode.Newf(errcode.SessionNotFound, "media session %q does not exist", id)
	}
	return ss, nil
}

// Stop ends a session; stopping a publisher ends its stream (reason 1).
func (s *Server) Stop(_ context.Context, req *mediav1.StopRequest) (*mediav1.StopResponse, error) {
	ss, err := s.lookup(req.GetSessionId())
	if err != nil {
		return nil, err
	}
	if !ss.player {
		ss.origin.setReason(streamv1.DeleteReason_DELETE_REASON_STOPPED)
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
	var last mediav1.SessionEvent_State
	for {
		ev, changed, ended := ss.snapshot()
		if ev.State != last {
			if err := srv.Send(ev); err != nil {
				return err
			}
			last = ev.State
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
