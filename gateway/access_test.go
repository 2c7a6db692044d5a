package gateway_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/gateway"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/testcluster"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/services/auth"
	"github.com/onair-dev/onair/token04"
)

// accessClass is who may call a route or RPC (README "REST").
type accessClass string

const (
	// open: no credential beyond what the request itself carries (a token
	// for login, token checks, publish and play; nothing for health).
	classOpen accessClass = "open"
	// client: a session ID (room or media session) of the caller's own.
	classClient accessClass = "client"
	// server: the signed business-server scheme.
	classServer accessClass = "business server"
	// admin: the admin key.
	classAdmin accessClass = "admin"
	// internal: the internal key; never routed by the gateway.
	classInternal accessClass = "internal"
)

// variant is which credential a call carries.
type variant int

const (
	noCredential variant = iota
	otherApp
	rightCredential
)

func (v variant) String() string {
	return [...]string{"no credential", "another app's credential", "the right credential"}[v]
}

// apiCall is one HTTP request.
type apiCall struct {
	method, path, body string
	header             map[string]string
}

// accessRoute is a route's class and how to call it with each variant.
type accessRoute struct {
	class accessClass
	// free is an open route that needs nothing at all (health, OpenAPI):
	// it is not refused even without a credential.
	free bool
	call func(f *accessFixture, v variant) apiCall
}

// The other app, and what belongs to the tested app (A) that nobody else
// may see. Internal values are planted in A's stream so that a leak shows.
const (
	appB        uint32 = 1234567891
	secretB            = "fedcba9876543210fedcba9876543210"
	roomA              = "room-a"
	streamA            = "stream-a"
	publisherA         = "user-a"
	leakyEdgeID        = "edge-id-that-must-not-leak"
)

// internalFields are the StreamRecord fields no public response may carry.
var internalFields = []string{"edge_id", "edge_addr", "owner_kind", "owner_lease", leakyEdgeID}

// accessFixture is a cluster with two apps, A's live stream, and helpers
// that make fresh credentials.
type accessFixture struct {
	t     *testing.T
	base  string
	c     *testcluster.Cluster
	n     *node.Node
	offer string
	seq   atomic.Int64
}

func (f *accessFixture) next() int64 { return f.seq.Add(1) }

// app is the AppID and secret a variant acts for: A, except B for otherApp.
func (f *accessFixture) app(v variant) (uint32, string) {
	if v == otherApp {
		return appB, secretB
	}
	return testcluster.AppID, testcluster.Secret
}

