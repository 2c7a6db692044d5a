package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/onair-dev/onair/errcode"
)

// errorBody is the JSON the gateway answers errors with.
type errorBody struct {
	// Code is the vendor code carried by the gRPC status. Errors raised
	// before any service answered carry none; for those the gRPC code picks
	// the nearest general vendor code (bad path or query parameter:
	// 1000002, throttled: 1000015, no service instance reachable: 1000037),
	// and Code is 0 when there is no such code (an unknown route, for
	// instance). Status then still says what went wrong.
	Code errcode.Code `json:"code"`
	// Message is a sentence a developer can act on.
	Message string `json:"message"`
	// Status is the gRPC code's canonical name, such as "NOT_FOUND".
	Status string `json:"status"`
}

// fallbackCodes are the vendor codes for gRPC codes of errors that carry no
// vendor code of their own.
var fallbackCodes = map[codes.Code]errcode.Code{
	codes.InvalidArgument:   errcode.InvalidParameter,
	codes.OutOfRange:        errcode.InvalidParameter,
	codes.ResourceExhausted: errcode.TooManyRequests,
	codes.Unavailable:       errcode.ServiceUnavailable,
}

func bodyOf(st *status.Status) errorBody {
	c := errcode.FromStatus(st)
	if c == 0 {
		c = fallbackCodes[st.Code()]
	}
	name, ok := rpccode.Code_name[int32(st.Code())]
	if !ok {
		name = "UNKNOWN"
	}
	return errorBody{Code: c, Message: st.Message(), Status: name}
}

// writeError is the grpc-gateway error handler for unary calls, routing
// errors and streams that fail before their first message.
func (g *Gateway) writeError(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	httpStatus := 0
	var hs *runtime.HTTPStatusError
	if errors.As(err, &hs) {
		httpStatus, err = hs.HTTPStatus, hs.Err
	}
	st := status.Convert(err)
	if httpStatus == 0 {
		httpStatus = runtime.HTTPStatusFromCode(st.Code())
	}
	buf, merr := json.Marshal(bodyOf(st))
	if merr != nil {
		// errorBody has only strings and a number; this cannot happen.
		http.Error(w, merr.Error(), http.StatusInternalServerError)
		return
	}

	h := w.Header()
	// A stream that failed before its first message may have announced
	// chunked encoding and trailers already.
	h.Del("Trailer")
	h.Del("Transfer-Encoding")
	h.Set("Content-Type", "application/json")
	if httpStatus == http.StatusUnauthorized {
		// RFC 9110 wants a challenge with every 401; clients present their
		// token as a bearer token.
		h.Set("WWW-Authenticate", "Bearer")
	}
	w.WriteHeader(httpStatus)
	_, _ = w.Write(buf)
	g.logger.DebugContext(ctx, "gateway: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
}

// streamError converts the error that ends a server stream into the status
// written as the stream's last line; jsonMarshaler gives that line the
// errorBody shape.
func (g *Gateway) streamError(ctx context.Context, err error) *status.Status {
	var hs *runtime.HTTPStatusError
	if errors.As(err, &hs) {
		err = hs.Err
	}
	if !errors.Is(err, context.Canceled) {
		g.logger.DebugContext(ctx, "gateway: stream ended with an error", "err", err)
	}
	return status.Convert(err)
}

// jsonMarshaler is grpc-gateway's protojson marshaler, except that the error
// line of a server stream, which grpc-gateway builds as
// {"error": google.rpc.Status}, is written as {"error": errorBody} so that a
// stream's error reads like any other.
type jsonMarshaler struct {
	*runtime.JSONPb
}

// Marshal implements runtime.Marshaler.
func (m *jsonMarshaler) Marshal(v any) ([]byte, error) {
	if chunk, ok := v.(map[string]proto.Message); ok && len(chunk) == 1 {
		if sp, ok := chunk["error"].(*spb.Status); ok {
			return json.Marshal(struct {
				Error errorBody `json:"error"`
			}{bodyOf(status.FromProto(sp))})
		}
	}
	return m.JSONPb.Marshal(v)
}
