package media_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/iceloopback"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/internal/testkit"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/services/media"
)

// These tests run a real edge (a node with every role, real etcd, real
// gRPC), real pion publishers that ignore keyframe requests, and real SDK
// players, all on loopback; faults are injected on one player's path with
// the package's test hooks.

type edge struct {
	c  *testcluster.Cluster
	n  *node.Node
	mc mediav1.MediaServiceClient
	tb testing.TB
}

func newEdge(tb testing.TB) *edge {
	c := testcluster.New(tb)
	n := c.Start(testcluster.AllRoles...)
	return &edge{c: c, n: n, mc: mediav1.NewMediaServiceClient(c.Dial(discovery.Media, false)), tb: tb}
}

// vp8Source sends VP8 frames (express.VP8Frame) at 30 fps with a keyframe
// every gop and never on request: a publisher that ignores PLI.
type vp8Source struct {
	video, audio *webrtc.TrackLocalStaticSample
	sendAudio    bool
	keyframes    atomic.Int64
	stop         chan struct{}
	wg           sync.WaitGroup
	paused       atomic.Bool
}

func newVP8Source(tb testing.TB, gop time.Duration, size int, sendAudio bool) *vp8Source {
	v, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "pub")
	if err != nil {
		tb.Fatal(err)
	}
	a, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	if err != nil {
		tb.Fatal(err)
	}
	s := &vp8Source{video: v, audio: a, sendAudio: sendAudio, stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(time.Second / 30)
		defer t.Stop()
		var last time.Time
		var n uint32
		audioDue := time.Now()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			if s.paused.Load() {
				continue
			}
			key := time.Since(last) >= gop
			if key {
				last = time.Now()
				s.keyframes.Add(1)
			}
			n++
			sz := size
			if key {
				sz *= 3
			}
			_ = v.WriteSample(pmedia.Sample{Data: express.VP8Frame(key, 640, 360, sz, n), Duration: time.Second / 30})
			for s.sendAudio && time.Since(audioDue) >= 0 {
				_ = a.WriteSample(pmedia.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond})
				audioDue = audioDue.Add(20 * time.Millisecond)
			}
		}
	}()
	tb.Cleanup(s.close)
	return s
}

func (s *vp8Source) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

// publisher is a raw pion publisher: it announces audio and video and reads
// its RTCP only to throw it away (no keyframe on request).
type publisher struct {
	pc *webrtc.PeerConnection
	id string
}

func (e *edge) publish(user, stream string, src *vp8Source) *publisher {
	e.tb.Helper()
	se := webrtc.SettingEngine{}
	iceloopback.Restrict(&se)
	api, err := media.NewAPI(se)
	if err != nil {
		e.tb.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		e.tb.Fatal(err)
	}
	for _, tr := range []webrtc.TrackLocal{src.audio, src.video} {
		t, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			e.tb.Fatal(err)
		}
		go func() {
			for {
				if _, _, err := t.Sender().ReadRTCP(); err != nil {
					return
				}
			}
		}()
	}
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	offer := testkit.Offer(e.tb, pc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.mc.Publish(ctx, &mediav1.PublishRequest{AppId: testcluster.AppID, RoomId: "room", StreamId: stream,
		UserId: user, UserName: user, Token: e.c.Token(user, nil), SdpOffer: offer})
	if err != nil {
		e.tb.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: resp.GetSdpAnswer()}); err != nil {
		e.tb.Fatal(err)
	}
	select {
	case <-connected:
	case <-ctx.Done():
		e.tb.Fatal("the publisher did not connect")
	}
	e.tb.Cleanup(func() { _ = pc.Close() })
	return &publisher{pc: pc, id: resp.GetSessionId()}
}

func (e *edge) stop(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.mc.Stop(ctx, &mediav1.StopRequest{SessionId: id}); err != nil {
		e.tb.Fatal(err)
	}
}

// sink records what one SDK player gets.
type sink struct {
	express.BaseEventHandler
	mu         sync.Mutex
	states     []string
	seqs       []uint16 // video, in arrival order
	ssrcs      map[uint32]bool
	firstFrame bool
	firstKey   bool
	frames     int
}

