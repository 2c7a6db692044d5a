package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/onair-dev/onair/gateway"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/internal/testkit"
	"github.com/onair-dev/onair/sdk/express"
)

// server is OnAir in this process: etcd, one node with every role, and the
// gateway (REST, WHIP/WHEP, console, SDK, the dev routes) on an httptest
// server, with a switch that breaks the room event streams.
type server struct {
	*testcluster.Cluster
	node *node.Node
	url  string

	mu        sync.Mutex
	events    map[*http.Request]context.CancelFunc
	refuseEvt atomic.Bool
}

func newServer(t *testing.T) *server {
	t.Helper()
	c := testcluster.New(t)
	c.Room.OnlineCountInterval = time.Second
	s := &server{Cluster: c, events: map[*http.Request]context.CancelFunc{}}
	s.node = c.Start(testcluster.AllRoles...)
	gw, err := gateway.New(context.Background(), gateway.Config{Etcd: c.Etcd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	wh := gateway.NewWHIP(gateway.WHIPConfig{Etcd: c.Etcd, RetryAfter: time.Second})
	wh.Register(gw)
	t.Cleanup(func() { wh.Close() })
	gw.ServeDevConsole(gateway.DevApp{AppID: testcluster.AppID, Secret: testcluster.Secret})

	mux := http.NewServeMux()
	// A blank page on the gateway's origin for the SDK tests (the
	// console's own page has a strict CSP and its own script).
	mux.HandleFunc("GET /e2e.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>sdk e2e</title><body><video id="v" autoplay muted playsinline></video></body>`)
	})
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/events") {
			gw.ServeHTTP(w, r)
			return
		}
		if s.refuseEvt.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"code":1000037,"message":"test: events are down","status":"UNAVAILABLE"}`)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		s.mu.Lock()
		s.events[r] = cancel
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.events, r)
			s.mu.Unlock()
			cancel()
		}()
		gw.ServeHTTP(w, r.WithContext(ctx))
	}))
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	s.url = web.URL
	return s
}

// breakEvents ends every open room event stream and refuses new ones until
// healEvents.
func (s *server) breakEvents() {
	s.refuseEvt.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cancel := range s.events {
		cancel()
	}
}

func (s *server) healEvents() { s.refuseEvt.Store(false) }

// browser is one headless Chromium; tabs are pages in it.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	needBrowser(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// Host candidates as 127.0.0.1, not mDNS names nobody here resolves.
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		cancelAlloc()
		t.Fatalf("start %s: %v", chromium, err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return &browser{t: t, ctx: ctx}
}

// page is one tab.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context
}

func (b *browser) open(name, url string) *page {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithListener(func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg = d.Exception.Description
			}
			b.t.Logf("%s: uncaught: %s (%s:%d)", name, msg, d.URL, d.LineNumber+1)
		}
	}))
	b.t.Cleanup(cancel)
	p := &page{t: b.t, name: name, ctx: ctx}
	// The tab lives as long as the context of its first Run: not one with
	// a timeout.
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("%s: open a tab: %v", name, err)
	}
	p.run(chromedp.Navigate(url))
	return p
}

func (p *page) run(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

// eval runs js (awaiting a promise) and decodes its value into out (when
// not nil).
func (p *page) eval(js string, out any) {
	p.t.Helper()
	if err := p.try(js, out); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

// try is eval that returns the error instead of failing.
func (p *page) try(js string, out any) error {
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err != nil || out == nil {
		return err
	}
	if len(raw) == 0 {
		raw = []byte("null")
	}
	return json.Unmarshal(raw, out)
}

// waitFor polls the boolean expression js until it holds.
func (p *page) waitFor(what, js string) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ok bool
		err := p.try("!!("+js+")", &ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			var log string
			_ = p.try(`JSON.stringify(window.T ? T.events.slice(-40) : [...document.querySelectorAll("#log li")].slice(-40).map(e => e.textContent))`, &log)
			p.t.Fatalf("%s: %s: not within 30 s (err %v); last events: %s", p.name, what, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *page) screenshot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(p.t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
}

// sdkPage opens the blank page and an engine on it whose every event is
// written down in T.events.
func (b *browser) sdkPage(name string, s *server) *page {
	p := b.open(name, s.url+"/e2e.html")
	var ok bool
	p.eval(fmt.Sprintf(`(async () => {
		const m = await import("/sdk/onair-express.js");
		const e = m.createEngine({ appID: %d });
		window.T = { m, e, events: [] };
		for (const name of ["roomStateChanged", "roomUserUpdate", "roomStreamUpdate", "roomOnlineUserCountUpdate",
			"roomStreamExtraInfoUpdate", "roomExtraInfoUpdate", "IMRecvBroadcastMessage", "publisherStateUpdate",
			"playerStateUpdate", "publishQualityUpdate", "playQualityUpdate", "playerRecvVideoFirstFrame", "tokenWillExpire"]) {
			e.on(name, (...args) => T.events.push([name, ...JSON.parse(JSON.stringify(args))]));
		}
		return true;
	})()`, testcluster.AppID), &ok)
	return p
}

// goClient is a Go SDK engine logged into a room.
type goClient struct {
	e   *express.Engine
	rec *recorder
}

func (s *server) goLogin(t *testing.T, roomID, userID string) *goClient {
	t.Helper()
	rec := &recorder{frames: map[string]int{}}
	e, err := express.CreateEngine(express.EngineProfile{AppID: testcluster.AppID, Server: s.node.Addr()}, rec)
	if err != nil {
		t.Fatal(err)
	}
	e.SetMediaSettings(express.LoopbackOnly)
	t.Cleanup(func() {
		done := make(chan struct{})
		e.DestroyEngine(func() { close(done) })
		<-done
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := e.LoginRoom(ctx, roomID, express.User{UserID: userID, UserName: userID},
		express.RoomConfig{Token: s.Token(userID, nil), IsUserStatusNotify: true}); err != nil {
		t.Fatal(err)
	}
	return &goClient{e: e, rec: rec}
}

// recorder writes down what the Go SDK tells, and keeps the VP8 frames it
// plays from the first keyframe on.
type recorder struct {
	express.BaseEventHandler
	testkit.Recorder
	mu       sync.Mutex // guards frames and kept
	frames   map[string]int
	kept     []media.Sample
	keptDone bool
}

func (r *recorder) add(s string) { r.Add(s) }

func (r *recorder) has(s string) bool { return r.Has(s) }

func (r *recorder) OnRoomStreamUpdate(t express.UpdateType, streams []express.Stream, _ string, _ string) {
	for _, s := range streams {
		r.add("stream " + t.String() + " " + s.StreamID)
	}
}

func (r *recorder) OnPlayerRecvVideoFirstFrame(streamID string) { r.add("first frame " + streamID) }

// sink is a Go SDK player's sink for one stream.
type sink struct {
	r        *recorder
	streamID string
}

func (s sink) WriteRTP(webrtc.RTPCodecParameters, *rtp.Packet) {}

func (s sink) WriteVideoFrame(f media.Sample, key bool) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.frames[s.streamID]++
	// One keyframe and the frames that depend on it, 15 to 45 of them: a
	// keyframe before 15 (one the edge asked for when a player joined)
	// starts over.
	frame := media.Sample{Data: append([]byte(nil), f.Data...), Duration: f.Duration}
	switch {
	case s.r.keptDone:
	case key && len(s.r.kept) >= 15:
		s.r.keptDone = true
	case key:
		s.r.kept = []media.Sample{frame}
	case len(s.r.kept) > 0:
		s.r.kept = append(s.r.kept, frame)
		s.r.keptDone = len(s.r.kept) >= 45
	}
}

func (r *recorder) framesOf(streamID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.frames[streamID]
}

func (r *recorder) keptFrames() []media.Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]media.Sample(nil), r.kept...)
}

// replay is a Go SDK media source that loops real VP8 frames (a keyframe
// and what follows it, as Chromium encoded them) with Opus silence: the
// SDK's own test pattern is VP8 headers and filler, which no real decoder
// paints.
type replay struct {
	video, audio *webrtc.TrackLocalStaticSample
	stop         chan struct{}
	wg           sync.WaitGroup
}

func newReplay(t *testing.T, frames []media.Sample) *replay {
	t.Helper()
	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "replay")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "replay")
	if err != nil {
		t.Fatal(err)
	}
	r := &replay{video: video, audio: audio, stop: make(chan struct{})}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for i := 0; ; i = (i + 1) % len(frames) {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			_ = video.WriteSample(media.Sample{Data: frames[i].Data, Duration: time.Second / 30})
		}
	}()
	go func() {
		defer r.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			_ = audio.WriteSample(media.Sample{Data: []byte{0xf8, 0xff, 0xfe}, Duration: 20 * time.Millisecond})
		}
	}()
	t.Cleanup(r.close)
	return r
}

func (r *replay) Tracks() []webrtc.TrackLocal { return []webrtc.TrackLocal{r.video, r.audio} }

func (r *replay) close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
}

// jsonString quotes s for JavaScript.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