// token is a token for user: none, app B's, or app A's.
func (f *accessFixture) token(v variant, user string) string {
	if v == noCredential {
		return ""
	}
	appID, secret := f.app(v)
	tok, err := token04.Mint(appID, user, secret, time.Hour, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

// session logs a fresh user (or user, if given) of the variant's app into
// its room-a; without a credential it is a session ID nobody has.
func (f *accessFixture) session(v variant, user string) string {
	if v == noCredential {
		return "00000000000000000000000000000000"
	}
	if user == "" {
		user = fmt.Sprintf("u%d", f.next())
	}
	appID, _ := f.app(v)
	body := fmt.Sprintf(`{"app_id":%d,"user":{"user_id":%q,"user_name":%q},"token":%q}`, appID, user, user, f.token(v, user))
	status, out := f.do(apiCall{method: "POST", path: "/v1/rooms/" + roomA + ":login", body: body})
	var resp struct {
		SessionID string `json:"session_id"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(out), &resp) != nil {
		f.t.Fatalf("login: %d %s", status, out)
	}
	return resp.SessionID
}

// mediaSession starts a media session of the variant's app through the
// REST publish route.
func (f *accessFixture) mediaSession(v variant) string {
	if v == noCredential {
		return "00000000000000000000000000000000"
	}
	appID, _ := f.app(v)
	user := fmt.Sprintf("m%d", f.next())
	body := fmt.Sprintf(`{"app_id":%d,"room_id":%q,"stream_id":"ms-%s","user_id":%q,"token":%q,"sdp_offer":%q}`,
		appID, roomA, user, user, f.token(v, user), f.offer)
	status, out := f.do(apiCall{method: "POST", path: "/v1/media/publish", body: body})
	var resp struct {
		SessionID string `json:"session_id"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(out), &resp) != nil {
		f.t.Fatalf("media publish: %d %s", status, out)
	}
	return resp.SessionID
}

// adminKey is the admin key, a wrong one for otherApp (there is one admin
// key, so "another's" is any other secret, here app B's), or none.
func (f *accessFixture) adminKey(v variant) map[string]string {
	switch v {
	case rightCredential:
		return map[string]string{"X-Onair-Admin-Key": testcluster.AdminKey}
	case otherApp:
		return map[string]string{"X-Onair-Admin-Key": secretB}
	}
	return nil
}

// signature is a server-API signature for app A: none, one made with app
// B's secret, or a good one; as JSON (for bodies) and as query parameters.
func (f *accessFixture) signature(v variant) (body, query string) {
	if v == noCredential {
		return `{}`, ""
	}
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	n := hex.EncodeToString(nonce)
	ts := time.Now().Unix()
	_, secret := f.app(v)
	sig := auth.Sign(testcluster.AppID, n, secret, ts)
	return fmt.Sprintf(`{"app_id":%d,"signature_nonce":%q,"timestamp":"%d","signature":%q}`, testcluster.AppID, n, ts, sig),
		fmt.Sprintf("auth.app_id=%d&auth.signature_nonce=%s&auth.timestamp=%d&auth.signature=%s", testcluster.AppID, n, ts, sig)
}

// do sends c and returns its status and body. A server stream is read for
// its first line only (that is where a refusal is), then cut.
func (f *accessFixture) do(c apiCall) (int, string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.t.Context(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.method, f.base+c.path, strings.NewReader(c.body))
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	if strings.HasSuffix(c.path, "/events") {
		line, err := readLine(resp.Body, 5*time.Second)
		if err != nil {
			f.t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		return resp.StatusCode, line
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func readLine(r io.Reader, timeout time.Duration) (string, error) {
	got := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(r)
		s.Buffer(nil, 1<<20)
		s.Scan()
		got <- s.Text()
	}()
	select {
	case l := <-got:
		return l, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no line within %v", timeout)
	}
}

func sessionPath(f *accessFixture, v variant, suffix string) string {
	return "/v1/sessions/" + f.session(v, "") + suffix
}

// restRoutes classifies every route of the OpenAPI document. A route that
// is not here fails TestEveryRouteHasAClass: classify it when adding it.
var restRoutes = map[string]accessRoute{
	// admin
	"POST /v1/apps": {classAdmin, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"POST", "/v1/apps", `{"name":"access-test"}`, f.adminKey(v)}
	}},
	"GET /v1/apps/{app_id}": {classAdmin, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"GET", fmt.Sprintf("/v1/apps/%d", testcluster.AppID), "", f.adminKey(v)}
	}},
	"PATCH /v1/apps/{app_id}": {classAdmin, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"PATCH", fmt.Sprintf("/v1/apps/%d", testcluster.AppID), `{"rotate_callback_secret":true}`, f.adminKey(v)}
	}},
	"POST /v1/apps/{app_id}:enableService": {classAdmin, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"POST", fmt.Sprintf("/v1/apps/%d:enableService", testcluster.AppID),
			`{"service":"SERVICE_LIVE_STREAMING","enabled":true}`, f.adminKey(v)}
	}},
	"POST /v1/tokens:issueDebug": {classAdmin, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"POST", "/v1/tokens:issueDebug", fmt.Sprintf(`{"app_id":%d,"user_id":"debug"}`, testcluster.AppID), f.adminKey(v)}
	}},

	// open, with a token in the request
	"POST /v1/tokens:verify": {classOpen, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"POST", "/v1/tokens:verify", fmt.Sprintf(`{"app_id":%d,"user_id":"checked","token":%q}`,
			testcluster.AppID, f.token(v, "checked")), nil}
	}},
	"POST /v1/rooms/{room_id}:login": {classOpen, false, func(f *accessFixture, v variant) apiCall {
		user := fmt.Sprintf("l%d", f.next())
		return apiCall{"POST", "/v1/rooms/" + roomA + ":login", fmt.Sprintf(`{"app_id":%d,"user":{"user_id":%q,"user_name":"l"},"token":%q}`,
			testcluster.AppID, user, f.token(v, user)), nil}
	}},
	"POST /v1/media/publish": {classOpen, false, func(f *accessFixture, v variant) apiCall {
		user := fmt.Sprintf("p%d", f.next())
		return apiCall{"POST", "/v1/media/publish", fmt.Sprintf(`{"app_id":%d,"room_id":%q,"stream_id":"pub-%s","user_id":%q,"token":%q,"sdp_offer":%q}`,
			testcluster.AppID, roomA, user, user, f.token(v, user), f.offer), nil}
	}},
	"POST /v1/media/play": {classOpen, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"POST", "/v1/media/play", fmt.Sprintf(`{"app_id":%d,"stream_id":"not-live","user_id":"player","token":%q,"sdp_offer":%q}`,
			testcluster.AppID, f.token(v, "player"), f.offer), nil}
	}},

	// client: a room session
	"POST /v1/sessions/{session_id}:logout": {classClient, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"POST", sessionPath(f, v, ":logout"), `{}`, nil}
	}},
	"POST /v1/sessions/{session_id}:heartbeat": {classClient, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"POST", sessionPath(f, v, ":heartbeat"), `{}`, nil}
	}},
	"POST /v1/sessions/{session_id}:renewToken": {classClient, false, func(f *accessFixture, v variant) apiCall {
		user := fmt.Sprintf("r%d", f.next())
		// App A's token for the user, whichever app's session renews it.
		tok, _ := token04.Mint(testcluster.AppID, user, testcluster.Secret, time.Hour, nil)
		return apiCall{"POST", "/v1/sessions/" + f.session(v, user) + ":renewToken", fmt.Sprintf(`{"token":%q}`, tok), nil}
	}},
	"GET /v1/sessions/{session_id}/events": {classClient, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"GET", sessionPath(f, v, "/events"), "", nil}
	}},
	"POST /v1/sessions/{session_id}/extra-info": {classClient, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"POST", sessionPath(f, v, "/extra-info"), `{"key":"k","value":"v"}`, nil}
	}},
	"POST /v1/sessions/{session_id}/messages": {classClient, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"POST", sessionPath(f, v, "/messages"), `{"content":"hi"}`, nil}
	}},
	"GET /v1/sessions/{session_id}/users": {classClient, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"GET", sessionPath(f, v, "/users"), "", nil}
	}},
	"GET /v1/sessions/{session_id}/streams": {classClient, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"GET", sessionPath(f, v, "/streams"), "", nil}
	}},
	"POST /v1/sessions/{session_id}/streams/{stream_id}:setExtraInfo": {classClient, false, func(f *accessFixture, v variant) apiCall {
		// As A's publisher: only it may, and only in app A.
		return apiCall{"POST", "/v1/sessions/" + f.session(v, publisherA) + "/streams/" + streamA + ":setExtraInfo", `{"extra_info":"set"}`, nil}
	}},

	// client: a media session
	"POST /v1/media/sessions/{session_id}:stop": {classClient, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"POST", "/v1/media/sessions/" + f.mediaSession(v) + ":stop", `{}`, nil}
	}},
	"GET /v1/media/sessions/{session_id}/events": {classClient, false, func(f *accessFixture, v variant) apiCall {
		return apiCall{"GET", "/v1/media/sessions/" + f.mediaSession(v) + "/events", "", nil}
	}},

	// business server
	"POST /v1/server/rooms/{room_id}:kickUser": {classServer, false, func(f *accessFixture, v variant) apiCall {
		sig, _ := f.signature(v)
		return apiCall{"POST", "/v1/server/rooms/" + roomA + ":kickUser", `{"auth":` + sig + `,"user_ids":["nobody"]}`, nil}
	}},
	"POST /v1/server/rooms/{room_id}:close": {classServer, false, func(f *accessFixture, v variant) apiCall {
		sig, _ := f.signature(v)
		return apiCall{"POST", "/v1/server/rooms/room-closed:close", `{"auth":` + sig + `}`, nil}
	}},
	"GET /v1/server/rooms/{room_id}/users": {classServer, false, func(f *accessFixture, v variant) apiCall {
		_, q := f.signature(v)
		return apiCall{"GET", "/v1/server/rooms/" + roomA + "/users?" + q, "", nil}
	}},
	"GET /v1/server/rooms/{room_id}/streams": {classServer, false, func(f *accessFixture, v variant) apiCall {
		_, q := f.signature(v)
		return apiCall{"GET", "/v1/server/rooms/" + roomA + "/streams?" + q, "", nil}
	}},
	"POST /v1/server/streams/{stream_id}:delete": {classServer, false, func(f *accessFixture, v variant) apiCall {
		sig, _ := f.signature(v)
		return apiCall{"POST", "/v1/server/streams/not-live:delete", `{"auth":` + sig + `}`, nil}
	}},
	"GET /v1/server/callbacks/failed": {classServer, false, func(f *accessFixture, v variant) apiCall {
		_, q := f.signature(v)
		return apiCall{"GET", "/v1/server/callbacks/failed?" + q, "", nil}
	}},
}

