package media_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/onair-dev/onair/internal/iceloopback"
	"github.com/onair-dev/onair/internal/testcluster"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	"github.com/onair-dev/onair/sdk/express"
)

// Simulcast at the edge: an SDK publisher sends three marked layers; a raw
// pion player that offers no transport-cc, so that the REMB it sends is its
// bandwidth estimate, is moved between them and paused as its REMB says.

// Layer markers: every byte of a frame after the VP8 header and frame
// counter is its layer's marker, so every RTP packet's last byte names the
// layer it belongs to.
var layerSpecs = []struct {
	rid    string
	marker byte
	w, h   int
	rate   int
}{
	{"q", 1, 320, 180, 150_000},
	{"h", 2, 640, 360, 600_000},
	{"f", 3, 1280, 720, 2_500_000},
}

func layerSize(marker byte) string {
	for _, l := range layerSpecs {
		if l.marker == marker {
			return fmt.Sprintf("%dx%d", l.w, l.h)
		}
	}
	return "?"
}

// markedLayers is a MediaSource of three VP8 layers (RIDs q, h, f) and
// Opus audio, with a keyframe per layer every second and on request.
type markedLayers struct {
	video []*webrtc.TrackLocalStaticSample
	audio *webrtc.TrackLocalStaticSample
	key   [3]atomic.Bool
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newMarkedLayers(tb testing.TB) *markedLayers {
	s := &markedLayers{stop: make(chan struct{})}
	for _, l := range layerSpecs {
		v, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "pub",
			webrtc.WithRTPStreamID(l.rid))
		if err != nil {
			tb.Fatal(err)
		}
		s.video = append(s.video, v)
	}
	a, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	if err != nil {
		tb.Fatal(err)
	}
	s.audio = a
	s.wg.Add(1)
	go s.run()
	tb.Cleanup(func() { close(s.stop); s.wg.Wait() })
	return s
}

func (s *markedLayers) Tracks() []webrtc.TrackLocal {
	return []webrtc.TrackLocal{s.video[0], s.video[1], s.video[2], s.audio}
}

func (s *markedLayers) RequestLayerKeyframe(rid string) {
	for i, l := range layerSpecs {
		if l.rid == rid {
			s.key[i].Store(true)
		}
	}
}

func (s *markedLayers) run() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second / 30)
	defer t.Stop()
	var last [3]time.Time
	var n uint32
	audioDue := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		n++
		for i, l := range layerSpecs {
			key := s.key[i].Swap(false) || time.Since(last[i]) >= time.Second
			if key {
				last[i] = time.Now()
			}
			size := l.rate / 8 / 30
			if key {
				size *= 3
			}
			f := express.VP8Frame(key, l.w, l.h, size, n)
			hdr := 3
			if key {
				hdr = 10
			}
			for j := hdr + 4; j < len(f); j++ {
				f[j] = l.marker
			}
			_ = s.video[i].WriteSample(pmedia.Sample{Data: f, Duration: time.Second / 30})
		}
		for time.Since(audioDue) >= 0 {
			_ = s.audio.WriteSample(pmedia.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond})
			audioDue = audioDue.Add(20 * time.Millisecond)
		}
	}
}

// publishSDK publishes src as stream through the SDK (which stamps the
// layers' RIDs), logged in as user.
func (e *edge) publishSDK(user, stream string, src express.MediaSource) {
	e.tb.Helper()
	eng, err := express.CreateEngine(express.EngineProfile{AppID: testcluster.AppID, Server: e.n.Addr()}, nil)
	if err != nil {
		e.tb.Fatal(err)
	}
	eng.SetMediaSettings(express.LoopbackOnly)
	v := &viewer{e: eng}
	e.tb.Cleanup(v.destroy)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := eng.LoginRoom(ctx, "room", express.User{UserID: user, UserName: user}, express.RoomConfig{Token: e.c.Token(user, nil)}); err != nil {
		e.tb.Fatal(err)
	}
	if err := eng.StartPublishingStream(ctx, stream, src, express.PublisherConfig{}); err != nil {
		e.tb.Fatal(err)
	}
}

