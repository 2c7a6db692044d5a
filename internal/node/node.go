// Package node runs a set of OnAir roles on one gRPC server: one role per
// process in a cluster, all of them in `onair dev`, several nodes side by
// side in tests.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/grpcserver"
	"github.com/onair-dev/onair/internal/placement"
	"github.com/onair-dev/onair/internal/rawconn"
	"github.com/onair-dev/onair/internal/telemetry"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/services/auth"
	"github.com/onair-dev/onair/services/media"
	"github.com/onair-dev/onair/services/room"
	"github.com/onair-dev/onair/services/stream"
)

// Config says which roles to run and how.
type Config struct {
	// Roles to run: discovery.Auth, Room, Stream, Media.
	Roles []string
	Etcd  *clientv3.Client
	// GRPCAddr is the listen address; "127.0.0.1:0" picks a port.
	GRPCAddr string
	// AdvertiseAddr is what is registered in etcd; the bound address if empty.
	AdvertiseAddr string
	// InternalKey marks calls between services (grpcserver.InternalKeyHeader).
	InternalKey string
	// LeaseTTL is the discovery lease TTL.
	LeaseTTL time.Duration
	// Telemetry may be nil.
	Telemetry *telemetry.Providers
	Logger    *slog.Logger
	// ServerTLS, when set, makes the gRPC listener serve TLS only (for
	// example certfile.Reloader.ServerConfig, which picks up renewals).
	ServerTLS *tls.Config
	// ClientTLS, when set, is how the node's calls to other services
	// (dialed through discovery) use TLS: the CAs that verify them and the
	// name their certificates hold, if not their IP addresses (see
	// PeerCredentials). Set it whenever the services serve TLS.
	ClientTLS *tls.Config
	// ServerOptions are added to the gRPC server's (tests count the RPCs
	// a node serves with an interceptor).
	ServerOptions []grpc.ServerOption

	Auth  AuthConfig
	Room  RoomConfig
	Media MediaConfig
}

// MediaConfig configures the media role.
type MediaConfig struct {
	// UDPPort is the one UDP port of every WebRTC session; 0 picks one.
	UDPPort int
	// PublicIP is the address advertised in ICE candidates (see media.Config).
	PublicIP string
	// RelayFanout, RelayLinger and OriginRoom: see media.Config.
	RelayFanout int
	OriginRoom  int
	RelayLinger time.Duration
}

// RoomConfig configures the room role.
type RoomConfig struct {
	// SessionTimeout: a session without heartbeat for this long is removed.
	SessionTimeout time.Duration
	// NATS carries room messages between room replicas; the caller owns
	// it. Nil: messages reach this node's own subscribers only.
	NATS *nats.Conn
	// MessageRate: broadcast messages per room per second on each replica
	// (room.DefaultMessageRate if zero).
	MessageRate float64
	// OnlineCountInterval: how often the online count is pushed.
	OnlineCountInterval time.Duration
	// LoginRate: logins per room per second on each replica.
	LoginRate float64
	// EmptyRoomLinger: how long an emptied room stays open before it
	// closes (room.DefaultEmptyRoomLinger if zero, at once if negative).
	EmptyRoomLinger time.Duration
	// CallbackRetryBase makes the callback retry schedule 2, 4, 8, 16, 32
	// times it (the vendor's: 1 s); tests shorten it.
	CallbackRetryBase time.Duration
	// CallbackTimeout bounds one callback attempt (5 s if zero).
	CallbackTimeout time.Duration
}

// AuthConfig configures the auth role.
type AuthConfig struct {
	AdminKey    string
	DebugTokens bool
	// DevMode lets apps send callbacks to loopback addresses (onair dev).
	DevMode bool
}

// Node is a running set of roles.
type Node struct {
	cfg  Config
	lis  net.Listener
	srv  *grpcserver.Server
	inst *discovery.Instance
	// services are the gRPC service names the roles registered, whose
	// health follows the instance's lease.
	mu       sync.Mutex
	services []string
	conns    []*grpc.ClientConn
	stops    []func()
	done     chan error

	// AuthServer is the auth service when the node runs the auth role.
	AuthServer *auth.Server
	// RoomServer is the room service when the node runs the room role.
	RoomServer *room.Server
	// MediaServer is the media edge when the node runs the media role.
	MediaServer *media.Server

	addr string
}

