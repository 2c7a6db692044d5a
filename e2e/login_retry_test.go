package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/keys"
	"github.com/onair-dev/onair/internal/testcluster"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	"github.com/onair-dev/onair/sdk/express"
)

// sessionsOf lists the sessions etcd holds for user (by session ID, the key
// every session has).
func sessionsOf(t *testing.T, c *testcluster.Cluster, user string) []string {
	t.Helper()
	resp, err := c.Etcd.Get(context.Background(), keys.SessionID(""), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, kv := range resp.Kvs {
		var rec keys.SessionRecord
		if json.Unmarshal(kv.Value, &rec) == nil && rec.UserID == user {
			ids = append(ids, rec.SessionID)
		}
	}
	return ids
}

// A login retried with its attempt ID gets the session its first try made,
// whatever became of the first reply; a logout naming the attempt removes
// that session and nothing else; a logout retried after it went through
// says the session is gone.
func TestLoginAttemptIsIdempotent(t *testing.T) {
	c := newCluster(t)
	c.Start(discovery.Auth, discovery.Stream, discovery.Room)
	rooms := roomv1.NewRoomServiceClient(c.Dial(discovery.Room, false))
	ctx := context.Background()
	login := func(user, attempt string) *roomv1.LoginRoomResponse {
		t.Helper()
		resp, err := rooms.LoginRoom(ctx, &roomv1.LoginRoomRequest{AppId: testcluster.AppID, RoomId: "retry", Token: c.Token(user, nil),
			User: &roomv1.User{UserId: user, UserName: user}, AttemptId: attempt})
		if err != nil {
			t.Fatalf("login %s (%s): %v", user, attempt, err)
		}
		return resp
	}
	first := login("ann", "attempt-1")
	for _, tc := range []struct {
		name, attempt string
		same          bool
	}{
		{"retry", "attempt-1", true},
		{"retry again", "attempt-1", true},
		{"a new login", "attempt-2", false},
	} {
		got := login("ann", tc.attempt)
		if (got.SessionId == first.SessionId) != tc.same || got.RoomSessionId != first.RoomSessionId {
			t.Errorf("%s: session %s, first %s; want same = %v", tc.name, got.SessionId, first.SessionId, tc.same)
		}
		if ids := sessionsOf(t, c, "ann"); len(ids) != 1 || ids[0] != got.SessionId {
			t.Errorf("%s: sessions in etcd %v, want just %s", tc.name, ids, got.SessionId)
		}
		first = got
	}

	bob := login("bob", "bob-1")
	for _, tc := range []struct {
		name    string
		req     *roomv1.LogoutRoomRequest
		code    errcode.Code
		present bool
	}{
		{"another attempt's", &roomv1.LogoutRoomRequest{SessionId: "-", AppId: testcluster.AppID, UserId: "bob", AttemptId: "bob-0"}, 0, true},
		{"its attempt's", &roomv1.LogoutRoomRequest{SessionId: "-", AppId: testcluster.AppID, UserId: "bob", AttemptId: "bob-1"}, 0, false},
		{"again", &roomv1.LogoutRoomRequest{SessionId: "-", AppId: testcluster.AppID, UserId: "bob", AttemptId: "bob-1"}, 0, false},
		{"by session, after", &roomv1.LogoutRoomRequest{SessionId: bob.SessionId}, errcode.SessionNotFound, false},
	} {
		_, err := rooms.LogoutRoom(ctx, tc.req)
		if errcode.Of(err) != tc.code {
			t.Errorf("logout %s: %v, want code %d", tc.name, err, tc.code)
		}
		if got := len(sessionsOf(t, c, "bob")) == 1; got != tc.present {
			t.Errorf("after logout %s: bob present = %v, want %v", tc.name, got, tc.present)
		}
	}
	if _, err := rooms.LogoutRoom(ctx, &roomv1.LogoutRoomRequest{SessionId: first.SessionId}); err != nil {
		t.Fatal(err)
	}
	if _, err := rooms.LogoutRoom(ctx, &roomv1.LogoutRoomRequest{SessionId: first.SessionId}); errcode.Of(err) != errcode.SessionNotFound {
		t.Errorf("logout retried after it went through: %v, want SessionNotFound", err)
	}
}

// lossyRoom serves a room replica's RoomService, losing the replies of
// LoginRoom and LogoutRoom calls while lose says so: the call is made, and
// the client hears UNAVAILABLE, as when a connection breaks or etcd's
// leader changes just after the commit.
func lossyRoom(t *testing.T, c *testcluster.Cluster, lose func(method string) bool) string {
	t.Helper()
	n := c.Start(discovery.Room)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err == nil && lose(info.FullMethod) {
			return nil, status.Error(codes.Unavailable, "reply lost")
		}
		return resp, err
	}))
	roomv1.RegisterRoomServiceServer(srv, n.RoomServer)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// The Go SDK retries a login and a logout whose replies were lost: one
