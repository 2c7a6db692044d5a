package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/sdp/v3"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/discovery"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// WHIPConfig is what the WHIP/WHEP endpoints need.
type WHIPConfig struct {
	// Etcd finds the media edges.
	Etcd *clientv3.Client
	// DialOptions are added to every edge connection.
	DialOptions []grpc.DialOption
	// RetryAfter is what a WHEP player of a stream that is not live is told
	// to wait; 5 s if zero.
	RetryAfter time.Duration
}

// WHIP serves WHIP (RFC 9725) and WHEP on the gateway: the HTTP side of
// WebRTC ingest and egress, for encoders and players that speak nothing but
// HTTP and WebRTC. The gateway has no media: each offer goes over gRPC to a
// media edge, which answers once its ICE gathering is complete (no trickle
// from the edge).
//
//	POST   /whip/{app_id}/{room_id}/{stream_id}  offer -> 201, Location, answer
//	POST   /whep/{app_id}/{stream_id}            offer -> 201, Location, answer
//	PATCH  /whip/sessions/{id}, /whep/sessions/{id}  trickle-ice-sdpfrag -> 204
//	DELETE /whip/sessions/{id}, /whep/sessions/{id}  -> 200
//	OPTIONS on the POST URLs: Accept-Post: application/sdp
//
// Authorization: Bearer <Token04>. The token names the user: a WHIP
// publisher is logged into the room as that user for the session's life.
// Two query parameters of the WHIP POST are OnAir's own: extra_info is the
// stream's extra info, and session_id binds the publisher to a live room
// session (a page that logged in over REST, as the browser SDK does): the
// session must be live (401, code 1002083 otherwise) and the token's user's
// in the token's app (401, 1002077 or 1002076 otherwise), and the publisher is
// then not logged in again, which would kick that session out (one login per
// user). The token still decides who may publish what, as without it.
// Statuses: 400 bad SDP or URL, 401 bad or missing token, 403 publishing
// forbidden, 409 stream ID taken (WHIP) or stream not live (WHEP, with
// Retry-After), 415 wrong content type, 503 no edge.
//
// A WHIP publisher and a WHEP player go to the edge internal/placement
// chooses, which serves a WHEP play itself (relaying the stream if it is
// not its origin); only ?mode=rtc plays at the stream's origin, which the
// chosen edge redirects to. The session URL's last element is the edge's
// session ID, whose tag names the edge among the registered ones
// (internal/mediasession), so any gateway replica can end it, the URL
// shows no internal address, and the same ID works on the REST routes
// (/v1/media/sessions/{id}:stop, /events), as the browser SDK uses it.
type WHIP struct {
	cfg WHIPConfig

	edges *mediaEdges

	mu sync.Mutex
	// rooms and auth are dialed at the first session-bound publish.
	rooms, auth *grpc.ClientConn
}

// NewWHIP returns the WHIP/WHEP endpoints; Register mounts them.
func NewWHIP(cfg WHIPConfig) *WHIP {
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * time.Second
	}
	return &WHIP{cfg: cfg, edges: newMediaEdges(cfg.Etcd, cfg.DialOptions)}
}

// Register mounts the endpoints on g.
func (w *WHIP) Register(g *Gateway) {
	g.Handle("POST /whip/{app_id}/{room_id}/{stream_id}", http.HandlerFunc(w.publish))
	g.Handle("OPTIONS /whip/{app_id}/{room_id}/{stream_id}", http.HandlerFunc(options))
	g.Handle("POST /whep/{app_id}/{stream_id}", http.HandlerFunc(w.play))
	g.Handle("OPTIONS /whep/{app_id}/{stream_id}", http.HandlerFunc(options))
	for _, kind := range []string{"whip", "whep"} {
		g.Handle("DELETE /"+kind+"/sessions/{id}", http.HandlerFunc(w.stop))
		g.Handle("PATCH /"+kind+"/sessions/{id}", http.HandlerFunc(w.patch))
	}
}

// Close closes the edge connections.
func (w *WHIP) Close() error {
	errs := []error{w.edges.Close()}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rooms != nil {
		errs = append(errs, w.rooms.Close(), w.auth.Close())
		w.rooms, w.auth = nil, nil
	}
	return errors.Join(errs...)
}

