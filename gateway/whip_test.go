package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/internal/testkit"

	"github.com/pion/interceptor"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/gateway"
	"github.com/onair-dev/onair/internal/mediasession"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/token04"
)

const (
	whipApp    = testcluster.AppID
	whipSecret = testcluster.Secret
)

// whipCluster runs etcd, one node with every role and the gateway with
// WHIP/WHEP behind an httptest server.
func whipCluster(t *testing.T) (base string, n *node.Node) {
	t.Helper()
	base, n, _ = whipClusterEtcd(t)
	return base, n
}

// whipClusterEtcd is whipCluster with a client of its etcd, for tests that
// look at what the services store.
func whipClusterEtcd(t *testing.T) (base string, n *node.Node, cli *clientv3.Client) {
	t.Helper()
	ctx := context.Background()
	c := testcluster.New(t)
	cli = c.Etcd
	n = c.Start(testcluster.AllRoles...)
	gw, err := gateway.New(ctx, gateway.Config{Etcd: cli})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	wh := gateway.NewWHIP(gateway.WHIPConfig{Etcd: cli, RetryAfter: 2 * time.Second})
	wh.Register(gw)
	t.Cleanup(func() { wh.Close() })
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return srv.URL, n, cli
}

func mint(t *testing.T, user string, p *token04.Privilege) string {
	t.Helper()
	var opts *token04.Options
	if p != nil {
		opts = &token04.Options{Privilege: p}
	}
	tok, err := token04.Mint(whipApp, user, whipSecret, time.Hour, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func peer(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	se := webrtc.SettingEngine{}
	express.LoopbackOnly(&se)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)).
		NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func offerOf(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	return testkit.Offer(t, pc)
}

func post(t *testing.T, url, contentType, token, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func wantStatus(t *testing.T, what string, resp *http.Response, want int) string {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d (%s), want %d", what, resp.StatusCode, strings.TrimSpace(string(b)), want)
	}
	return string(b)
}

// roomWatcher writes down the users and streams a client is told of.
type roomWatcher struct {
	express.BaseEventHandler
	testkit.Recorder
}

func (r *roomWatcher) OnRoomUserUpdate(t express.UpdateType, users []express.User, _ string) {
	for _, u := range users {
		r.Add("user " + t.String() + " " + u.UserID)
	}
}

func (r *roomWatcher) OnRoomStreamUpdate(t express.UpdateType, streams []express.Stream, _ string, _ string) {
	for _, s := range streams {
		r.Add("stream " + t.String() + " " + s.StreamID + " " + s.User.UserID)
	}
}

func (r *roomWatcher) has(s string) bool { return r.Has(s) }

// TestWHIPWHEP: a WHIP publisher (plain HTTP + pion) goes live in a room it
// never logged into; a WHEP player receives decodable VP8 frames; DELETE
// ends the stream; and the status codes of RFC 9725 where due.
func TestWHIPWHEP(t *testing.T) {
	base, n := whipCluster(t)
	app := "1234567890"

	// Someone in the room sees the WHIP user and stream come and go.
	w := &roomWatcher{}
	eng, err := express.CreateEngine(express.EngineProfile{AppID: whipApp, Server: n.Addr()}, w)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.DestroyEngine(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := eng.LoginRoom(ctx, "live", express.User{UserID: "watcher", UserName: "watcher"},
		express.RoomConfig{Token: mint(t, "watcher", nil), IsUserStatusNotify: true}); err != nil {
		t.Fatal(err)
	}

	// OPTIONS advertises SDP.
	req, _ := http.NewRequest(http.MethodOptions, base+"/whip/"+app+"/live/cam", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Accept-Post") != "application/sdp" {
		t.Fatalf("OPTIONS: %d, Accept-Post %q", resp.StatusCode, resp.Header.Get("Accept-Post"))
	}

	tp, err := express.NewTestPattern(express.TestPatternOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	pub := peer(t)
	for _, tr := range tp.Tracks() {
		if _, err := pub.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer := offerOf(t, pub)
	token := mint(t, "encoder", &token04.Privilege{RoomID: "live", Login: true, Publish: true})

	wantStatus(t, "WHIP with a text body", post(t, base+"/whip/"+app+"/live/cam", "text/plain", token, offer), http.StatusUnsupportedMediaType)
	wantStatus(t, "WHIP without a token", post(t, base+"/whip/"+app+"/live/cam", "application/sdp", "", offer), http.StatusUnauthorized)
	wantStatus(t, "WHIP with a bad token", post(t, base+"/whip/"+app+"/live/cam", "application/sdp", "04garbage", offer), http.StatusUnauthorized)
	wantStatus(t, "WHIP with a token of another app's secret", post(t, base+"/whip/"+app+"/live/cam", "application/sdp",
		func() string {
			s, _ := token04.Mint(whipApp, "x", "ffffffffffffffffffffffffffffffff", time.Hour, nil)
			return s
		}(), offer),
		http.StatusUnauthorized)
	wantStatus(t, "WHIP with bad SDP", post(t, base+"/whip/"+app+"/live/cam", "application/sdp", token, "not sdp"), http.StatusBadRequest)

	resp = post(t, base+"/whip/"+app+"/live/cam", "application/sdp", token, offer)
	answer := wantStatus(t, "WHIP", resp, http.StatusCreated)
	pubLoc := resp.Header.Get("Location")
	if resp.Header.Get("Content-Type") != "application/sdp" || !strings.HasPrefix(pubLoc, "/whip/sessions/") {
		t.Fatalf("WHIP answer: Content-Type %q, Location %q", resp.Header.Get("Content-Type"), pubLoc)
	}
	// The session URL names the edge by its tag, not by its address.
	if id := strings.TrimPrefix(pubLoc, "/whip/sessions/"); strings.Contains(id, ".") {
		t.Fatalf("WHIP Location %q carries an edge address", pubLoc)
	} else if _, tagged := mediasession.Tag(id); !tagged {
		t.Fatalf("WHIP Location %q has no edge tag", pubLoc)
	}
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, "the WHIP user in the room", func() bool { return w.has("user Add encoder") })
	testcluster.Eventually(t, "the WHIP stream in the room", func() bool { return w.has("stream Add cam encoder") })

	// Another user publishing the same stream ID: 409.
	pub2 := peer(t)
	for _, tr := range tp.Tracks() {
		if _, err := pub2.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	wantStatus(t, "WHIP of a taken stream ID", post(t, base+"/whip/"+app+"/live/cam", "application/sdp", mint(t, "intruder", nil), offerOf(t, pub2)), http.StatusConflict)

	// WHEP.
	player := peer(t)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := player.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	var keyframes, frames, audio atomic.Int64
	player.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() == webrtc.RTPCodecTypeAudio {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				audio.Add(1)
			}
		}
		sb := samplebuilder.New(256, &codecs.VP8Packet{}, 90000)
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			sb.Push(pkt)
			for s := sb.Pop(); s != nil; s = sb.Pop() {
				if _, _, ok := express.VP8Keyframe(s.Data); ok {
					keyframes.Add(1)
				}
				if keyframes.Load() > 0 {
					frames.Add(1)
				}
			}
		}
	})
	playOffer := offerOf(t, player)
	viewerTok := mint(t, "viewer", nil)
	resp = post(t, base+"/whep/"+app+"/nostream", "application/sdp", viewerTok, playOffer)
	wantStatus(t, "WHEP of a stream that is not live", resp, http.StatusConflict)
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("WHEP 409 without Retry-After")
	}
	wantStatus(t, "WHEP with a bad token", post(t, base+"/whep/"+app+"/cam", "application/sdp", "04nope", playOffer), http.StatusUnauthorized)
	wantStatus(t, "WHEP with a JSON body", post(t, base+"/whep/"+app+"/cam", "application/json", viewerTok, playOffer), http.StatusUnsupportedMediaType)

	resp = post(t, base+"/whep/"+app+"/cam", "application/sdp", viewerTok, playOffer)
	answer = wantStatus(t, "WHEP", resp, http.StatusCreated)
	playLoc := resp.Header.Get("Location")
	if err := player.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, "a decodable keyframe over WHEP", func() bool { return keyframes.Load() > 0 })
	testcluster.Eventually(t, "30 frames over WHEP", func() bool { return frames.Load() >= 30 })
	testcluster.Eventually(t, "audio over WHEP", func() bool { return audio.Load() > 10 })

	// Trickle is acknowledged; ICE restart is not supported.
	patch := func(loc, ct, ifMatch string) int {
		req, _ := http.NewRequest(http.MethodPatch, base+loc, strings.NewReader("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n"))
		req.Header.Set("Content-Type", ct)
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := patch(playLoc, "application/trickle-ice-sdpfrag", ""); s != http.StatusNoContent {
		t.Fatalf("PATCH trickle: %d", s)
	}
	if s := patch(playLoc, "application/sdp", ""); s != http.StatusUnsupportedMediaType {
		t.Fatalf("PATCH with SDP: %d", s)
	}
	if s := patch(playLoc, "application/trickle-ice-sdpfrag", "*"); s != http.StatusMethodNotAllowed {
		t.Fatalf("PATCH ICE restart: %d", s)
	}

	del := func(loc string) int {
		req, _ := http.NewRequest(http.MethodDelete, base+loc, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := del(pubLoc); s != http.StatusOK {
		t.Fatalf("DELETE the WHIP session: %d", s)
	}
	testcluster.Eventually(t, "the stream's Delete", func() bool { return w.has("stream Delete cam encoder") })
	testcluster.Eventually(t, "the WHIP user's Delete", func() bool { return w.has("user Delete encoder") })
	testcluster.Eventually(t, "the WHEP player closed", func() bool {
		s := player.ConnectionState()
		return s == webrtc.PeerConnectionStateClosed || s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateDisconnected
	})
	if s := del(pubLoc); s != http.StatusNotFound {
		t.Fatalf("DELETE twice: %d, want 404", s)
	}
	if s := del("/whep/sessions/bm9wZQ.x"); s != http.StatusNotFound {
		t.Fatalf("DELETE of a session on an unknown edge: %d, want 404", s)
	}
	if s := del("/whep/sessions/0123456789ab-00"); s != http.StatusNotFound {
		t.Fatalf("DELETE of a session with an unknown edge tag: %d, want 404", s)
	}
}
