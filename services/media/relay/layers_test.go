package relay

import (
	"slices"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/services/media/sfu"
)

// threeLayers are a relayed stream's tracks: audio and three video layers
// of one group, with upstream IDs 1..4.
func threeLayers() ([]*sfu.UpTrack, []uint32) {
	vp8 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}}
	opus := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000}}
	tracks := []*sfu.UpTrack{sfu.NewUpTrack(nil, webrtc.RTPCodecTypeAudio, opus, 0)}
	g := sfu.NewUpTrack(nil, webrtc.RTPCodecTypeVideo, vp8, 0)
	for i, rid := range []string{"q", "h", "f"} {
		u := g
		if i > 0 {
			u = sfu.NewUpTrack(nil, webrtc.RTPCodecTypeVideo, vp8, 0)
		}
		u.SetLayer(g.Group(), rid)
		tracks = append(tracks, u)
	}
	return tracks, []uint32{1, 2, 3, 4}
}

// TestPullLayers: the pulling side asks for the layers forwarded here, a
// layer left keeps being asked for during layerLinger, and nothing is sent
// when nothing changed; audio is never a layer.
func TestPullLayers(t *testing.T) {
	tracks, ids := threeLayers()
	q, h, f := tracks[1], tracks[2], tracks[3]
	a, b := sfu.NewDownstream(), sfu.NewDownstream()
	type step struct {
		at   time.Duration
		do   func()
		want []uint32 // nil: nothing to send
	}
	none := func() {}
	steps := []step{
		{0, none, []uint32{}}, // a new connection is told: nothing yet
		{0, none, nil},
		{0, func() { q.Subscribe(a) }, []uint32{2}},
		{time.Second, func() { f.Subscribe(b) }, []uint32{2, 4}},
		{2 * time.Second, func() { f.Unsubscribe(b); h.Subscribe(b) }, []uint32{2, 3, 4}}, // f lingers
		{2*time.Second + layerLinger - time.Millisecond, none, nil},
		{2*time.Second + layerLinger, none, []uint32{2, 3}},
		{10 * time.Second, func() { q.Unsubscribe(a); h.Unsubscribe(b) }, nil},
		{10*time.Second + layerLinger, none, []uint32{}},
	}
	l := newPullLayers()
	l.setTracks(tracks, ids)
	t0 := time.Unix(1000, 0)
	for i, st := range steps {
		st.do()
		got := l.next(t0.Add(st.at))
		switch {
		case st.want == nil && got != nil:
			t.Fatalf("step %d: asked for %v, want nothing sent", i, got.GetTracks())
		case st.want != nil && got == nil:
			t.Fatalf("step %d: nothing sent, want %v", i, st.want)
		case st.want != nil && !slices.Equal(got.GetTracks(), st.want) && len(st.want)+len(got.GetTracks()) > 0:
			t.Fatalf("step %d: asked for %v, want %v", i, got.GetTracks(), st.want)
		}
	}
	if p, s := l.counts(); p != 0 || s != 3 {
		t.Fatalf("counts: %d pulled, %d skipped; want 0 and the 3 layers", p, s)
	}
	// A new upstream connection is told the current wants again.
	q.Subscribe(a)
	l.next(t0.Add(20 * time.Second))
	l.reconnected()
	if got := l.next(t0.Add(20 * time.Second)); got == nil || !slices.Equal(got.GetTracks(), []uint32{2}) {
		t.Fatalf("after reconnecting: %v, want [2]", got.GetTracks())
	}
}

// TestLayerStatsDue: a feed sends the layers' figures at once, again only
// when they changed and statsEvery has passed, and never for audio.
func TestLayerStatsDue(t *testing.T) {
	tracks, ids := threeLayers()
	layer := simulcastLayers(tracks)
	if !slices.Equal(layer, []bool{false, true, true, true}) {
		t.Fatalf("simulcast layers %v, want the three video tracks", layer)
	}
	var s layerStats
	now := time.Hour.Nanoseconds()
	steps := []struct {
		dt     time.Duration
		change func()
		want   bool
	}{
		{0, func() {}, true},
		{statsEvery, func() {}, false},
		{time.Millisecond, func() { tracks[3].SetLayerStats(2_500_000, 1280, 720) }, false}, // too soon
		{statsEvery, func() {}, true},
		{statsEvery, func() {}, false},
	}
	for i, st := range steps {
		now += st.dt.Nanoseconds()
		st.change()
		m := s.due(tracks, ids, layer, now)
		if (m != nil) != st.want {
			t.Fatalf("step %d: sent %v, want %v", i, m != nil, st.want)
		}
		if m != nil && len(m.GetLayers()) != 3 {
			t.Fatalf("step %d: %d layers' figures, want 3", i, len(m.GetLayers()))
		}
	}
	if got := s.sent[2]; got.GetBitrate() != 2_500_000 || got.GetWidth() != 1280 || got.GetHeight() != 720 {
		t.Fatalf("top layer's figures sent: %v", got)
	}
	for _, tc := range []struct {
		ns   int64
		want uint32
	}{{0, 1}, {999, 1}, {1500, 1}, {2_000_000, 2000}, {1 << 60, 1<<32 - 1}} {
		if got := ageMicros(tc.ns); got != tc.want {
			t.Errorf("ageMicros(%d) = %d, want %d", tc.ns, got, tc.want)
		}
	}
}
