package sfu

import "github.com/pion/webrtc/v4"

// What the relay (package relay) asks of an UpTrack beyond a player's
// needs: a relayed track's upstream, and reading the track's cache at its
// own cursor to feed a downstream edge.

// Kind is the track's kind, audio or video.
func (u *UpTrack) Kind() webrtc.RTPCodecType { return u.kind }

// SetUpstream makes u a relayed track: its packets come from an upstream
// edge (Ingest), it is known to players by ssrc, and its keyframe requests
// go to pli. Call it before u is shared.
func (u *UpTrack) SetUpstream(ssrc uint32, pli func()) {
	u.ssrc.Store(ssrc)
	u.pli = pli
}

// Packet is a cached packet's metadata (Read): its payload is n bytes.
type Packet struct {
	TS     uint32
	PT     uint8
	Marker bool
	N      int
}

// Head is one past the highest packet the track cached, 0 before any.
func (u *UpTrack) Head() uint64 { return u.cache.head.Load() }

// KeyframeGroup is where the latest keyframe group starts and the live
// head; ok is false without a group.
func (u *UpTrack) KeyframeGroup() (start, head uint64, ok bool) { return u.cache.keyframeGroup() }

// Read copies cached packet ext's payload into dst; false if it is not
// cached.
func (u *UpTrack) Read(ext uint64, dst []byte, now int64) (Packet, bool) {
	p, ok := u.cache.get(ext, dst, now, false)
	return Packet{TS: p.ts, PT: p.pt, Marker: p.marker, N: p.n}, ok
}
