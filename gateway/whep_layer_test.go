package gateway_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/errcode"
)

// TestWHEPBadLayer: a WHEP play asking for a layer the edge does not know
// is refused with 400 and the vendor's invalid-parameter code, before any
// stream is looked up; the known names are taken (the stream is not live:
// 409).
func TestWHEPBadLayer(t *testing.T) {
	base, _ := whipCluster(t)
	player := peer(t)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := player.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer := offerOf(t, player)
	tok := mint(t, "viewer", nil)
	wantCode := fmt.Sprintf("(code %d)", errcode.InvalidParameter)
	for _, tc := range []struct {
		layer string
		want  int
	}{
		{"bogus", http.StatusBadRequest},
		{"HIGH", http.StatusBadRequest},
		{"3", http.StatusBadRequest},
		{"high", http.StatusConflict},
		{"auto", http.StatusConflict},
		{"", http.StatusConflict},
	} {
		t.Run("layer="+tc.layer, func(t *testing.T) {
			body := wantStatus(t, "WHEP ?layer="+tc.layer, post(t, base+"/whep/1234567890/nostream?layer="+tc.layer,
				"application/sdp", tok, offer), tc.want)
			if tc.want == http.StatusBadRequest && !strings.Contains(body, wantCode) {
				t.Fatalf("body %q does not carry %s", body, wantCode)
			}
		})
	}
}
