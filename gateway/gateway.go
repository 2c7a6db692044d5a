// Package gateway is OnAir's HTTP front door: REST for every public RPC of
// the auth, room and media services through grpc-gateway, the OpenAPI
// document, health and metrics, the web console (/) and the browser SDK
// (/sdk/onair-express.js), and any handlers mounted with Handle (WHIP and
// WHEP).
//
// Every route is in one access class (open, client, business server, admin;
// see README "REST"). Internal RPCs, the stream registry among them, have no
// route, and the internal key never travels from HTTP to a service, so the
// services refuse them from here whatever a request carries.
//
// The routes are the ones in proto/gateway.yaml. Bodies are protojson with the
// proto's snake_case field names, every field present and enums by name;
// server-streaming RPCs answer with newline-delimited JSON, one
// {"result": {...}} object a line, flushed as each message arrives.
//
// Errors are JSON objects with the vendor's numeric code:
//
//	{"code":1005004,"message":"app 123 does not exist","status":"NOT_FOUND"}
//
// served with the HTTP status that grpc-gateway maps the gRPC code to. A
// server stream that fails ends with one more line holding the same object,
// {"error": {...}}; when it fails before its first message, that line is the
// whole body and the HTTP status is the error's. See errorBody for the code
// of errors that carry no vendor code.
package gateway

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/telemetry"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// openAPI is the document scripts/gen.sh generates from the protos and
// proto/gateway.yaml; embedding it keeps it in step with the binary's routes.
//
//go:embed openapi/onair.swagger.json
var openAPI []byte

// Config is what a Gateway needs.
type Config struct {
	// Etcd finds the services through discovery.
	Etcd *clientv3.Client
	// Telemetry traces and measures HTTP requests and the gRPC calls they
	// make, and serves GET /metrics. Nil turns all of that off.
	Telemetry *telemetry.Providers
	// DialOptions are added to every service connection, after the
	// gateway's own (for example TLS). They must not carry the internal
	// key: the gateway calls for whoever sent the HTTP request, so the key
	// would make every stranger a service. Metadata that their interceptors
	// add under the key's name is dropped.
	DialOptions []grpc.DialOption
	// Logger receives access logs at Debug level; nil means slog.Default().
	Logger *slog.Logger
	// Ready, when set, answers GET /readyz (503 while it says false): in
	// `onair dev` it is the node's registration. /healthz is liveness and
	// stays ok.
	Ready func() bool
}

// Gateway is an http.Handler serving OnAir's HTTP API.
type Gateway struct {
	conns   []*grpc.ClientConn
	media   *mediaRouter // the MediaService routes' calls on a session
	api     *runtime.ServeMux
	mux     *http.ServeMux
	handler http.Handler
	logger  *slog.Logger
}

