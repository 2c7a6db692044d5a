package sfu

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
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
type LayerGroup struct {
	// order caches the layers' order (sortLayers, layerorder.go).
	order atomic.Pointer[layerOrder]
}

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
// short peak does not move a player up); a layer left for congestion
// again and again at the margin (not for a link that got much slower,
// which says nothing about the link once it recovers) is taken only after
// a hold that doubles each time (upHold << (strikes-1), at most maxUpHold;
// a strike is forgotten after strikeMemory), so a link that barely carries
// a layer does not flap between it and the next one down. The current layer is left at once
// when its bitrate exceeds downSevere of that estimate and the link shows
// congestion (the estimator's Congested: high loss, or far less arriving
// than is sent; a link far slower than the layer: every moment on it is a
// growing queue and then a freeze), and after downHold when it exceeds
// downHeadroom by less or without that evidence (a delay-based cut on a
// lossy or jittery link that carries the layer well is undone by the
// probe 1.5 s after it): a
// delay-based cut after a keyframe's burst or a probe's overshoot takes
// the estimate 15 % below what the player receives, and the estimator's
// next probe (1.5 s after the cut) shows within downHold whether the link
// really got slower. Between the thresholds nothing changes. upHeadroom
// is near 1 so the top layer (2.5 Mbit/s of media, ~2.6 with headers and
// keyframes) is reachable on a 3 Mbit/s link.
const (
	upHeadroom   = 0.97
	downHeadroom = 1.05
	downSevere   = 1.35
	upHold       = 1500 * time.Millisecond
	downHold     = 2500 * time.Millisecond
	maxUpHold    = 8 * time.Second
	strikeMemory = 10 * time.Second
	// freshKeyframe: a switch may start at the new layer's cached keyframe
	// when it arrived this recently (a short replay); otherwise the
	// downtrack asks for one and forwards the old layer until it comes.
	freshKeyframe = 150 * time.Millisecond
	// audioOverhead is added to the audio tracks' measured rate for what
	// the estimator counts on top of it (the transport-wide sequence
	// number extension, ~50 packets a second), and minAudioReserve is
	// what audio is assumed to take before it is measured.
	audioOverhead   = 8_000
	minAudioReserve = 24_000
	// minLayerRate stands in for a layer's bitrate before it is measured.
	minLayerRate = 100_000
	// probeMargin: probing aims this far beyond what the best layer wanted
	// needs (its rate over upHeadroom), so the estimate it finds clears
	// that layer's threshold by more than the layer's rate varies. Probing
	// only up to the threshold left the top layer fitting in some rate
	// windows and not in others, never for upHold.
	probeMargin = 1.25
)

// orderLayers orders a track's layers from lowest to highest: by the
// picture size their keyframes announce, then by measured bitrate, then by
// RID name as browsers use them (q < h < f, l < m < h, 0 < 1 < 2).
// sortLayers caches its answer.
func orderLayers(ls []*UpTrack) []*UpTrack {
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
	case "h", "m", "mid", "medium", "1":
		// "h" is half next to q/f but high next to l/m: picture sizes
		// settle it once keyframes arrive.
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
	// overSince is when the current layer started to exceed downHeadroom
	// of the budget (0: it does not), fitSince when it last started to fit
	// again: an estimate hovering around the layer's rate (a link that
	// barely carries it, queueing and dropping) must not restart the
	// clock each time it touches the threshold, so overSince is cleared
	// only after the layer has fitted for downHold/2.
	overSince, fitSince int64
	// strikes counts, per layer (index in the sorted layers), how many
	// times in a row it was left going down, and leftAt when it last was.
	strikes [MaxLayers]uint8
	leftAt  [MaxLayers]int64
}

// upHoldFor is how long layer i must fit before the player moves up to it.
func (c *layerChooser) upHoldFor(i int, now int64) time.Duration {
	if i < 0 || i >= MaxLayers || c.strikes[i] == 0 {
		return upHold
	}
	if now-c.leftAt[i] > int64(strikeMemory) {
		c.strikes[i] = 0
		return upHold
	}
	return min(upHold<<min(c.strikes[i]-1, 4), maxUpHold)
}

