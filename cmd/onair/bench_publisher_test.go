package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/internal/iceloopback"
	"github.com/onair-dev/onair/internal/whipclient"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/services/media/vp8"
)

// simulcastReceiver is a WHIP endpoint in the test: a pion peer that takes
// simulcast and counts, per RID, the keyframes and their picture sizes.
type simulcastReceiver struct {
	mu     sync.Mutex
	keys   map[string]int
	sizes  map[string][2]int
	tracks map[string]*webrtc.TrackRemote
	pc     *webrtc.PeerConnection
}

func (s *simulcastReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodDelete {
		return
	}
	offer, _ := io.ReadAll(r.Body)
	se := webrtc.SettingEngine{}
	iceloopback.Restrict(&se)
	m := &webrtc.MediaEngine{}
	ir := &interceptor.Registry{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	s.pc = pc
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if t.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		s.mu.Lock()
		s.tracks[t.RID()] = t
		s.mu.Unlock()
		for {
			p, _, err := t.ReadRTP()
			if err != nil {
				return
			}
			if f, ok := vp8.FrameStart(p.Payload); ok {
				if w, h, key := express.VP8Keyframe(f); key {
					s.mu.Lock()
					s.keys[t.RID()]++
					s.sizes[t.RID()] = [2]int{w, h}
					s.mu.Unlock()
				}
			}
		}
	})
	answer, err := whipclient.Answer(r.Context(), pc, string(offer))
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	w.Header().Set("Location", "/whip/session")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

func (s *simulcastReceiver) snapshot() (map[string]int, map[string][2]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys, sizes := map[string]int{}, map[string][2]int{}
	for k, v := range s.keys {
		keys[k] = v
	}
	for k, v := range s.sizes {
		sizes[k] = v
	}
	return keys, sizes
}

// The bench publisher's --simulcast sends three RID layers with their own
// picture sizes, and answers a keyframe request on one layer with a
// keyframe on that layer alone.
func TestPublisherSimulcast(t *testing.T) {
	recv := &simulcastReceiver{keys: map[string]int{}, sizes: map[string][2]int{}, tracks: map[string]*webrtc.TrackRemote{}}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, err := publish(ctx, fanoutConfig{whip: srv.URL + "/whip", token: "t", bitrate: 2_500_000, gop: time.Hour, simulcast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	defer func() {
		if recv.pc != nil {
			_ = recv.pc.Close()
		}
	}()
	want := map[string][2]int{"f": {1280, 720}, "h": {640, 360}, "q": {320, 180}}
	var keys map[string]int
	var sizes map[string][2]int
	for ctx.Err() == nil {
		if keys, sizes = recv.snapshot(); len(sizes) == 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for rid, wh := range want {
		if sizes[rid] != wh {
			t.Errorf("layer %q: keyframe size %v, want %v (all: %v)", rid, sizes[rid], wh, sizes)
		}
	}
	if t.Failed() {
		return
	}
	recv.mu.Lock()
	q := recv.tracks["q"]
	recv.mu.Unlock()
	if err := recv.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(q.SSRC())}}); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		if now, _ := recv.snapshot(); now["q"] > keys["q"] {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	after, _ := recv.snapshot()
	if after["q"] != keys["q"]+1 || after["f"] != keys["f"] || after["h"] != keys["h"] {
		t.Errorf("keyframes before a PLI on q %v, after %v: want one more on q only", keys, after)
	}
}