// session, then none; a login that fails for good leaves no session
// either, once the engine's background cleanup has run.
func TestSDKRetriesLostReplies(t *testing.T) {
	c := newCluster(t)
	c.Start(discovery.Auth, discovery.Stream)
	var loseLogins, loseLogouts atomic.Int32 // replies still to lose
	addr := lossyRoom(t, c, func(m string) bool {
		switch m {
		case roomv1.RoomService_LoginRoom_FullMethodName:
			return loseLogins.Add(-1) >= 0
		case roomv1.RoomService_LogoutRoom_FullMethodName:
			return loseLogouts.Add(-1) >= 0
		}
		return false
	})
	var failed atomic.Int32
	h := &stateCounter{failed: &failed}
	e, err := express.CreateEngine(express.EngineProfile{AppID: testcluster.AppID, Server: addr}, h)
	if err != nil {
		t.Fatal(err)
	}
	defer e.DestroyEngine(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	loseLogins.Store(2)
	if err := e.LoginRoom(ctx, "lossy", express.User{UserID: "cat", UserName: "cat"}, express.RoomConfig{Token: c.Token("cat", nil)}); err != nil {
		t.Fatalf("login with two lost replies: %v", err)
	}
	if ids := sessionsOf(t, c, "cat"); len(ids) != 1 {
		t.Errorf("sessions after a login whose first replies were lost: %v, want one", ids)
	}
	loseLogouts.Store(1)
	if err := e.LogoutRoom(ctx, "lossy"); err != nil {
		t.Fatalf("logout with a lost reply: %v", err)
	}
	if ids := sessionsOf(t, c, "cat"); len(ids) != 0 {
		t.Errorf("sessions after logout: %v, want none", ids)
	}
	if failed.Load() != 0 {
		t.Errorf("the handler saw %d failed logins or logouts", failed.Load())
	}

	// Every reply lost until the caller gives up: the login fails, and
	// what its tries made goes.
	loseLogins.Store(1 << 30)
	short, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	if err := e.LoginRoom(short, "lossy", express.User{UserID: "dog", UserName: "dog"}, express.RoomConfig{Token: c.Token("dog", nil)}); err == nil {
		t.Fatal("login with every reply lost succeeded")
	}
	eventually(t, "the failed login's session to go", func() bool { return len(sessionsOf(t, c, "dog")) == 0 })
}

type stateCounter struct {
	express.BaseEventHandler
	failed *atomic.Int32
}

func (s *stateCounter) OnRoomStateChanged(reason express.RoomStateChangedReason, code int, extended, roomID string) {
	if reason == express.RoomStateChangedReasonLoginFailed || reason == express.RoomStateChangedReasonLogoutFailed {
		s.failed.Add(1)
	}
}

// Over REST, as the browser SDK calls it: a login retried with its attempt
// ID is one session, and POST /v1/sessions/-:logout with the attempt ends it.
func TestRESTLoginAttempt(t *testing.T) {
	c := newCluster(t)
	c.Start(discovery.Auth, discovery.Stream, discovery.Room)
	web := restGateway(t, c)
	post := func(path string, body map[string]any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := http.Post(web.URL+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		decodeJSON(t, resp, &out)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %v", path, resp.StatusCode, out)
		}
		return out
	}
	login := map[string]any{"app_id": testcluster.AppID, "user": map[string]string{"user_id": "eve", "user_name": "eve"},
		"token": c.Token("eve", nil), "attempt_id": "web-attempt-1"}
	a := post("/v1/rooms/rest-retry:login", login)
	b := post("/v1/rooms/rest-retry:login", login)
	if a["session_id"] != b["session_id"] {
		t.Errorf("retried REST login: sessions %v and %v, want one", a["session_id"], b["session_id"])
	}
	post("/v1/sessions/-:logout", map[string]any{"app_id": testcluster.AppID, "user_id": "eve", "attempt_id": "web-attempt-1"})
	if ids := sessionsOf(t, c, "eve"); len(ids) != 0 {
		t.Errorf("sessions after logout by attempt: %v", ids)
	}
}
