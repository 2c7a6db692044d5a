package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/supervise"
	"github.com/onair-dev/onair/internal/testcluster"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/telemetry"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// fakeAuth answers GetApp for app 123 and VerifyToken for the token "good",
// and remembers the metadata of the last GetApp.
type fakeAuth struct {
	authv1.UnimplementedAuthServiceServer

	mu sync.Mutex
	md metadata.MD
}

func (f *fakeAuth) GetApp(ctx context.Context, req *authv1.GetAppRequest) (*authv1.GetAppResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.md = md
	f.mu.Unlock()
	if req.GetAppId() != 123 {
		return nil, errcode.Newf(errcode.AppNotFound, "app %d does not exist", req.GetAppId())
	}
	return &authv1.GetAppResponse{App: &authv1.App{
		AppId:           123,
		Name:            "demo",
		ServerSecret:    "0123456789abcdef0123456789abcdef",
		EnabledServices: []authv1.Service{authv1.Service_SERVICE_LIVE_STREAMING},
	}}, nil
}

func (f *fakeAuth) lastMD() metadata.MD {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.md
}

func (f *fakeAuth) VerifyToken(_ context.Context, req *authv1.VerifyTokenRequest) (*authv1.VerifyTokenResponse, error) {
	if req.GetToken() != "good" {
		return nil, errcode.New(errcode.LoginAuthFailed, "token is not valid for this app")
	}
	return &authv1.VerifyTokenResponse{AppId: req.GetAppId(), UserId: req.GetUserId(), ExpireUnix: 1700000000}, nil
}

// fakeRooms serves room events: it sends one event, waits for proceed (so
// the test can see that the event was flushed to HTTP before the stream goes
// on), sends another, and fails. Session "bad" fails at once.
type fakeRooms struct {
	roomv1.UnimplementedRoomServiceServer
	proceed chan struct{}
}

func (f *fakeRooms) SubscribeRoomEvents(req *roomv1.SubscribeRoomEventsRequest, srv grpc.ServerStreamingServer[roomv1.RoomEvent]) error {
	if req.GetSessionId() == "bad" {
		return errcode.New(errcode.SessionNotFound, "the session does not exist or has ended: log in again")
	}
	ev := func(rev int64, id string) *roomv1.RoomEvent {
		return &roomv1.RoomEvent{Revision: rev, Event: &roomv1.RoomEvent_StreamUpdate{StreamUpdate: &roomv1.StreamUpdate{
			UpdateType: streamv1.UpdateType_UPDATE_TYPE_ADD, Streams: []*streamv1.Stream{{AppId: 123, RoomId: "r1", StreamId: id}},
		}}}
	}
	if err := srv.Send(ev(7, "s1")); err != nil {
		return err
	}
	select {
	case <-f.proceed:
	case <-srv.Context().Done():
		return srv.Context().Err()
	}
	if err := srv.Send(ev(8, "s2")); err != nil {
		return err
	}
	return errcode.New(errcode.TooManyRequests, "watcher fell behind; resume from revision 8")
}

type testEnv struct {
	etcd  *clientv3.Client
	auth  *fakeAuth
	rooms *fakeRooms
	tel   *telemetry.Providers
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	// No OTEL_* setting of the developer's should send test data anywhere.
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_METRICS_EXPORTER", "")
	ctx := t.Context()

	cli := testcluster.New(t).Etcd

	e := &testEnv{etcd: cli, auth: &fakeAuth{}, rooms: &fakeRooms{proceed: make(chan struct{})}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	authv1.RegisterAuthServiceServer(srv, e.auth)
	roomv1.RegisterRoomServiceServer(srv, e.rooms)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	for _, svc := range []string{discovery.Auth, discovery.Room} {
		reg, err := discovery.Register(ctx, cli, svc, lis.Addr().String(), 2*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reg.Close(context.Background()) })
	}

	// Fail fast and clearly if discovery cannot reach what was just
	// registered, instead of every HTTP call below timing out.
	cc, err := discovery.Dial(cli, discovery.Auth)
	if err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = authv1.NewAuthServiceClient(cc).GetApp(dctx, &authv1.GetAppRequest{AppId: 123})
	cancel()
	cc.Close()
	if err != nil {
		t.Fatalf("discovery.Dial does not reach the registered auth instance: %v", err)
	}

	e.tel, err = telemetry.Setup(ctx, "gateway-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.tel.Shutdown(context.Background()) })
	return e
}

// serve starts a gateway over HTTP on loopback.
func (e *testEnv) serve(t *testing.T, cfg Config) (*Gateway, *httptest.Server) {
	t.Helper()
	cfg.Etcd = e.etcd
	g, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	hs := httptest.NewServer(g)
	t.Cleanup(hs.Close)
	return g, hs
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url, body string, header map[string]string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, s)
	}
	return m
}

