// Package whipclient is the client side of a WHIP/WHEP exchange with a pion
// peer: gather a complete offer (OnAir's edges take no trickle ICE), post
// it, apply the answer. The SDK, `onair bench` and the tests all negotiate
// through it, so "gather, then exchange SDP" is written once.
package whipclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/pion/webrtc/v4"
)

// Offer creates pc's offer, sets it as the local description and returns it
// once ICE gathering is complete, with every candidate in it.
func Offer(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	return gather(ctx, pc, offer)
}

// Answer applies a remote offer to pc and returns pc's complete answer, as
// a WHIP/WHEP server does.
func Answer(ctx context.Context, pc *webrtc.PeerConnection, offer string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	return gather(ctx, pc, answer)
}

// gather sets d as pc's local description and waits for ICE gathering.
func gather(ctx context.Context, pc *webrtc.PeerConnection, d webrtc.SessionDescription) (string, error) {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}

// Post sends pc's complete offer to a WHIP or WHEP endpoint with the token
// as a bearer, applies the answer, and returns the session's URL (the
// answer's Location, made absolute against target).
func Post(ctx context.Context, pc *webrtc.PeerConnection, target, token string) (string, error) {
	offer, err := Offer(ctx, pc)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(offer))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("cannot reach the server at %s: %w", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return "", &StatusError{URL: target, Status: resp.Status, Code: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("%s answered without a Location", target)
	}
	if base, err := url.Parse(target); err == nil {
		if l, err := base.Parse(loc); err == nil {
			loc = l.String()
		}
	}
	return loc, pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)})
}

// StatusError is an answer other than 201 Created.
type StatusError struct {
	URL, Status string
	Code        int
	Body        string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s answered %s: %s", e.URL, e.Status, e.Body)
}

// Delete ends the session at loc (a URL Post returned) with a DELETE, as a
// WHIP/WHEP client leaves; "" does nothing. It is best effort: the edge
// also ends a session whose peer is gone.
func Delete(loc string) {
	if loc == "" {
		return
	}
	req, err := http.NewRequest(http.MethodDelete, loc, nil)
	if err != nil {
		return
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}
