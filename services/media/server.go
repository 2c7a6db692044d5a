// Package media is the media edge: a pion/webrtc SFU that takes a
// publisher's WebRTC tracks and forwards them to every player of the
// stream, each player through its own downtracks.
//
// One edge serves every session on one UDP port (ICE UDP mux), so it fits
// behind a k8s Service or hostPort; the address it advertises in its ICE
// candidates is Config.PublicIP. A publish registers the stream in the
// stream registry under the edge's own etcd lease, so the stream leaves its
// room when it is stopped (reason 1), when the publisher's peer connection
// dies and it does not come back within Config.RepublishGrace (reason 5),
// or when the edge itself dies and its lease expires (reason 5 too, written
// by the registry's watcher).
//
// This package is the edge: signaling, sessions and the streams the edge
// holds. Where a change goes:
//   - server.go: Config, New, Close, load; session.go: a session and its
//     states (Stop, WatchSession); publish.go: Publish (and the WHIP
//     publisher's room login); play.go: Play.
//   - stream.go: a stream held here and its source (a publisher, or a
//     relay pull), its players, publisher continuity.
//   - edgechoice.go: where a player plays (by internal/placement's rule;
//     redirects) and this edge's discovery metadata (placement.Meta).
//   - relayedge.go: the edge as its relay sees it; reregister.go: streams
//     registered again after the edge's lease was lost; metrics.go.
//
// Below it, one concern a package:
//   - services/media/sfu: forwarding (ingest, packet cache, keyframes,
//     downtracks, rewriting, the forwarding pool, RTP/RTCP).
//   - services/media/relay: the edge-to-edge relay.
//   - services/media/vp8: VP8 payload parsing.
//   - internal/udpbatch: the edge's UDP socket (batched sends, GSO).
//
// pion does ICE, DTLS, SRTP and SDP. Publishers run pion's default
// interceptors (NACK generator, reports, TWCC); players run none: the edge
// answers their NACKs from the shared cache, reads their receiver reports
// and sends sender reports itself, and sends their keyframe requests
// upstream, throttled. A player that joins a running stream gets the latest
// keyframe group from the cache at once, so its first frame never waits for
// the publisher.
//
// Play with OnlyRTC is served by the stream's origin edge; an edge that is
// not the origin answers with PlayResponse.redirect_addr. Default and
// OnlyL3 play at the edge internal/placement chooses for the player
// (edgechoice.go), which pulls the stream from the origin if it is not it
// (package relay).
package media

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"google.golang.org/grpc"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/iceloopback"
	"github.com/onair-dev/onair/internal/mediasession"
	"github.com/onair-dev/onair/internal/placement"
	"github.com/onair-dev/onair/internal/udpbatch"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/services/media/relay"
	"github.com/onair-dev/onair/services/media/sfu"
)

// Defaults.
const (
	DefaultPLIInterval    = 500 * time.Millisecond
	DefaultConnectTimeout = 15 * time.Second
	// DefaultRepublishGrace is how long a stream outlives its publisher's
	// broken connection, waiting for the publisher to come back.
	DefaultRepublishGrace = 3 * time.Second
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
	// RepublishGrace: a publisher whose connection broke may publish the
	// stream again within it, and its players stay on (DefaultRepublishGrace
	// if zero, no grace if negative).
	RepublishGrace time.Duration
	Logger         *slog.Logger

	// Relays (package relay, edgechoice.go). RelayFanout: edges fed directly
	// (DefaultRelayFanout if zero); RelayLinger: how long a pulled stream
	// outlives its last local player (DefaultRelayLinger if zero);
	// RelayDialOptions: how to reach another edge (the internal key, TLS).
	RelayFanout      int
	RelayLinger      time.Duration
	RelayDialOptions []grpc.DialOption
	// Edges lists the registered media edges (placement.List) for the
	// placement of plays that are not placed yet; nil keeps every player
	// on the stream's origin.
	Edges func(ctx context.Context) ([]placement.Edge, error)
	// OriginRoom: while the edge publishes streams it takes players only
	// while its load (players, plus one per Mbit/s of egress) is under
	// it, or when every edge is such an origin (DefaultOriginRoom if
	// zero). It is advertised in the edge's metadata, for whoever places.
	OriginRoom int
}

