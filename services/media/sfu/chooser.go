package sfu

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Layer selection in auto mode: which layer a player's estimate takes.
//
// What a layer needs is judged two ways. Going up, by its peak: the most
// it sent in any one second of the last three (peakMeter), keyframes
// included, so a layer is taken only where its every second fits, and the
// threshold does not move with where a keyframe fell in the rate's window.
// Staying, by its average rate (layerRate), with downHeadroom: between the
// two nothing changes.
//
// A layer is taken when its peak is at most upHeadroom of the estimate
// left for video, held for upHold, without congestion (a probe's short
// peak does not move a player up); a layer left again and again at the
// margin (not for a link that got much slower, which says nothing about
// the link once it recovers) is taken only after a hold that doubles each
// time (upHold << strikes: a layer left once at the margin waits twice as
// long, as at that margin the estimate touches it after every probe; at most
// maxUpHold; a strike is forgotten
// after strikeMemory).
//
// The current layer is left at once when its rate exceeds downSevere of
// the budget and the estimator shows congestion (high loss, or far less
// arriving than is sent: a link far slower than the layer, every moment on
// it a growing queue and then a freeze). Over by less, or without that
// evidence, it is left once it has been over for downHold, counted by a
// leaky clock: time over adds, time fitting takes away as much, so a link
// whose estimate keeps dipping below the layer and coming back (a
// delay-based cut after each keyframe's burst, undone by the probe 1.5 s
// later) neither resets the clock at each touch nor runs it out. And while
// the link shows it carries what is sent (the estimator's Carried: nearly
// all of it arrives, no loss to speak of) the clock does not run at all: a
// delay-based cut takes the estimate to 85 % of what arrives, below a
// layer that fills 93 % of a link, and on its own that says the player is
// near the link's rate, not above it (an estimate further below the layer
// than downSevere is more than one backoff: the clock runs, as a layer held
// that way on a link it fills froze). A link that really got slower
// queues, then drops: what arrives falls behind what is sent within a
// second, Carried ends and the clock runs.
const (
	upHeadroom   = 1.0
	downHeadroom = 1.05
	downSevere   = 1.35
	upHold       = 1500 * time.Millisecond
	downHold     = 2500 * time.Millisecond
	maxUpHold    = 8 * time.Second
	strikeMemory = 10 * time.Second
	// keyframeHeadroom stands in for a layer's peak over its rate where
	// the peak is not measured here (a relayed layer this edge does not
	// receive).
	keyframeHeadroom = 1.07
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

// layerPeak is what taking a layer needs: its peak one-second rate, at
// least its rate (keyframeHeadroom above it when the peak is not measured
// here).
func layerPeak(sorted []*UpTrack, u *UpTrack) int64 {
	r := layerRate(sorted, u)
	if r >= math.MaxInt64/4 {
		return r
	}
	if u.upstreamStats.Load() || u.peak.Load() == 0 {
		return int64(float64(r) * keyframeHeadroom)
	}
	return max(r, u.peak.Load())
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

// linkState is what the estimator says about the player's link besides
// its estimate.
type linkState struct {
	// limited: the estimate is a limit the link has shown (bwe Limited);
	// below the lowest layer on a mere starting estimate, the lowest
	// layer plays rather than pause.
	limited bool
	// congested: the link does not carry what is sent (bwe Congested).
	congested bool
	// carried: the link carries what is sent (bwe Carried).
	carried bool
}

// layerChooser decides one player's video layer from its estimate. It is
// called from the player's RTCP goroutine after each feedback; mu guards
// its state.
type layerChooser struct {
	mu      sync.Mutex
	started bool // the first choice was made (later ones wait upHold to go up)
	// fitSince is, per layer (index in the sorted layers), since when it
	// has fitted without a break (0: it does not fit now). Each layer
	// waits its own hold: a middle layer's strikes do not hold back the
	// top once the top has fitted for upHold.
	fitSince [MaxLayers]int64
	// overFor is the leaky clock of the current layer's time over the
	// budget (see the constants), at is when the last choice was made and
	// wasOver whether the layer was over then.
	overFor int64
	at      int64
	wasOver bool
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
	return min(upHold<<min(c.strikes[i], 4), maxUpHold)
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
	c.started, c.fitSince, c.overFor, c.at, c.wasOver = false, [MaxLayers]int64{}, 0, 0, false
	c.strikes, c.leftAt = [MaxLayers]uint8{}, [MaxLayers]int64{}
	c.mu.Unlock()
}

// choose returns the layer to forward given the sorted layers, the one
// forwarded now (nil: paused or not started), the bits per second the
// estimate leaves for video and what the estimator says of the link. nil
// means pause, which only a limit the link has shown can cause.
func (c *layerChooser) choose(sorted []*UpTrack, cur *UpTrack, budget int64, now int64, link linkState) *UpTrack {
	next := c.pick(sorted, cur, budget, now, link)
	if next == nil && !link.limited && len(sorted) > 0 {
		return sorted[0]
	}
	return next
}

func (c *layerChooser) pick(sorted []*UpTrack, cur *UpTrack, budget int64, now int64, link linkState) *UpTrack {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(sorted) == 0 {
		return nil
	}
	dt := int64(0)
	if c.at != 0 {
		dt = max(now-c.at, 0)
	}
	c.at = now
	// The best layer whose peak fits with up-headroom.
	var best *UpTrack
	for _, u := range sorted {
		if float64(layerPeak(sorted, u)) <= upHeadroom*float64(budget) {
			best = u
		}
	}
	curIdx := slices.Index(sorted, cur)
	bestIdx := slices.Index(sorted, best)
	first := !c.started
	c.started = true
	if (cur == nil && first) || (cur != nil && curIdx < 0) {
		// The first choice, or the layer forwarded is gone: at once.
		c.fitSince, c.overFor, c.wasOver = [MaxLayers]int64{}, 0, false
		return best
	}
	if cur != nil {
		r := float64(layerRate(sorted, cur))
		over := r > downHeadroom*float64(budget)
		switch {
		case !over:
			c.overFor = max(c.overFor-dt, 0)
		case link.carried && !link.congested && r <= downSevere*float64(budget):
			// The link carries the layer: an estimate a little below it is
			// the delay controller's backing off, not a limit (the clock
			// holds). One backoff goes to 85 % of what arrives; far below
			// the layer is more than that, and the clock runs.
		case c.wasOver:
			c.overFor += dt
		}
		c.wasOver = over
		if !over && bestIdx <= curIdx {
			c.fitSince = [MaxLayers]int64{}
			return cur
		}
		if over {
			// Down at once when far over on a congested link, else once
			// the clock has run out.
			severe := budget <= 0 || (link.congested && r > downSevere*float64(budget))
			c.fitSince = [MaxLayers]int64{}
			if !severe && c.overFor < int64(downHold) {
				return cur
			}
			c.overFor, c.wasOver = 0, false
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
		c.fitSince = [MaxLayers]int64{}
		return nil // paused, and still nothing fits
	}
	if link.congested {
		// Not up while the link drops what is sent, whatever the estimate.
		c.fitSince = [MaxLayers]int64{}
		return cur
	}
	// Up, or resume after a pause: to the highest layer that has fitted
	// without a break for its hold (upHoldFor), so an estimate hovering at
	// a threshold does not flap (a resume costs a keyframe), and an
	// estimate that climbs past a middle layer with strikes to the top
	// takes the top after the top's own hold.
	next := -1
	for i := curIdx + 1; i < len(sorted) && i < MaxLayers; i++ {
		if i > bestIdx {
			c.fitSince[i] = 0
			continue
		}
		if c.fitSince[i] == 0 {
			c.fitSince[i] = now
		}
		if now-c.fitSince[i] >= int64(c.upHoldFor(i, now)) {
			next = i
		}
	}
	if next < 0 {
		return cur
	}
	c.fitSince, c.overFor, c.wasOver = [MaxLayers]int64{}, 0, false
	return sorted[next]
}
