package web

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/onair-dev/onair/bench/netshape"
)

// Simulcast from the browser SDK, as issue 20 asks to see it:
//   - page A publishes its fake camera at 1280x720: the SDK sends three
//     layers (Chromium's own stats: three outbound-rtp with RIDs q, h, f);
//   - the edge receives all three: Go WHEP players pinned low, medium and
//     high render keyframes of three different sizes, smallest to largest;
//   - a Go player whose link is capped at 500 kbit/s (tc on lo, by its
//     pinned UDP port), in auto mode, plays the low layer; a clean one in
//     auto mode the high layer;
//   - page B plays with the SDK's videoLayer "low" and then "auto": its
//     playQualityUpdate reports the layer (low, then high) and that video
//     is not paused, and the decoded picture is the matching size.
//
// Chromium's layers ramp up with its own bandwidth estimate (fast on
// loopback) and the edge's estimate for a player needs some feedback, so
// every check waits for what a user would see, within a minute.
func TestSimulcast(t *testing.T) {
	needBrowser(t)
	shaper, err := netshape.NewShaper(context.Background())
	if err != nil {
		// As with the browser: a skip on a developer's machine without tc
		// (iproute2), a failure in CI.
		if os.Getenv("CI") == "" {
			t.Skipf("tc shaping in the test's namespace: %v (apt-get install iproute2)", err)
		}
		t.Fatalf("tc shaping in the test's namespace: %v", err)
	}
	t.Cleanup(func() { _ = shaper.Close(context.Background()) })

	s := newServer(t)
	b := newBrowser(t)
	const room, stream = "simulcast-room", "alice-720p"

	a := b.sdkPage("page A", s)
	var ok bool
	a.eval(fmt.Sprintf(`T.e.loginRoom(%q, %s, { userID: "alice" })`, room, jsonString(s.Token("alice", nil))), &ok)
	a.eval(`(async () => {
		T.cam = await T.e.createStream({ camera: { video: { width: 1280, height: 720 }, audio: true } });
		const s = T.cam.getVideoTracks()[0].getSettings();
		if (s.width !== 1280 || s.height !== 720) throw new Error("the fake camera gave " + s.width + "x" + s.height);
		return await T.e.startPublishingStream(`+jsonString(stream)+`, T.cam);
	})()`, nil)
	a.waitFor("A: PUBLISHING", `T.events.some(e => e[0] === "publisherStateUpdate" && e[1].state === "PUBLISHING")`)
	// The browser's view: three encodings, and each sends.
	a.waitFor("A: Chromium sends layers q, h and f", `(async () => {
		const pc = T.e._publishers.get(`+jsonString(stream)+`).pc;
		const rids = [];
		for (const s of (await pc.getStats()).values()) {
			if (s.type === "outbound-rtp" && s.kind === "video" && s.rid && s.framesEncoded > 0) rids.push(s.rid);
		}
		return rids.sort().join() === "f,h,q";
	})()`)

	want := map[string]string{"low": "320x180", "medium": "640x360", "high": "1280x720"}
	t.Run("the edge gets three layers", func(t *testing.T) {
		pinned := map[string]*whepPlayer{}
		for _, l := range []string{"low", "medium", "high"} {
			pinned[l] = s.playWHEP(t, "pinned-"+l, stream, l, nil)
		}
		for _, l := range []string{"low", "medium", "high"} {
			waitLong(t, fmt.Sprintf("the player pinned %s renders %s keyframes", l, want[l]), func() string {
				return pinned[l].size()
			}, want[l])
		}
	})
	t.Run("the SDK plays a chosen layer and reports it", func(t *testing.T) {
		// A browser handle whose pages fail this subtest, not its parent.
		sdkPlayLayers(t, s, &browser{t: t, ctx: b.ctx}, room, stream)
	})
	t.Run("auto: a capped link plays a lower layer, a clean one the top", func(t *testing.T) {
		autoLayers(t, s, shaper, stream, want)
	})
}

