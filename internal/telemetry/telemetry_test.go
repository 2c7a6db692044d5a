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

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// quietEnv makes sure a developer's OTEL_* settings do not send test spans
// anywhere.
func quietEnv(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_METRICS_EXPORTER", "")
}

func TestGRPCMetricsAndTracePropagation(t *testing.T) {
	quietEnv(t)
	ctx := t.Context()
	spans := tracetest.NewInMemoryExporter()
	p, err := setup(ctx, "telemetry-test", sdktrace.NewSimpleSpanProcessor(spans))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(p.GRPCServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(),
		append(p.GRPCDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check: %v", err)
	}

	// The server span ends just after the response is written, so it may
	// land a moment after the client has its answer.
	var client, server tracetest.SpanStub
	deadline := time.Now().Add(5 * time.Second)
	for {
		client, server = tracetest.SpanStub{}, tracetest.SpanStub{}
		for _, s := range spans.GetSpans() {
			switch s.SpanKind {
			case trace.SpanKindClient:
				client = s
			case trace.SpanKindServer:
				server = s
			}
		}
		if client.SpanContext.IsValid() && server.SpanContext.IsValid() || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !client.SpanContext.IsValid() || !server.SpanContext.IsValid() {
		t.Fatalf("want a client and a server span, got %d spans", len(spans.GetSpans()))
	}
	if client.SpanContext.TraceID() != server.SpanContext.TraceID() {
		t.Errorf("server trace %s, client trace %s", server.SpanContext.TraceID(), client.SpanContext.TraceID())
	}
	if server.Parent.SpanID() != client.SpanContext.SpanID() {
		t.Errorf("server span's parent is %s, want the client span %s", server.Parent.SpanID(), client.SpanContext.SpanID())
	}
	if got := server.Resource.String(); !strings.Contains(got, "service.name=telemetry-test") {
		t.Errorf("resource %s lacks the service name", got)
	}

	// otelgrpc v0.72 follows the stable RPC conventions:
	// rpc.server.call.duration and rpc.client.call.duration, in seconds.
	wants := []string{
		"rpc_server_call_duration_seconds_bucket",
		"rpc_client_call_duration_seconds_bucket",
		`rpc_method="grpc.health.v1.Health/Check"`,
		"go_goroutines",
	}
	// The server records the call's duration as the call ends, which may
	// be a moment after its span ended.
	var text string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		rec := httptest.NewRecorder()
		p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		text = string(body)
		if !slices.ContainsFunc(wants, func(w string) bool { return !strings.Contains(text, w) }) || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}
}

func TestNothingExportedByDefault(t *testing.T) {
	quietEnv(t)
	p, err := Setup(t.Context(), "quiet")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	// With no exporter the SDK still makes real spans, which is what lets
	// the trace context travel on to processes that do export.
	_, span := p.TracerProvider().Tracer("test").Start(t.Context(), "op")
	defer span.End()
	if !span.SpanContext().IsValid() {
		t.Error("span context invalid without an exporter")
	}
}