// boundSession checks that a room session is live, with a heartbeat, and is
// the token's user's in the token's app: the session ID is a client's
// credential, as on the REST client routes, and the token must not borrow
// another user's (1002077) or app's (1002076) session. The token is
// verified for the publish first, since it names the user; a mismatch is
// refused before the heartbeat, so it changes nothing.
func (w *WHIP) boundSession(ctx context.Context, sessionID string, req *mediav1.PublishRequest) error {
	w.mu.Lock()
	if w.rooms == nil {
		opts := append(append([]grpc.DialOption(nil), w.cfg.DialOptions...),
			grpc.WithChainUnaryInterceptor(stripInternalKeyUnary))
		rooms, err := discovery.Dial(w.cfg.Etcd, discovery.Room, opts...)
		if err != nil {
			w.mu.Unlock()
			return err
		}
		auth, err := discovery.Dial(w.cfg.Etcd, discovery.Auth, opts...)
		if err != nil {
			_ = rooms.Close()
			w.mu.Unlock()
			return err
		}
		w.rooms, w.auth = rooms, auth
	}
	rooms, auth := roomv1.NewRoomServiceClient(w.rooms), authv1.NewAuthServiceClient(w.auth)
	w.mu.Unlock()
	vt, err := auth.VerifyToken(ctx, &authv1.VerifyTokenRequest{AppId: req.GetAppId(), Token: req.GetToken(),
		Action: authv1.Action_ACTION_PUBLISH, RoomId: req.GetRoomId(), StreamId: req.GetStreamId()})
	if err != nil {
		return err
	}
	_, err = rooms.Heartbeat(ctx, &roomv1.HeartbeatRequest{SessionId: sessionID, AppId: req.GetAppId(), UserId: vt.GetUserId(), RoomId: req.GetRoomId()})
	return err
}

func options(rw http.ResponseWriter, _ *http.Request) {
	h := rw.Header()
	h.Set("Accept-Post", "application/sdp")
	h.Set("Allow", "OPTIONS, POST")
	rw.WriteHeader(http.StatusNoContent)
}

// offer reads and checks the request: content type, bearer token, SDP.
func offer(rw http.ResponseWriter, r *http.Request) (appID uint32, token, sdpOffer string, ok bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/sdp" {
		httpError(rw, http.StatusUnsupportedMediaType, "the body must be an SDP offer (Content-Type: application/sdp)")
		return 0, "", "", false
	}
	id, err := strconv.ParseUint(r.PathValue("app_id"), 10, 32)
	if err != nil || id == 0 {
		httpError(rw, http.StatusBadRequest, "app_id must be a number")
		return 0, "", "", false
	}
	token, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !found || strings.TrimSpace(token) == "" {
		rw.Header().Set("WWW-Authenticate", `Bearer realm="onair"`)
		httpError(rw, http.StatusUnauthorized, "send the Token04 token as Authorization: Bearer <token>")
		return 0, "", "", false
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, 256<<10))
	if err != nil {
		httpError(rw, http.StatusBadRequest, "cannot read the offer")
		return 0, "", "", false
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(string(body)); err != nil || len(d.MediaDescriptions) == 0 {
		httpError(rw, http.StatusBadRequest, "the body is not an SDP offer with media")
		return 0, "", "", false
	}
	return uint32(id), strings.TrimSpace(token), string(body), true
}

func (w *WHIP) publish(rw http.ResponseWriter, r *http.Request) {
	appID, token, sdpOffer, ok := offer(rw, r)
	if !ok {
		return
	}
	req := &mediav1.PublishRequest{AppId: appID, RoomId: r.PathValue("room_id"), StreamId: r.PathValue("stream_id"),
		Token: token, SdpOffer: sdpOffer, JoinRoom: true, ExtraInfo: r.URL.Query().Get("extra_info")}
	if sid := r.URL.Query().Get("session_id"); sid != "" {
		// Bound to a room session (the browser SDK's): publish as that
		// session rather than log the token's user in a second time, which
		// would kick the session out.
		if err := w.boundSession(r.Context(), sid, req); err != nil {
			w.fail(rw, err, false)
			return
		}
		req.JoinRoom = false
	}
	resp, err := w.edges.publish(r.Context(), req)
	if err != nil {
		w.fail(rw, err, false)
		return
	}
	created(rw, "/whip/sessions/"+resp.GetSessionId(), resp.GetSdpAnswer())
}

func (w *WHIP) play(rw http.ResponseWriter, r *http.Request) {
	appID, token, sdpOffer, ok := offer(rw, r)
	if !ok {
		return
	}
	// By default the edge chosen for the player serves it (relaying the
	// stream); ?mode=rtc plays from the stream's origin.
	mode := mediav1.ResourceMode_RESOURCE_MODE_ONLY_L3
	if r.URL.Query().Get("mode") == "rtc" {
		mode = mediav1.ResourceMode_RESOURCE_MODE_ONLY_RTC
	}
	layer, ok := videoLayer(r.URL.Query().Get("layer"))
	if !ok {
		w.fail(rw, errcode.Newf(errcode.InvalidParameter, "layer %q: want auto, high, medium or low", r.URL.Query().Get("layer")), true)
		return
	}
	req := &mediav1.PlayRequest{AppId: appID, StreamId: r.PathValue("stream_id"), Token: token, SdpOffer: sdpOffer,
		ResourceMode: mode, VideoLayer: layer}
	resp, err := w.edges.play(r.Context(), req)
	if err != nil {
		w.fail(rw, err, true)
		return
	}
	created(rw, "/whep/sessions/"+resp.GetSessionId(), resp.GetSdpAnswer())
}

