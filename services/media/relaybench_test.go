package media_test

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/onair-dev/onair/internal/iceloopback"
	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/internal/testkit"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/services/media"
)

// stampedSource sends VP8 frames at 30 fps (a keyframe a second) whose
// filler carries a frame number, and remembers when each was written.
type stampedSource struct {
	*vp8Source
	sent sync.Map // uint32 -> time.Time
}

func newStampedSource(tb testing.TB) *stampedSource {
	v, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "pub")
	if err != nil {
		tb.Fatal(err)
	}
	a, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	if err != nil {
		tb.Fatal(err)
	}
	s := &stampedSource{vp8Source: &vp8Source{video: v, audio: a, stop: make(chan struct{})}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(time.Second / 30)
		defer t.Stop()
		for n := uint32(1); ; n++ {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			s.sent.Store(n, time.Now())
			_ = v.WriteSample(pmedia.Sample{Data: express.VP8Frame(n%30 == 1, 640, 360, 1200, n), Duration: time.Second / 30})
		}
	}()
	tb.Cleanup(s.close)
	return s
}

// hopPlayer is a raw pion player on one edge (Play with placed set, so the
// edge serves it itself): time to its first video packet, and the delay
// from each frame's write at the publisher to its first packet here.
type hopPlayer struct {
	first  time.Duration
	mu     sync.Mutex
	delays []time.Duration
	got    atomic.Int64
	// dups: frames whose first packet came again (a retransmission or a
	// replay), left out of delays.
	dups atomic.Int64
}

func playAt(tb testing.TB, e *edge, src *stampedSource, user string, mode mediav1.ResourceMode) *hopPlayer {
	tb.Helper()
	se := webrtc.SettingEngine{}
	iceloopback.Restrict(&se)
	api, err := media.NewAPI(se)
	if err != nil {
		tb.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			tb.Fatal(err)
		}
	}
	hp := &hopPlayer{}
	firstCh := make(chan time.Time, 1)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
			}
		}
		var vp codecs.VP8Packet
		seen := map[uint32]bool{}
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			now := time.Now()
			select {
			case firstCh <- now:
			default:
			}
			hp.got.Add(1)
			payload, err := vp.Unmarshal(p.Payload)
			if err != nil || vp.S != 1 || vp.PID != 0 || len(payload) < 14 {
				continue
			}
			hdr := 3
			if payload[0]&1 == 0 {
				hdr = 10
			}
			n := binary.BigEndian.Uint32(payload[hdr:])
			if seen[n] {
				hp.dups.Add(1)
				continue
			}
			seen[n] = true
			if at, ok := src.sent.Load(n); ok {
				hp.mu.Lock()
				hp.delays = append(hp.delays, now.Sub(at.(time.Time)))
				hp.mu.Unlock()
			}
		}
	})
	offer := testkit.Offer(tb, pc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := e.mc.Play(ctx, &mediav1.PlayRequest{AppId: testcluster.AppID, StreamId: "hop", UserId: user,
		Token: e.c.Token(user, nil), SdpOffer: offer, ResourceMode: mode, Placed: true})
	if err != nil {
		tb.Fatal(err)
	}
	if resp.GetRedirectAddr() != "" {
		tb.Fatalf("redirected to %s", resp.GetRedirectAddr())
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: resp.GetSdpAnswer()}); err != nil {
		tb.Fatal(err)
	}
	select {
	case at := <-firstCh:
		hp.first = at.Sub(start)
	case <-time.After(10 * time.Second):
		tb.Fatal("no video")
	}
	return hp
}

func (hp *hopPlayer) take() []time.Duration {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	d := hp.delays
	hp.delays = nil
	return d
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkRelayHops reports, for a player at the origin (0 hops), at an
// edge pulling from the origin (1 hop) and at an edge pulling from that
// one (2 hops, --relay-fanout 1): the time from Play to the first video
// packet (cold: the edge starts pulling for this player; warm: the edge
// already pulls), and the delay from the publisher's write of a frame to
// its first packet at the player, p50 and p99, over b.N seconds of video.
//
//	go test ./services/media -run '^$' -bench RelayHops -benchtime 10x
func BenchmarkRelayHops(b *testing.B) {
	c := testcluster.New(b)
	c.Media.RelayFanout = 1
	var edges []*edge
	for range 3 {
		edges = append(edges, at(b, c, c.Start(testcluster.AllRoles...)))
	}
	src := newStampedSource(b)
	edges[0].publish("host", "hop", src.vp8Source)
	time.Sleep(1500 * time.Millisecond) // a keyframe group in the origin's cache

	modes := []mediav1.ResourceMode{mediav1.ResourceMode_RESOURCE_MODE_ONLY_RTC,
		mediav1.ResourceMode_RESOURCE_MODE_ONLY_L3, mediav1.ResourceMode_RESOURCE_MODE_ONLY_L3}
	var cold, warm []*hopPlayer
	for hop, e := range edges {
		cold = append(cold, playAt(b, e, src, "cold", modes[hop]))
	}
	for hop, e := range edges {
		warm = append(warm, playAt(b, e, src, "warm", modes[hop]))
	}
	if up, _ := edges[2].n.MediaServer.Upstream(testcluster.AppID, "hop"); up != edges[1].n.Addr() {
		b.Fatalf("the third edge pulls from %q, want the second", up)
	}
	// A new player gets the cached keyframe group replayed at once (late
	// on purpose): let that pass before measuring live frames.
	time.Sleep(time.Second)
	for _, hp := range append(cold, warm...) {
		hp.take()
	}
	b.ResetTimer()
	for range b.N {
		time.Sleep(time.Second)
	}
	b.StopTimer()
	for i, e := range edges[1:] {
		up, pulls := e.n.MediaServer.Upstream(testcluster.AppID, "hop")
		b.Logf("edge %d pulls from %s, %d connections", i+1, up, pulls)
	}
	for hop := range edges {
		d := append(cold[hop].take(), warm[hop].take()...)
		b.ReportMetric(float64(cold[hop].first.Microseconds())/1000, "ms-first-cold-hop"+string(rune('0'+hop)))
		b.ReportMetric(float64(warm[hop].first.Microseconds())/1000, "ms-first-warm-hop"+string(rune('0'+hop)))
		b.ReportMetric(float64(pct(d, 0.5).Microseconds())/1000, "ms-p50-hop"+string(rune('0'+hop)))
		b.ReportMetric(float64(pct(d, 0.99).Microseconds())/1000, "ms-p99-hop"+string(rune('0'+hop)))
		b.Logf("hops %d: first video packet cold %v, warm %v; publisher write to player %d frames (%d first packets again) p50 %v p99 %v",
			hop, cold[hop].first.Round(time.Microsecond), warm[hop].first.Round(time.Microsecond), len(d),
			cold[hop].dups.Load()+warm[hop].dups.Load(),
			pct(d, 0.5).Round(time.Microsecond), pct(d, 0.99).Round(time.Microsecond))
	}
}