func (s *sink) WriteRTP(c webrtc.RTPCodecParameters, p *rtp.Packet) {
	if c.MimeType != webrtc.MimeTypeVP8 {
		return
	}
	s.mu.Lock()
	s.seqs = append(s.seqs, p.SequenceNumber)
	s.ssrcs[p.SSRC] = true
	s.mu.Unlock()
}

func (s *sink) WriteVideoFrame(_ pmedia.Sample, key bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frames == 0 {
		s.firstKey = key
	}
	s.frames++
}

func (s *sink) OnPlayerStateUpdate(st express.PlayerState, code int, _ string, id string) {
	s.mu.Lock()
	s.states = append(s.states, fmt.Sprintf("%d/%d", st, code))
	s.mu.Unlock()
}

func (s *sink) OnPlayerRecvVideoFirstFrame(string) {
	s.mu.Lock()
	s.firstFrame = true
	s.mu.Unlock()
}

func (s *sink) frameCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frames
}

// holes counts the sequence numbers missing between the first and the last
// video packet received from index from on.
func (s *sink) holes(from int) (holes, span int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seqs) <= from {
		return 0, 0
	}
	seen := map[int]bool{}
	base := s.seqs[from]
	lo, hi := 0, 0
	for _, q := range s.seqs[from:] {
		d := int(int16(q - base))
		seen[d] = true
		lo, hi = min(lo, d), max(hi, d)
	}
	return hi - lo + 1 - len(seen), hi - lo + 1
}

func (s *sink) seqCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seqs)
}

type viewer struct {
	e *express.Engine
	s *sink
}

func (e *edge) play(user, stream string) *viewer {
	e.tb.Helper()
	s := &sink{ssrcs: map[uint32]bool{}}
	eng, err := express.CreateEngine(express.EngineProfile{AppID: testcluster.AppID, Server: e.n.Addr()}, s)
	if err != nil {
		e.tb.Fatal(err)
	}
	eng.SetMediaSettings(express.LoopbackOnly)
	v := &viewer{e: eng, s: s}
	e.tb.Cleanup(v.destroy)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := eng.LoginRoom(ctx, "room", express.User{UserID: user, UserName: user}, express.RoomConfig{Token: e.c.Token(user, nil)}); err != nil {
		e.tb.Fatal(err)
	}
	if err := eng.StartPlayingStream(ctx, stream, s, express.PlayerConfig{}); err != nil {
		e.tb.Fatal(err)
	}
	return v
}

func (v *viewer) destroy() {
	if v.e == nil {
		return
	}
	done := make(chan struct{})
	v.e.DestroyEngine(func() { close(done) })
	<-done
	v.e = nil
}

// onlyPlayer is the edge's one player session created since before.
func onlyPlayer(tb testing.TB, s *media.Server, before []string) string {
	tb.Helper()
	var id string
	testcluster.Eventually(tb, "the player's session", func() bool {
		for _, x := range media.PlayerSessions(s) {
			known := false
			for _, b := range before {
				known = known || b == x
			}
			if !known {
				id = x
				return true
			}
		}
		return false
	})
	return id
}

// TestLateJoinerGetsCachedKeyframe: the publisher sent its only keyframe
// long ago and ignores keyframe requests; a player that joins now still
// gets a decodable keyframe first, from the edge's keyframe cache.
func TestLateJoinerGetsCachedKeyframe(t *testing.T) {
	e := newEdge(t)
	src := newVP8Source(t, time.Hour, 1500, true)
	src.paused.Store(true) // the one keyframe must reach the edge
	e.publish("host", "late", src)
	src.paused.Store(false)
	early := e.play("early", "late")
	testcluster.Eventually(t, "the early player's frames", func() bool { return early.s.frameCount() > 30 })

	late := e.play("late", "late")
	testcluster.Eventually(t, "the late joiner's first frame", func() bool {
		late.s.mu.Lock()
		defer late.s.mu.Unlock()
		return late.s.firstFrame
	})
	late.s.mu.Lock()
	firstKey := late.s.firstKey
	late.s.mu.Unlock()
	if !firstKey {
		t.Fatal("the late joiner's first frame is not a keyframe")
	}
	if n := src.keyframes.Load(); n != 1 {
		t.Fatalf("the publisher sent %d keyframes; the test needs it to send one", n)
	}
	testcluster.Eventually(t, "the late joiner's frames", func() bool { return late.s.frameCount() > 30 })
}