// connReadBuffer is each client connection's read buffer (see Start).
const connReadBuffer = 1 << 10

// serverStreamWindow and serverConnWindow are the fixed flow-control
// windows of the server's streams and connections (see Start): as large
// as the SDK's, and a connection's room for several streams at once.
const (
	serverStreamWindow = 1 << 20
	serverConnWindow   = 4 << 20
)

// Start listens, builds the roles, registers them in etcd and serves.
func Start(ctx context.Context, cfg Config) (n *Node, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Clients' connections are read and written without waking the
	// runtime's system monitor (rawconn): a service busy in short bursts
	// otherwise pays for sysmon's polling after each.
	lis, err := rawconn.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, err
	}
	// What gRPC sets on its TCP connections: its keepalive timeout.
	lis.UserTimeout = 20 * time.Second
	var sopts []grpc.ServerOption
	if cfg.Telemetry != nil {
		sopts = cfg.Telemetry.GRPCServerOptions()
	}
	// A room replica holds one client connection per logged-in user, most
	// of them idle: gRPC's default 32 KiB read buffer and 32 KiB write
	// buffer per connection were 64 of a session's 71 KiB of heap. The
	// write buffer now comes from a pool for each flush and goes back
	// after it; the read buffer too comes from a pool for each read and
	// goes back once its frames are parsed (rawconn.Conn.ReadOnReady), so
	// an idle connection holds neither. The read buffer is small, still
	// large enough that a client's request (its HEADERS and DATA frames,
	// well under a KiB) is one read (a room message of a KiB, two).
	//
	// HeaderTableSize 0: clients keep no HPACK dynamic table for this
	// server, so every request's headers arrive as literals. The table
	// (4 KiB by default, with its two index maps) lives as long as the
	// connection and fills with values that never repeat (grpc-timeout,
	// traceparent): measured, 1.1 KiB of a session's heap right after its
	// login, and each heartbeat adds an entry until the table holds its
	// 4 KiB (more in heap, with its index maps), all to save a couple of
	// hundred bytes on the wire of a request that comes every few seconds
	// at most.
	sopts = append(sopts, grpc.SharedWriteBuffer(true), grpc.ReadBufferSize(connReadBuffer), grpc.HeaderTableSize(0))
	// Fixed flow-control windows turn off gRPC's bandwidth-delay
	// estimation on the server's side, which pinged the client after
	// nearly every request it received on a quiet connection (a room
	// message's SendRoomMessage: one more write, and a read of the ack,
	// per call). The SDK fixes its side likewise. Windows are credit, not
	// buffers; what the services receive is small and far below them.
	sopts = append(sopts, grpc.StaticStreamWindowSize(serverStreamWindow), grpc.StaticConnWindowSize(serverConnWindow))

	sopts = append(sopts, cfg.ServerOptions...)
	if cfg.ServerTLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(cfg.ServerTLS)))
	}
	n = &Node{cfg: cfg, lis: lis, done: make(chan error, 1),
		srv: grpcserver.New(grpcserver.Config{InternalKey: cfg.InternalKey, Logger: cfg.Logger, Options: sopts})}
	started := n
	defer func() {
		if err != nil {
			started.Kill()
		}
	}()
	addr := cfg.AdvertiseAddr
	if addr == "" {
		addr = lis.Addr().String()
	}
	n.addr = addr
	// The lease comes first: a media edge's streams live under it.
	n.inst, err = discovery.NewInstance(ctx, cfg.Etcd, discovery.InstanceConfig{
		TTL: cfg.LeaseTTL, Logger: cfg.Logger, OnServing: n.setServing})
	if err != nil {
		return nil, err
	}
	for _, role := range cfg.Roles {
		if err := n.startRole(ctx, role); err != nil {
			return nil, fmt.Errorf("role %s: %w", role, err)
		}
	}
	// Not n itself: a failed start below returns nil through n, which the
	// goroutine would then read.
	srv, done := n.srv.Server, n.done
	go func() { done <- srv.Serve(lis) }()
	for _, role := range cfg.Roles {
		if role == discovery.Media {
			continue // advertised by startMedia, with its load
		}
		if _, err := n.inst.Advertise(ctx, role, addr, nil); err != nil {
			return nil, err
		}
	}
	n.setServing(n.inst.Serving())
	return n, nil
}

// serve marks a gRPC service as one of the node's; its health follows the
// node's lease from then on.
func (n *Node) serve(service string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.services = append(n.services, service)
	n.srv.Health.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
}

