package sfu

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Simulcast: a publisher may send a video track as up to three layers
// (RIDs), each an uptrack of its own with its own packet and keyframe cache.
// Each player's video downtrack forwards one of them: the one it pinned, or
// in auto mode the highest whose bitrate fits the player's bandwidth
// estimate; below the lowest layer its video pauses and audio plays on.
// A switch happens at a keyframe of the new layer (the downtrack's rewriter
// keeps sequence numbers and timestamps continuous), asked of the
// publisher when the layer has none fresh.

// LayerGroup ties the layers of one publisher track together.
type LayerGroup struct{}

// MaxLayers is how many simulcast layers a track may have.
const MaxLayers = 3

// Layer is a player's layer preference. Its values are the
// mediav1.VideoLayer numbers.
type Layer int

// Layer preferences: auto follows the player's bandwidth estimate; the
// others pin a layer (the nearest one the publisher sends).
const (
	LayerAuto Layer = iota
	LayerLow
	LayerMedium
	LayerHigh
)

// Selection bounds. A layer is taken when its bitrate is at most
// upHeadroom of the estimate left for video, held for upHold (a probe's
// short peak does not move a player up); it is left at once when its
// bitrate exceeds downHeadroom of that estimate, since every moment on a
// layer the link cannot carry is a growing queue and then a freeze. The
// asymmetry is the hysteresis: between the two thresholds nothing changes.
const (
	upHeadroom   = 0.90
	downHeadroom = 1.05
	upHold       = 1500 * time.Millisecond
	// freshKeyframe: a switch may start at the new layer's cached keyframe
	// when it arrived this recently (a short replay); otherwise the
	// downtrack asks for one and forwards the old layer until it comes.
	freshKeyframe = 150 * time.Millisecond
	// audioReserve is what the estimate keeps for audio and RTCP.
	audioReserve = 64_000
	// minLayerRate stands in for a layer's bitrate before it is measured.
	minLayerRate = 100_000
	// probeMargin: probing aims this far beyond what the best layer wanted
	// needs (its rate over upHeadroom), so the estimate it finds clears
	// that layer's threshold by more than the layer's rate varies. Probing
	// only up to the threshold left the top layer fitting in some rate
	// windows and not in others, never for upHold.
	probeMargin = 1.25
)

// sortLayers orders a track's layers from lowest to highest: by the
// picture size their keyframes announce, then by measured bitrate, then by
// RID name as browsers use them (q < h < f, l < m < h, 0 < 1 < 2).
func sortLayers(ls []*UpTrack) []*UpTrack {
	out := slices.Clone(ls)
	slices.SortStableFunc(out, func(a, b *UpTrack) int {
		sa, sb := a.size.Load(), b.size.Load()
		if sa != 0 && sb != 0 && sa != sb {
			return cmpInt(pixels(sa), pixels(sb))
		}
		ra, rb := a.rate.Load(), b.rate.Load()
		if ra > 0 && rb > 0 && (ra > rb*3/2 || rb > ra*3/2) {
			return cmpInt(ra, rb)
		}
		return cmpInt(ridRank(a.rid), ridRank(b.rid))
	})
	return out
}

func pixels(size uint32) int64 { return int64(size>>16) * int64(size&0xffff) }