// TestPublisherReconnectSplices: the publisher publishes the stream again
// from a new peer connection (its retry); the player stays on its peer
// connection, sees one SSRC and contiguous sequence numbers, and never
// leaves Playing.
func TestPublisherReconnectSplices(t *testing.T) {
	e := newEdge(t)
	src := newVP8Source(t, 300*time.Millisecond, 1500, true)
	first := e.publish("host", "cont", src)
	v := e.play("viewer", "cont")
	testcluster.Eventually(t, "frames from the first publisher", func() bool { return v.s.frameCount() > 20 })

	second := e.publish("host", "cont", src)
	_ = first.pc.Close()
	before := v.s.frameCount()
	testcluster.Eventually(t, "frames from the second publisher", func() bool { return v.s.frameCount() > before+40 })

	v.s.mu.Lock()
	states, ssrcs := append([]string(nil), v.s.states...), len(v.s.ssrcs)
	v.s.mu.Unlock()
	if len(states) != 2 || states[0] != "1/0" || states[1] != "2/0" {
		t.Fatalf("player states %v, want PlayRequesting then Playing only", states)
	}
	if ssrcs != 1 {
		t.Fatalf("the player saw %d video SSRCs", ssrcs)
	}
	if holes, span := v.s.holes(0); holes != 0 {
		t.Fatalf("%d sequence numbers missing out of %d across the splice", holes, span)
	}
	_ = second
}

// TestLossRepairedFromSharedCache: one player's path drops every 7th video
// packet; its NACKs are answered from the track's shared cache, so it
// misses nothing, and the other player is untouched.
func TestLossRepairedFromSharedCache(t *testing.T) {
	e := newEdge(t)
	src := newVP8Source(t, time.Second, 3000, true)
	e.publish("host", "loss", src)
	clean := e.play("clean", "loss")
	cleanID := onlyPlayer(t, e.n.MediaServer, nil)
	lossy := e.play("lossy", "loss")
	lossyID := onlyPlayer(t, e.n.MediaServer, []string{cleanID})
	testcluster.Eventually(t, "frames", func() bool { return lossy.s.frameCount() > 10 && clean.s.frameCount() > 10 })

	from := lossy.s.seqCount()
	var n atomic.Int64
	media.DropVideo(e.n.MediaServer, lossyID, func(uint16) bool { return n.Add(1)%7 == 0 })
	testcluster.Eventually(t, "repairs", func() bool {
		return media.Stats(e.n.MediaServer, lossyID).Retransmits > 50 && n.Load() > 400
	})
	media.DropVideo(e.n.MediaServer, lossyID, func(uint16) bool { return false })
	time.Sleep(300 * time.Millisecond) // the last NACKs' round trip
	if holes, span := lossy.s.holes(from); holes != 0 {
		t.Fatalf("lossy player: %d of %d sequence numbers never arrived", holes, span)
	}
	if holes, _ := clean.s.holes(0); holes != 0 {
		t.Fatalf("clean player: %d holes", holes)
	}
	if st := media.Stats(e.n.MediaServer, cleanID); st.Retransmits != 0 {
		t.Fatalf("the clean player got %d retransmissions", st.Retransmits)
	}
	// Besides NACKs, the players' receiver reports reach their downtracks.
	testcluster.Eventually(t, "receiver reports", func() bool {
		return media.Stats(e.n.MediaServer, cleanID).Reports > 0 && media.Stats(e.n.MediaServer, lossyID).Reports > 0
	})
}

// TestSilentTrackDoesNotDelayPlay: the publisher announces audio and video
// and sends nothing yet; a player is answered and connected (Playing)
// before any media exists, then gets video although audio never comes.
func TestSilentTrackDoesNotDelayPlay(t *testing.T) {
	e := newEdge(t)
	src := newVP8Source(t, time.Second, 1500, false)
	src.paused.Store(true)
	e.publish("host", "silent", src)
	v := e.play("viewer", "silent") // returns once the edge answered
	testcluster.Eventually(t, "Playing before any media", func() bool {
		v.s.mu.Lock()
		defer v.s.mu.Unlock()
		return len(v.s.states) >= 2 && v.s.states[1] == "2/0"
	})
	if src.keyframes.Load() != 0 {
		t.Fatal("media flowed before the player was playing")
	}
	src.paused.Store(false)
	testcluster.Eventually(t, "video without audio", func() bool { return v.s.frameCount() > 10 })
}

