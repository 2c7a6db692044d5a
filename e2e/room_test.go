package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/testcluster"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/node"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/token04"
)

// roomCluster is one auth, one stream registry and two room replicas.
type roomCluster struct {
	*testcluster.Cluster
	t       *testing.T
	r1, r2  *node.Node
	streams streamv1.StreamServiceClient
}

func newRoomCluster(t *testing.T) *roomCluster {
	c := newCluster(t)
	c.Start(discovery.Auth, discovery.Stream)
	rc := &roomCluster{Cluster: c, t: t, r1: c.Start(discovery.Room), r2: c.Start(discovery.Room)}
	// The registry is internal: the tests publish as a media edge would,
	// passing the publisher's token on (the registry still checks it).
	rc.streams = streamv1.NewStreamServiceClient(c.Dial(discovery.Stream, true))
	return rc
}

// engine creates an SDK engine whose first choice is the given replica and
// second the other.
func (rc *roomCluster) engine(first, second *node.Node, h express.EventHandler) *express.Engine {
	rc.t.Helper()
	e, err := express.CreateEngine(express.EngineProfile{AppID: testcluster.AppID, Server: first.Addr() + "," + second.Addr(),
		ReconnectTimeout: 30 * time.Second}, h)
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.t.Cleanup(func() { e.DestroyEngine(nil) })
	return e
}

func (rc *roomCluster) login(e *express.Engine, room, user string) {
	rc.t.Helper()
	err := e.LoginRoom(context.Background(), room, express.User{UserID: user, UserName: "name-" + user},
		express.RoomConfig{IsUserStatusNotify: true, Token: rc.Token(user, nil)})
	if err != nil {
		rc.t.Fatalf("login %s: %v", user, err)
	}
}

func (rc *roomCluster) publish(room, user, stream, extra string) error {
	_, err := rc.streams.RegisterStream(context.Background(), &streamv1.RegisterStreamRequest{AppId: testcluster.AppID, RoomId: room,
		StreamId: stream, UserId: user, Token: rc.Token(user, nil), ExtraInfo: extra})
	return err
}

func (rc *roomCluster) unpublish(user, stream string) error {
	_, err := rc.streams.UnregisterStream(context.Background(), &streamv1.UnregisterStreamRequest{AppId: testcluster.AppID,
		StreamId: stream, UserId: user, Token: rc.Token(user, nil)})
	return err
}

