// Package grpcserver builds the gRPC server every OnAir role runs: health
// and reflection services, panic recovery, request logging, telemetry, and
// recognition of calls from other OnAir services.
package grpcserver

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// InternalKeyHeader is the metadata key with which services prove to each
// other that a call comes from inside the cluster. The gateway never forwards
// it from HTTP.
const InternalKeyHeader = "x-onair-internal-key"

// Config configures a Server.
type Config struct {
	// InternalKey, when set, is the shared key that marks a call as coming
	// from another OnAir service (see IsInternal).
	InternalKey string
	// Logger receives one line per failed call; slog.Default() if nil.
	Logger *slog.Logger
	// Options are extra server options, such as telemetry stats handlers.
	Options []grpc.ServerOption
}

// Server is a gRPC server with the health service registered.
type Server struct {
	*grpc.Server
	// Health is the standard health service; roles set serving status per
	// service and the whole server goes NOT_SERVING while draining.
	Health *health.Server
	log    *slog.Logger
}

type internalKey struct{}

// New returns a Server with health, reflection and the interceptors.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	mark := func(ctx context.Context) context.Context {
		if cfg.InternalKey == "" {
			return ctx
		}
		// The one key, not a copy of every header (FromIncomingContext).
		for _, v := range metadata.ValueFromIncomingContext(ctx, InternalKeyHeader) {
			if subtle.ConstantTimeCompare([]byte(v), []byte(cfg.InternalKey)) == 1 {
				return context.WithValue(ctx, internalKey{}, true)
			}
		}
		return ctx
	}
	// guard turns a panic into codes.Internal and logs failed calls.
	guard := func(method string, start time.Time, err *error) {
		if p := recover(); p != nil {
			log.Error("panic in rpc", "method", method, "panic", p, "stack", string(debug.Stack()))
			*err = status.Error(codes.Internal, "internal error")
		}
		logResult(log, method, start, *err)
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer guard(info.FullMethod, time.Now(), &err)
		return h(mark(ctx), req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer guard(info.FullMethod, time.Now(), &err)
		return h(srv, &markedStream{ServerStream: ss, ctx: mark(ss.Context())})
	}
	opts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary),
		grpc.ChainStreamInterceptor(stream),
		codecOption(),
	}, cfg.Options...)
	s := &Server{Server: grpc.NewServer(opts...), Health: health.NewServer(), log: log}
	healthpb.RegisterHealthServer(s.Server, s.Health)
	reflection.Register(s.Server)
	return s
}

func logResult(log *slog.Logger, method string, start time.Time, err error) {
	if err == nil {
		return
	}
	st := status.Convert(err)
	lvl := slog.LevelDebug
	if st.Code() == codes.Internal || st.Code() == codes.Unknown {
		lvl = slog.LevelWarn
	}
	log.Log(context.Background(), lvl, "rpc failed", "method", method, "code", st.Code().String(),
		"message", st.Message(), "duration", time.Since(start))
}

type markedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *markedStream) Context() context.Context { return s.ctx }

// IsInternal reports whether the call in ctx carries the cluster's internal
// key, i.e. comes from another OnAir service rather than a client.
func IsInternal(ctx context.Context) bool {
	v, _ := ctx.Value(internalKey{}).(bool)
	return v
}

// InternalCredentials is a dial option that sends key with every call.
func InternalCredentials(key string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(internalCreds(key))
}

type internalCreds string

func (c internalCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if c == "" {
		return nil, nil
	}
	return map[string]string{InternalKeyHeader: string(c)}, nil
}

// RequireTransportSecurity is false: the internal network is trusted for
// transport; the key only separates services from clients behind the gateway.
func (c internalCreds) RequireTransportSecurity() bool { return false }

// Serve serves on lis until ctx ends, then drains: health goes NOT_SERVING
// so balancers stop sending, in-flight calls get up to grace to finish, and
// the rest are cut.
func (s *Server) Serve(ctx context.Context, lis net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- s.Server.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("grpc serve: %w", err)
	case <-ctx.Done():
	}
	s.Health.Shutdown()
	stopped := make(chan struct{})
	go func() { s.Server.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grace):
		s.Server.Stop()
		<-stopped
	}
	return nil
}
