package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

const (
	// adminKeyHeader carries the admin key that CreateApp, GetApp and
	// EnableService ask for; it travels as adminKeyMetadata.
	adminKeyHeader   = "X-Onair-Admin-Key"
	adminKeyMetadata = "x-onair-admin-key"
	// internalKeyMetadata is the credential services present to each
	// other. Whatever a REST caller sends, it never becomes this metadata.
	internalKeyMetadata = "x-onair-internal-key"
)

// incomingHeader decides which HTTP request headers become gRPC metadata. It
// is an allow-list: every other header, Grpc-Metadata-* included, is
// dropped, so a REST caller cannot set metadata that services trust as set
// by another service. Authorization is forwarded by grpc-gateway itself, and
// traceparent/tracestate reach the services through otelhttp and otelgrpc.
func incomingHeader(key string) (string, bool) {
	if strings.EqualFold(key, adminKeyHeader) {
		return adminKeyMetadata, true
	}
	return "", false
}

// withoutInternalKey drops the internal key from the metadata of a call the
// gateway makes. incomingHeader already keeps it out of what comes from
// HTTP; this holds even if the matcher or grpc-gateway's defaults change, and
// drops what an interceptor in Config.DialOptions adds too.
func withoutInternalKey(ctx context.Context) context.Context {
	md, ok := metadata.FromOutgoingContext(ctx)
	if !ok || len(md.Get(internalKeyMetadata)) == 0 {
		return ctx
	}
	md = md.Copy()
	md.Delete(internalKeyMetadata)
	return metadata.NewOutgoingContext(ctx, md)
}

func stripInternalKeyUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(withoutInternalKey(ctx), method, req, reply, cc, opts...)
}

func stripInternalKeyStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(withoutInternalKey(ctx), desc, cc, method, opts...)
}

// CORS lets a browser page from any origin call the API: requests carry a
// token in Authorization, never cookies, so a wildcard origin gives a
// foreign page nothing it does not already hold.
const (
	corsAllowMethods  = "GET, POST, PATCH, DELETE, OPTIONS"
	corsAllowHeaders  = "Authorization, Content-Type, X-Onair-Admin-Key, If-Match, Traceparent, Tracestate"
	corsExposeHeaders = "Location, ETag, Link"
	corsMaxAge        = "600"
)

// cors answers preflight requests and marks cross-origin responses as
// readable. An OPTIONS request that is not a preflight passes on, because
// WHIP and WHEP endpoints answer OPTIONS themselves.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		next.ServeHTTP(w, r)
	})
}

// accessLog logs every request at Debug level once it is answered; a
// server stream is logged when it ends.
func (g *Gateway) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if !g.logger.Enabled(ctx, slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		code := rec.status
		if code == 0 {
			code = http.StatusOK
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", code),
			slog.Duration("duration", time.Since(start)),
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
		}
		g.logger.LogAttrs(ctx, slog.LevelDebug, "http request", attrs...)
	})
}

// statusRecorder remembers the response status for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the first final status.
func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write records the implicit 200 of a response without WriteHeader.
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// FlushError flushes the underlying writer; server streams depend on it to
// deliver each message at once.
func (r *statusRecorder) FlushError() error {
	return http.NewResponseController(r.ResponseWriter).Flush()
}

// Flush is FlushError for handlers that look for http.Flusher.
func (r *statusRecorder) Flush() { _ = r.FlushError() }

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// labelRoute names the request's span after its grpc-gateway route and adds
// that route to the HTTP metrics, which otherwise would not know it: the
// route is chosen inside grpc-gateway, not by http.ServeMux.
func labelRoute(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if p, ok := runtime.HTTPPattern(r.Context()); ok {
			// Pattern.String spells a variable as {app_id=*}; the route
			// template in the OpenAPI document is {app_id}.
			route := strings.ReplaceAll(p.String(), "=*}", "}")
			attr := attribute.String("http.route", route)
			if l, ok := otelhttp.LabelerFromContext(r.Context()); ok {
				l.Add(attr)
			}
			span := trace.SpanFromContext(r.Context())
			span.SetName(r.Method + " " + route)
			span.SetAttributes(attr)
		}
		next(w, r, params)
	}
}
