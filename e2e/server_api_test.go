package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/testcluster"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/services/auth"
	"github.com/onair-dev/onair/token04"
)

// signed returns a business server's signature for a call made at ts.
func signed(ts time.Time) *authv1.ServerAuth {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	nonce := hex.EncodeToString(b)
	return &authv1.ServerAuth{AppId: testcluster.AppID, SignatureNonce: nonce, Timestamp: ts.Unix(),
		Signature: auth.Sign(testcluster.AppID, nonce, testcluster.Secret, ts.Unix())}
}

func kickedWith(code errcode.Code) func(r *recorder) bool {
	return func(r *recorder) bool {
		i := slices.Index(r.states, express.RoomStateChangedReasonKickOut)
		return i >= 0 && r.codes[i] == int(code)
	}
}

// The signed business-server API: describe, delete a stream, kick, close;
// bad signatures, stale timestamps and replayed nonces are refused.
func TestServerAPI(t *testing.T) {
	rc := newRoomCluster(t)
	ctx := context.Background()
	api := roomv1.NewRoomServerServiceClient(rc.Dial(discovery.Room, false))
	alice, bob := newRecorder(), newRecorder()
	rc.login(rc.engine(rc.r1, rc.r2, alice), "biz", "alice")
	rc.login(rc.engine(rc.r2, rc.r1, bob), "biz", "bob")
	if err := rc.publish("biz", "bob", "bob-cam", ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice sees bob's stream", alice.has(func(r *recorder) bool { _, ok := r.streams["bob-cam"]; return ok }))

	users, err := api.DescribeUsers(ctx, &roomv1.DescribeUsersRequest{Auth: signed(time.Now()), RoomId: "biz"})
	if err != nil {
		t.Fatal(err)
	}
	if users.OnlineCount != 2 || len(users.Users) != 2 {
		t.Errorf("DescribeUsers = %v", users)
	}
	streams, err := api.DescribeStreams(ctx, &roomv1.DescribeStreamsRequest{Auth: signed(time.Now()), RoomId: "biz"})
	if err != nil || len(streams.Streams) != 1 || streams.Streams[0].StreamId != "bob-cam" {
		t.Errorf("DescribeStreams = %v, %v", streams, err)
	}

	// Refusals.
	replayed := signed(time.Now())
	if _, err := api.DescribeUsers(ctx, &roomv1.DescribeUsersRequest{Auth: replayed, RoomId: "biz"}); err != nil {
		t.Fatal(err)
	}
	badSig := signed(time.Now())
	badSig.Signature = strings.Repeat("0", 32)
	for _, tt := range []struct {
		name string
		auth *authv1.ServerAuth
		want errcode.Code
	}{
		{"replayed nonce", replayed, errcode.ServerNonceReplayed},
		{"bad signature", badSig, errcode.ServerSignatureInvalid},
		{"stale timestamp", signed(time.Now().Add(-11 * time.Minute)), errcode.ServerTimestampSkew},
		{"unsigned", nil, errcode.ServerSignatureInvalid},
	} {
		_, err := api.KickUser(ctx, &roomv1.KickUserRequest{Auth: tt.auth, RoomId: "biz", UserIds: []string{"bob"}})
		if got := errcode.Of(err); got != tt.want {
			t.Errorf("%s: code %d (%v), want %d", tt.name, got, err, tt.want)
		}
	}

	if _, err := api.DeleteStream(ctx, &roomv1.DeleteStreamRequest{Auth: signed(time.Now()), StreamId: "bob-cam"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stream removed by the server", alice.has(func(r *recorder) bool {
		return strings.Contains(r.deleted["bob-cam"], `"code":6`)
	}))

	kicked, err := api.KickUser(ctx, &roomv1.KickUserRequest{Auth: signed(time.Now()), RoomId: "biz", UserIds: []string{"bob"}})
	if err != nil || !slices.Equal(kicked.KickedUserIds, []string{"bob"}) {
		t.Fatalf("KickUser = %v, %v", kicked, err)
	}
	eventually(t, "bob kicked by the server", bob.has(kickedWith(errcode.KickedByServer)))
	eventually(t, "alice sees bob leave", alice.has(func(r *recorder) bool { v, ok := r.users["bob"]; return ok && !v }))

	if _, err := api.CloseRoom(ctx, &roomv1.CloseRoomRequest{Auth: signed(time.Now()), RoomId: "biz"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice out of the closed room", alice.has(kickedWith(errcode.KickedByServer)))
}

// A token about to expire is announced; renewed, the session goes on;
// not renewed, it ends with KickOut 1002056.
func TestTokenExpiry(t *testing.T) {
	rc := newRoomCluster(t)
	ctx := context.Background()
	short := func(user string) string {
		tok, err := token04.Mint(testcluster.AppID, user, testcluster.Secret, 3*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	watcher, lapsing, renewing := newRecorder(), newRecorder(), newRecorder()
	rc.login(rc.engine(rc.r1, rc.r2, watcher), "tok", "watcher")
	el := rc.engine(rc.r1, rc.r2, lapsing)
	er := rc.engine(rc.r2, rc.r1, renewing)
	for _, x := range []struct {
		e    *express.Engine
		user string
	}{{el, "lapsing"}, {er, "renewing"}} {
		if err := x.e.LoginRoom(ctx, "tok", express.User{UserID: x.user, UserName: x.user}, express.RoomConfig{Token: short(x.user)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the expiry warning", renewing.has(func(r *recorder) bool { return r.expire > 0 }))
	if err := er.RenewToken(ctx, "tok", rc.Token("renewing", nil)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lapsed session kicked", lapsing.has(kickedWith(errcode.KickedTokenExpired)))
	eventually(t, "the watcher sees it leave", watcher.has(func(r *recorder) bool { v, ok := r.users["lapsing"]; return ok && !v }))
	// The renewed session outlives its first token.
	time.Sleep(time.Second)
	if renewing.has(kickedWith(errcode.KickedTokenExpired))() {
		t.Error("the renewed session was kicked")
	}
	if watcher.has(func(r *recorder) bool { v, ok := r.users["renewing"]; return ok && !v })() {
		t.Error("the renewed user left the room")
	}
}

// Room events over REST: newline-delimited JSON through the gateway.
func TestRoomEventsOverREST(t *testing.T) {
	rc := newRoomCluster(t)
	web := restGateway(t, rc.Cluster)
	login := func(user string) string {
		body := `{"app_id":` + itoa(testcluster.AppID) + `,"user":{"user_id":"` + user + `","user_name":"` + user +
			`"},"token":"` + rc.Token(user, nil) + `","config":{"is_user_status_notify":true}}`
		resp, err := http.Post(web.URL+"/v1/rooms/rest:login", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			SessionID string `json:"session_id"`
		}
		decodeJSON(t, resp, &out)
		if resp.StatusCode != 200 || out.SessionID == "" {
			t.Fatalf("REST login: %d %+v", resp.StatusCode, out)
		}
		return out.SessionID
	}
	session := login("ann")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", web.URL+"/v1/sessions/"+session+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	next := func() string {
		if !lines.Scan() {
			t.Fatalf("event stream ended: %v", lines.Err())
		}
		return lines.Text()
	}
	if first := next(); !strings.Contains(first, `"snapshot"`) {
		t.Fatalf("first event = %s, want the snapshot", first)
	}
	// A REST client reads enum names: a join is an Add whose leave reason
	// is unset (not a logout), a logout a Delete with the reason.
	userUpdate := func() (string, map[string]any) {
		for {
			l := next()
			var ev struct {
				Result struct {
					UserUpdate map[string]any `json:"user_update"`
				} `json:"result"`
			}
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("event %s: %v", l, err)
			}
			if ev.Result.UserUpdate != nil {
				return l, ev.Result.UserUpdate
			}
		}
	}
	ben := login("ben")
	l, u := userUpdate()
	if !strings.Contains(l, `"user_id":"ben"`) || u["update_type"] != "UPDATE_TYPE_ADD" || u["reason"] != "USER_LEAVE_REASON_UNSPECIFIED" {
		t.Errorf("user update of a join = %s", l)
	}
	out, err := http.Post(web.URL+"/v1/sessions/"+ben+":logout", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	if out.StatusCode != 200 {
		t.Fatalf("REST logout: %d", out.StatusCode)
	}
	l, u = userUpdate()
	if !strings.Contains(l, `"user_id":"ben"`) || u["update_type"] != "UPDATE_TYPE_DELETE" || u["reason"] != "USER_LEAVE_REASON_LOGOUT" {
		t.Errorf("user update of a logout = %s", l)
	}
}
