package testkit

import (
	"context"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/internal/whipclient"
)

// Offer returns pc's complete offer (every candidate gathered, as OnAir's
// edges take no trickle ICE), set as its local description, to send to an
// edge's Publish or Play or a WHIP/WHEP endpoint.
func Offer(tb testing.TB, pc *webrtc.PeerConnection) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), EventuallyWithin)
	defer cancel()
	sdp, err := whipclient.Offer(ctx, pc)
	if err != nil {
		tb.Fatal(err)
	}
	return sdp
}

// Answer applies an edge's answer to pc.
func Answer(tb testing.TB, pc *webrtc.PeerConnection, sdp string) {
	tb.Helper()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		tb.Fatal(err)
	}
}
