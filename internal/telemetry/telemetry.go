// Package telemetry sets up OpenTelemetry tracing and metrics for one OnAir
// process and hands out the gRPC options that instrument its servers and
// clients.
//
// Nothing is installed as the otel globals: a process passes its Providers to
// what it builds, so two roles in one process (onair dev) or two tests never
// share state. main may still install them globally for libraries that only
// know the globals.
//
// Exporters follow the standard OTEL_* environment variables through
// go.opentelemetry.io/contrib/exporters/autoexport, except that an unset
// OTEL_TRACES_EXPORTER or OTEL_METRICS_EXPORTER means "export nothing" rather
// than autoexport's "otlp": a developer running onair dev without a collector
// should not get a stream of connection errors. Metrics are always available
// in the Prometheus text format through MetricsHandler.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// Providers holds one process's tracer and meter providers and the handler
// that serves its metrics to Prometheus.
type Providers struct {
	tp      *sdktrace.TracerProvider
	mp      *sdkmetric.MeterProvider
	prop    propagation.TextMapPropagator
	metrics http.Handler
}

// Setup builds the providers for a process whose resource has
// service.name=serviceName, with W3C trace context and baggage propagation.
//
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, override the
// resource attributes given here, so an operator can rename a deployment
// without a rebuild. The caller must call Shutdown to flush exporters.
func Setup(ctx context.Context, serviceName string) (*Providers, error) {
	return setup(ctx, serviceName)
}

// setup is Setup with extra span processors, which tests use to see spans
// without an exporter configured through the environment.
func setup(ctx context.Context, serviceName string, extra ...sdktrace.SpanProcessor) (*Providers, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if errors.Is(err, resource.ErrPartialResource) {
		// A malformed OTEL_RESOURCE_ATTRIBUTES should not keep a service
		// from starting; what could be parsed is still used.
		slog.WarnContext(ctx, "telemetry: partial resource", "err", err)
	} else if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}

	spanExp, err := autoexport.NewSpanExporter(ctx, autoexport.WithFallbackSpanExporter(noSpanExporter))
	if err != nil {
		return nil, fmt.Errorf("telemetry: span exporter: %w", err)
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	exporting := len(extra) > 0
	if spanExp != nil && !autoexport.IsNoneSpanExporter(spanExp) {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(spanExp))
		exporting = true
	}
	for _, sp := range extra {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(sp))
	}
	if !exporting {
		// Nothing here would ever see a span: traces that start here are
		// not recorded (building and ending a span on every call was a
		// tenth of a busy room replica's CPU). Their IDs still travel to
		// other services, and a trace sampled by the caller is recorded
		// and carried on as before.
		tpOpts = append(tpOpts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)

	mp, metrics, err := newMeterProvider(ctx, res)
	if err != nil {
		return nil, errors.Join(err, tp.Shutdown(ctx))
	}
	return &Providers{
		tp:      tp,
		mp:      mp,
		prop:    propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		metrics: metrics,
	}, nil
}

// newMeterProvider returns a meter provider that always feeds a private
// Prometheus registry and, when OTEL_METRICS_EXPORTER asks for it, another
// reader too.
func newMeterProvider(ctx context.Context, res *resource.Resource) (*sdkmetric.MeterProvider, http.Handler, error) {
	// A registry of our own, not prometheus.DefaultRegisterer: two
	// Providers in one process must not collide on metric names.
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, fmt.Errorf("telemetry: go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, fmt.Errorf("telemetry: process collector: %w", err)
	}
	prom, err := promexporter.New(promexporter.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}

	reader, err := autoexport.NewMetricReader(ctx, autoexport.WithFallbackMetricReader(noMetricReader))
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("telemetry: metric reader: %w", err), prom.Shutdown(ctx))
	}
	if reader != nil && !autoexport.IsNoneMetricReader(reader) {
		opts = append(opts, sdkmetric.WithReader(reader))
	}
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	return sdkmetric.NewMeterProvider(opts...), handler, nil
}

// noSpanExporter and noMetricReader replace autoexport's default (OTLP to
// localhost) when the environment names no exporter; nil means none.
func noSpanExporter(context.Context) (sdktrace.SpanExporter, error) { return nil, nil }

func noMetricReader(context.Context) (sdkmetric.Reader, error) { return nil, nil }

// TracerProvider is the process's tracer provider.
func (p *Providers) TracerProvider() trace.TracerProvider { return p.tp }

// MeterProvider is the process's meter provider.
func (p *Providers) MeterProvider() metric.MeterProvider { return p.mp }

// Propagator carries W3C trace context and baggage across process
// boundaries.
func (p *Providers) Propagator() propagation.TextMapPropagator { return p.prop }

// MetricsHandler serves every metric of these providers, plus Go runtime and
// process metrics, in the Prometheus text format.
func (p *Providers) MetricsHandler() http.Handler { return p.metrics }

// Shutdown flushes and stops the exporters. Spans and measurements made
// after it are dropped.
func (p *Providers) Shutdown(ctx context.Context) error {
	return errors.Join(p.tp.Shutdown(ctx), p.mp.Shutdown(ctx))
}

// otelgrpcOptions binds otelgrpc to these providers instead of the globals.
func (p *Providers) otelgrpcOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(p.tp),
		otelgrpc.WithMeterProvider(p.mp),
		otelgrpc.WithPropagators(p.prop),
	}
}

// GRPCServerOptions instrument a gRPC server: a span per RPC that continues
// the caller's trace, and RPC duration metrics; session-long event streams
// are left out (sessionStream).
func (p *Providers) GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.StatsHandler(skipSessionStreams{otelgrpc.NewServerHandler(p.otelgrpcOptions()...)})}
}

// skipSessionStreams keeps session streams (sessionStream) away from the
// handler it wraps. otelgrpc's own filter still tags a filtered call:
// its attributes and state stay in the stream's context for the whole
// session, some 250 bytes of every idle user's heap on a room replica.
// Here a session stream's context gets one marker instead, and its
// stats are dropped.
type skipSessionStreams struct{ stats.Handler }

// untracedKey marks the context of a call the wrapped handler never saw.
type untracedKey struct{}

func (h skipSessionStreams) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if sessionStream(info.FullMethodName) {
		return context.WithValue(ctx, untracedKey{}, true)
	}
	return h.Handler.TagRPC(ctx, info)
}

func (h skipSessionStreams) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if ctx.Value(untracedKey{}) != nil {
		return
	}
	h.Handler.HandleRPC(ctx, s)
}

// sessionStream reports a method whose call lasts as long as a client's
// session: its span and duration would measure the session, not the
// call, and its instrumentation ran for every event it sends (a room
// message's delivery paid for it once per receiver) and held its context
// for the whole session (memory per idle user).
func sessionStream(method string) bool {
	switch method {
	case "/onair.room.v1.RoomService/SubscribeRoomEvents":
		return true
	}
	return false
}

// GRPCDialOptions instrument a gRPC client: a span per RPC whose context is
// sent to the server, and RPC duration metrics.
func (p *Providers) GRPCDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(p.otelgrpcOptions()...))}
}