// setServing reports the instance's state in gRPC health: NOT_SERVING
// while the node has no lease, so balancers and probes that read health
// stop sending to it until it is registered again.
func (n *Node) setServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, svc := range append([]string{""}, n.services...) {
		n.srv.Health.SetServingStatus(svc, st)
	}
}

// Ready reports whether the node is registered in discovery with
// everything it attaches to its lease: what a readiness probe asks.
func (n *Node) Ready() bool { return n.inst != nil && n.inst.Serving() }

// dial connects to another service through discovery, as another process
// would, so a node behaves the same whether its peers are local or not.
func (n *Node) dial(service string) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{grpcserver.InternalCredentials(n.cfg.InternalKey)}
	if n.cfg.Telemetry != nil {
		opts = append(opts, n.cfg.Telemetry.GRPCDialOptions()...)
	}
	if n.cfg.ClientTLS != nil {
		// After discovery's own insecure default, so it wins.
		opts = append(opts, grpc.WithTransportCredentials(PeerCredentials(n.cfg.ClientTLS)))
	}
	cc, err := discovery.Dial(n.cfg.Etcd, service, opts...)
	if err != nil {
		return nil, err
	}
	n.conns = append(n.conns, cc)
	return cc, nil
}

func (n *Node) startRole(ctx context.Context, role string) error {
	switch role {
	case discovery.Auth:
		n.AuthServer = auth.New(auth.Config{Etcd: n.cfg.Etcd, AdminKey: n.cfg.Auth.AdminKey, DebugTokens: n.cfg.Auth.DebugTokens,
			DevMode: n.cfg.Auth.DevMode})
		n.stops = append(n.stops, n.AuthServer.Close)
		authv1.RegisterAuthServiceServer(n.srv.Server, n.AuthServer)
		n.serve(authv1.AuthService_ServiceDesc.ServiceName)
	case discovery.Stream:
		authConn, err := n.dial(discovery.Auth)
		if err != nil {
			return err
		}
		srv := stream.New(stream.Config{Etcd: n.cfg.Etcd, Auth: authv1.NewAuthServiceClient(authConn)})
		streamv1.RegisterStreamServiceServer(n.srv.Server, srv)
		n.serve(streamv1.StreamService_ServiceDesc.ServiceName)
	case discovery.Room:
		authConn, err := n.dial(discovery.Auth)
		if err != nil {
			return err
		}
		streamConn, err := n.dial(discovery.Stream)
		if err != nil {
			return err
		}
		rc := n.cfg.Room
		// Tokens are verified by the auth service, which owns the apps
		// and their secrets (DESIGN.md: services talk only over gRPC); it
		// answers from a watched copy of the apps (auth.Verifier).
		n.RoomServer = room.New(room.Config{Etcd: n.cfg.Etcd, NATS: rc.NATS, MessageRate: rc.MessageRate, Auth: authv1.NewAuthServiceClient(authConn),
			Streams: streamv1.NewStreamServiceClient(streamConn), SessionTimeout: rc.SessionTimeout,
			OnlineCountInterval: rc.OnlineCountInterval, LoginRate: rc.LoginRate, EmptyRoomLinger: rc.EmptyRoomLinger, Logger: n.cfg.Logger,
			Lease: n.inst.Lease, CallbackRetryBase: rc.CallbackRetryBase, CallbackTimeout: rc.CallbackTimeout, Meter: n.meter()})
		n.stops = append(n.stops, n.RoomServer.Close)
		roomv1.RegisterRoomServiceServer(n.srv.Server, n.RoomServer)
		roomv1.RegisterRoomServerServiceServer(n.srv.Server, n.RoomServer.ServerAPI())
		n.serve(roomv1.RoomService_ServiceDesc.ServiceName)
	case discovery.Media:
		return n.startMedia(ctx)
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	return nil
}

// startMedia runs a media edge. Its streams live under the node's lease,
// and its load goes into its discovery metadata every few seconds. After a
// lost lease its streams are registered again under the fresh one.
func (n *Node) startMedia(ctx context.Context) error {
	var clients [3]*grpc.ClientConn
	for i, svc := range []string{discovery.Auth, discovery.Stream, discovery.Room} {
		cc, err := n.dial(svc)
		if err != nil {
			return err
		}
		clients[i] = cc
	}
	srv, err := media.New(media.Config{
		Auth: authv1.NewAuthServiceClient(clients[0]), Streams: streamv1.NewStreamServiceClient(clients[1]),
		Rooms: roomv1.NewRoomServiceClient(clients[2]), EdgeAddr: n.addr,
		Lease:   func() int64 { return int64(n.inst.Lease()) },
		UDPPort: n.cfg.Media.UDPPort, PublicIP: n.cfg.Media.PublicIP, Logger: n.cfg.Logger,
		RelayFanout: n.cfg.Media.RelayFanout, RelayLinger: n.cfg.Media.RelayLinger, OriginRoom: n.cfg.Media.OriginRoom, RelayDialOptions: n.edgeDialOptions(),
		Edges: func(ctx context.Context) ([]placement.Edge, error) {
			return placement.List(ctx, n.cfg.Etcd)
		},
	})
	if err != nil {
		return err
	}
	n.MediaServer = srv
	if mp := n.meter(); mp != nil {
		if err := srv.RegisterMetrics(mp); err != nil {
			return err
		}
	}
	var once sync.Once
	stop := make(chan struct{})
	n.stops = append(n.stops, func() { once.Do(func() { close(stop); srv.Close() }) })
	if err := n.inst.Attach(ctx, func(ctx context.Context, lease clientv3.LeaseID) error {
		return srv.Reregister(ctx, int64(lease))
	}); err != nil {
		return err
	}
	ep, err := n.inst.Advertise(ctx, discovery.Media, n.addr, srv.Meta())
	if err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		last := ""
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			load := srv.Meta()
			if s := fmt.Sprint(load); s != last {
				uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				if ep.SetMeta(uctx, load) == nil {
					last = s
				}
				cancel()
			}
		}
	}()
	mediav1.RegisterMediaServiceServer(n.srv.Server, srv)
	mediav1.RegisterMediaRelayServiceServer(n.srv.Server, srv.RelayService())
	n.serve(mediav1.MediaService_ServiceDesc.ServiceName)
	n.serve(mediav1.MediaRelayService_ServiceDesc.ServiceName)
	return nil
}