// rightStatus is what a call with the right credential answers when that is
// not 200: the tests aim some calls at what does not exist, so that they
// change nothing another route's check depends on.
var rightStatus = map[string]int{
	"POST /v1/media/play":                        http.StatusNotFound, // 1004002: not live
	"POST /v1/server/streams/{stream_id}:delete": http.StatusNotFound, // 1004002: not live
	"POST /whip/{app_id}/{room_id}/{stream_id}":  http.StatusCreated,
	"POST /whep/{app_id}/{stream_id}":            http.StatusConflict, // not live: try again later
}

// otherRoutes are the gateway's routes outside the OpenAPI document.
var otherRoutes = map[string]accessRoute{
	"GET /healthz": {classOpen, true, func(*accessFixture, variant) apiCall {
		return apiCall{"GET", "/healthz", "", nil}
	}},
	"GET /openapi.json": {classOpen, true, func(*accessFixture, variant) apiCall {
		return apiCall{"GET", "/openapi.json", "", nil}
	}},
	"GET /": {classOpen, true, func(*accessFixture, variant) apiCall { // the web console
		return apiCall{"GET", "/", "", nil}
	}},
	"GET /sdk/onair-express.js": {classOpen, true, func(*accessFixture, variant) apiCall {
		return apiCall{"GET", "/sdk/onair-express.js", "", nil}
	}},
	"POST /whip/{app_id}/{room_id}/{stream_id}": {classOpen, false, func(f *accessFixture, v variant) apiCall {
		user := fmt.Sprintf("w%d", f.next())
		h := map[string]string{"Content-Type": "application/sdp"}
		if tok := f.token(v, user); tok != "" {
			h["Authorization"] = "Bearer " + tok
		}
		return apiCall{"POST", fmt.Sprintf("/whip/%d/%s/whip-%s", testcluster.AppID, roomA, user), f.offer, h}
	}},
	"POST /whep/{app_id}/{stream_id}": {classOpen, false, func(f *accessFixture, v variant) apiCall {
		h := map[string]string{"Content-Type": "application/sdp"}
		if tok := f.token(v, "whep-player"); tok != "" {
			h["Authorization"] = "Bearer " + tok
		}
		return apiCall{"POST", fmt.Sprintf("/whep/%d/not-live", testcluster.AppID), f.offer, h}
	}},
}