func cmpInt[T int | int64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func ridRank(rid string) int {
	switch rid {
	case "q", "l", "low", "0":
		return 0
	case "h":
		return 1 // "h" is half next to q/f; high next to l/m: sizes settle it
	case "m", "mid", "medium", "1":
		return 1
	case "f", "high", "2":
		return 2
	}
	return 1
}

// layerRate is the bitrate a layer is judged by. A layer not measured
// yet (its first half second) counts as too much, unless it is the lowest:
// a player starts low rather than flood a link it does not know.
func layerRate(sorted []*UpTrack, u *UpTrack) int64 {
	r := u.rate.Load()
	if r == 0 && u != sorted[0] {
		return math.MaxInt64 / 2
	}
	return max(r, minLayerRate)
}

// pinned is the layer a pinned preference means among sorted layers.
func pinned(sorted []*UpTrack, pref Layer) *UpTrack {
	switch n := len(sorted); {
	case n == 0:
		return nil
	case pref == LayerLow:
		return sorted[0]
	case pref == LayerMedium:
		return sorted[n/2]
	default:
		return sorted[n-1]
	}
}

// layerChooser decides one player's video layer from its estimate. It is
// called from the player's RTCP goroutine after each feedback; mu guards
// its state.
type layerChooser struct {
	mu      sync.Mutex
	started bool  // the first choice was made (later ones wait upHold to go up)
	upSince int64 // when upTo started to fit
	upTo    *UpTrack
}

// reset forgets pending decisions (the publisher's tracks changed): the
// next choice is a first one again.
func (c *layerChooser) reset() {
	c.mu.Lock()
	c.started, c.upSince, c.upTo = false, 0, nil
	c.mu.Unlock()
}

// choose returns the layer to forward given the sorted layers, the one
// forwarded now (nil: paused or not started) and the bits per second the
// estimate leaves for video. nil means pause, which only a limit the link
// has shown (mayPause) can cause: below the lowest layer on a mere
// starting estimate, the lowest layer plays.
func (c *layerChooser) choose(sorted []*UpTrack, cur *UpTrack, budget int64, now int64, mayPause bool) *UpTrack {
	next := c.pick(sorted, cur, budget, now)
	if next == nil && !mayPause && len(sorted) > 0 {
		return sorted[0]
	}
	return next
}

func (c *layerChooser) pick(sorted []*UpTrack, cur *UpTrack, budget int64, now int64) *UpTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(sorted) == 0 {
		return nil
	}
	// The best layer that fits with up-headroom.
	var best *UpTrack
	for _, u := range sorted {
		if float64(layerRate(sorted, u)) <= upHeadroom*float64(budget) {
			best = u
		}
	}
	curIdx := slices.Index(sorted, cur)
	bestIdx := slices.Index(sorted, best)
	first := !c.started
	c.started = true
	if (cur == nil && first) || (cur != nil && curIdx < 0) {
		// The first choice, or the layer forwarded is gone: at once.
		c.upSince, c.upTo = 0, nil
		return best
	}
	if cur != nil {
		// Stay while the current layer still fits within down-headroom.
		if float64(layerRate(sorted, cur)) <= downHeadroom*float64(budget) && bestIdx <= curIdx {
			c.upSince, c.upTo = 0, nil
			return cur
		}
		if bestIdx < curIdx {
			c.upSince, c.upTo = 0, nil
			return best // down at once (nil: pause)
		}
		if bestIdx == curIdx {
			return cur
		}
	} else if best == nil {
		c.upSince, c.upTo = 0, nil
		return nil // paused, and still nothing fits
	}
	// Up, or resume after a pause: once a higher layer has fitted for
	// upHold, so an estimate hovering at a threshold does not flap (a
	// resume costs a keyframe). The move is to the highest layer that
	// fitted all that time: the lowest best seen since upSince.
	if c.upTo == nil {
		c.upTo, c.upSince = best, now
		return cur
	}
	if bestIdx < slices.Index(sorted, c.upTo) {
		c.upTo = best
	}
	if now-c.upSince >= int64(upHold) {
		next := c.upTo
		c.upSince, c.upTo = 0, nil
		return next
	}
	return cur
}

// LayersOf is the layer group of the first track of kind k, in publisher
// order (nil if none).
func LayersOf(tracks []*UpTrack, k webrtc.RTPCodecType) []*UpTrack {
	var g *LayerGroup
	var out []*UpTrack
	for _, u := range tracks {
		if u.kind != k {
			continue
		}
		if g == nil {
			g = u.group
		}
		if u.group == g {
			out = append(out, u)
		}
	}
	return out
}

// rateMeter measures a bitrate over rateWindow windows.
type rateMeter struct {
	start int64
	bytes int64
}

const rateWindow = int64(500 * time.Millisecond)

// add counts n bytes at now; when a window closes it returns its rate
// (the caller smooths it with the previous ones).
func (m *rateMeter) add(now int64, n int) (int64, bool) {
	if m.start == 0 {
		m.start = now
	}
	m.bytes += int64(n)
	if el := now - m.start; el >= rateWindow {
		r := m.bytes * 8 * int64(time.Second) / el
		m.start, m.bytes = now, 0
		return r, true
	}
	return 0, false
}

// SetLayer makes u the simulcast layer rid of the track group stands for
// (a new UpTrack is a track of its own). Call it before u is shared.
func (u *UpTrack) SetLayer(g *LayerGroup, rid string) { u.group, u.rid = g, rid }

// RID is u's simulcast layer name, "" for a track without layers.
func (u *UpTrack) RID() string { return u.rid }

// Group is the track u is a layer of.
func (u *UpTrack) Group() *LayerGroup { return u.group }