// edgeDialOptions is how a media edge reaches another edge by address for
// the relay: the internal key, telemetry, TLS as for every service.
func (n *Node) edgeDialOptions() []grpc.DialOption {
	opts := []grpc.DialOption{grpcserver.InternalCredentials(n.cfg.InternalKey)}
	if n.cfg.Telemetry != nil {
		opts = append(opts, n.cfg.Telemetry.GRPCDialOptions()...)
	}
	if n.cfg.ClientTLS != nil {
		opts = append(opts, grpc.WithTransportCredentials(PeerCredentials(n.cfg.ClientTLS)))
	}
	return opts
}

// meter is the node's meter provider, nil without telemetry.
func (n *Node) meter() metric.MeterProvider {
	if n.cfg.Telemetry == nil {
		return nil
	}
	return n.cfg.Telemetry.MeterProvider()
}

// Addr is the address the node's gRPC server listens on.
func (n *Node) Addr() string { return n.lis.Addr().String() }

// Has reports whether the node runs role.
func (n *Node) Has(role string) bool { return slices.Contains(n.cfg.Roles, role) }

// Done reports the gRPC server's exit.
func (n *Node) Done() <-chan error { return n.done }

// Stop shuts the node down gracefully: it leaves discovery first, so callers
// stop picking it, then lets in-flight calls finish for up to grace.
func (n *Node) Stop(ctx context.Context, grace time.Duration) error {
	var errs []error
	if n.inst != nil {
		errs = append(errs, n.inst.Close(ctx))
	}
	n.srv.Health.Shutdown()
	for i := len(n.stops) - 1; i >= 0; i-- {
		n.stops[i]()
	}
	stopped := make(chan struct{})
	go func() { n.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grace):
		n.srv.Stop()
		<-stopped
	}
	for _, c := range n.conns {
		_ = c.Close()
	}
	return errors.Join(errs...)
}

// Kill stops the node as a crash would: connections cut at once, leases
// left to expire.
func (n *Node) Kill() {
	if n.inst != nil {
		n.inst.Abandon()
	}
	for i := len(n.stops) - 1; i >= 0; i-- {
		n.stops[i]()
	}
	n.srv.Stop()
	for _, c := range n.conns {
		_ = c.Close()
	}
}
