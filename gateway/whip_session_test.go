package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/keys"
	"github.com/onair-dev/onair/sdk/express"
)

// TestWHIPBoundToSession: a client that logged in over REST publishes over
// WHIP as its session (session_id): it is not logged in a second time, so
// its session is not kicked out, and the stream carries the extra_info of
// the URL. A session that is not live is refused with 401.
func TestWHIPBoundToSession(t *testing.T) {
	base, _ := whipCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok := mint(t, "ann", nil)

	login := post(t, base+"/v1/rooms/bound:login", "application/json",
		"", `{"app_id":1234567890,"user":{"user_id":"ann","user_name":"Ann"},"token":"`+tok+`","config":{"is_user_status_notify":true}}`)
	var session struct {
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal([]byte(wantStatus(t, "login", login, http.StatusOK)), &session); err != nil || session.SessionID == "" {
		t.Fatalf("login: %v %+v", err, session)
	}

	offer := publisherOffers(t)

	wantStatus(t, "WHIP with an unknown session",
		post(t, base+"/whip/1234567890/bound/cam-x?session_id=nope", "application/sdp", tok, offer()), http.StatusUnauthorized)

	q := url.Values{"session_id": {session.SessionID}, "extra_info": {"héllo"}}
	wantStatus(t, "WHIP bound to the session",
		post(t, base+"/whip/1234567890/bound/cam-1?"+q.Encode(), "application/sdp", tok, offer()), http.StatusCreated)

	// The stream is in the room with its extra info, and the session that
	// published it is still the one logged in.
	var streams struct {
		Streams []struct {
			StreamID  string `json:"stream_id"`
			ExtraInfo string `json:"extra_info"`
		} `json:"streams"`
	}
	for {
		resp, err := http.Get(base + "/v1/sessions/" + session.SessionID + "/streams")
		if err != nil {
			t.Fatal(err)
		}
		body := wantStatus(t, "list streams (the session is still live)", resp, http.StatusOK)
		resp.Body.Close()
		if err := json.Unmarshal([]byte(body), &streams); err != nil {
			t.Fatal(err)
		}
		if len(streams.Streams) == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the stream never showed up: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := streams.Streams[0]; s.StreamID != "cam-1" || s.ExtraInfo != "héllo" {
		t.Fatalf("stream %+v, want cam-1 with extra info héllo", s)
	}
	resp := post(t, base+"/v1/sessions/"+session.SessionID+":heartbeat", "application/json", "", `{}`)
	if body := wantStatus(t, "heartbeat", resp, http.StatusOK); strings.Contains(body, "code") && strings.Contains(body, "1002083") {
		t.Fatalf("heartbeat: %s", body)
	}
}

// TestWHIPBoundToAnotherUsersSession: a WHIP publish bound to a session
// must come with a token of that session's user. Ann's token with Bob's
// session is refused (401, 1002077) and changes nothing: no stream, Bob's
// session is not even kept alive by it (its lease is not renewed) and
// stays logged in. The room service's check refuses another app's
// expectation (1002076) the same way. Bob's own token with his session
// publishes.
func TestWHIPBoundToAnotherUsersSession(t *testing.T) {
	base, _, cli := whipClusterEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	login := func(user string) (token, session string) {
		token = mint(t, user, nil)
		resp := post(t, base+"/v1/rooms/pair:login", "application/json", "",
			`{"app_id":1234567890,"user":{"user_id":"`+user+`","user_name":"`+user+`"},"token":"`+token+`"}`)
		var s struct {
			SessionID string `json:"session_id"`
		}
		if err := json.Unmarshal([]byte(wantStatus(t, user+" login", resp, http.StatusOK)), &s); err != nil || s.SessionID == "" {
			t.Fatalf("%s login: %v %+v", user, err, s)
		}
		return token, s.SessionID
	}
	annToken, _ := login("ann")
	bobToken, bobSession := login("bob")

	// The time to live of Bob's session's lease: a heartbeat would set it
	// back to the full timeout.
	ttl := func() int64 {
		got, err := cli.Get(ctx, keys.SessionID(bobSession))
		if err != nil || len(got.Kvs) != 1 {
			t.Fatalf("Bob's session record: %v", err)
		}
		var rec keys.SessionRecord
		if err := json.Unmarshal(got.Kvs[0].Value, &rec); err != nil {
			t.Fatal(err)
		}
		l, err := cli.TimeToLive(ctx, clientv3.LeaseID(rec.Lease))
		if err != nil {
			t.Fatal(err)
		}
		if l.TTL <= 0 {
			t.Fatalf("Bob's session lease is gone (%d)", l.TTL)
		}
		if l.TTL > l.GrantedTTL-2 {
			t.Fatalf("Bob's session lease was renewed: %d s left of %d", l.TTL, l.GrantedTTL)
		}
		return l.TTL
	}
	time.Sleep(2500 * time.Millisecond) // for the lease to run down a little
	ttl()

	offer := publisherOffers(t)

	body := wantStatus(t, "WHIP with Ann's token and Bob's session",
		post(t, base+"/whip/1234567890/pair/cam-ann?session_id="+bobSession, "application/sdp", annToken, offer()),
		http.StatusUnauthorized)
	if !strings.Contains(body, "1002077") {
		t.Fatalf("refusal %q, want code 1002077", body)
	}
	for _, c := range []struct {
		body string
		code string
	}{
		{`{"user_id":"ann"}`, "1002077"},
		{`{"app_id":1,"user_id":"bob"}`, "1002076"},
	} {
		body := wantStatus(t, "heartbeat expecting "+c.body,
			post(t, base+"/v1/sessions/"+bobSession+":heartbeat", "application/json", "", c.body), http.StatusUnauthorized)
		if !strings.Contains(body, c.code) {
			t.Fatalf("heartbeat expecting %s: %q, want code %s", c.body, body, c.code)
		}
	}
	// Bob's own token and session, but another room in the URL: the
	// session cannot publish into a room it is not in.
	body = wantStatus(t, "WHIP with Bob's session into another room",
		post(t, base+"/whip/1234567890/elsewhere/cam-bob?session_id="+bobSession, "application/sdp", bobToken, offer()),
		http.StatusForbidden)
	if !strings.Contains(body, "1003025") {
		t.Fatalf("refusal %q, want code 1003025", body)
	}
	body = wantStatus(t, "heartbeat expecting another room",
		post(t, base+"/v1/sessions/"+bobSession+":heartbeat", "application/json", "", `{"room_id":"elsewhere"}`), http.StatusForbidden)
	if !strings.Contains(body, "1003025") {
		t.Fatalf("heartbeat expecting another room: %q, want code 1003025", body)
	}
	ttl() // not renewed by any of them

	// Bob's session is live, in a room with no stream.
	resp, err := http.Get(base + "/v1/sessions/" + bobSession + "/streams")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body := wantStatus(t, "Bob's streams", resp, http.StatusOK); strings.Contains(body, "cam-ann") {
		t.Fatalf("Ann's refused stream is in the room: %s", body)
	}

	wantStatus(t, "WHIP with Bob's token and Bob's session",
		post(t, base+"/whip/1234567890/pair/cam-bob?session_id="+bobSession, "application/sdp", bobToken, offer()),
		http.StatusCreated)
}

// publisherOffers returns a function that makes a new publisher's complete
// offer each call, sending a test pattern's audio and video.
func publisherOffers(t *testing.T) func() string {
	t.Helper()
	tp, err := express.NewTestPattern(express.TestPatternOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tp.Close)
	return func() string {
		pc := peer(t)
		for _, tr := range tp.Tracks() {
			if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				t.Fatal(err)
			}
		}
		return offerOf(t, pc)
	}
}
