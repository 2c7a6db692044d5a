package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/onair-dev/onair/gateway"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/etcdclient"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/telemetry"
	"github.com/onair-dev/onair/services/media"
	"github.com/onair-dev/onair/services/room"
)

// roleFlags are the flags of the individual roles; one set serves all of
// them so `onair dev` accepts each role's settings too.
type roleFlags struct {
	adminKey       string
	debugTokens    bool
	devMode        bool
	sessionTimeout time.Duration
	onlineCount    time.Duration
	loginRate      float64
	roomLinger     time.Duration
	messageRate    float64
	mediaUDPPort   int
	publicIP       string
	relayFanout    int
	originRoom     int
	relayLinger    time.Duration
}

func (r *roleFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.adminKey, "admin-key", "", "auth: key that opens the admin RPCs (CreateApp, GetApp, EnableService)")
	fs.BoolVar(&r.devMode, "allow-local-callbacks", false, "auth: let apps send callbacks to loopback and link-local addresses (as onair dev does); never in production")
	fs.BoolVar(&r.debugTokens, "debug-tokens", false, "auth: enable IssueDebugToken (development only)")
	fs.DurationVar(&r.sessionTimeout, "session-timeout", room.DefaultSessionTimeout, "room: remove a session after this long without a heartbeat")
	fs.DurationVar(&r.onlineCount, "online-count-interval", room.DefaultOnlineCountInterval, "room: how often the online user count is pushed")
	fs.DurationVar(&r.roomLinger, "empty-room-linger", room.DefaultEmptyRoomLinger, "room: how long a room that has emptied stays open before it closes (room_close); a room that fills again meanwhile keeps its life. Negative: close at once")
	fs.Float64Var(&r.loginRate, "login-rate", room.DefaultLoginRate, "room: logins per second per room on each replica")
	fs.Float64Var(&r.messageRate, "message-rate", room.DefaultMessageRate, "room: broadcast messages per second per room on each replica")
	fs.IntVar(&r.mediaUDPPort, "media-udp-port", 0, "media: the one UDP port of every WebRTC session (0 picks one)")
	fs.StringVar(&r.publicIP, "public-ip", "", "media: IPv4 address advertised in ICE candidates (a loopback address also keeps ICE on loopback); empty advertises the host's addresses")
	fs.IntVar(&r.originRoom, "origin-room", media.DefaultOriginRoom, "media: L3 players an origin edge takes itself before it sends them to other edges (it always takes them when it is the only edge)")
	fs.IntVar(&r.relayFanout, "relay-fanout", media.DefaultRelayFanout, "media: edges one edge feeds a stream to directly; further edges pull from those (a tree)")
	fs.DurationVar(&r.relayLinger, "relay-linger", media.DefaultRelayLinger, "media: how long an edge keeps pulling a stream after its last local player left")
}

func (r *roleFlags) nodeConfig(c *node.Config) {
	c.Auth = node.AuthConfig{AdminKey: r.adminKey, DebugTokens: r.debugTokens, DevMode: r.devMode}
	c.Room = node.RoomConfig{SessionTimeout: r.sessionTimeout, OnlineCountInterval: r.onlineCount, LoginRate: r.loginRate,
		MessageRate: r.messageRate, EmptyRoomLinger: r.roomLinger}
	c.Media = node.MediaConfig{UDPPort: r.mediaUDPPort, PublicIP: r.publicIP, RelayFanout: r.relayFanout, RelayLinger: r.relayLinger, OriginRoom: r.originRoom}
}

// logEdgeDelay logs, every 10 s that saw traffic, the delay the edge
// added to live packets (media.Server.TakeEdgeDelay).
func logEdgeDelay(ctx context.Context, srv *media.Server) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, p50, p99 := srv.TakeEdgeDelay(); n > 0 {
				slog.Info("edge delay, publisher packet in to player packet out", "wakeups", n, "p50", p50, "p99", p99)
			}
		}
	}
}

