package media

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/sdk/express"
)

// Simulcast end to end: an SDK publisher sends the test pattern as three
// layers (1280x720, 640x360, 320x180); SDK players pinned to a layer get
// that layer's keyframes, an auto player on clean loopback climbs to the
// top layer and is told so.

// simulcastPattern starts a three-layer test pattern at 720p, 2.5 Mbit/s.
func simulcastPattern(t *testing.T) *express.TestPattern {
	t.Helper()
	tp, err := express.NewTestPattern(express.TestPatternOptions{Width: 1280, Height: 720, Bitrate: 2_500_000, Simulcast: true,
		GOP: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tp.Close)
	return tp
}

// layerSink records what one simulcast player gets: the picture size of
// every keyframe (read from the VP8 keyframe header of the reassembled
// frame), frames, audio packets, and the quality reports' layer.
type layerSink struct {
	*recorder
	mu       sync.Mutex
	sizes    []string // keyframe sizes, in arrival order
	frames   int
	audio    int
	quality  []express.PlayStreamQuality
	badFrame bool // a keyframe whose header did not parse
}

func (s *layerSink) WriteRTP(c webrtc.RTPCodecParameters, _ *rtp.Packet) {
	if c.MimeType == webrtc.MimeTypeOpus {
		s.mu.Lock()
		s.audio++
		s.mu.Unlock()
	}
}

func (s *layerSink) WriteVideoFrame(f media.Sample, key bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frames++
	if !key {
		return
	}
	w, h, ok := express.VP8Keyframe(f.Data)
	if !ok {
		s.badFrame = true
		return
	}
	s.sizes = append(s.sizes, fmt.Sprintf("%dx%d", w, h))
}

func (s *layerSink) OnPlayerQualityUpdate(q express.PlayStreamQuality, id string) {
	s.mu.Lock()
	s.quality = append(s.quality, q)
	s.mu.Unlock()
	s.recorder.OnPlayerQualityUpdate(q, id)
}

// keySizes is the distinct keyframe sizes received, in order of first
// arrival, and the latest one.
func (s *layerSink) keySizes() (distinct []string, last string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, z := range s.sizes {
		if !seen[z] {
			seen[z] = true
			distinct = append(distinct, z)
		}
		last = z
	}
	return distinct, last
}

func (s *layerSink) lastQuality() (express.PlayStreamQuality, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.quality) == 0 {
		return express.PlayStreamQuality{}, false
	}
	return s.quality[len(s.quality)-1], true
}

func (s *layerSink) counts() (frames, audio int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frames, s.audio
}

