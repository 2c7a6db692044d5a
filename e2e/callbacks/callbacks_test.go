// Package callbacks checks the business-server callbacks end to end: real
// etcd, room replicas over real gRPC, and a real HTTP receiver on loopback
// that checks every signature as a business server would.
package callbacks

import (
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
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/keys"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/testcluster"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/services/auth"
)

var eventually = testcluster.Eventually

// got is one request the receiver got.
type got struct {
	callback.Event
	Timestamp string `json:"timestamp"`
	Nonce     string `json:"nonce"`
	Signature string `json:"signature"`
	// status is what the receiver answered.
	status int
}

// receiver is a business server: it checks signatures and records every
// request; answer decides each response (nil: 200).
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	all    []got
	answer func(g got, seen int) int
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var g got
		if err := json.Unmarshal(b, &g); err != nil {
			t.Errorf("receiver: %v: %s", err, b)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		secret, answer := r.secret, r.answer
		seen := 0
		for _, p := range r.all {
			if p.EventID == g.EventID {
				seen++
			}
		}
		r.mu.Unlock()
		if !callback.Verify(secret, g.Timestamp, g.Nonce, g.Signature) {
			t.Errorf("receiver: bad signature on %+v", g)
		}
		g.status = http.StatusOK
		if answer != nil {
			g.status = answer(g, seen)
		}
		r.mu.Lock()
		r.all = append(r.all, g)
		r.mu.Unlock()
		w.WriteHeader(g.status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// accepted is the events answered 2xx, first of each event_id, in order.
func (r *receiver) accepted() []got {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []got
	for _, g := range r.all {
		if g.status/100 == 2 && !slices.ContainsFunc(out, func(o got) bool { return o.EventID == g.EventID }) {
			out = append(out, g)
		}
	}
	return out
}

func (r *receiver) requests() []got {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.all)
}

// summary is an event as the tests spell it: "room_login alice 0".
func summary(evs []got) []string {
	var out []string
	for _, e := range evs {
		who := e.UserID
		if e.StreamID != "" {
			who = e.StreamID
		}
		out = append(out, strings.Join(strings.Fields(fmt.Sprintf("%s %s %d", e.Event.Event, who, e.Reason)), " "))
	}
	return out
}

// fixture is auth and the stream registry on one node, two room replicas,
// and the app's callbacks going to a receiver.
type fixture struct {
	*testcluster.Cluster
	t        *testing.T
	r1, r2   *node.Node
	rooms    roomv1.RoomServiceClient
	server   roomv1.RoomServerServiceClient
	streams  streamv1.StreamServiceClient
	apps     authv1.AuthServiceClient
	recv     *receiver
	timeouts time.Duration
}

func adminCtx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), auth.AdminKeyHeader, testcluster.AdminKey)
}

// newFixture starts the fixture with the callback retry base (0: the
// vendor's schedule) and the heartbeat timeout of sessions.
func newFixture(t *testing.T, retryBase, sessionTimeout time.Duration) *fixture {
	f := newFixtureTB(t, sessionTimeout, retryBase)
	f.t = t
	return f
}

func newFixtureTB(tb testing.TB, sessionTimeout time.Duration, retryBase ...time.Duration) *fixture {
	var rb time.Duration
	if len(retryBase) > 0 {
		rb = retryBase[0]
	}
	return newFixtureConfig(tb, sessionTimeout, rb, 0)
}

// newFixtureConfig is newFixtureTB with the rooms' empty-room linger (0:
// the default).
func newFixtureConfig(tb testing.TB, sessionTimeout, retryBase, linger time.Duration) *fixture {
	c := testcluster.New(tb)
	c.DevMode = true
	c.Room.SessionTimeout = sessionTimeout
	c.Room.CallbackRetryBase = retryBase
	c.Room.EmptyRoomLinger = linger
	c.Room.CallbackTimeout = 2 * time.Second
	c.Start(discovery.Auth, discovery.Stream)
	f := &fixture{Cluster: c, r1: c.Start(discovery.Room), r2: c.Start(discovery.Room), recv: newReceiver(tb)}
	f.rooms = roomv1.NewRoomServiceClient(c.Dial(discovery.Room, false))
	f.server = roomv1.NewRoomServerServiceClient(c.Dial(discovery.Room, false))
	f.streams = streamv1.NewStreamServiceClient(c.Dial(discovery.Stream, true))
	f.apps = authv1.NewAuthServiceClient(c.Dial(discovery.Auth, false))
	allow := true
	resp, err := f.apps.UpdateApp(adminCtx(), &authv1.UpdateAppRequest{AppId: testcluster.AppID,
		CallbackUrl: &f.recv.srv.URL, CallbackAllowLocal: &allow})
	if err != nil {
		tb.Fatal(err)
	}
	f.recv.secret = resp.GetApp().GetCallbackSecret()
	if len(f.recv.secret) != 32 {
		tb.Fatalf("callback secret %q", f.recv.secret)
	}
	return f
}