// videoPacket is what the REMB player noted of one video packet.
type videoPacket struct {
	seq    uint16
	ts     uint32
	marker byte   // the layer's
	key    string // the picture size if it begins a VP8 keyframe, else ""
}

// rembPlayer is a raw pion player that negotiates NACK and receiver
// reports but not transport-cc, and sends REMB with the rate in remb.
type rembPlayer struct {
	pc    *webrtc.PeerConnection
	id    string
	remb  atomic.Int64
	audio atomic.Int64

	mu     sync.Mutex
	video  []videoPacket
	layer  mediav1.VideoLayer // as WatchSession last said
	paused bool
	events int
}

func (e *edge) playREMB(user, stream string, remb int64) *rembPlayer {
	e.tb.Helper()
	p := &rembPlayer{}
	p.remb.Store(remb)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		e.tb.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		e.tb.Fatal(err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		e.tb.Fatal(err)
	}
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBGoogREMB}, webrtc.RTPCodecTypeVideo)
	se := webrtc.SettingEngine{}
	iceloopback.Restrict(&se)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)).
		NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		e.tb.Fatal(err)
	}
	p.pc = pc
	e.tb.Cleanup(func() { _ = pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			e.tb.Fatal(err)
		}
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if t.Kind() == webrtc.RTPCodecTypeAudio {
			for {
				if _, _, err := t.ReadRTP(); err != nil {
					return
				}
				p.audio.Add(1)
			}
		}
		go p.sendREMB(uint32(t.SSRC()))
		for {
			pkt, _, err := t.ReadRTP()
			if err != nil {
				return
			}
			p.note(pkt)
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		e.tb.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		e.tb.Fatal(err)
	}
	<-gathered
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.mc.Play(ctx, &mediav1.PlayRequest{AppId: testcluster.AppID, StreamId: stream, UserId: user,
		Token: e.c.Token(user, nil), SdpOffer: pc.LocalDescription().SDP, ResourceMode: mediav1.ResourceMode_RESOURCE_MODE_ONLY_RTC})
	if err != nil {
		e.tb.Fatal(err)
	}
	p.id = resp.GetSessionId()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: resp.GetSdpAnswer()}); err != nil {
		e.tb.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(context.Background())
	e.tb.Cleanup(wcancel)
	watch, err := e.mc.WatchSession(wctx, &mediav1.WatchSessionRequest{SessionId: p.id})
	if err != nil {
		e.tb.Fatal(err)
	}
	go func() {
		for {
			ev, err := watch.Recv()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.layer, p.paused = ev.GetVideoLayer(), ev.GetVideoPaused()
			p.events++
			p.mu.Unlock()
		}
	}()
	return p
}

// sendREMB sends the player's REMB about the video SSRC ten times a
// second until the connection closes.
func (p *rembPlayer) sendREMB(ssrc uint32) {
	for {
		err := p.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(p.remb.Load()), SSRCs: []uint32{ssrc}}})
		if err != nil && p.pc.ConnectionState() == webrtc.PeerConnectionStateClosed {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *rembPlayer) note(pkt *rtp.Packet) {
	v := videoPacket{seq: pkt.SequenceNumber, ts: pkt.Timestamp}
	if n := len(pkt.Payload); n > 0 {
		v.marker = pkt.Payload[n-1]
	}
	var d codecs.VP8Packet
	if b, err := d.Unmarshal(pkt.Payload); err == nil && d.S == 1 && d.PID == 0 {
		if w, h, ok := express.VP8Keyframe(b); ok {
			v.key = fmt.Sprintf("%dx%d", w, h)
		}
	}
	p.mu.Lock()
	p.video = append(p.video, v)
	p.mu.Unlock()
}

// state is what WatchSession last said and how many video packets came.
func (p *rembPlayer) state() (layer mediav1.VideoLayer, paused bool, video int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.layer, p.paused, len(p.video)
}

