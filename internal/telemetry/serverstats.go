package telemetry

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/rpcconv"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// serverStats instruments a gRPC server the way otelgrpc's server handler
// does, at a fraction of its cost for the calls nobody traces.
//
// otelgrpc starts a span for every call, even one that will never be
// recorded (no exporter here and no sampled caller), and builds the
// duration metric's attribute set anew for each: a tenth of a room
// replica's CPU at a few hundred SendRoomMessage calls a second. Calls that
// carry a trace context, and every call while spans are recorded here,
// still go through otelgrpc unchanged (spans, propagation, baggage). The
// others only record rpc.server.call.duration, the same instrument with
// the same attributes (rpc.method, rpc.system.name,
// rpc.response.status_code, error.type on a server error), from a set made
// once per method and code. What they no longer get is the unrecorded
// span: a trace ID that was never exported, which a call made from the
// handler would have carried on (and which no log shows).
//
// Session-long event streams are left out entirely (sessionStream).
type serverStats struct {
	full stats.Handler
	// lean: calls without a trace context take the cheap path (spans are
	// not recorded here and the stable RPC conventions are in use).
	lean     bool
	duration metric.Float64Histogram

	mu   sync.RWMutex
	sets map[setKey]attribute.Set
}

// maxCachedSets bounds the attribute sets kept: method names come from
// clients, and an unknown one is rejected but still measured.
const maxCachedSets = 1024

type setKey struct {
	method string
	code   codes.Code
}

// callKey holds a call's *call in its context.
type callKey struct{}

// call is how a call is instrumented.
type call struct {
	method string // on the lean path: the full method
	full   bool   // otelgrpc handles it
	skip   bool   // not instrumented (sessionStream)
}

// skipped is the call value of every session stream: its sends look it up
// at the top of their context instead of walking the whole chain for a
// key that is not there.
var skipped = &call{skip: true}

func newServerStats(p *Providers, opts []otelgrpc.Option) *serverStats {
	h := &serverStats{full: otelgrpc.NewServerHandler(opts...), sets: map[setKey]attribute.Set{}}
	// The same meter and instrument as otelgrpc's, so that both paths feed
	// one metric.
	meter := p.mp.Meter("go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc",
		metric.WithInstrumentationVersion(otelgrpc.Version), metric.WithSchemaURL(semconv.SchemaURL))
	dur, err := rpcconv.NewServerCallDuration(meter, metric.WithExplicitBucketBoundaries(
		0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10))
	h.lean = err == nil && !p.exporting && newConventions()
	h.duration = dur.Inst()
	return h
}

// newConventions reports whether otelgrpc uses only the stable RPC
// conventions (the default), which is what the lean path records.
func newConventions() bool {
	for p := range strings.SplitSeq(os.Getenv("OTEL_SEMCONV_STABILITY_OPT_IN"), ",") {
		if p = strings.TrimSpace(p); p == "rpc/dup" || p == "rpc/old" {
			return false
		}
	}
	return true
}

// traced reports whether the caller sent a trace context or baggage. It
// looks the keys up where they are (FromIncomingContext would copy every
// header of the call).
func traced(ctx context.Context) bool {
	for _, k := range [...]string{"traceparent", "baggage", "tracestate"} {
		if len(metadata.ValueFromIncomingContext(ctx, k)) > 0 {
			return true
		}
	}
	return false
}

// TagRPC implements stats.Handler.
func (h *serverStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if sessionStream(info.FullMethodName) {
		return context.WithValue(ctx, callKey{}, skipped)
	}
	if h.lean && !traced(ctx) {
		return context.WithValue(ctx, callKey{}, &call{method: info.FullMethodName})
	}
	return context.WithValue(h.full.TagRPC(ctx, info), callKey{}, &call{full: true})
}

// HandleRPC implements stats.Handler.
func (h *serverStats) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	c, _ := ctx.Value(callKey{}).(*call)
	switch {
	case c == nil || c.skip:
	case c.full:
		h.full.HandleRPC(ctx, rs)
	default:
		if end, ok := rs.(*stats.End); ok {
			code := status.Code(end.Error)
			h.duration.Record(ctx, float64(end.EndTime.Sub(end.BeginTime))/float64(time.Second), metric.WithAttributeSet(h.set(c.method, code)))
		}
	}
}

// TagConn implements stats.Handler.
func (h *serverStats) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return h.full.TagConn(ctx, info)
}

// HandleConn implements stats.Handler.
func (h *serverStats) HandleConn(ctx context.Context, cs stats.ConnStats) {
	h.full.HandleConn(ctx, cs)
}

// set returns the duration's attributes for a call of method that ended
// with code, as otelgrpc builds them.
func (h *serverStats) set(method string, code codes.Code) attribute.Set {
	k := setKey{method, code}
	h.mu.RLock()
	s, ok := h.sets[k]
	h.mu.RUnlock()
	if ok {
		return s
	}
	attrs := make([]attribute.KeyValue, 0, 4)
	if name, ok := strings.CutPrefix(method, "/"); ok {
		attrs = append(attrs, semconv.RPCMethod(name))
	}
	c := canonicalCode(code)
	attrs = append(attrs, semconv.RPCSystemNameGRPC, semconv.RPCResponseStatusCode(c))
	if serverError(code) {
		attrs = append(attrs, semconv.ErrorTypeKey.String(c))
	}
	s = attribute.NewSet(attrs...)
	h.mu.Lock()
	if len(h.sets) < maxCachedSets {
		h.sets[k] = s
	}
	h.mu.Unlock()
	return s
}

// serverError reports the codes otelgrpc counts as a server's error.
func serverError(c codes.Code) bool {
	switch c {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// codeNames are the codes' names as the RPC conventions spell them
// (CANCELLED, INVALID_ARGUMENT), as otelgrpc does.
var codeNames = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// canonicalCode is a code's name as otelgrpc records it.
func canonicalCode(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "CODE(" + strconv.FormatInt(int64(c), 10) + ")"
}
