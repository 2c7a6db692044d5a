package media_test

import (
	"context"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/iceloopback"
	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/internal/testkit"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
)

// TestPlayRefusesUnknownLayer: a Play RPC whose video_layer is not one of
// the enum's values (a client built against a newer API, or a bad one) is
// refused with InvalidParameter rather than played as some layer.
func TestPlayRefusesUnknownLayer(t *testing.T) {
	e := newEdge(t)
	var se webrtc.SettingEngine
	iceloopback.Restrict(&se)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	offer := testkit.Offer(t, pc)
	for _, l := range []mediav1.VideoLayer{-1, mediav1.VideoLayer_VIDEO_LAYER_HIGH + 1} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := e.mc.Play(ctx, &mediav1.PlayRequest{AppId: testcluster.AppID, StreamId: "s", UserId: "v",
			Token: e.c.Token("v", nil), SdpOffer: offer, VideoLayer: l})
		cancel()
		if errcode.Of(err) != errcode.InvalidParameter {
			t.Errorf("video_layer %d: %v, want %d", l, err, errcode.InvalidParameter)
		}
	}
}