// autoLayers plays stream in auto mode on a link capped at 500 kbit/s and
// on a clean one.
func autoLayers(t *testing.T, s *server, shaper *netshape.Shaper, stream string, want map[string]string) {

	// Auto mode: a player capped at 500 kbit/s, and a clean one.
	port := freeUDPPort(t)
	if err := shaper.SetRate(context.Background(), port, 500_000); err != nil {
		t.Fatal(err)
	}
	n, err := netshape.NewNet(port, netshape.Link{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	capped := s.playWHEP(t, "capped", stream, "", n)
	clean := s.playWHEP(t, "clean", stream, "", nil)
	t.Cleanup(func() {
		if t.Failed() {
			_, pk, dr, _ := shaper.Stats(context.Background(), port)
			t.Logf("capped player: %d packets through the cap, %d dropped; layers %+v; %+v", pk, dr, capped.meter.Layers(), capped.meter.Report(time.Now()))
			t.Logf("clean player: layers %+v", clean.meter.Layers())
		}
	})
	waitLong(t, "the clean player (auto) plays the high layer", clean.size, want["high"])
	// The capped player gets a layer its link carries: below the top one
	// (issue 20 expects the low one, with layers at their nominal 150k /
	// 600k / 2.5M; Chromium's fake camera is simple to encode, its layers
	// run at about 150k / 360k / 750k, so medium may fit 500 kbit/s too),
	// and it plays: a second's worth of frames render (complete, their
	// reference chain intact), on that layer, with video not paused.
	fits := func() string {
		if sz := capped.size(); sz != want["low"] && sz != want["medium"] {
			return sz
		}
		return "low or medium"
	}
	waitLong(t, "the player capped at 500 kbit/s (auto) plays a layer below the top one", fits, "low or medium")
	capped.meter.Start(time.Now())
	waitLong(t, "the capped player renders 30 frames of a layer below the top one", func() string {
		if r := capped.meter.Report(time.Now()); r.Frames < 30 {
			return fmt.Sprintf("%d frames, %s", r.Frames, capped.size())
		}
		return fits()
	}, "low or medium")
	t.Logf("the capped player plays %s", capped.size())
	sent, packets, dropped, err := shaper.Stats(context.Background(), port)
	if err != nil {
		t.Fatal(err)
	}
	if packets == 0 {
		t.Fatalf("the capped player's traffic did not go through its tc class (port %d)", port)
	}
	t.Logf("capped player's link: %d bytes in %d packets through the cap, %d dropped at the bottleneck", sent, packets, dropped)
	t.Logf("capped player: %+v", capped.meter.Report(time.Now()))
	t.Logf("clean player: %+v", clean.meter.Report(time.Now()))

}

// sdkPlayLayers has page B play stream with the SDK's videoLayer "low",
// then "auto".
func sdkPlayLayers(t *testing.T, s *server, b *browser, room, stream string) {
	var ok bool
	pb := b.sdkPage("page B", s)
	pb.eval(fmt.Sprintf(`T.e.loginRoom(%q, %s, { userID: "bob" })`, room, jsonString(s.Token("bob", nil))), &ok)
	play := func(layer, report, height string) {
		t.Helper()
		pb.eval(`(async () => {
			document.getElementById("v").srcObject = await T.e.startPlayingStream(`+jsonString(stream)+`, { videoLayer: `+jsonString(layer)+` });
			T.events = [];
			return true;
		})()`, nil)
		pb.waitFor("B ("+layer+"): a quality report of layer "+report+" at "+height+"p, video not paused",
			`T.events.some(e => e[0] === "playQualityUpdate" && e[2].video.videoLayer === `+jsonString(report)+
				` && e[2].video.videoPaused === false && e[2].video.frameHeight === `+height+`)`)
		pb.waitFor("B ("+layer+"): the video element shows "+height+"p",
			`document.getElementById("v").videoHeight === `+height)
	}
	play("low", "low", "180")
	play("auto", "high", "720")

	var code float64
	pb.eval(`T.e.startPlayingStream(`+jsonString(stream)+`, { videoLayer: "best" }).then(() => 0, e => e.code)`, &code)
	if code != 1000002 {
		t.Errorf(`videoLayer "best": code %v, want 1000002`, code)
	}
}

// waitLong waits, up to a minute, until got() is want: layers ramp up with
// the estimates of Chromium and the edge.
func waitLong(t *testing.T, what string, got func() string, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		g := got()
		if g == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %q after a minute", what, g)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
