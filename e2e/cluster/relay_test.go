//go:build unix

package cluster

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/onair-dev/onair/internal/testkit"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/token04"
)

// relayPeer is a pion peer restricted to loopback.
func relayPeer(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	se := webrtc.SettingEngine{}
	express.LoopbackOnly(&se)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// whipPost sends pc's offer to url and applies the answer (201 expected).
func whipPost(t *testing.T, url, token string, pc *webrtc.PeerConnection) {
	t.Helper()
	offer := testkit.Offer(t, pc)
	var answer string
	testkit.Eventually(t, "a 201 from "+url, func() bool {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(offer))
		req.Header.Set("Content-Type", "application/sdp")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Logf("POST %s: %v (retrying)", url, err)
			time.Sleep(300 * time.Millisecond)
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusCreated {
			t.Logf("POST %s: %d %s (retrying)", url, resp.StatusCode, strings.TrimSpace(string(b)))
			time.Sleep(300 * time.Millisecond)
			return false
		}
		answer = string(b)
		return true
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
}

// mediaMetrics reads the onair_media_ samples of a media process's /metrics.
func mediaMetrics(httpAddr string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "onair_media_") {
			continue
		}
		name := l[:strings.IndexAny(l, "{ ")]
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		if err == nil {
			out[name] = v
		}
	}
	return out
}

// The real binary's cluster runs two media edges: a WHIP publisher on one,
// WHEP players (L3, the default) spread over both; the edge without the
// publisher pulls the stream once, however many players it serves, and
// every player gets video. The figures come from each edge's /metrics.
func TestLocalClusterRelaysToBothEdges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a multi-process cluster")
	}
	_, s := startCluster(t)
	gw := strings.TrimSuffix(s.Gateway, "/")
	httpOf := map[string]string{}
	for _, p := range s.Processes {
		if p.Role == "media" {
			httpOf[p.Name] = p.HTTPAddr
		}
	}
	if len(httpOf) != 2 {
		t.Fatalf("media processes %v, want media-1 and media-2", httpOf)
	}
	tok := func(user string) string {
		tk, err := token04.Mint(s.AppID, user, s.ServerSecret, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}

	// The publisher: VP8 at 30 fps, a keyframe a second.
	pub := relayPeer(t)
	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "pub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.AddTransceiverFromTrack(video, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tk := time.NewTicker(time.Second / 30)
		defer tk.Stop()
		for n := uint32(0); ; n++ {
			select {
			case <-stop:
				return
			case <-tk.C:
			}
			_ = video.WriteSample(pmedia.Sample{Data: express.VP8Frame(n%30 == 0, 640, 360, 1200, n), Duration: time.Second / 30})
		}
	}()
	whipPost(t, fmt.Sprintf("%s/whip/%d/relay-room/s1", gw, s.AppID), tok("host"), pub)

	var origin string
	testkit.Eventually(t, "the stream published on a media edge", func() bool {
		for name, addr := range httpOf {
			if mediaMetrics(addr)["onair_media_publishers"] == 1 {
				origin = name
				return true
			}
		}
		return false
	})

	const players = 8
	got := make([]atomic.Int64, players)
	for i := range players {
		pc := relayPeer(t)
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				got[i].Add(1)
			}
		})
		whipPost(t, fmt.Sprintf("%s/whep/%d/s1", gw, s.AppID), tok(fmt.Sprintf("viewer%d", i)), pc)
	}
	for i := range players {
		testkit.Eventually(t, fmt.Sprintf("video at player %d", i), func() bool { return got[i].Load() > 100 })
	}
	total := 0.0
	for name, addr := range httpOf {
		m := mediaMetrics(addr)
		t.Logf("%s: %v", name, m)
		total += m["onair_media_players"]
		if m["onair_media_players"] == 0 {
			t.Errorf("%s has no player", name)
		}
		if name == origin {
			if m["onair_media_relay_downstreams"] != 1 || m["onair_media_relay_upstreams"] != 0 {
				t.Errorf("origin %s: downstreams %v, upstreams %v, want 1 and 0", name, m["onair_media_relay_downstreams"], m["onair_media_relay_upstreams"])
			}
		} else if m["onair_media_relay_upstreams"] != 1 || m["onair_media_relay_received_packets_total"] == 0 {
			t.Errorf("relay %s: upstreams %v, received %v packets, want one upstream", name, m["onair_media_relay_upstreams"],
				m["onair_media_relay_received_packets_total"])
		}
	}
	if total != players {
		t.Errorf("%v players on the edges, want %d", total, players)
	}
}