// Server implements mediav1.MediaServiceServer.
type Server struct {
	mediav1.UnimplementedMediaServiceServer
	cfg       Config
	api       *webrtc.API     // publishers: pion's default interceptors
	playerPCs sfu.PlayerPeers // players: no interceptors, the edge does their RTCP
	udp       net.PacketConn
	bc        *udpbatch.Conn // udp, for its counters
	fwd       *sfu.ForwardPool
	edgeDelay sfu.DelayHist
	mux       ice.UDPMux
	log       *slog.Logger
	// tag starts the ID of every session of this edge and is in its
	// discovery metadata (Meta), so the gateway can call the edge that
	// holds a session (internal/mediasession).
	tag string

	mu       sync.Mutex
	origins  map[relay.StreamKey]*stream
	sessions map[string]*session
	closed   bool
	relay    *relay.Relay

	// Placement (edgechoice.go): the plays this edge sent to other edges
	// lately, and its egress bitrate (guarded by placeMu).
	chooser placement.Chooser
	placeMu sync.Mutex
	egress  egressMeter

	// Egress counts RTP packets written to players (benchmarks read it).
	Egress atomic.Int64
}

// New binds the UDP port and builds the WebRTC APIs.
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
	if cfg.RepublishGrace == 0 {
		cfg.RepublishGrace = DefaultRepublishGrace
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
	// Room for bursts: a keyframe to a few hundred players at once.
	_ = udp.SetWriteBuffer(8 << 20)
	_ = udp.SetReadBuffer(8 << 20)
	// Writes to the socket are batched (sendmmsg): see udpbatch.Conn.
	bc := udpbatch.New(udp)
	s := &Server{cfg: cfg, udp: bc, bc: bc, log: cfg.Logger, tag: mediasession.NewTag(),
		origins: map[relay.StreamKey]*stream{}, sessions: map[string]*session{}}
	s.mux = webrtc.NewICEUDPMux(nil, bc)
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
	if err := sfu.ShareAcrossPeers(&se, cfg.Logger); err != nil {
		_ = bc.Close()
		return nil, err
	}
	api, err := NewAPI(se)
	if err != nil {
		_ = bc.Close()
		return nil, err
	}
	m, err := playerMediaEngine()
	if err != nil {
		_ = bc.Close()
		return nil, err
	}
	s.api = api
	s.playerPCs = sfu.NewPlayerPeers(se, m)
	s.fwd = sfu.NewForwardPool(sfu.ForwardWorkers(), bc)
	s.relay = relay.New(relay.Config{Streams: cfg.Streams, EdgeID: cfg.EdgeID, EdgeAddr: cfg.EdgeAddr,
		Fanout: cfg.RelayFanout, Linger: cfg.RelayLinger, DialOptions: cfg.RelayDialOptions, PLIInterval: cfg.PLIInterval,
		Logger: cfg.Logger}, relayEdge{s})
	return s, nil
}

// playerMediaEngine offers players the default codecs plus transport-wide
// congestion control (the extension and the transport-cc feedback), which
// the edge runs itself: no pion interceptor stamps or reads it.
func playerMediaEngine() (*webrtc.MediaEngine, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, k)
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, k); err != nil {
			return nil, err
		}
	}
	return m, nil
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

// Meta is the edge's discovery metadata (placement.Meta): its load, with
// the egress bitrate measured since the last call, and the tag of its
// session IDs, by which the gateway finds the edge that holds a session.
func (s *Server) Meta() placement.Meta {
	s.measureEgress()
	return s.liveMeta()
}

func (s *Server) sessionLoad() (publishers, players int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		if ss.player {
			players++
		}
	}
	return len(s.origins), players
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
	var origins []*stream
	for _, o := range s.origins {
		origins = append(origins, o)
	}
	s.mu.Unlock()
	for _, ss := range all {
		// FAILED, not CLOSED: clients should come back (elsewhere).
		ss.finish(mediav1.SessionEvent_STATE_FAILED, int32(errcode.ServiceUnavailable), "the media edge shut down")
	}
	for _, o := range origins {
		o.end(streamv1.DeleteReason_DELETE_REASON_UNSPECIFIED)
	}
	s.relay.Close()
	s.fwd.Close()
	_ = s.mux.Close()
	_ = s.udp.Close()
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

// TakeEdgeDelay returns the delay the edge added to live packets since the
// last call, from a publisher's packet arriving to its player's turn on a
// forwarding worker handing it to the socket: how many observations (one
// per turn, from its oldest live packet, so an upper bound), and their 50th and 99th
// percentiles (bucket upper bounds; -1 means over 100 ms).
func (s *Server) TakeEdgeDelay() (n int64, p50, p99 time.Duration) { return s.edgeDelay.Take() }

func (s *Server) lookup(id string) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[id]
	if ss == nil {
		return nil, errcode.Newf(errcode.SessionNotFound, "media session %q does not exist", id)
	}
	return ss, nil
}