// TestSlowPlayerDoesNotSlowOthers: one player's forwarding is made slow; it
// falls behind, skips ahead and counts drops of its own, while the other
// players lose nothing.
func TestSlowPlayerDoesNotSlowOthers(t *testing.T) {
	e := newEdge(t)
	src := newVP8Source(t, 500*time.Millisecond, 6000, true)
	e.publish("host", "slow", src)
	var ids []string
	var viewers []*viewer
	for i := range 3 {
		viewers = append(viewers, e.play(fmt.Sprintf("v%d", i), "slow"))
		ids = append(ids, onlyPlayer(t, e.n.MediaServer, ids))
	}
	testcluster.Eventually(t, "frames", func() bool { return viewers[2].s.frameCount() > 10 })
	from := []int{viewers[1].s.seqCount(), viewers[2].s.seqCount()}
	media.SlowPlayer(e.n.MediaServer, ids[0], 20*time.Millisecond)
	testcluster.Eventually(t, "the slow player's drops", func() bool { return media.Stats(e.n.MediaServer, ids[0]).Drops > 0 })
	time.Sleep(time.Second)
	for i, v := range viewers[1:] {
		if holes, span := v.s.holes(from[i]); holes != 0 || span < 100 {
			t.Fatalf("player %d: %d holes in %d packets while another was slow", i+1, holes, span)
		}
		if st := media.Stats(e.n.MediaServer, ids[i+1]); st.Drops != 0 {
			t.Fatalf("player %d dropped %d", i+1, st.Drops)
		}
	}
}

func heapInUse() uint64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// soak: rounds of a publisher and players coming and going; afterwards the
// edge holds no stream, session or subscription, its goroutines and heap
// are back near the baseline.
func soak(tb testing.TB, rounds, players int) {
	e := newEdge(tb)
	warm := func(r int) {
		stream := fmt.Sprintf("soak%d", r)
		src := newVP8Source(tb, time.Second, 3000, true)
		pub := e.publish(fmt.Sprintf("host%d", r), stream, src)
		var vs []*viewer
		for i := range players {
			vs = append(vs, e.play(fmt.Sprintf("r%dv%d", r, i), stream))
		}
		testcluster.Eventually(tb, "every player's frames", func() bool {
			for _, v := range vs {
				if v.s.frameCount() < 10 {
					return false
				}
			}
			return true
		})
		for _, v := range vs {
			v.destroy()
		}
		e.stop(pub.id)
		_ = pub.pc.Close()
		src.close()
		testcluster.Eventually(tb, "nothing left of the round", func() bool {
			o, s, sub := media.Live(e.n.MediaServer)
			return o == 0 && s == 0 && sub == 0
		})
	}
	warm(-1)
	time.Sleep(time.Second)
	baseGoroutines, baseHeap := runtime.NumGoroutine(), heapInUse()
	for r := range rounds {
		warm(r)
	}
	testcluster.Eventually(tb, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= baseGoroutines+5
	})
	var heap uint64
	testcluster.Eventually(tb, "heap back within 10% of the baseline", func() bool {
		heap = heapInUse()
		tb.Logf("heap %.1f MB, baseline %.1f MB", float64(heap)/1e6, float64(baseHeap)/1e6)
		time.Sleep(time.Second)
		return float64(heap) <= 1.10*float64(baseHeap)
	})
	tb.Logf("heap in use: baseline %.1f MB, after %d rounds of %d players %.1f MB; goroutines %d -> %d",
		float64(baseHeap)/1e6, rounds, players, float64(heap)/1e6, baseGoroutines, runtime.NumGoroutine())
}

// TestNothingLeftBehind: players and streams that finish leave nothing on
// the edge (a light soak; BenchmarkSoak is the heavy one).
func TestNothingLeftBehind(t *testing.T) { soak(t, 3, 8) }

// BenchmarkSoak: 10 rounds of 100 players and their publisher. The players
// run in this process too, so its heap counts what they hold as well as
// the edge's; e2e/media's TestEdgeProcessSoakFull measures the edge's own
// heap, with the edge in its own process.
//
//	go test ./services/media -run '^$' -bench Soak -benchtime 1x
func BenchmarkSoak(b *testing.B) {
	for range b.N {
		soak(b, 10, 100)
	}
}