func created(rw http.ResponseWriter, location, answer string) {
	h := rw.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", location)
	rw.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(rw, answer)
}

// session is the edge that holds the session of a session URL, which
// must be registered.
func (w *WHIP) session(rw http.ResponseWriter, r *http.Request) (mediav1.MediaServiceClient, string, bool) {
	id := r.PathValue("id")
	client, err := w.edges.owner(r.Context(), id)
	if err != nil {
		if errcode.Of(err) == errcode.SessionNotFound {
			httpError(rw, http.StatusNotFound, "no such session")
			return nil, "", false
		}
		w.fail(rw, err, false)
		return nil, "", false
	}
	return client, id, true
}

func (w *WHIP) stop(rw http.ResponseWriter, r *http.Request) {
	client, id, ok := w.session(rw, r)
	if !ok {
		return
	}
	if _, err := client.Stop(r.Context(), &mediav1.StopRequest{SessionId: id}); err != nil {
		if errcode.Of(err) == errcode.SessionNotFound {
			httpError(rw, http.StatusNotFound, "no such session")
			return
		}
		w.fail(rw, err, false)
		return
	}
	rw.WriteHeader(http.StatusOK)
}

// patch accepts trickled candidates. The edge's answer carries all of its
// candidates and a client's further ones are found by ICE connectivity
// checks (peer-reflexive), so they are acknowledged and not forwarded. ICE
// restart is not supported.
func (w *WHIP) patch(rw http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/trickle-ice-sdpfrag" {
		httpError(rw, http.StatusUnsupportedMediaType, "PATCH takes application/trickle-ice-sdpfrag")
		return
	}
	if _, _, ok := w.session(rw, r); !ok {
		return
	}
	if r.Header.Get("If-Match") == "*" {
		httpError(rw, http.StatusMethodNotAllowed, "ICE restart is not supported: start a new session")
		return
	}
	rw.WriteHeader(http.StatusNoContent)
}

// fail answers with the status an error's vendor code calls for.
func (w *WHIP) fail(rw http.ResponseWriter, err error, whep bool) {
	code := errcode.Of(err)
	status := http.StatusInternalServerError
	switch code {
	case errcode.InvalidParameter, errcode.StreamIDInvalid, errcode.StreamIDTooLong, errcode.RoomIDEmpty,
		errcode.RoomIDInvalid, errcode.RoomIDTooLong, errcode.UserIDInvalid, errcode.UserIDTooLong:
		status = http.StatusBadRequest
	case errcode.PublishAuthError, errcode.PlayAuthError, errcode.LoginAuthFailed, errcode.NoToken,
		errcode.TokenExpired, errcode.TokenAppIDMismatch, errcode.TokenUserIDMismatch, errcode.TokenWrongVersion,
		errcode.TokenPayloadNotJSON, errcode.TokenInternal, errcode.SessionNotFound:
		rw.Header().Set("WWW-Authenticate", `Bearer realm="onair", error="invalid_token"`)
		status = http.StatusUnauthorized
	case errcode.PublishForbidden:
		status = http.StatusForbidden
	case errcode.StreamIDExists:
		status = http.StatusConflict
	case errcode.StreamNotFound:
		status = http.StatusNotFound
		if whep {
			status = http.StatusConflict
			rw.Header().Set("Retry-After", strconv.Itoa(int(w.cfg.RetryAfter/time.Second)))
		}
	case errcode.ServiceUnavailable:
		status = http.StatusServiceUnavailable
	default:
		if s, ok := status2(err); ok && (s == codes.Unavailable || s == codes.DeadlineExceeded) {
			status = http.StatusServiceUnavailable
		}
	}
	msg := errcode.Message(err)
	if code != 0 {
		msg = fmt.Sprintf("%s (code %d)", msg, code)
	}
	httpError(rw, status, msg)
}

func status2(err error) (codes.Code, bool) {
	s, ok := status.FromError(err)
	if !ok {
		return codes.Unknown, false
	}
	return s.Code(), true
}

func httpError(rw http.ResponseWriter, status int, msg string) {
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.WriteHeader(status)
	_, _ = io.WriteString(rw, msg+"\n")
}

// videoLayer is the layer WHEP's ?layer= asks for (absent: auto); ok is
// false for a value it does not take.
func videoLayer(q string) (mediav1.VideoLayer, bool) {
	switch q {
	case "", "auto":
		return mediav1.VideoLayer_VIDEO_LAYER_UNSPECIFIED, true
	case "low":
		return mediav1.VideoLayer_VIDEO_LAYER_LOW, true
	case "medium":
		return mediav1.VideoLayer_VIDEO_LAYER_MEDIUM, true
	case "high":
		return mediav1.VideoLayer_VIDEO_LAYER_HIGH, true
	}
	return 0, false
}
