package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/services/media/vp8"
)

// UpTrack is one track a publisher sends: it reads the publisher's RTP,
// files every packet in the track's packet cache (marking keyframe groups)
// and wakes the subscribers whose downtracks forward it. It writes to no
// player itself: the per-player work runs in each subscriber's turns on
// the forwarding pool, so it spreads over every core and a slow player
// delays no one else. A relayed track (SetUpstream) is fed by the relay
// instead, through the same Ingest.
type UpTrack struct {
	kind webrtc.RTPCodecType
	// group is the publisher track this is a layer of: the simulcast
	// layers (RIDs) of one track share it, so a player switches between
	// them; a track without simulcast is a group of one. rid is the
	// layer's RTP stream ID ("" without simulcast).
	group *LayerGroup
	rid   string
	pc    *webrtc.PeerConnection // the publisher's, for keyframe requests
	// pli asks for a keyframe instead when there is no publisher peer
	// connection (a relayed track: SetUpstream).
	pli func()

	mu     sync.Mutex
	codec  webrtc.RTPCodecParameters // negotiated, then what arrives
	remote *webrtc.TrackRemote

	vcodec    atomic.Uint32 // codec, for keyframe detection
	clockRate atomic.Uint32
	ssrc      atomic.Uint32 // the publisher's SSRC, once media arrives
	cache     *packetCache
	subs      atomic.Pointer[[]*Player]
	subMu     sync.Mutex
	lastPLI   atomic.Int64
	pliEvery  time.Duration
	packets   atomic.Int64
	keyframes atomic.Int64
	kf        keyframeTracker // owned by the goroutine that ingests
	meter     rateMeter       // likewise
	// keyAt is when the latest keyframe began arriving (unix ns): a layer
	// switch starts at a keyframe this fresh, or asks for a new one. size
	// is the picture size it announced (VP8: width<<16 | height), 0 unknown.
	keyAt atomic.Int64
	size  atomic.Uint32
	// rate is the layer's bitrate (bits/s) over the last rateWindow, kept
	// by the ingesting goroutine, its only writer.
	rate atomic.Int64
	// A relayed layer (upstream.go): rate and size come from the upstream
	// edge's figures once upstreamStats is set (the layer may not be
	// received here at all); kfReset asks the ingesting goroutine to forget
	// the keyframe it tracks; onSubs is told when subscribers come or go.
	upstreamStats atomic.Bool
	kfReset       atomic.Bool
	onSubs        func()
	done          chan struct{}
	closeOnce     sync.Once
}

// Cache bounds: about a second of video at a few Mbit/s, growing to keep
// a long keyframe group; a few seconds of audio.
const (
	videoCacheSlots    = 512
	maxVideoCacheSlots = 8192
	audioCacheSlots    = 256
	cacheMaxAge        = time.Second
)

// NewUpTrack is a track of kind, negotiated with codec c, whose keyframe
// requests go to pc's publisher at most once per pliEvery (a relayed track
// has no pc: SetUpstream).
func NewUpTrack(pc *webrtc.PeerConnection, kind webrtc.RTPCodecType, c webrtc.RTPCodecParameters, pliEvery time.Duration) *UpTrack {
	u := &UpTrack{kind: kind, group: &LayerGroup{}, pc: pc, codec: c, pliEvery: pliEvery, done: make(chan struct{})}
	if kind == webrtc.RTPCodecTypeVideo {
		u.cache = newPacketCache(videoCacheSlots, maxVideoCacheSlots, int64(cacheMaxAge))
	} else {
		u.cache = newPacketCache(audioCacheSlots, audioCacheSlots, int64(cacheMaxAge))
	}
	u.setCodec(c)
	empty := []*Player{}
	u.subs.Store(&empty)
	return u
}

func (u *UpTrack) setCodec(c webrtc.RTPCodecParameters) {
	u.mu.Lock()
	u.codec = c
	u.mu.Unlock()
	u.vcodec.Store(uint32(codecOf(c.MimeType)))
	cr := c.ClockRate
	if cr == 0 {
		cr = 90000
	}
	u.clockRate.Store(cr)
}

// Codec is the track's codec: negotiated, then what arrives.
func (u *UpTrack) Codec() webrtc.RTPCodecParameters {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.codec
}

// Subscribe has s woken by the track's packets.
func (u *UpTrack) Subscribe(s *Player) {
	u.subMu.Lock()
	defer u.subMu.Unlock()
	old := *u.subs.Load()
	for _, x := range old {
		if x == s {
			return
		}
	}
	next := append(append(make([]*Player, 0, len(old)+1), old...), s)
	u.subs.Store(&next)
	if u.onSubs != nil {
		u.onSubs()
	}
}