// lastMarker is the layer of the latest video packet.
func (p *rembPlayer) lastMarker() byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.video) == 0 {
		return 0
	}
	return p.video[len(p.video)-1].marker
}

// TestSimulcastFollowsREMB: an auto player's REMB goes 5 Mbit/s, 700
// kbit/s, 60 kbit/s, 5 Mbit/s: it gets the top layer, then a lower one,
// then its video pauses while audio plays on, then video resumes on the
// top layer. WatchSession says so each time. At every switch its
// sequence numbers run on without a hole, its timestamps move forward,
// and the first packet of the new layer begins a keyframe of that layer's
// size.
func TestSimulcastFollowsREMB(t *testing.T) {
	e := newEdge(t)
	e.publishSDK("host", "sim", newMarkedLayers(t))
	p := e.playREMB("viewer", "sim", 5_000_000)

	high := func() bool {
		l, paused, _ := p.state()
		return l == mediav1.VideoLayer_VIDEO_LAYER_HIGH && !paused && p.lastMarker() == 3
	}
	testcluster.Eventually(t, "the top layer at 5 Mbit/s", high)

	p.remb.Store(700_000)
	testcluster.Eventually(t, "a lower layer at 700 kbit/s", func() bool {
		l, paused, _ := p.state()
		m := p.lastMarker()
		return !paused && ((l == mediav1.VideoLayer_VIDEO_LAYER_MEDIUM && m == 2) || (l == mediav1.VideoLayer_VIDEO_LAYER_LOW && m == 1))
	})

	p.remb.Store(60_000)
	testcluster.Eventually(t, "video paused at 60 kbit/s", func() bool {
		_, paused, _ := p.state()
		return paused
	})
	// Audio plays on; video stops (what was in flight when the pause
	// began aside: let 25 audio packets, half a second, pass first).
	a0 := p.audio.Load()
	testcluster.Eventually(t, "audio while paused", func() bool { return p.audio.Load() > a0+25 })
	_, _, v0 := p.state()
	a1 := p.audio.Load()
	testcluster.Eventually(t, "more audio while paused", func() bool { return p.audio.Load() > a1+50 })
	if _, paused, v1 := p.state(); !paused || v1 != v0 {
		t.Fatalf("while paused: %d video packets arrived (paused %v)", v1-v0, paused)
	}

	p.remb.Store(5_000_000)
	testcluster.Eventually(t, "the top layer again at 5 Mbit/s", high)
	testcluster.Eventually(t, "frames after resuming", func() bool { _, _, v := p.state(); return v > v0+100 })

	p.mu.Lock()
	video := append([]videoPacket(nil), p.video...)
	p.mu.Unlock()
	var path []string
	switches := 0
	for i := 1; i < len(video); i++ {
		prev, cur := video[i-1], video[i]
		if cur.marker == prev.marker {
			continue
		}
		switches++
		path = append(path, layerSize(cur.marker))
		if cur.seq != prev.seq+1 {
			t.Errorf("switch %d (%s to %s): sequence number %d follows %d", switches, layerSize(prev.marker), layerSize(cur.marker), cur.seq, prev.seq)
		}
		if d := int32(cur.ts - prev.ts); d <= 0 || d > 10*90000 {
			t.Errorf("switch %d: timestamp moves by %d", switches, d)
		}
		if want := layerSize(cur.marker); cur.key != want {
			t.Errorf("switch %d: the first packet of the %s layer begins %q, want a %s keyframe", switches, want, cur.key, want)
		}
		// No hole around the switch either (reordering allowed).
		lo, hi := max(i-20, 0), min(i+20, len(video))
		seen := map[uint16]bool{}
		for _, v := range video[lo:hi] {
			seen[v.seq] = true
		}
		for s := video[lo].seq; s != video[hi-1].seq; s++ {
			if !seen[s] {
				t.Errorf("switch %d: sequence number %d missing near the switch", switches, s)
			}
		}
	}
	t.Logf("layers after each switch: %v", path)
	if switches < 3 {
		t.Fatalf("%d layer switches seen, want at least 3 (down, pause/resume, up)", switches)
	}
}