// New dials the auth and room services through etcd discovery, reaches the
// media edges by address (a session at the edge that holds it), and
// serves REST for each of their routed unary and server-streaming RPCs. Dialing does not wait for instances: a call to a service with none
// registered fails with 503 until one appears. ctx is only used while New
// runs.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if cfg.Etcd == nil {
		return nil, errors.New("gateway: Config.Etcd is nil")
	}
	g := &Gateway{mux: http.NewServeMux(), logger: cfg.Logger}
	if g.logger == nil {
		g.logger = slog.Default()
	}

	muxOpts := []runtime.ServeMuxOption{
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &jsonMarshaler{&runtime.JSONPb{
			MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: true, UseProtoNames: true},
			// Unknown fields are dropped rather than refused so that an
			// older gateway still passes requests from newer clients.
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		}}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithErrorHandler(g.writeError),
		runtime.WithStreamErrorHandler(g.streamError),
	}
	if cfg.Telemetry != nil {
		muxOpts = append(muxOpts, runtime.WithMiddlewares(labelRoute))
	}
	g.api = runtime.NewServeMux(muxOpts...)

	var dialOpts []grpc.DialOption
	if cfg.Telemetry != nil {
		dialOpts = append(dialOpts, cfg.Telemetry.GRPCDialOptions()...)
	}
	dialOpts = append(dialOpts, cfg.DialOptions...)
	// Last, so that it runs after every other interceptor: nothing a
	// request or an option adds lets a REST call pass as internal.
	dialOpts = append(dialOpts,
		grpc.WithChainUnaryInterceptor(stripInternalKeyUnary),
		grpc.WithChainStreamInterceptor(stripInternalKeyStream))

	services := []struct {
		name     string
		register func(*grpc.ClientConn) error
	}{
		{discovery.Auth, func(cc *grpc.ClientConn) error {
			return authv1.RegisterAuthServiceHandlerClient(ctx, g.api, authv1.NewAuthServiceClient(cc))
		}},
		{discovery.Room, func(cc *grpc.ClientConn) error {
			// The room service serves both the client API and the signed
			// business-server API.
			return errors.Join(
				roomv1.RegisterRoomServiceHandlerClient(ctx, g.api, roomv1.NewRoomServiceClient(cc)),
				roomv1.RegisterRoomServerServiceHandlerClient(ctx, g.api, roomv1.NewRoomServerServiceClient(cc)),
			)
		}},
	}
	for _, s := range services {
		cc, err := discovery.Dial(cfg.Etcd, s.name, dialOpts...)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("gateway: dial %s: %w", s.name, err), g.Close())
		}
		g.conns = append(g.conns, cc)
		if err := s.register(cc); err != nil {
			return nil, errors.Join(fmt.Errorf("gateway: routes for %s: %w", s.name, err), g.Close())
		}
	}

	// The media routes call edges by address, not through a balancer: a
	// new session at the edge placement chooses, a call on a session at
	// the edge that holds it (mediaEdges).
	g.media = &mediaRouter{edges: newMediaEdges(cfg.Etcd, dialOpts)}
	if err := mediav1.RegisterMediaServiceHandlerClient(ctx, g.api, g.media); err != nil {
		return nil, errors.Join(fmt.Errorf("gateway: routes for %s: %w", discovery.Media, err), g.Close())
	}

	g.mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	g.mux.HandleFunc("GET /healthz", serveHealthz)
	g.mux.Handle("GET /readyz", ReadyHandler(cfg.Ready))
	g.serveStatic() // the web console at / and the browser SDK at /sdk/onair-express.js
	if cfg.Telemetry != nil {
		g.mux.Handle("GET /metrics", cfg.Telemetry.MetricsHandler())
	}

	var h http.Handler = http.HandlerFunc(g.route)
	h = cors(h)
	h = g.accessLog(h)
	if t := cfg.Telemetry; t != nil {
		h = otelhttp.NewHandler(h, "gateway",
			otelhttp.WithTracerProvider(t.TracerProvider()),
			otelhttp.WithMeterProvider(t.MeterProvider()),
			otelhttp.WithPropagators(t.Propagator()),
		)
	}
	g.handler = h
	return g, nil
}

// Handle serves pattern, a Go 1.22 http.ServeMux pattern such as
// "POST /whip/{app_id}/{room_id}/{stream_id}", with h. Requests that match
// no such pattern go to the REST API. It panics, like http.ServeMux.Handle,
// when pattern conflicts with one already registered; a catch-all pattern
// such as "/" would hide the REST API.
func (g *Gateway) Handle(pattern string, h http.Handler) { g.mux.Handle(pattern, h) }

// ServeHTTP serves the gateway's routes.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.handler.ServeHTTP(w, r) }

// Close closes the connections to the services. Requests in flight fail.
func (g *Gateway) Close() error {
	var errs []error
	for _, cc := range g.conns {
		errs = append(errs, cc.Close())
	}
	g.conns = nil
	if g.media != nil {
		errs = append(errs, g.media.Close())
		g.media = nil
	}
	return errors.Join(errs...)
}

// route sends a request to the handlers registered on g.mux when one matches
// and to grpc-gateway otherwise. The REST API is not mounted at "/" on
// g.mux because that would make "/" the request's Pattern, which otelhttp
// reports as the http.route of every REST call; labelRoute reports the real
// one instead.
func (g *Gateway) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := g.mux.Handler(r); pattern != "" {
		g.mux.ServeHTTP(w, r)
		return
	}
	g.api.ServeHTTP(w, r)
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}

// ReadyHandler answers a readiness probe: 200 "ready" while ready reports
// true (or is nil), 503 "not ready" otherwise, so a load balancer or
// Kubernetes stops sending to a process that is not registered while
// leaving it running to heal.
func ReadyHandler(ready func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready != nil && !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: not registered in discovery\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}

// serveHealthz reports that the gateway process serves HTTP. It does not
// probe the services: one missing service should not take the whole front
// door out of a load balancer.
func serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok"))
}