// Unsubscribe stops waking s.
func (u *UpTrack) Unsubscribe(s *Player) {
	u.subMu.Lock()
	defer u.subMu.Unlock()
	old := *u.subs.Load()
	next := make([]*Player, 0, len(old))
	for _, x := range old {
		if x != s {
			next = append(next, x)
		}
	}
	u.subs.Store(&next)
	if u.onSubs != nil && len(next) != len(old) {
		u.onSubs()
	}
}

// Subscribers is how many players the track wakes.
func (u *UpTrack) Subscribers() int { return len(*u.subs.Load()) }

// Close stops waking subscribers; the read loop ends with the publisher's
// peer connection.
func (u *UpTrack) Close() {
	u.closeOnce.Do(func() {
		close(u.done)
		u.subMu.Lock()
		empty := []*Player{}
		u.subs.Store(&empty)
		u.subMu.Unlock()
	})
}

// Attach starts reading the publisher's track.
func (u *UpTrack) Attach(remote *webrtc.TrackRemote) {
	u.mu.Lock()
	u.remote = remote
	u.mu.Unlock()
	u.setCodec(remote.Codec())
	u.ssrc.Store(uint32(remote.SSRC()))
	go u.run(remote)
}

func (u *UpTrack) run(remote *webrtc.TrackRemote) {
	buf := make([]byte, MaxPayload+100)
	var uw seqUnwrapper
	for {
		n, _, err := remote.Read(buf)
		if err != nil {
			return
		}
		h, ok := parseRTP(buf[:n])
		if !ok {
			continue
		}
		ext := uw.unwrap(h.seq)
		u.Ingest(ext, time.Now().UnixNano(), h.ts, h.pt, h.marker, buf[h.start:h.end])
		// Every packet wakes the players at once: a publisher that paces
		// its frames (every browser does) must not see a frame's first
		// packet wait for its last. Under load the wakes batch themselves:
		// a player still busy finds several packets when it next looks, and
		// sends them together (one GSO message).
		u.Wake()
	}
}

// Ingest files one packet of the track (extended sequence number ext,
// arrived at now, unix nanoseconds) in its packet cache and marks where
// keyframe groups start. It is the one way in for a publisher's packets
// (run) and a relayed stream's (the relay's pull) alike; the caller wakes
// the players (Wake), per packet or per batch. One goroutine at a time
// ingests a track.
func (u *UpTrack) Ingest(ext uint64, now int64, ts uint32, pt uint8, marker bool, payload []byte) {
	u.cache.insert(ext, now, ts, pt, marker, payload)
	u.packets.Add(1)
	if r, ok := u.meter.add(now, len(payload)+12); ok && !u.upstreamStats.Load() {
		u.rate.Store(r)
	}
	if u.kind == webrtc.RTPCodecTypeVideo {
		if u.kfReset.Load() && u.kfReset.CompareAndSwap(true, false) {
			u.kf = keyframeTracker{}
		}
		c := codec(u.vcodec.Load())
		if start, ok := u.kf.observe(c, ext, ts, payload); ok {
			u.cache.setKeyframe(start)
			u.keyAt.Store(now)
			if c == codecVP8 {
				if f, ok := vp8.FrameStart(payload); ok {
					if w, h, ok := vp8.KeyframeSize(f); ok {
						u.size.Store(uint32(w)<<16 | uint32(h))
					}
				}
			}
			u.keyframes.Add(1)
		}
	}
}

// joinPLIInterval throttles the keyframe requests of joining players,
// which must not wait out PLIInterval.
const joinPLIInterval = 50 * time.Millisecond

// RequestKeyframe asks the source for a keyframe, at most once per
// PLIInterval (joinPLIInterval for a player that just connected).
func (u *UpTrack) RequestKeyframe(join bool) {
	if u.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	ssrc := u.ssrc.Load()
	if ssrc == 0 {
		return
	}
	every := u.pliEvery
	if join {
		every = joinPLIInterval
	}
	now := time.Now().UnixNano()
	last := u.lastPLI.Load()
	if now-last < int64(every) || !u.lastPLI.CompareAndSwap(last, now) {
		return
	}
	if u.pc == nil {
		if u.pli != nil {
			u.pli()
		}
		return
	}
	_ = u.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
}

// Wake tells every player of the track that packets are waiting, unless
// the track has ended.
func (u *UpTrack) Wake() {
	select {
	case <-u.done:
		return
	default:
	}
	for _, s := range *u.subs.Load() {
		s.Signal()
	}
}
