package grpcserver

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	"google.golang.org/grpc/status"
)

// probe answers GetApp with whether the call was internal, or panics.
type probe struct {
	authv1.UnimplementedAuthServiceServer
	panic bool
}

func (p probe) GetApp(ctx context.Context, _ *authv1.GetAppRequest) (*authv1.GetAppResponse, error) {
	if p.panic {
		panic("boom")
	}
	name := "client"
	if IsInternal(ctx) {
		name = "internal"
	}
	return &authv1.GetAppResponse{App: &authv1.App{Name: name}}, nil
}

func serve(t *testing.T, p probe) string {
	t.Helper()
	s := New(Config{InternalKey: "secret"})
	authv1.RegisterAuthServiceServer(s.Server, p)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Server.Serve(lis)
	t.Cleanup(s.Server.Stop)
	return lis.Addr().String()
}

func TestInterceptors(t *testing.T) {
	tests := []struct {
		name     string
		panic    bool
		key      string
		wantCode codes.Code
		want     string
	}{
		{"panic becomes Internal", true, "", codes.Internal, ""},
		{"internal key recognised", false, "secret", codes.OK, "internal"},
		{"wrong key is a client", false, "guess", codes.OK, "client"},
		{"no key is a client", false, "", codes.OK, "client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, probe{panic: tt.panic})
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), InternalCredentials(tt.key))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := authv1.NewAuthServiceClient(cc).GetApp(ctx, &authv1.GetAppRequest{})
			if status.Code(err) != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", status.Code(err), err, tt.wantCode)
			}
			if err == nil && resp.GetApp().GetName() != tt.want {
				t.Errorf("caller seen as %q, want %q", resp.GetApp().GetName(), tt.want)
			}
			// The standard health service is there on every server.
			if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Errorf("health: %v", err)
			}
		})
	}
}