func newAccessFixture(t *testing.T) *accessFixture {
	t.Helper()
	ctx := t.Context()
	c := testcluster.New(t)
	c.DebugTokens = true
	n := c.Start(testcluster.AllRoles...)
	if _, err := n.AuthServer.EnsureApp(ctx, appB, secretB); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(context.Background(), gateway.Config{Etcd: c.Etcd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	wh := gateway.NewWHIP(gateway.WHIPConfig{Etcd: c.Etcd, RetryAfter: time.Second})
	wh.Register(gw)
	t.Cleanup(func() { wh.Close() })
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)

	// A's live stream, written as a media edge writes it: under a lease,
	// naming its edge.
	lease, err := c.Etcd.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Etcd.Revoke(context.Background(), lease.ID) })
	streams := streamv1.NewStreamServiceClient(c.Dial(discovery.Stream, true))
	if _, err := streams.RegisterStream(ctx, &streamv1.RegisterStreamRequest{AppId: testcluster.AppID, RoomId: roomA,
		StreamId: streamA, UserId: publisherA, UserName: "Ann", ExtraInfo: "private to room-a",
		EdgeId: leakyEdgeID, EdgeAddr: "127.0.0.1:1", OwnerLease: int64(lease.ID)}); err != nil {
		t.Fatal(err)
	}

	pc := peer(t)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			t.Fatal(err)
		}
	}
	return &accessFixture{t: t, base: srv.URL, c: c, n: n, offer: offerOf(t, pc)}
}