// checkError checks the error shape: exactly code, message and status.
func checkError(t *testing.T, obj map[string]any, code errcode.Code, status string) {
	t.Helper()
	if len(obj) != 3 || obj["message"] == "" {
		t.Errorf("error body %v: want exactly code, message and status", obj)
	}
	if got, _ := obj["code"].(float64); errcode.Code(got) != code {
		t.Errorf("code = %v, want %d", obj["code"], code)
	}
	if obj["status"] != status {
		t.Errorf("status = %v, want %s", obj["status"], status)
	}
}

func TestGateway(t *testing.T) {
	e := newEnv(t)
	_, hs := e.serve(t, Config{Telemetry: e.tel})

	t.Run("unary snake_case", func(t *testing.T) {
		r := do(t, "GET", hs.URL+"/v1/apps/123", "", nil)
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		app, _ := decode(t, r.body)["app"].(map[string]any)
		if app["app_id"] != float64(123) || app["server_secret"] != "0123456789abcdef0123456789abcdef" {
			t.Errorf("app = %v", app)
		}
		// Unpopulated fields are present, enums are names, int64 is a
		// string as protojson has it.
		if app["callback_url"] != "" || app["create_time_unix"] != "0" {
			t.Errorf("unpopulated fields: %v", app)
		}
		if svcs, _ := app["enabled_services"].([]any); len(svcs) != 1 || svcs[0] != "SERVICE_LIVE_STREAMING" {
			t.Errorf("enabled_services = %v", app["enabled_services"])
		}
	})

	t.Run("body with snake_case", func(t *testing.T) {
		r := do(t, "POST", hs.URL+"/v1/tokens:verify", `{"app_id":123,"user_id":"u1","token":"good"}`,
			map[string]string{"Content-Type": "application/json"})
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		got := decode(t, r.body)
		if got["user_id"] != "u1" || got["expire_unix"] != "1700000000" {
			t.Errorf("body = %v", got)
		}
	})

	t.Run("vendor error", func(t *testing.T) {
		r := do(t, "GET", hs.URL+"/v1/apps/999", "", nil)
		if r.status != http.StatusNotFound {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		obj := decode(t, r.body)
		checkError(t, obj, errcode.AppNotFound, "NOT_FOUND")
		if obj["message"] != "app 999 does not exist" {
			t.Errorf("message = %v", obj["message"])
		}
	})

	t.Run("unauthenticated", func(t *testing.T) {
		r := do(t, "POST", hs.URL+"/v1/tokens:verify", `{"app_id":123,"user_id":"u1","token":"forged"}`, nil)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		checkError(t, decode(t, r.body), errcode.LoginAuthFailed, "UNAUTHENTICATED")
		if r.header.Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
	})

	t.Run("errors without a vendor code", func(t *testing.T) {
		r := do(t, "GET", hs.URL+"/v1/apps/abc", "", nil)
		if r.status != http.StatusBadRequest {
			t.Errorf("bad parameter: status %d: %s", r.status, r.body)
		}
		checkError(t, decode(t, r.body), errcode.InvalidParameter, "INVALID_ARGUMENT")

		r = do(t, "GET", hs.URL+"/v1/no-such-route", "", nil)
		if r.status != http.StatusNotFound {
			t.Errorf("unknown route: status %d: %s", r.status, r.body)
		}
		checkError(t, decode(t, r.body), 0, "NOT_FOUND")
	})

	t.Run("header allow-list", func(t *testing.T) {
		r := do(t, "GET", hs.URL+"/v1/apps/123", "", map[string]string{
			"X-Onair-Admin-Key":                      "admin-secret",
			"X-Onair-Internal-Key":                   "forged-1",
			"Grpc-Metadata-X-Onair-Internal-Key":     "forged-2",
			"Grpc-Metadata-X-Onair-Admin-Key":        "forged-3",
			"Grpc-Metadata-X-Onair-Internal-Key-Bin": "Zm9yZ2VkLTQ=",
			"X-Other":                                "x",
		})
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		md := e.auth.lastMD()
		if got := md.Get("x-onair-admin-key"); len(got) != 1 || got[0] != "admin-secret" {
			t.Errorf("x-onair-admin-key = %q, want [admin-secret]", got)
		}
		for k, v := range md {
			if strings.Contains(k, "internal") || strings.Contains(k, "x-other") || strings.HasPrefix(k, "grpc-metadata") {
				t.Errorf("metadata %s = %q reached the service", k, v)
			}
			for _, s := range v {
				if strings.HasPrefix(s, "forged") {
					t.Errorf("metadata %s carries a forged value %q", k, s)
				}
			}
		}
	})

	t.Run("trace continues from HTTP to gRPC", func(t *testing.T) {
		const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		r := do(t, "GET", hs.URL+"/v1/apps/123", "", map[string]string{
			"Traceparent": "00-" + traceID + "-00f067aa0ba902b7-01",
		})
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		tp := e.auth.lastMD().Get("traceparent")
		if len(tp) != 1 || !strings.Contains(tp[0], traceID) {
			t.Errorf("service got traceparent %q, want trace %s", tp, traceID)
		}
	})

	t.Run("openapi", func(t *testing.T) {
		r := do(t, "GET", hs.URL+"/openapi.json", "", nil)
		if r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		paths, _ := decode(t, r.body)["paths"].(map[string]any)
		if _, ok := paths["/v1/apps"]; !ok {
			t.Errorf("paths lack /v1/apps: %d paths", len(paths))
		}
	})

	t.Run("healthz", func(t *testing.T) {
		r := do(t, "GET", hs.URL+"/healthz", "", nil)
		if r.status != http.StatusOK || r.body != "ok" {
			t.Errorf("status %d body %q", r.status, r.body)
		}
	})

	t.Run("cors", func(t *testing.T) {
		r := do(t, "OPTIONS", hs.URL+"/v1/apps/123", "", map[string]string{
			"Origin":                         "http://debug.example",
			"Access-Control-Request-Method":  "GET",
			"Access-Control-Request-Headers": "x-onair-admin-key",
		})
		if r.status != http.StatusNoContent {
			t.Errorf("preflight status %d", r.status)
		}
		if r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("preflight Allow-Origin %q", r.header.Get("Access-Control-Allow-Origin"))
		}
		allowed := r.header.Get("Access-Control-Allow-Headers")
		for _, h := range []string{"Authorization", "Content-Type", "X-Onair-Admin-Key", "If-Match"} {
			if !strings.Contains(allowed, h) {
				t.Errorf("Allow-Headers %q lacks %s", allowed, h)
			}
		}
		r = do(t, "GET", hs.URL+"/v1/apps/123", "", map[string]string{"Origin": "http://debug.example"})
		if r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("Allow-Origin %q", r.header.Get("Access-Control-Allow-Origin"))
		}
		if got := r.header.Get("Access-Control-Expose-Headers"); got != "Location, ETag, Link" {
			t.Errorf("Expose-Headers %q", got)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		r := do(t, "GET", hs.URL+"/metrics", "", nil)
		if r.status != http.StatusOK {
			t.Fatalf("status %d", r.status)
		}
		for _, want := range []string{
			"http_server_request_duration_seconds_bucket",
			`http_route="/v1/apps/{app_id}"`,
			"rpc_client_call_duration_seconds_bucket",
		} {
			if !strings.Contains(r.body, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

func TestServerStream(t *testing.T) {
	e := newEnv(t)
	// A Debug logger puts the access log's response writer in the path, which
	// must still flush each message.
	logs := &supervise.Log{}
	_, hs := e.serve(t, Config{Telemetry: e.tel, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/v1/sessions/s1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("stream ended early: %v", lines.Err())
		}
		return decode(t, lines.Text())
	}

	// The service holds the second event back until the first has
	// arrived here, so this line can only come from a prompt flush.
	first, _ := next()["result"].(map[string]any)
	close(e.rooms.proceed)
	second, _ := next()["result"].(map[string]any)
	for i, ev := range []map[string]any{first, second} {
		u, _ := ev["stream_update"].(map[string]any)
		sts, _ := u["streams"].([]any)
		var st map[string]any
		if len(sts) == 1 {
			st, _ = sts[0].(map[string]any)
		}
		if u["update_type"] != "UPDATE_TYPE_ADD" || st["room_id"] != "r1" || st["stream_id"] != []string{"s1", "s2"}[i] {
			t.Errorf("event %d = %v", i, ev)
		}
	}
	errObj, _ := next()["error"].(map[string]any)
	checkError(t, errObj, errcode.TooManyRequests, "RESOURCE_EXHAUSTED")
	if lines.Scan() {
		t.Errorf("line after the error: %s", lines.Text())
	}

	// A stream that fails before its first message answers with the
	// error's HTTP status and the error line alone.
	r := do(t, "GET", hs.URL+"/v1/sessions/bad/events", "", nil)
	if r.status != http.StatusUnauthorized {
		t.Errorf("status %d: %s", r.status, r.body)
	}
	errObj, _ = decode(t, strings.TrimSpace(r.body))["error"].(map[string]any)
	checkError(t, errObj, errcode.SessionNotFound, "UNAUTHENTICATED")

	// The access log line is written once the handler returns, which may
	// be just after the client has read the response.
	want := `msg="http request" method=GET path=/v1/sessions/bad/events status=401`
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("access log lacks %s:\n%s", want, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWithoutTelemetryAndMountedRoutes(t *testing.T) {
	e := newEnv(t)
	g, hs := e.serve(t, Config{
		// Not even an option of the gateway's own may make a REST call
		// internal: the gateway calls for strangers.
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(
			func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				ctx = metadata.AppendToOutgoingContext(ctx, internalKeyMetadata, "gateway-key")
				return invoker(ctx, method, req, reply, cc, opts...)
			})},
	})
	g.Handle("POST /whip/{app_id}/{room_id}/{stream_id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/whip/resource/"+r.PathValue("stream_id"))
		w.WriteHeader(http.StatusCreated)
	}))

	r := do(t, "POST", hs.URL+"/whip/123/r1/s1", "v=0", map[string]string{"Origin": "http://debug.example"})
	if r.status != http.StatusCreated || r.header.Get("Location") != "/whip/resource/s1" {
		t.Errorf("mounted route: status %d Location %q", r.status, r.header.Get("Location"))
	}
	if r.header.Get("Access-Control-Expose-Headers") == "" {
		t.Error("mounted route lacks CORS headers")
	}

	r = do(t, "GET", hs.URL+"/v1/apps/123", "", map[string]string{"Grpc-Metadata-X-Onair-Internal-Key": "forged"})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if got := e.auth.lastMD().Get(internalKeyMetadata); len(got) != 0 {
		t.Errorf("internal key at the service = %q, want none", got)
	}

	r = do(t, "GET", hs.URL+"/metrics", "", nil)
	if r.status != http.StatusNotFound {
		t.Errorf("/metrics without telemetry: status %d", r.status)
	}
}

func TestWithoutInternalKey(t *testing.T) {
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs(
		internalKeyMetadata, "forged", adminKeyMetadata, "admin"))
	ctx = metadata.AppendToOutgoingContext(ctx, internalKeyMetadata, "forged-too")
	md, _ := metadata.FromOutgoingContext(withoutInternalKey(ctx))
	if len(md.Get(internalKeyMetadata)) != 0 || len(md.Get(adminKeyMetadata)) != 1 {
		t.Errorf("metadata after stripping: %v", md)
	}
}

func TestBodyOf(t *testing.T) {
	tests := []struct {
		err        error
		code       errcode.Code
		statusName string
	}{
		{errcode.New(errcode.StreamIDExists, "taken"), errcode.StreamIDExists, "ALREADY_EXISTS"},
		{status.Error(codes.Unavailable, "no instance"), errcode.ServiceUnavailable, "UNAVAILABLE"},
		{status.Error(codes.InvalidArgument, "bad"), errcode.InvalidParameter, "INVALID_ARGUMENT"},
		{status.Error(codes.ResourceExhausted, "slow down"), errcode.TooManyRequests, "RESOURCE_EXHAUSTED"},
		{status.Error(codes.Internal, "oops"), 0, "INTERNAL"},
		{status.Error(codes.Code(99), "odd"), 0, "UNKNOWN"},
	}
	for _, tt := range tests {
		// What the gateway sees is a status rebuilt from the wire.
		st := status.FromProto(status.Convert(tt.err).Proto())
		got := bodyOf(st)
		if got.Code != tt.code || got.Status != tt.statusName || got.Message != st.Message() {
			t.Errorf("bodyOf(%v) = %+v, want code %d status %s", tt.err, got, tt.code, tt.statusName)
		}
	}
}
