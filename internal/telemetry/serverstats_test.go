package telemetry

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// failingDesc is a service whose one method fails with UNAVAILABLE (a
// server error, which the duration's attributes name).
var failingDesc = grpc.ServiceDesc{
	ServiceName: "test.Failing",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Fail", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		if err := dec(new(healthpb.HealthCheckRequest)); err != nil {
			return nil, err
		}
		return nil, status.Error(codes.Unavailable, "always")
	}}},
}

// serverDurations makes the same three calls (OK, NOT_FOUND, UNAVAILABLE)
// to a server instrumented by a fresh Providers that records no spans, from
// a client that sends a trace context (otelgrpc handles the calls) or not
// (the lean path), and returns the server's duration series.
func serverDurations(t *testing.T, traced bool) []string {
	ctx := t.Context()
	p, err := setup(ctx, "telemetry-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(t.Context()) })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(p.GRPCServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	srv.RegisterService(&failingDesc, nil)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if traced {
		opts = append(opts, p.GRPCDialOptions()...)
	}
	conn, err := grpc.NewClient(lis.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hc := healthpb.NewHealthClient(conn)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Check(nope): %v, want NotFound", err)
	}
	err = conn.Invoke(ctx, "/test.Failing/Fail", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Fail: %v, want Unavailable", err)
	}
	// A server records a call's duration as the call ends, a moment after
	// the client has its answer.
	var series []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		rec := httptest.NewRecorder()
		p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		series = nil
		for line := range strings.Lines(string(body)) {
			if strings.HasPrefix(line, "rpc_server_call_duration_seconds_count") {
				series = append(series, strings.TrimSpace(line))
			}
		}
		if len(series) == 3 || time.Now().After(deadline) {
			break
		}
	}
	slices.Sort(series)
	return series
}

// Calls nobody traces take the lean path; the metric must not tell.
func TestLeanServerStatsRecordWhatOtelgrpcRecords(t *testing.T) {
	quietEnv(t)
	p, err := setup(t.Context(), "telemetry-test")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(t.Context())
	if !newServerStats(p, p.otelgrpcOptions()).lean {
		t.Fatal("a process that records no spans does not take the lean path")
	}
	lean, full := serverDurations(t, false), serverDurations(t, true)
	if !slices.Equal(lean, full) {
		t.Errorf("untraced calls recorded\n%s\ntraced calls (otelgrpc)\n%s", strings.Join(lean, "\n"), strings.Join(full, "\n"))
	}
	for _, want := range []string{
		`rpc_method="grpc.health.v1.Health/Check",rpc_response_status_code="OK",rpc_system_name="grpc"`,
		`rpc_response_status_code="NOT_FOUND"`,
		`error_type="UNAVAILABLE"`,
	} {
		if !slices.ContainsFunc(lean, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("untraced calls' series lack %s:\n%s", want, strings.Join(lean, "\n"))
		}
	}
}