// left records that layer i was left going down.
func (c *layerChooser) left(i int, now int64) {
	if i < 0 || i >= MaxLayers {
		return
	}
	if c.strikes[i] > 0 && now-c.leftAt[i] > int64(strikeMemory) {
		c.strikes[i] = 0
	}
	c.strikes[i] = min(c.strikes[i]+1, 8)
	c.leftAt[i] = now
}

// reset forgets pending decisions (the publisher's tracks changed): the
// next choice is a first one again.
func (c *layerChooser) reset() {
	c.mu.Lock()
	c.started, c.upSince, c.upTo, c.overSince, c.fitSince = false, 0, nil, 0, 0
	c.strikes, c.leftAt = [MaxLayers]uint8{}, [MaxLayers]int64{}
	c.mu.Unlock()
}

// choose returns the layer to forward given the sorted layers, the one
// forwarded now (nil: paused or not started) and the bits per second the
// estimate leaves for video. nil means pause, which only a limit the link
// has shown (mayPause) can cause: below the lowest layer on a mere
// starting estimate, the lowest layer plays. congested is the estimator's
// evidence that the link does not carry what is sent, which a severe
// overshoot needs to go down at once.
func (c *layerChooser) choose(sorted []*UpTrack, cur *UpTrack, budget int64, now int64, mayPause, congested bool) *UpTrack {
	next := c.pick(sorted, cur, budget, now, congested)
	if next == nil && !mayPause && len(sorted) > 0 {
		return sorted[0]
	}
	return next
}

func (c *layerChooser) pick(sorted []*UpTrack, cur *UpTrack, budget int64, now int64, congested bool) *UpTrack {
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
		c.upSince, c.upTo, c.overSince, c.fitSince = 0, nil, 0, 0
		return best
	}
	if cur != nil {
		r := float64(layerRate(sorted, cur))
		fits := r <= downHeadroom*float64(budget)
		switch {
		case !fits:
			c.fitSince = 0
		case c.overSince == 0:
		case c.fitSince == 0:
			c.fitSince = now
		case now-c.fitSince >= int64(downHold/2):
			c.overSince, c.fitSince = 0, 0
		}
		if fits && bestIdx <= curIdx {
			c.upSince, c.upTo = 0, nil
			return cur
		}
		if !fits {
			// Over: down at once when far over, else once it has lasted.
			severe := budget <= 0 || (congested && r > downSevere*float64(budget))
			if c.overSince == 0 {
				c.overSince = now
			}
			c.upSince, c.upTo = 0, nil
			if !severe && now-c.overSince < int64(downHold) {
				return cur
			}
			c.overSince, c.fitSince = 0, 0
			if !severe {
				// Left at the margin, not for a link that changed: a strike.
				c.left(curIdx, now)
			}
			if bestIdx < curIdx {
				return best // down (nil: pause)
			}
			if curIdx > 0 {
				return sorted[curIdx-1]
			}
			return nil
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
	if now-c.upSince >= int64(c.upHoldFor(slices.Index(sorted, c.upTo), now)) {
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

// rateMeter measures a bitrate over rateWindow windows, smoothed over
// about four of them: a keyframe (three frames' worth, every two seconds)
// must not make a layer look 15 % dearer for half a second, which would
// move a player down on a link that carries the layer.
type rateMeter struct {
	start  int64
	bytes  int64
	smooth int64
}

const rateWindow = int64(500 * time.Millisecond)

// rateSmoothing is the weight of a new window in the smoothed rate.
const rateSmoothing = 0.3

// add counts n bytes at now; when a window closes it returns the smoothed
// rate.
func (m *rateMeter) add(now int64, n int) (int64, bool) {
	if m.start == 0 {
		m.start = now
	}
	m.bytes += int64(n)
	if el := now - m.start; el >= rateWindow {
		r := m.bytes * 8 * int64(time.Second) / el
		m.start, m.bytes = now, 0
		if m.smooth == 0 {
			m.smooth = r
		} else {
			m.smooth = int64(rateSmoothing*float64(r) + (1-rateSmoothing)*float64(m.smooth))
		}
		return m.smooth, true
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