// mediaGCPercent is a media edge's GC target (GOGC) unless GOGC is set.
const mediaGCPercent = 25

// runRole runs one service against an etcd cluster.
func runRole(ctx context.Context, role string, args []string) error {
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	var sf serviceFlags
	var rf roleFlags
	var tf tlsFlags
	var nf natsFlags
	sf.register(fs, "")
	rf.register(fs)
	tf.register(fs)
	nf.register(fs, "nats://127.0.0.1:4222")
	pprofAddr := fs.String("pprof-addr", "", "loopback host:port that serves /debug/pprof/ (profiling; empty: off)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := setupLogging(sf.logLevel); err != nil {
		return err
	}
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr); err != nil {
			return err
		}
	}
	if role == discovery.Media && os.Getenv("GOGC") == "" {
		// The edge's forwarding allocates nothing per packet, so the
		// collector runs seldom whatever its target: a tight one costs
		// little CPU and keeps RSS near the live heap (GOGC overrides).
		debug.SetGCPercent(mediaGCPercent)
	}
	if sf.internalKey == "" {
		// Without it a service cannot call the stream registry and other
		// internal methods, and would fail on the first publish instead.
		return errors.New("--internal-key (or ONAIR_INTERNAL_KEY) is required: the services use it to call each other")
	}
	tt, err := tf.build()
	if err != nil {
		return err
	}
	cli, tel, done, err := connect(ctx, sf.etcdEndpoints, tt.etcd, "onair-"+role)
	if err != nil {
		return err
	}
	defer done()
	cfg := node.Config{Roles: []string{role}, Etcd: cli, GRPCAddr: sf.grpcAddr, AdvertiseAddr: sf.advertiseAddr,
		InternalKey: sf.internalKey, LeaseTTL: sf.leaseTTL, Telemetry: tel, ServerTLS: tt.server, ClientTLS: tt.peers}
	rf.nodeConfig(&cfg)
	if role == "room" {
		// Room messages between the replicas; the connection comes up (and
		// back) by itself, meanwhile sends answer UNAVAILABLE.
		nc, err := nf.connect("onair-room " + sf.grpcAddr)
		if err != nil {
			return err
		}
		defer nc.Close()
		cfg.Room.NATS = nc
	}
	n, err := node.Start(ctx, cfg)
	if err != nil {
		return err
	}
	slog.Info("serving", "role", role, "grpc", n.Addr(), "tls", tt.server != nil)
	if role == discovery.Media {
		go logEdgeDelay(ctx, n.MediaServer)
	}
	var web *http.Server
	if sf.httpAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", tel.MetricsHandler())
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.Handle("GET /readyz", gateway.ReadyHandler(n.Ready))
		if web, err = serveHTTPS(sf.httpAddr, mux, tt.server); err != nil {
			return err
		}
	}
	return waitAndStop(ctx, n, web, sf.drain)
}

// runGateway serves REST for every RPC, and WHIP/WHEP, on --http-addr.
func runGateway(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var sf serviceFlags
	var tf tlsFlags
	sf.register(fs, "127.0.0.1:8080")
	tf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := setupLogging(sf.logLevel); err != nil {
		return err
	}
	tt, err := tf.build()
	if err != nil {
		return err
	}
	cli, tel, done, err := connect(ctx, sf.etcdEndpoints, tt.etcd, "onair-gateway")
	if err != nil {
		return err
	}
	defer done()
	web, closeGateway, err := startGatewayTLS(ctx, cli, tel, sf.httpAddr, nil, tt)
	if err != nil {
		return err
	}
	defer closeGateway()
	slog.Info("serving", "role", "gateway", "http", sf.httpAddr, "tls", tt.server != nil)
	return waitAndStop(ctx, nil, web, sf.drain)
}

