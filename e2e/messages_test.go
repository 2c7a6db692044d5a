package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/embednats"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/sdk/express"
)

// msgClient is a logged-in SDK engine with its recorder.
type msgClient struct {
	e   *express.Engine
	rec *recorder
}

func msgLogin(t *testing.T, c *testcluster.Cluster, servers []*node.Node, room, user string) *msgClient {
	t.Helper()
	var addrs []string
	for _, n := range servers {
		addrs = append(addrs, n.Addr())
	}
	rec := newRecorder()
	e, err := express.CreateEngine(express.EngineProfile{AppID: testcluster.AppID, Server: strings.Join(addrs, ","),
		ReconnectTimeout: 30 * time.Second}, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.DestroyEngine(nil) })
	if err := e.LoginRoom(context.Background(), room, express.User{UserID: user, UserName: user},
		express.RoomConfig{IsUserStatusNotify: true, Token: c.Token(user, nil)}); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return &msgClient{e: e, rec: rec}
}

// Sender and receivers on three different room replicas, and one receiver
// on the sender's replica (which hands the sender's messages to it
// directly, not through NATS): every receiver gets every broadcast exactly
// once and in the order sent, the sender none of its own; a custom command
// reaches only the users it names.
func TestRoomMessagesAcrossReplicas(t *testing.T) {
	c := newCluster(t)
	c.Room.MessageRate = 1000
	c.Start(discovery.Auth, discovery.Stream)
	r1, r2, r3 := c.Start(discovery.Room), c.Start(discovery.Room), c.Start(discovery.Room)
	const room = "msg-room"
	alice := msgLogin(t, c, []*node.Node{r1}, room, "alice")
	bob := msgLogin(t, c, []*node.Node{r2}, room, "bob")
	carol := msgLogin(t, c, []*node.Node{r3}, room, "carol")
	dave := msgLogin(t, c, []*node.Node{r3}, room, "dave")
	for name, cl := range map[string]*msgClient{"alice": alice, "bob": bob, "carol": carol} {
		testcluster.Eventually(t, name+" to see dave", func() bool {
			cl.rec.mu.Lock()
			defer cl.rec.mu.Unlock()
			return cl.rec.users["dave"]
		})
	}

	ctx := context.Background()
	const n = 300
	var want []string
	for i := range n {
		msg := fmt.Sprintf("m%03d", i)
		if _, err := carol.e.SendBroadcastMessage(ctx, room, msg); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		want = append(want, "carol:"+msg)
	}
	if err := carol.e.SendCustomCommand(ctx, room, "for-bob", []express.User{{UserID: "bob"}}); err != nil {
		t.Fatal(err)
	}
	receivers := map[string]*msgClient{"alice": alice, "bob": bob, "dave": dave}
	for name, cl := range receivers {
		testcluster.Eventually(t, name+" to get every message", func() bool { m, _ := cl.rec.count(); return m >= n })
	}
	testcluster.Eventually(t, "bob to get the command", func() bool { _, k := bob.rec.count(); return k == 1 })
	// Anything duplicated or late would show up by now, after the command
	// that was sent last.
	for name, cl := range receivers {
		if got := cl.rec.messages(); !slices.Equal(got, want) {
			t.Errorf("%s got %d messages, want %d in order; first difference at %d", name, len(got), len(want), firstDiff(got, want))
		}
	}
	for name, cl := range map[string]*msgClient{"alice": alice, "dave": dave} {
		if _, k := cl.rec.count(); k != 0 {
			t.Errorf("%s got a command meant for bob", name)
		}
	}
	if m, _ := carol.rec.count(); m != 0 {
		t.Errorf("carol was echoed %d of her own messages", m)
	}
	if got := bob.rec.cmds; !slices.Equal(got, []string{"carol:for-bob"}) {
		t.Errorf("bob's commands: %v", got)
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A thousand messages cost etcd nothing: its revision moves by at most a
// few (a heartbeat's lease renewal writes none; anything else unrelated).
func TestRoomMessagesWriteNothingToEtcd(t *testing.T) {
	c := newCluster(t)
	c.Room.MessageRate = 10000
	c.Start(discovery.Auth, discovery.Stream)
	r1, r2 := c.Start(discovery.Room), c.Start(discovery.Room)
	const room = "quiet-room"
	recv := msgLogin(t, c, []*node.Node{r1}, room, "recv")
	send := msgLogin(t, c, []*node.Node{r2}, room, "send")
	ctx := context.Background()
	revision := func() int64 {
		resp, err := c.Etcd.Get(ctx, "/onair/revision-probe")
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	// The logins' own writes (the room's life, counts) settle first: the
	// revision holds still for ten reads, 20 ms apart.
	last, still := revision(), 0
	eventually(t, "the logins' writes settle", func() bool {
		if r := revision(); r != last {
			last, still = r, 0
			return false
		}
		still++
		return still >= 10 // 200 ms without a write
	})
	before := revision()
	const n = 1000
	for i := range n {
		if _, err := send.e.SendBroadcastMessage(ctx, room, fmt.Sprint(i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	testcluster.Eventually(t, "every message to arrive", func() bool { m, _ := recv.rec.count(); return m == n })
	after := revision()
	t.Logf("etcd revision %d before and %d after %d messages", before, after, n)
	if after-before > 10 {
		t.Errorf("etcd revision moved by %d over %d messages, want at most 10", after-before, n)
	}
}

// NATS unreachable: a send answers UNAVAILABLE (1000037; 503 over REST)
// without waiting for its deadline, while logins and room state keep
// working; when NATS is back the replicas reconnect and resubscribe by
// themselves and messages flow again.
func TestRoomMessagesWithoutNATS(t *testing.T) {
	c := newCluster(t)
	c.Start(discovery.Auth, discovery.Stream)
	r1, r2 := c.Start(discovery.Room), c.Start(discovery.Room)
	web := restGateway(t, c)
	const room = "natsless-room"
	recv := msgLogin(t, c, []*node.Node{r1}, room, "recv")
	send := msgLogin(t, c, []*node.Node{r2}, room, "send")
	ctx := context.Background()
	if _, err := send.e.SendBroadcastMessage(ctx, room, "before"); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, "the first message", func() bool { m, _ := recv.rec.count(); return m == 1 })

	natsAddr := strings.TrimPrefix(c.NATS.URL(), "nats://")
	c.NATS.Close()
	testcluster.Eventually(t, "sends to fail with 1000037", func() bool {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := send.e.SendBroadcastMessage(sctx, room, "while-down")
		if err == nil {
			return false
		}
		if code := express.ErrorCode(err); code != int(errcode.ServiceUnavailable) {
			t.Fatalf("send without NATS: code %d (%v), want %d", code, err, errcode.ServiceUnavailable)
		}
		return true
	})
	// Over REST: 503 with the vendor's code, as a client's own session.
	sid := restLoginSession(t, web.URL, room, "rest-user")
	resp, err := http.Post(web.URL+"/v1/sessions/"+sid+"/messages", "application/json",
		strings.NewReader(`{"kind":"MESSAGE_KIND_BROADCAST","content":"rest"}`))
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Code int64 `json:"code"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || body.Code != int64(errcode.ServiceUnavailable) {
		t.Errorf("REST send without NATS: %d, code %d; want 503, %d", resp.StatusCode, body.Code, errcode.ServiceUnavailable)
	}
	// The rest of the room plane works: a login (above), room extra info.
	if err := send.e.SetRoomExtraInfo(ctx, room, "k", "v"); err != nil {
		t.Fatalf("room extra info without NATS: %v", err)
	}
	testcluster.Eventually(t, "the extra info to arrive", func() bool {
		recv.rec.mu.Lock()
		defer recv.rec.mu.Unlock()
		return recv.rec.infos["k"] == "v"
	})

	// NATS comes back on its address: the replicas reconnect and
	// resubscribe by themselves.
	var ns *embednats.Server
	testcluster.Eventually(t, "NATS to restart on "+natsAddr, func() bool {
		ns, err = embednats.Start(embednats.Config{ClientAddr: natsAddr})
		return err == nil
	})
	t.Cleanup(ns.Close)
	i := 0
	testcluster.Eventually(t, "messages to flow again", func() bool {
		i++
		_, _ = send.e.SendBroadcastMessage(ctx, room, fmt.Sprint("after-", i))
		time.Sleep(100 * time.Millisecond)
		msgs := recv.rec.messages()
		return strings.HasPrefix(msgs[len(msgs)-1], "send:after-")
	})
	for _, m := range recv.rec.messages() {
		if m == "send:while-down" {
			t.Errorf("a send that failed was delivered")
		}
	}
}

// restLoginSession logs a user in over REST and returns its session ID.
func restLoginSession(t *testing.T, base, room, user string) string {
	t.Helper()
	body := fmt.Sprintf(`{"app_id":%d,"user":{"user_id":%q,"user_name":%q},"token":%q,"config":{}}`,
		testcluster.AppID, user, user, mustMint(t, testcluster.AppID, user, testcluster.Secret))
	resp, err := http.Post(base+"/v1/rooms/"+room+":login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		SessionID string `json:"session_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.SessionID == "" {
		t.Fatalf("REST login: %d %v", resp.StatusCode, err)
	}
	return out.SessionID
}

// A message sent the moment another user's LoginRoom has returned reaches
// that user: LoginRoom returns once the user's event stream is open (the
// server delivers messages only to open streams), here with the receiver
// on another replica than the sender, so the message crosses NATS.
func TestMessageRightAfterLogin(t *testing.T) {
	c := newCluster(t)
	c.Room.MessageRate = 1000
	c.Start(discovery.Auth, discovery.Stream)
	r1, r2 := c.Start(discovery.Room), c.Start(discovery.Room)
	ctx := context.Background()
	for i := range 10 {
		room := fmt.Sprintf("fresh-%d", i)
		sender := msgLogin(t, c, []*node.Node{r1}, room, "sender")
		recv := msgLogin(t, c, []*node.Node{r2}, room, "recv")
		if _, err := sender.e.SendBroadcastMessage(ctx, room, "hello"); err != nil {
			t.Fatal(err)
		}
		testcluster.Eventually(t, fmt.Sprintf("the message sent right after the login in room %d", i), func() bool {
			m, _ := recv.rec.count()
			return m == 1
		})
	}
}