// playLayer logs a player into room1 at server and plays s1 with layer.
func (c *cluster) playLayer(t *testing.T, server, user string, mode express.ResourceMode, layer express.VideoLayer) *layerSink {
	t.Helper()
	v := c.login(server, "room1", user)
	s := &layerSink{recorder: v.recorder}
	v.e.SetEventHandler(s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := v.e.StartPlayingStream(ctx, "s1", s, express.PlayerConfig{ResourceMode: mode, VideoLayer: layer}); err != nil {
		t.Fatal(err)
	}
	return s
}

// publishSimulcast logs host in at server and publishes s1 from tp.
func (c *cluster) publishSimulcast(t *testing.T, server string, tp express.MediaSource) *client {
	t.Helper()
	host := c.login(server, "room1", "host")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := host.e.StartPublishingStream(ctx, "s1", tp, express.PublisherConfig{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Publishing", func() bool { return host.has("publisher s1 2 0") })
	return host
}

// wantOnly waits for keyframes of size want at s and then checks that no
// keyframe of another size ever arrived (a pinned player sees one layer).
func wantOnly(t *testing.T, name string, s *layerSink, want string) {
	t.Helper()
	eventually(t, name+": keyframes and frames", func() bool {
		d, _ := s.keySizes()
		f, _ := s.counts()
		return len(d) > 0 && f > 60
	})
	d, _ := s.keySizes()
	if len(d) != 1 || d[0] != want {
		t.Errorf("%s: keyframe sizes %v, want only %s", name, d, want)
	}
	s.mu.Lock()
	bad := s.badFrame
	s.mu.Unlock()
	if bad {
		t.Errorf("%s: a keyframe without a valid VP8 keyframe header", name)
	}
}

// TestSimulcastPinnedLayers: players pinned low, medium and high get only
// that layer's keyframes (320x180, 640x360, 1280x720), and their quality
// reports name the layer.
func TestSimulcastPinnedLayers(t *testing.T) {
	c := newCluster(t)
	n := c.Start(allRoles...)
	c.publishSimulcast(t, n.Addr(), simulcastPattern(t))
	pins := []struct {
		layer express.VideoLayer
		size  string
	}{
		{express.VideoLayerLow, "320x180"},
		{express.VideoLayerMedium, "640x360"},
		{express.VideoLayerHigh, "1280x720"},
	}
	sinks := make([]*layerSink, len(pins))
	for i, p := range pins {
		sinks[i] = c.playLayer(t, n.Addr(), fmt.Sprintf("pinned%d", p.layer), express.ResourceModeOnlyRTC, p.layer)
	}
	for i, p := range pins {
		name := fmt.Sprintf("pinned %d", p.layer)
		wantOnly(t, name, sinks[i], p.size)
		eventually(t, name+": a quality report", func() bool { _, ok := sinks[i].lastQuality(); return ok })
		if q, _ := sinks[i].lastQuality(); q.VideoLayer != p.layer || q.VideoPaused {
			t.Errorf("%s: quality report says layer %d paused %v", name, q.VideoLayer, q.VideoPaused)
		}
	}
}

// TestSimulcastAutoClimbsToHigh: an auto player on clean loopback starts
// where its initial estimate puts it and ends on the top layer (its
// estimate grows by probing); its quality report says high, not paused.
func TestSimulcastAutoClimbsToHigh(t *testing.T) {
	c := newCluster(t)
	n := c.Start(allRoles...)
	c.publishSimulcast(t, n.Addr(), simulcastPattern(t))
	s := c.playLayer(t, n.Addr(), "auto", express.ResourceModeOnlyRTC, express.VideoLayerAuto)
	eventually(t, "keyframes of the top layer", func() bool {
		_, last := s.keySizes()
		return last == "1280x720"
	})
	eventually(t, "a quality report of the top layer", func() bool {
		q, ok := s.lastQuality()
		return ok && q.VideoLayer == express.VideoLayerHigh && !q.VideoPaused
	})
	d, _ := s.keySizes()
	t.Logf("keyframe sizes in order: %v", d)
	// Frames keep coming on the top layer.
	f0, a0 := s.counts()
	eventually(t, "frames and audio on the top layer", func() bool {
		f, a := s.counts()
		return f > f0+60 && a > a0+50
	})
}

// layerSource is a MediaSource of n VP8 layers (RIDs l0, l1, ...) that
// sends nothing: enough to be offered.
type layerSource struct{ tracks []webrtc.TrackLocal }

func (s layerSource) Tracks() []webrtc.TrackLocal { return s.tracks }

// TestSimulcastFourLayersRefused: an offer of four RID layers of one track
// is refused with InvalidParameter (the edge takes at most three).
func TestSimulcastFourLayersRefused(t *testing.T) {
	c := newCluster(t)
	n := c.Start(allRoles...)
	host := c.login(n.Addr(), "room1", "host")
	var src layerSource
	for i := range 4 {
		tr, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "four",
			webrtc.WithRTPStreamID(fmt.Sprintf("l%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		src.tracks = append(src.tracks, tr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := host.e.StartPublishingStream(ctx, "s1", src, express.PublisherConfig{})
	if errcode.Code(express.ErrorCode(err)) != errcode.InvalidParameter {
		t.Fatalf("publishing four layers: %v, want %d", err, errcode.InvalidParameter)
	}
}

// TestSimulcastThroughRelay: players of a three-layer stream that play at
// a relay edge (not the stream's origin), one pinned low and one high,
// get only their layer's keyframes; an auto player there reaches the top.
func TestSimulcastThroughRelay(t *testing.T) {
	c := newCluster(t)
	c.Media.OriginRoom = 1 // after one player the origin takes no more L3 players
	origin := c.Start(allRoles...)
	relay := c.Start(allRoles...)
	c.publishSimulcast(t, origin.Addr(), simulcastPattern(t))
	var sinks []*layerSink
	layers := []express.VideoLayer{express.VideoLayerLow, express.VideoLayerLow, express.VideoLayerHigh, express.VideoLayerHigh}
	for i, l := range layers {
		sinks = append(sinks, c.playLayer(t, origin.Addr(), fmt.Sprintf("l3-%d", i), express.ResourceModeOnlyL3, l))
	}
	auto := c.playLayer(t, origin.Addr(), "l3-auto", express.ResourceModeOnlyL3, express.VideoLayerAuto)
	eventually(t, "players at the relay edge", func() bool { return playersOn(relay) >= 4 })
	t.Logf("players: origin %d, relay %d", playersOn(origin), playersOn(relay))
	for i, s := range sinks {
		want := "320x180"
		if layers[i] == express.VideoLayerHigh {
			want = "1280x720"
		}
		wantOnly(t, fmt.Sprintf("L3 player %d (layer %d)", i, layers[i]), s, want)
	}
	eventually(t, "the auto player's top layer", func() bool {
		_, last := auto.keySizes()
		return last == "1280x720"
	})
}

// TestPlayerBadVideoLayer: the Go SDK refuses a PlayerConfig.VideoLayer
// that names no layer with InvalidParameter (1000002), and the player is
// not left half-started: the same stream then plays.
func TestPlayerBadVideoLayer(t *testing.T) {
	c := newCluster(t)
	n := c.Start(allRoles...)
	c.publishSimulcast(t, n.Addr(), simulcastPattern(t))
	v := c.login(n.Addr(), "room1", "viewer")
	for _, l := range []express.VideoLayer{-1, express.VideoLayerHigh + 1, 42} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := v.e.StartPlayingStream(ctx, "s1", frameSink{v.recorder, "s1"}, express.PlayerConfig{VideoLayer: l})
		cancel()
		if errcode.Code(express.ErrorCode(err)) != errcode.InvalidParameter {
			t.Errorf("VideoLayer %d: %v, want %d", l, err, errcode.InvalidParameter)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := v.e.StartPlayingStream(ctx, "s1", frameSink{v.recorder, "s1"}, express.PlayerConfig{VideoLayer: express.VideoLayerLow}); err != nil {
		t.Fatalf("playing with a valid layer after the refusals: %v", err)
	}
}
