package web

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/testkit"
	"github.com/onair-dev/onair/sdk/express"
)

// The browser SDK in Chromium, with Go SDK peers in the same room:
//   - two pages log in; B is told of A and of the Go client (user Add);
//   - A publishes its fake camera; B gets the stream Add with its extra info,
//     plays it and decodes frames (playerRecvVideoFirstFrame, framesDecoded);
//     A's session is not kicked by its own publishing;
//   - the Go SDK plays A's stream and gets VP8 frames;
//   - a Go SDK publisher (looping the frames Chromium encoded) is seen and
//     played in the browser, first frame and all;
//   - B's event stream breaks while users come and go: B resumes and is told
//     each change exactly once (no Add or Delete lost or repeated);
//   - A stops: B gets the Delete and its player goes to NO_PLAY.
func TestSDK(t *testing.T) {
	needBrowser(t)
	s := newServer(t)
	b := newBrowser(t)
	const room = "web-room"

	a := b.sdkPage("page A", s)
	pb := b.sdkPage("page B", s)
	gopher := s.goLogin(t, room, "gopher")

	login := func(p *page, user string) {
		var ok bool
		p.eval(fmt.Sprintf(`T.e.loginRoom(%q, %s, { userID: %q, userName: %q }, { userUpdate: true })`,
			room, jsonString(s.Token(user, nil)), user, user+" name"), &ok)
		if !ok {
			t.Fatalf("%s: loginRoom did not resolve true", p.name)
		}
	}
	login(a, "alice")
	login(pb, "bob")
	pb.waitFor("B: users alice and gopher added", `["alice", "gopher"].every(id => T.events.some(e => e[0] === "roomUserUpdate" && e[2] === "ADD" && e[3].some(u => u.userID === id)))`)
	pb.waitFor("B: LOGINED with room_session_id", `T.events.some(e => e[0] === "roomStateChanged" && e[2] === "LOGINED" && JSON.parse(e[4]).room_session_id)`)

	// A publishes its camera.
	a.eval(`(async () => {
		T.cam = await T.e.createStream({ camera: { video: true, audio: true } });
		return await T.e.startPublishingStream("alice-cam", T.cam, { extraInfo: "from chromium" });
	})()`, nil)
	a.waitFor("A: PUBLISHING", `T.events.some(e => e[0] === "publisherStateUpdate" && e[1].state === "PUBLISHING" && e[1].streamID === "alice-cam")`)
	pb.waitFor("B: stream alice-cam added with its extra info", `T.events.some(e => e[0] === "roomStreamUpdate" && e[2] === "ADD" && e[3].some(s => s.streamID === "alice-cam" && s.extraInfo === "from chromium" && s.user.userID === "alice"))`)

	// B plays it.
	pb.eval(`(async () => {
		const ms = await T.e.startPlayingStream("alice-cam");
		document.getElementById("v").srcObject = ms;
		return true;
	})()`, nil)
	pb.waitFor("B: PLAYING alice-cam", `T.events.some(e => e[0] === "playerStateUpdate" && e[1].state === "PLAYING" && e[1].streamID === "alice-cam")`)
	pb.waitFor("B: first frame of alice-cam", `T.events.some(e => e[0] === "playerRecvVideoFirstFrame" && e[1] === "alice-cam")`)
	pb.waitFor("B: the video element decodes frames", `document.getElementById("v").getVideoPlaybackQuality().totalVideoFrames > 0`)

	// A is still logged in: its own publishing did not kick it out.
	var kicked bool
	a.eval(`T.events.some(e => e[0] === "roomStateChanged" && (e[2] === "KICKOUT" || e[2] === "RECONNECTING"))`, &kicked)
	if kicked {
		t.Fatal("A: publishing kicked its own session out")
	}

	// The Go SDK plays the browser's stream.
	eventually(t, "Go: stream alice-cam added", func() bool { return gopher.rec.has("stream Add alice-cam") })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := gopher.e.StartPlayingStream(ctx, "alice-cam", sink{r: gopher.rec, streamID: "alice-cam"}, express.PlayerConfig{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Go: first frame of alice-cam", func() bool { return gopher.rec.has("first frame alice-cam") })
	eventually(t, "Go: a keyframe and the frames after it", func() bool {
		gopher.rec.mu.Lock()
		defer gopher.rec.mu.Unlock()
		return gopher.rec.keptDone
	})
	t.Logf("the Go SDK received %d VP8 frames of alice-cam", gopher.rec.framesOf("alice-cam"))

	// A Go SDK publisher, played in the browser.
	src := newReplay(t, gopher.rec.keptFrames())
	if err := gopher.e.StartPublishingStream(ctx, "gopher-cam", src, express.PublisherConfig{ExtraInfo: "from go"}); err != nil {
		t.Fatal(err)
	}
	pb.waitFor("B: stream gopher-cam added", `T.events.some(e => e[0] === "roomStreamUpdate" && e[2] === "ADD" && e[3].some(s => s.streamID === "gopher-cam" && s.extraInfo === "from go"))`)
	a.waitFor("A: stream gopher-cam added", `T.events.some(e => e[0] === "roomStreamUpdate" && e[2] === "ADD" && e[3].some(s => s.streamID === "gopher-cam"))`)
	a.eval(`(async () => {
		const v = document.getElementById("v");
		v.srcObject = await T.e.startPlayingStream("gopher-cam");
		return true;
	})()`, nil)
	a.waitFor("A: first frame of gopher-cam", `T.events.some(e => e[0] === "playerRecvVideoFirstFrame" && e[1] === "gopher-cam")`)
	a.waitFor("A: gopher-cam frames decoded", `(async () => {
		const v = document.getElementById("v");
		return v.getVideoPlaybackQuality().totalVideoFrames > 0 && v.videoWidth > 0;
	})()`)
	a.waitFor("A: a play quality report", `T.events.some(e => e[0] === "playQualityUpdate" && e[1] === "gopher-cam" && e[2].video.videoFPS > 0)`)

	// B's event stream breaks while users come and go.
	pb.waitFor("B: online count", `T.events.some(e => e[0] === "roomOnlineUserCountUpdate")`)
	s.breakEvents()
	pb.waitFor("B: RECONNECTING", `T.events.some(e => e[0] === "roomStateChanged" && e[2] === "RECONNECTING")`)
	carol := s.goLogin(t, room, "carol")
	s.goLogin(t, room, "dave")
	if err := carol.e.LogoutRoom(ctx, room); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // B keeps retrying against refusals meanwhile
	s.healEvents()
	pb.waitFor("B: RECONNECTED", `T.events.some(e => e[0] === "roomStateChanged" && e[2] === "RECONNECTED")`)
	pb.waitFor("B: carol came and went, dave came", `["ADD carol", "DELETE carol", "ADD dave"].every(want => T.events.some(e => e[0] === "roomUserUpdate" && e[3].some(u => e[2] + " " + u.userID === want)))`)
	// A marker user comes after: a repeat of what B was told during the
	// break would have come before B hears of erin.
	s.goLogin(t, room, "erin")
	pb.waitFor("B: erin came (marker)", `T.events.some(e => e[0] === "roomUserUpdate" && e[2] === "ADD" && e[3].some(u => u.userID === "erin"))`)
	var counts map[string]float64
	pb.eval(`(() => {
		const n = {};
		for (const e of T.events) {
			if (e[0] === "roomUserUpdate") for (const u of e[3]) n["user " + e[2] + " " + u.userID] = (n["user " + e[2] + " " + u.userID] || 0) + 1;
			if (e[0] === "roomStreamUpdate") for (const s of e[3]) n["stream " + e[2] + " " + s.streamID] = (n["stream " + e[2] + " " + s.streamID] || 0) + 1;
		}
		return n;
	})()`, &counts)
	for k, n := range counts {
		if n != 1 {
			t.Errorf("B was told %q %v times, want once: %v", k, n, counts)
		}
	}
	for _, want := range []string{"user ADD alice", "user ADD gopher", "user ADD carol", "user DELETE carol", "user ADD dave", "stream ADD alice-cam", "stream ADD gopher-cam"} {
		if counts[want] != 1 {
			t.Errorf("B was never told %q: %v", want, counts)
		}
	}

	// A stops publishing: B is told, and its player ends.
	a.eval(`T.e.stopPublishingStream("alice-cam")`, nil)
	pb.waitFor("B: stream alice-cam deleted", `T.events.some(e => e[0] === "roomStreamUpdate" && e[2] === "DELETE" && e[3].some(s => s.streamID === "alice-cam") && JSON.parse(e[4]).stream_delete_reason[0].code === 1)`)
	pb.waitFor("B: NO_PLAY for alice-cam", `T.events.some(e => e[0] === "playerStateUpdate" && e[1].state === "NO_PLAY" && e[1].streamID === "alice-cam")`)
	a.waitFor("A: NO_PUBLISH", `T.events.some(e => e[0] === "publisherStateUpdate" && e[1].state === "NO_PUBLISH" && e[1].streamID === "alice-cam")`)

	// Errors carry the vendor's codes.
	var code float64
	pb.eval(`T.e.startPlayingStream("no-such-stream").then(() => 0, e => e.code)`, &code)
	if code != 1004002 {
		t.Errorf("playing a stream that is not live: code %v, want 1004002", code)
	}
	c := b.sdkPage("page C", s)
	c.eval(fmt.Sprintf(`T.e.loginRoom(%q, "04bad", { userID: "cid" }).then(() => 0, e => e.code)`, room), &code)
	if code != 1002033 {
		t.Errorf("logging in with a bad token: code %v, want 1002033", code)
	}
	c.waitFor("C: LOGIN_FAILED", `T.events.some(e => e[0] === "roomStateChanged" && e[2] === "LOGIN_FAILED" && e[3] === 1002033)`)

	a.eval(`T.e.destroyEngine().then(() => true)`, nil)
	pb.waitFor("B: alice left", `T.events.some(e => e[0] === "roomUserUpdate" && e[2] === "DELETE" && e[3].some(u => u.userID === "alice"))`)
}

var eventually = testkit.Eventually