// Clients on different replicas see each other and each other's streams; the
// first callbacks after login list what already exists.
func TestRoomUsersAndStreamsAcrossReplicas(t *testing.T) {
	rc := newRoomCluster(t)
	a, b, late := newRecorder(), newRecorder(), newRecorder()
	ea := rc.engine(rc.r1, rc.r2, a)
	eb := rc.engine(rc.r2, rc.r1, b)
	rc.login(ea, "room1", "alice")
	rc.login(eb, "room1", "bob")
	eventually(t, "alice to see bob", a.has(func(r *recorder) bool { return r.users["bob"] }))
	eventually(t, "bob to see alice", b.has(func(r *recorder) bool { return r.users["alice"] }))

	if err := rc.publish("room1", "bob", "bob-cam", "hello"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice to see bob's stream with its extra info", a.has(func(r *recorder) bool { return r.streams["bob-cam"] == "hello" }))

	// A late joiner's first callbacks list who and what is there.
	el := rc.engine(rc.r1, rc.r2, late)
	rc.login(el, "room1", "carol")
	eventually(t, "carol's initial lists", late.has(func(r *recorder) bool {
		return r.users["alice"] && r.users["bob"] && r.streams["bob-cam"] == "hello"
	}))
	if got := late.events(); len(got) != 3 || got[0] != "user Add alice" || got[1] != "user Add bob" || got[2] != "stream Add bob-cam" {
		t.Errorf("carol's first callbacks = %v", got)
	}

	if _, err := rc.streams.SetStreamExtraInfo(context.Background(), &streamv1.SetStreamExtraInfoRequest{AppId: testcluster.AppID,
		StreamId: "bob-cam", ExtraInfo: "changed", UserId: "bob", Token: rc.Token("bob", nil)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stream extra info update", a.has(func(r *recorder) bool { return r.streams["bob-cam"] == "changed" }))

	if err := rc.unpublish("bob", "bob-cam"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice to see the stream deleted", a.has(func(r *recorder) bool { return r.deleted["bob-cam"] != "" }))
	a.mu.Lock()
	ext := a.deleted["bob-cam"]
	a.mu.Unlock()
	if ext != `{"stream_delete_reason":[{"stream_id":"bob-cam","code":1}]}` {
		t.Errorf("delete extendedData = %s", ext)
	}

	// Room extra info, broadcast and custom command; the sender is not echoed.
	ctx := context.Background()
	if err := ea.SetRoomExtraInfo(ctx, "room1", "topic", "news"); err != nil {
		t.Fatal(err)
	}
	if _, err := eb.SendBroadcastMessage(ctx, "room1", "hi all"); err != nil {
		t.Fatal(err)
	}
	if err := ea.SendCustomCommand(ctx, "room1", "psst", []express.User{{UserID: "carol"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "messages", late.has(func(r *recorder) bool {
		return r.infos["topic"] == "news" && slices.Contains(r.msgs, "bob:hi all") && slices.Contains(r.cmds, "alice:psst")
	}))
	eventually(t, "bob gets info and no echo", b.has(func(r *recorder) bool { return r.infos["topic"] == "news" }))
	// Markers sent after what must not arrive: once bob has carol's
	// message and alice bob's info, an echo, a misrouted command or the
	// setter's own info would have come before them.
	if _, err := el.SendBroadcastMessage(ctx, "room1", "marker"); err != nil {
		t.Fatal(err)
	}
	if err := eb.SetRoomExtraInfo(ctx, "room1", "marker", "1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob to get carol's marker", b.has(func(r *recorder) bool { return slices.Contains(r.msgs, "carol:marker") }))
	eventually(t, "alice to get bob's marker info", a.has(func(r *recorder) bool { return r.infos["marker"] == "1" }))
	b.mu.Lock()
	if !slices.Equal(b.msgs, []string{"carol:marker"}) || len(b.cmds) != 0 {
		t.Errorf("bob got %v %v: sender echoed or command to the wrong user", b.msgs, b.cmds)
	}
	b.mu.Unlock()
	a.mu.Lock()
	if _, ok := a.infos["topic"]; ok {
		t.Error("the setter of room extra info was notified")
	}
	a.mu.Unlock()

	if err := eb.LogoutRoom(ctx, "room1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice to see bob leave", a.has(func(r *recorder) bool { v, ok := r.users["bob"]; return ok && !v }))
	eventually(t, "online count 2", a.has(func(r *recorder) bool { return len(r.counts) > 0 && r.counts[len(r.counts)-1] == 2 }))
}

// A room replica stopped hard: every client reconnects to the other and its
// user/stream callbacks equal those of a client that never moved.
func TestRoomReplicaFailover(t *testing.T) {
	rc := newRoomCluster(t)
	observer := newRecorder()
	eo := rc.engine(rc.r2, rc.r1, observer)
	rc.login(eo, "live", "observer")
	moving := map[string]*recorder{}
	for _, u := range []string{"m1", "m2", "m3"} {
		r := newRecorder()
		moving[u] = r
		rc.login(rc.engine(rc.r1, rc.r2, r), "live", u)
	}
	actor := rc.engine(rc.r2, rc.r1, newRecorder())
	rc.login(actor, "live", "actor")
	if err := rc.publish("live", "actor", "s1", ""); err != nil {
		t.Fatal(err)
	}
	everyone := func(what string, cond func(r *recorder) bool) {
		t.Helper()
		eventually(t, "observer: "+what, observer.has(cond))
		for u, r := range moving {
			eventually(t, u+": "+what, r.has(cond))
		}
	}
	everyone("s1", func(r *recorder) bool { _, ok := r.streams["s1"]; return ok })

	rc.r1.Kill()

	// Activity while the moving clients are on their way over.
	if err := rc.publish("live", "actor", "s2", ""); err != nil {
		t.Fatal(err)
	}
	if err := rc.unpublish("actor", "s1"); err != nil {
		t.Fatal(err)
	}
	extra := rc.engine(rc.r2, rc.r1, newRecorder())
	rc.login(extra, "live", "extra")
	for u, r := range moving {
		eventually(t, u+" to reconnect", r.has(func(r *recorder) bool {
			return slices.Contains(r.states, express.RoomStateChangedReasonReconnected)
		}))
	}
	if err := rc.publish("live", "actor", "s3", ""); err != nil {
		t.Fatal(err)
	}
	if err := extra.LogoutRoom(context.Background(), "live"); err != nil {
		t.Fatal(err)
	}
	everyone("the last changes", func(r *recorder) bool {
		_, s3 := r.streams["s3"]
		gone, seen := r.users["extra"]
		return s3 && seen && !gone
	})
	others := []string{"observer", "m1", "m2", "m3"}
	want := observer.events(others...)
	for u, r := range moving {
		if got := r.events(others...); !slices.Equal(got, want) {
			t.Errorf("%s saw\n  %v\nobserver saw\n  %v", u, got, want)
		}
		states := r.stateSeq()
		if i := slices.Index(states, express.RoomStateChangedReasonReconnecting); i < 0 || !slices.Contains(states[i:], express.RoomStateChangedReasonReconnected) {
			t.Errorf("%s states = %v, want Reconnecting then Reconnected", u, states)
		}
	}
	for _, l := range observer.events() {
		for _, u := range []string{"m1", "m2", "m3"} {
			if l == "user Delete "+u {
				t.Errorf("observer saw %s leave during failover", u)
			}
		}
	}
}

// Error codes a developer meets at login and publish.
func TestRoomErrorCodes(t *testing.T) {
	rc := newRoomCluster(t)
	ctx := context.Background()
	rooms := roomv1.NewRoomServiceClient(rc.Dial(discovery.Room, false))
	login := func(room, user string, tok string, max uint32) error {
		_, err := rooms.LoginRoom(ctx, &roomv1.LoginRoomRequest{AppId: testcluster.AppID, RoomId: room, Token: tok,
			User: &roomv1.User{UserId: user, UserName: user}, Config: &roomv1.RoomConfig{MaxMemberCount: max}})
		return err
	}
	onlyRoomA := rc.Token("u1", &token04.Privilege{RoomID: "A", Login: true})
	noPublish := rc.Token("u2", &token04.Privilege{Login: true, Publish: false})
	onlyS1 := rc.Token("u3", &token04.Privilege{Login: true, Publish: true, StreamIDs: []string{"s1"}})
	for _, u := range []string{"u2", "u3", "u4"} {
		tok := rc.Token(u, nil)
		if u == "u2" {
			tok = noPublish
		}
		if u == "u3" {
			tok = onlyS1
		}
		if err := login("R", u, tok, 0); err != nil {
			t.Fatal(err)
		}
	}
	register := func(user, stream, tok, extra string) error {
		_, err := rc.streams.RegisterStream(ctx, &streamv1.RegisterStreamRequest{AppId: testcluster.AppID, RoomId: "R", StreamId: stream,
			UserId: user, Token: tok, ExtraInfo: extra})
		return err
	}
	tests := []struct {
		name string
		err  error
		want errcode.Code
	}{
		{"room ID empty", login("", "x", rc.Token("x", nil), 0), errcode.RoomIDEmpty},
		{"room ID bad char", login("a b", "x", rc.Token("x", nil), 0), errcode.RoomIDInvalid},
		{"room ID too long", login(strings.Repeat("r", 128), "x", rc.Token("x", nil), 0), errcode.RoomIDTooLong},
		{"user ID bad char", login("R", "x/y", rc.Token("x/y", nil), 0), errcode.UserIDInvalid},
		{"user ID too long", login("R", strings.Repeat("u", 64), rc.Token("x", nil), 0), errcode.UserIDTooLong},
		{"no token", login("R", "x", "", 0), errcode.NoToken},
		{"token for another room", login("B", "u1", onlyRoomA, 0), errcode.LoginAuthFailed},
		{"token of another user", login("R", "x", rc.Token("y", nil), 0), errcode.TokenUserIDMismatch},
		{"member limit", login("R", "x", rc.Token("x", nil), 3), errcode.MemberLimit},
		{"publish not granted", register("u2", "s9", noPublish, ""), errcode.PublishAuthError},
		{"stream not in list", register("u3", "s2", onlyS1, ""), errcode.PublishAuthError},
		{"stream in list", register("u3", "s1", onlyS1, ""), 0},
		{"stream ID taken", register("u4", "s1", rc.Token("u4", nil), ""), errcode.StreamIDExists},
		{"stream ID bad", register("u4", "s.1", rc.Token("u4", nil), ""), errcode.StreamIDInvalid},
		{"stream ID too long", register("u4", strings.Repeat("s", 256), rc.Token("u4", nil), ""), errcode.StreamIDTooLong},
		{"extra info too long", register("u4", "s4", rc.Token("u4", nil), strings.Repeat("x", 1024)), errcode.StreamExtraInfoTooLong},
		{"publisher not in room", register("x", "s5", rc.Token("x", nil), ""), errcode.PublishForbidden},
	}
	for _, tt := range tests {
		if got := errcode.Of(tt.err); got != tt.want {
			t.Errorf("%s: code %d (%v), want %d", tt.name, got, tt.err, tt.want)
		}
	}
	if err := login("A", "u1", onlyRoomA, 0); err != nil {
		t.Errorf("token for room A refused in room A: %v", err)
	}
}

// A second login of the same user kicks the first out with 1002050.
func TestDuplicateUserIsKickedOut(t *testing.T) {
	rc := newRoomCluster(t)
	first, second, watcher := newRecorder(), newRecorder(), newRecorder()
	rc.login(rc.engine(rc.r1, rc.r2, watcher), "k", "w")
	rc.login(rc.engine(rc.r1, rc.r2, first), "k", "dup")
	eventually(t, "watcher sees dup", watcher.has(func(r *recorder) bool { return r.users["dup"] }))
	rc.login(rc.engine(rc.r2, rc.r1, second), "k", "dup")
	eventually(t, "first session kicked", first.has(func(r *recorder) bool {
		i := slices.Index(r.states, express.RoomStateChangedReasonKickOut)
		return i >= 0 && r.codes[i] == int(errcode.KickedSameUser)
	}))
	// The user never left the room in the others' eyes: a marker user
	// logs in after, and the watcher is told of it after anything about
	// dup.
	rc.login(rc.engine(rc.r2, rc.r1, newRecorder()), "k", "marker")
	eventually(t, "watcher sees the marker user", watcher.has(func(r *recorder) bool { return r.users["marker"] }))
	if got := watcher.events("marker"); !slices.Equal(got, []string{"user Add dup"}) {
		t.Errorf("watcher saw %v", got)
	}
}

// A client that stops heartbeating is removed after the timeout, with its
// streams, and the room hears why.
func TestHeartbeatTimeout(t *testing.T) {
	c := newCluster(t)
	c.Room.SessionTimeout = 2 * time.Second
	c.Start(discovery.Auth, discovery.Stream)
	r := c.Start(discovery.Room)
	rc := &roomCluster{Cluster: c, t: t, r1: r, r2: r, streams: streamv1.NewStreamServiceClient(c.Dial(discovery.Stream, true))}
	ctx := context.Background()
	rooms := roomv1.NewRoomServiceClient(c.Dial(discovery.Room, false))
	watch, err := rooms.LoginRoom(ctx, &roomv1.LoginRoomRequest{AppId: testcluster.AppID, RoomId: "hb", Token: c.Token("w", nil),
		User: &roomv1.User{UserId: "w", UserName: "w"}, Config: &roomv1.RoomConfig{IsUserStatusNotify: true}})
	if err != nil {
		t.Fatal(err)
	}
	// A bound on the wait, so a missing event fails the test instead of
	// hanging it.
	subCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sub, err := rooms.SubscribeRoomEvents(subCtx, &roomv1.SubscribeRoomEventsRequest{SessionId: watch.SessionId})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the watcher keeps its own session alive
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
				_, _ = rooms.Heartbeat(ctx, &roomv1.HeartbeatRequest{SessionId: watch.SessionId})
			}
		}
	}()
	// The crashing client: logs in, publishes, never heartbeats.
	if _, err := rooms.LoginRoom(ctx, &roomv1.LoginRoomRequest{AppId: testcluster.AppID, RoomId: "hb", Token: c.Token("crash", nil),
		User: &roomv1.User{UserId: "crash", UserName: "crash"}}); err != nil {
		t.Fatal(err)
	}
	if err := rc.publish("hb", "crash", "crash-cam", ""); err != nil {
		t.Fatal(err)
	}
	var userReason roomv1.UserLeaveReason = -1
	var streamReason streamv1.DeleteReason
	for userReason == -1 || streamReason == 0 {
		ev, err := sub.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if u := ev.GetUserUpdate(); u != nil && u.UpdateType == streamv1.UpdateType_UPDATE_TYPE_DELETE && u.Users[0].UserId == "crash" {
			userReason = u.Reason
		}
		if s := ev.GetStreamUpdate(); s != nil && s.UpdateType == streamv1.UpdateType_UPDATE_TYPE_DELETE {
			streamReason = s.Reason
			if !strings.Contains(s.ExtendedData, `"code":2`) {
				t.Errorf("stream delete extendedData = %s", s.ExtendedData)
			}
		}
	}
	if userReason != roomv1.UserLeaveReason_USER_LEAVE_REASON_HEARTBEAT_TIMEOUT || streamReason != streamv1.DeleteReason_DELETE_REASON_HEARTBEAT_TIMEOUT {
		t.Errorf("reasons = %v / %v, want heartbeat timeout", userReason, streamReason)
	}
}