// connect opens the etcd client (over TLS when etcdTLS is set) and the
// telemetry of a role's process; done closes both.
func connect(ctx context.Context, endpoints string, etcdTLS *tls.Config, service string) (*clientv3.Client, *telemetry.Providers, func(), error) {
	ecfg, err := etcdConfig(endpoints, etcdTLS)
	if err != nil {
		return nil, nil, nil, err
	}
	cli, err := etcdclient.New(ecfg)
	if err != nil {
		return nil, nil, nil, err
	}
	tel, err := telemetry.Setup(ctx, service)
	if err != nil {
		cli.Close()
		return nil, nil, nil, err
	}
	return cli, tel, func() { shutdownTelemetry(tel); cli.Close() }, nil
}

// startGateway serves REST for every RPC, the OpenAPI document, metrics and
// WHIP/WHEP on addr. closeGateway releases its connections once the HTTP
// server has been shut down.
func startGateway(ctx context.Context, cli *clientv3.Client, tel *telemetry.Providers, addr string, ready func() bool, mount ...func(*gateway.Gateway)) (web *http.Server, closeGateway func(), err error) {
	return startGatewayTLS(ctx, cli, tel, addr, ready, nil, mount...)
}

// startGatewayTLS is startGateway serving HTTPS and calling the services
// over TLS as tt says (plaintext if nil).
// mount adds routes of its own (`onair dev`: the dev console's) before it
// serves.
func startGatewayTLS(ctx context.Context, cli *clientv3.Client, tel *telemetry.Providers, addr string, ready func() bool, tt *transportTLS, mount ...func(*gateway.Gateway)) (web *http.Server, closeGateway func(), err error) {
	var dialOpts []grpc.DialOption
	var srvTLS *tls.Config
	if tt != nil && tt.server != nil {
		srvTLS = tt.server
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(node.PeerCredentials(tt.peers)))
	}
	gw, err := gateway.New(ctx, gateway.Config{Etcd: cli, Telemetry: tel, Ready: ready, DialOptions: dialOpts})
	if err != nil {
		return nil, nil, err
	}
	whip := gateway.NewWHIP(gateway.WHIPConfig{Etcd: cli, DialOptions: dialOpts})
	whip.Register(gw)
	for _, m := range mount {
		m(gw)
	}
	closeGateway = func() {
		whip.Close()
		gw.Close()
	}
	if web, err = serveHTTPS(addr, gw, srvTLS); err != nil {
		closeGateway()
		return nil, nil, err
	}
	return web, closeGateway, nil
}

func serveHTTP(addr string, h http.Handler) (*http.Server, error) {
	return serveHTTPS(addr, h, nil)
}

// serveHTTPS serves h on addr, over TLS with tlsConfig unless it is nil.
func serveHTTPS(addr string, h http.Handler, tlsConfig *tls.Config) (*http.Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConfig}
	go func() {
		serve := srv.Serve
		if tlsConfig != nil {
			serve = func(l net.Listener) error { return srv.ServeTLS(l, "", "") }
		}
		if err := serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("http server", "err", err)
		}
	}()
	return srv, nil
}

// waitAndStop blocks until ctx ends (SIGTERM), then leaves discovery, stops
// taking HTTP requests and drains.
func waitAndStop(ctx context.Context, n *node.Node, web *http.Server, drain time.Duration) error {
	var served error
	if n != nil {
		select {
		case <-ctx.Done():
		case served = <-n.Done():
		}
	} else {
		<-ctx.Done()
	}
	slog.Info("shutting down", "drain", drain)
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	var errs []error
	if web != nil {
		errs = append(errs, web.Shutdown(sctx))
	}
	if n != nil {
		errs = append(errs, n.Stop(sctx, drain))
	}
	if served != nil && !errors.Is(served, net.ErrClosed) {
		errs = append(errs, served)
	}
	return errors.Join(errs...)
}

func shutdownTelemetry(tel *telemetry.Providers) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tel.Shutdown(ctx)
}

func randomKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