// snakeParams spells the document's path parameters ({appId}) as
// proto/gateway.yaml does ({app_id}).
func snakeParams(path string) string {
	var b strings.Builder
	in := false
	for _, r := range path {
		switch {
		case r == '{' || r == '}':
			in = r == '{'
		case in && r >= 'A' && r <= 'Z':
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// refusal reads a refused response's vendor code, from a plain error body
// or a server stream's error line.
func refusal(body string) errcode.Code {
	var e struct {
		Code  errcode.Code `json:"code"`
		Error struct {
			Code errcode.Code `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal([]byte(strings.TrimSpace(body)), &e)
	return max(e.Code, e.Error.Code)
}

// Every route of the OpenAPI document has a class, and every route refuses
// a caller without its class's credential or with another app's, and serves
// one with the right credential; no public response carries internal
// fields.
func TestEveryRouteHasAClass(t *testing.T) {
	f := newAccessFixture(t)

	status, doc := f.do(apiCall{method: "GET", path: "/openapi.json"})
	if status != http.StatusOK {
		t.Fatalf("openapi.json: %d", status)
	}
	var openAPI struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal([]byte(doc), &openAPI); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, ops := range openAPI.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+snakeParams(path))
		}
	}
	slices.Sort(documented)
	for _, r := range documented {
		if _, ok := restRoutes[r]; !ok {
			t.Errorf("route %s has no access class: add it to restRoutes", r)
		}
	}
	for r := range restRoutes {
		if !slices.Contains(documented, r) {
			t.Errorf("restRoutes names %s, which the OpenAPI document does not have", r)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	all := map[string]accessRoute{}
	for r, a := range restRoutes {
		all[r] = a
	}
	for r, a := range otherRoutes {
		all[r] = a
	}
	names := make([]string, 0, len(all))
	for r := range all {
		names = append(names, r)
	}
	slices.Sort(names)
	for _, name := range names {
		route := all[name]
		t.Run(name, func(t *testing.T) {
			// The fixture's helpers fail the test they run in.
			parent := f.t
			f.t = t
			defer func() { f.t = parent }()
			for _, v := range []variant{noCredential, otherApp, rightCredential} {
				c := route.call(f, v)
				status, body := f.do(c)
				refused := status == http.StatusUnauthorized || status == http.StatusForbidden
				whip := strings.HasPrefix(c.path, "/whip/") || strings.HasPrefix(c.path, "/whep/")
				switch {
				case v == rightCredential || route.free:
					if refused {
						t.Errorf("%s (%s): refused with %d: %s", v, route.class, status, body)
					}
					if want, ok := rightStatus[name]; !ok && status != http.StatusOK || ok && status != want {
						t.Errorf("%s: status %d, want %d: %s", v, status, max(want, http.StatusOK), body)
					}
				case v == otherApp && route.class == classClient && !refused:
					// A session names its own app and room: with app B's,
					// the call acts on B's room, so nothing of A's may show.
					for _, mark := range []string{streamA, publisherA, "private to room-a"} {
						if strings.Contains(body, mark) {
							t.Errorf("%s: app B's session sees %q of app A: %s", v, mark, body)
						}
					}
				default:
					if !refused {
						t.Errorf("%s (%s): not refused: %d %s", v, route.class, status, body)
					} else if code := refusal(body); code == 0 && !whip {
						// WHIP and WHEP answer RFC 9725 plain text.
						t.Errorf("%s: refused without a vendor code: %s", v, body)
					}
				}
				for _, field := range internalFields {
					if strings.Contains(body, field) {
						t.Errorf("%s: response carries internal %q: %s", v, field, body)
					}
				}
				if v == rightCredential && (name == "GET /v1/sessions/{session_id}/streams" ||
					name == "GET /v1/server/rooms/{room_id}/streams" || name == "GET /v1/sessions/{session_id}/events") &&
					!strings.Contains(body, streamA) {
					// The check above means something only if the stream
					// is in the answer.
					t.Errorf("%s: room-a's stream is not in the answer: %s", v, body)
				}
			}
		})
	}
}
