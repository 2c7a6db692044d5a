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

// Packet is a cached packet's metadata (Read): its payload is n bytes; At
// is when it arrived (unix nanoseconds).
type Packet struct {
	TS     uint32
	PT     uint8
	Marker bool
	N      int
	At     int64
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
	return Packet{TS: p.ts, PT: p.pt, Marker: p.marker, N: p.n, At: p.at}, ok
}

// Relayed simulcast layers. A pulling edge receives only the layers its
// players (and the edges it feeds) forward, yet chooses its players'
// layers among all of them: each layer's figures come from the upstream
// edge (SetLayerStats), and the pull learns from OnSubscribers when the
// layers forwarded here change.

// LayerStats are the figures a layer is chosen by: its bitrate (bits per
// second, 0 before it is measured) and the picture size of its latest
// keyframe (0 before one).
func (u *UpTrack) LayerStats() (rate int64, width, height int) {
	sz := u.size.Load()
	return u.rate.Load(), int(sz >> 16), int(sz & 0xffff)
}

// SetLayerStats sets a relayed layer's figures as its upstream edge
// measured them. From then on they are the layer's (its own measure of
// what arrives here, which a layer not received would not have, is not
// used). A zero size leaves the known one.
func (u *UpTrack) SetLayerStats(rate int64, width, height int) {
	u.upstreamStats.Store(true)
	u.rate.Store(rate)
	if width > 0 && height > 0 {
		u.size.Store(uint32(width)<<16 | uint32(height&0xffff))
	}
}

// OnSubscribers has f called whenever a player (or a downstream edge's
// feed) subscribes to u or leaves it, from the goroutine that does; f must
// not block. Call it before u is shared.
func (u *UpTrack) OnSubscribers(f func()) { u.onSubs = f }

// ForgetKeyframe drops u's keyframe group: a relayed layer that was not
// received for a while and is about to be again has only a stale group
// cached, which a player starting the layer must not be given; it waits
// for the group the upstream sends next (which becomes the track's even if
// it is the same keyframe as before).
func (u *UpTrack) ForgetKeyframe() {
	u.cache.mu.Lock()
	u.cache.key = 0
	u.cache.mu.Unlock()
	u.keyAt.Store(0)
	u.kfReset.Store(true)
}

// Packets is how many packets u has ingested.
func (u *UpTrack) Packets() int64 { return u.packets.Load() }