func (f *fixture) login(room, user string) *roomv1.LoginRoomResponse {
	f.t.Helper()
	var resp *roomv1.LoginRoomResponse
	var err error
	// A loaded machine may keep etcd from answering within its second: a
	// client tries again.
	for range 5 {
		resp, err = f.rooms.LoginRoom(context.Background(), &roomv1.LoginRoomRequest{AppId: testcluster.AppID, RoomId: room,
			User: &roomv1.User{UserId: user, UserName: "name-" + user}, Token: f.Token(user, nil)})
		if errcode.Of(err) != errcode.ServiceUnavailable {
			break
		}
	}
	if err != nil {
		f.t.Fatalf("login %s: %v", user, err)
	}
	return resp
}

// publish registers a stream under the publisher's session, as a media
// edge does for a client that publishes.
func (f *fixture) publish(room, user, stream string) {
	f.t.Helper()
	if _, err := f.streams.RegisterStream(context.Background(), &streamv1.RegisterStreamRequest{AppId: testcluster.AppID,
		RoomId: room, StreamId: stream, UserId: user, Token: f.Token(user, nil), EdgeId: "e", EdgeAddr: "127.0.0.1:1"}); err != nil {
		f.t.Fatalf("publish %s: %v", stream, err)
	}
}

func (f *fixture) roomKeys(room string) int64 {
	f.t.Helper()
	resp, err := f.Etcd.Get(context.Background(), keys.Room(testcluster.AppID, room), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.Count
}

func signed() *authv1.ServerAuth {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	nonce, ts := hex.EncodeToString(b), time.Now().Unix()
	return &authv1.ServerAuth{AppId: testcluster.AppID, SignatureNonce: nonce, Timestamp: ts,
		Signature: auth.Sign(testcluster.AppID, nonce, testcluster.Secret, ts)}
}

func waitFor(t *testing.T, r *receiver, want []string) []got {
	t.Helper()
	var acc []got
	deadline := time.Now().Add(30 * time.Second)
	for {
		acc = r.accepted()
		if len(acc) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !slices.Equal(summary(acc), want) {
		for _, g := range r.requests() {
			t.Logf("%s %s %s %d %d", g.EventID, g.Event.Event, g.UserID, g.EventTimeMs, g.status)
		}
		t.Fatalf("callbacks:\n got  %q\n want %q", summary(acc), want)
	}
	return acc
}

// A room's whole life: created by the first login, two users, a stream, a
// logout, the last user's heartbeat timeout (its stream ends with it), and
// the close; each event once, in order, signed, in one room session. The
// closed room's keys are gone, and a new login creates it again.
func TestRoomLife(t *testing.T) {
	f := newFixture(t, 0, 2*time.Second)
	ctx := context.Background()
	alice := f.login("life", "alice")
	bob := f.login("life", "bob")
	f.publish("life", "bob", "bob-cam")
	if _, err := f.rooms.LogoutRoom(ctx, &roomv1.LogoutRoomRequest{SessionId: alice.SessionId}); err != nil {
		t.Fatal(err)
	}
	// Bob sends no heartbeat: his session times out after 2 s.
	acc := waitFor(t, f.recv, []string{
		"room_create alice 0", "room_login alice 0", "room_login bob 0", "stream_create bob-cam 0",
		"room_logout alice 0", "stream_close bob-cam 2", "room_logout bob 1", "room_close 1"})
	ids := map[string]bool{}
	for _, e := range acc {
		if e.AppID != testcluster.AppID || e.RoomID != "life" || len(e.EventID) != 32 || ids[e.EventID] || e.EventTimeMs == 0 {
			t.Errorf("event %+v", e)
		}
		ids[e.EventID] = true
		if e.RoomSessionID != "" && e.RoomSessionID != bob.RoomSessionId {
			t.Errorf("%s: room_session_id %q, want the room's %q", e.Event.Event, e.RoomSessionID, bob.RoomSessionId)
		}
	}
	if alice.RoomSessionId != bob.RoomSessionId {
		t.Errorf("sessions of one room life have room session IDs %q and %q", alice.RoomSessionId, bob.RoomSessionId)
	}
	if n := len(f.recv.requests()); n != len(acc) {
		t.Errorf("%d requests for %d events", n, len(acc))
	}
	if n := f.roomKeys("life"); n != 0 {
		t.Errorf("the closed room still has %d keys", n)
	}
	carol := f.login("life", "carol")
	again := waitFor(t, f.recv, []string{
		"room_create alice 0", "room_login alice 0", "room_login bob 0", "stream_create bob-cam 0",
		"room_logout alice 0", "stream_close bob-cam 2", "room_logout bob 1", "room_close 1",
		"room_create carol 0", "room_login carol 0"})
	if carol.RoomSessionId == bob.RoomSessionId || again[8].RoomSessionID != carol.RoomSessionId {
		t.Errorf("the room opened again has room session %q (before: %q, callback: %q)", carol.RoomSessionId, bob.RoomSessionId, again[8].RoomSessionID)
	}
}

// A room that empties and fills again within the linger keeps its life:
// the next user gets its room session, and the business server hears no
// room_close and room_create in between; left empty, it closes after the
// linger, its keys gone.
func TestRoomLinger(t *testing.T) {
	f := newFixtureConfig(t, time.Minute, 0, 10*time.Second)
	f.t = t
	ctx := context.Background()
	alice := f.login("churn", "alice")
	if _, err := f.rooms.LogoutRoom(ctx, &roomv1.LogoutRoomRequest{SessionId: alice.SessionId}); err != nil {
		t.Fatal(err)
	}
	bob := f.login("churn", "bob")
	if bob.RoomSessionId != alice.RoomSessionId {
		t.Errorf("the room filled again within the linger has room session %q, was %q", bob.RoomSessionId, alice.RoomSessionId)
	}
	if _, err := f.rooms.LogoutRoom(ctx, &roomv1.LogoutRoomRequest{SessionId: bob.SessionId}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, f.recv, []string{"room_create alice 0", "room_login alice 0", "room_logout alice 0",
		"room_login bob 0", "room_logout bob 0", "room_close 0"})
	if n := f.roomKeys("churn"); n != 0 {
		t.Errorf("the closed room still has %d keys", n)
	}
}

// CloseRoom kicks everyone and ends every stream (also one its publisher's
// session does not hold), and the room closes with reason 3 (kicked).
func TestCloseRoom(t *testing.T) {
	f := newFixture(t, 0, time.Minute)
	ctx := context.Background()
	f.login("shut", "ann")
	f.login("shut", "ben")
	lease, err := f.Etcd.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	// A stream on a media edge's lease, as a WHIP publisher's is.
	if _, err := f.streams.RegisterStream(ctx, &streamv1.RegisterStreamRequest{AppId: testcluster.AppID, RoomId: "shut",
		StreamId: "edge-cam", UserId: "bot", EdgeId: "e", EdgeAddr: "127.0.0.1:1", OwnerLease: int64(lease.ID)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, f.recv, []string{"room_create ann 0", "room_login ann 0", "room_login ben 0", "stream_create edge-cam 0"})
	if _, err := f.server.CloseRoom(ctx, &roomv1.CloseRoomRequest{Auth: signed(), RoomId: "shut"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, f.recv, []string{"room_create ann 0", "room_login ann 0", "room_login ben 0", "stream_create edge-cam 0",
		"room_logout ann 3", "room_logout ben 3", "stream_close edge-cam 6", "room_close 3"})
	if n := f.roomKeys("shut"); n != 0 {
		t.Errorf("the closed room still has %d keys", n)
	}
}

// A receiver that fails twice gets the event on the third try, with the
// same event_id, and the room's later events wait for it.
func TestRetriedUntilAccepted(t *testing.T) {
	f := newFixture(t, 20*time.Millisecond, time.Minute)
	f.recv.answer = func(_ got, seen int) int {
		if seen < 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	f.login("retry", "dan")
	acc := waitFor(t, f.recv, []string{"room_create dan 0", "room_login dan 0"})
	reqs := f.recv.requests()
	var order []string
	for _, r := range reqs {
		order = append(order, r.EventID)
	}
	want := []string{acc[0].EventID, acc[0].EventID, acc[0].EventID, acc[1].EventID, acc[1].EventID, acc[1].EventID}
	if !slices.Equal(order, want) {
		t.Errorf("requests by event_id: %q, want each event three times, in order: %q", order, want)
	}
	for i, r := range reqs {
		if i > 0 && r.Nonce == reqs[i-1].Nonce {
			t.Errorf("attempt %d reused the nonce of the one before", i)
		}
	}
}

// A room replica killed in the middle of a delivery: the other replica
// takes the room's callbacks over once its lease is gone, and delivers all
// of them in order. The receiver may see the interrupted event again, with
// the same event_id, and nothing else twice.
func TestDelivererKilled(t *testing.T) {
	f := newFixture(t, 0, time.Minute)
	hold := make(chan struct{})
	var once sync.Once
	held := make(chan struct{})
	f.recv.answer = func(g got, seen int) int {
		if g.Event.Event == callback.RoomLogin && g.UserID == "fay" && seen == 0 {
			once.Do(func() { close(held) })
			<-hold // the business server is slow: the deliverer is killed meanwhile
		}
		return http.StatusOK
	}
	f.login("kill", "eve")
	f.login("kill", "fay")
	f.login("kill", "gus")
	<-held
	claim, err := f.Etcd.Get(context.Background(), keys.CallbackClaim(testcluster.AppID, "kill"))
	if err != nil || len(claim.Kvs) != 1 {
		t.Fatalf("claim: %v %v", claim, err)
	}
	victim := f.nodeOfLease(claim.Kvs[0].Lease)
	victim.Kill()
	close(hold)
	// Calls may still reach the dead replica until its lease is gone.
	eventually(t, "hal logs in", func() bool {
		_, err := f.rooms.LoginRoom(context.Background(), &roomv1.LoginRoomRequest{AppId: testcluster.AppID, RoomId: "kill",
			User: &roomv1.User{UserId: "hal", UserName: "name-hal"}, Token: f.Token("hal", nil)})
		return err == nil
	})
	acc := waitFor(t, f.recv, []string{"room_create eve 0", "room_login eve 0", "room_login fay 0", "room_login gus 0", "room_login hal 0"})
	counts := map[string]int{}
	for _, r := range f.recv.requests() {
		counts[r.EventID]++
	}
	for _, e := range acc {
		want := 1
		if e.UserID == "fay" {
			// Its first attempt was cut off with the killed replica.
			want = 2
		}
		if n := counts[e.EventID]; n != want {
			t.Errorf("%s %s delivered %d times, want %d", e.Event.Event, e.UserID, n, want)
		}
	}
}

// nodeOfLease is the room replica that holds lease.
func (f *fixture) nodeOfLease(lease int64) *node.Node {
	f.t.Helper()
	resp, err := f.Etcd.Get(context.Background(), "/onair/services/"+discovery.Room+"/", clientv3.WithPrefix())
	if err != nil {
		f.t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if kv.Lease != lease {
			continue
		}
		for _, n := range []*node.Node{f.r1, f.r2} {
			if strings.HasSuffix(string(kv.Key), "/"+n.Addr()) {
				return n
			}
		}
	}
	f.t.Fatalf("no room replica holds lease %x", lease)
	return nil
}

// A callback that fails every attempt (here: a redirect, which is never
// followed) is given up on after the retries and listed as failed through
// the signed server API.
func TestFailedListed(t *testing.T) {
	f := newFixture(t, 5*time.Millisecond, time.Minute)
	var elsewhere sync.Map
	target := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { elsewhere.Store(r.URL.Path, true) }))
	t.Cleanup(target.Close)
	f.recv.answer = func(got, int) int { return http.StatusFound }
	f.recv.srv.Config.Handler = redirectTo(f.recv.srv.Config.Handler, target.URL+"/moved")
	f.login("fail", "ivy")
	var list *roomv1.ListFailedCallbacksResponse
	eventually(t, "two failed callbacks", func() bool {
		var err error
		list, err = f.server.ListFailedCallbacks(context.Background(), &roomv1.ListFailedCallbacksRequest{Auth: signed()})
		return err == nil && len(list.Callbacks) == 2
	})
	for i, want := range []string{callback.RoomCreate, callback.RoomLogin} {
		c := list.Callbacks[i]
		if c.Event != want || c.Attempts != 6 || c.LastStatus != http.StatusFound || c.RoomId != "fail" || c.FailedTimeMs == 0 ||
			!strings.Contains(c.Payload, `"user_id":"ivy"`) {
			t.Errorf("failed callback %d: %+v", i, c)
		}
	}
	if n := len(f.recv.requests()); n != 12 {
		t.Errorf("%d attempts, want 2 events x 6", n)
	}
	elsewhere.Range(func(k, _ any) bool { t.Errorf("redirect followed to %v", k); return true })
	// Paged: one at a time.
	page, err := f.server.ListFailedCallbacks(context.Background(), &roomv1.ListFailedCallbacksRequest{Auth: signed(), PageSize: 1})
	if err != nil || len(page.Callbacks) != 1 || page.NextPageToken == "" {
		t.Fatalf("page 1: %v %v", page, err)
	}
	page2, err := f.server.ListFailedCallbacks(context.Background(), &roomv1.ListFailedCallbacksRequest{Auth: signed(), PageSize: 1, PageToken: page.NextPageToken})
	if err != nil || len(page2.Callbacks) != 1 || page2.Callbacks[0].EventId != list.Callbacks[1].EventId {
		t.Fatalf("page 2: %v %v", page2, err)
	}
}

// redirectTo sets a Location header on h's redirects.
func redirectTo(h http.Handler, loc string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", loc)
		h.ServeHTTP(w, r)
	})
}

// Outside dev mode an app may not point callbacks at loopback or
// link-local addresses, nor switch on the flag that would allow it; the
// callback secret is generated and rotates.
func TestCallbackSettings(t *testing.T) {
	c := testcluster.New(t)
	c.Start(discovery.Auth)
	apps := authv1.NewAuthServiceClient(c.Dial(discovery.Auth, false))
	ctx := adminCtx()
	str := func(s string) *string { return &s }
	yes := true
	for _, tt := range []struct {
		name string
		req  *authv1.UpdateAppRequest
	}{
		{"loopback", &authv1.UpdateAppRequest{CallbackUrl: str("http://127.0.0.1:9/cb")}},
		{"localhost", &authv1.UpdateAppRequest{CallbackUrl: str("http://localhost:9/cb")}},
		{"link-local", &authv1.UpdateAppRequest{CallbackUrl: str("http://169.254.169.254/")}},
		{"allow local", &authv1.UpdateAppRequest{CallbackUrl: str("http://127.0.0.1:9/cb"), CallbackAllowLocal: &yes}},
		{"not http", &authv1.UpdateAppRequest{CallbackUrl: str("gopher://biz.example.com/")}},
	} {
		tt.req.AppId = testcluster.AppID
		if _, err := apps.UpdateApp(ctx, tt.req); errcode.Of(err) != errcode.InvalidParameter {
			t.Errorf("%s: %v, want %d", tt.name, err, errcode.InvalidParameter)
		}
	}
	if _, err := apps.CreateApp(ctx, &authv1.CreateAppRequest{Name: "x", CallbackUrl: "http://[::1]/cb"}); errcode.Of(err) != errcode.InvalidParameter {
		t.Errorf("CreateApp with a loopback URL: %v", err)
	}
	before, err := apps.GetApp(ctx, &authv1.GetAppRequest{AppId: testcluster.AppID})
	if err != nil || len(before.App.CallbackSecret) != 32 {
		t.Fatalf("GetApp: %v %v", before, err)
	}
	after, err := apps.UpdateApp(ctx, &authv1.UpdateAppRequest{AppId: testcluster.AppID, CallbackUrl: str("https://biz.example.com/onair"),
		RotateCallbackSecret: true})
	if err != nil || after.App.CallbackUrl != "https://biz.example.com/onair" || len(after.App.CallbackSecret) != 32 ||
		after.App.CallbackSecret == before.App.CallbackSecret || after.App.ServerSecret != testcluster.Secret {
		t.Errorf("UpdateApp: %v %v", after, err)
	}
	created, err := apps.CreateApp(ctx, &authv1.CreateAppRequest{Name: "y"})
	if err != nil || len(created.App.CallbackSecret) != 32 {
		t.Errorf("CreateApp: %v %v", created, err)
	}
	if _, err := authv1.NewAuthServiceClient(c.Dial(discovery.Auth, false)).UpdateApp(context.Background(),
		&authv1.UpdateAppRequest{AppId: testcluster.AppID, RotateCallbackSecret: true}); errcode.Of(err) != errcode.AdminOnly {
		t.Errorf("UpdateApp without the admin key: %v", err)
	}
}
