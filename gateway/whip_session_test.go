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

	tp, err := express.NewTestPattern(express.TestPatternOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	offer := func() string {
		pc := peer(t)
		for _, tr := range tp.Tracks() {
			if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				t.Fatal(err)
			}
		}
		return offerOf(t, pc)
	}

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
