package bwe

import "math"

// The loss-based cap (GCC section 6): above 10 % loss the rate is cut by
// half the loss ratio, below 2 % the cap grows 8 % a second, in between it
// holds. Random loss of a few percent (a lossy radio link, not congestion)
// therefore holds the rate instead of collapsing it; congestion shows in
// the delay well before a 200 ms queue overflows.

const (
	lossHigh         = 0.10
	lossLow          = 0.02
	lossCutInterval  = 300e6 // at most one cut per 300 ms
	lossMinPackets   = 100   // a window of at least this many reported packets
	lossMinWindow    = 500e6 // and at least this long
	lossMaxWindow    = 2e9   // or this long with lossFewPackets
	lossFewPackets   = 20
	lossGrowthPerSec = 1.08
)

// lossControl is the loss-based cap and the window of transport-cc results
// it is measured over.
type lossControl struct {
	limit        float64 // bits/s; +Inf while no loss has ever limited us
	reported     int     // packets reported in the current window
	lost         int     // of which lost
	windowStart  int64
	lastUpdate   int64
	lastCut      int64
	lastRatio    float64 // loss of the last complete window
	haveWindowTS bool
}

func newLossControl() lossControl { return lossControl{limit: math.Inf(1)} }

// add counts transport-cc results and, when the window is complete,
// applies its loss ratio given the current estimate; true when it did.
func (l *lossControl) add(reported, lost int, estimate float64, now int64) bool {
	if !l.haveWindowTS {
		l.windowStart, l.haveWindowTS = now, true
	}
	l.reported += reported
	l.lost += lost
	age := now - l.windowStart
	if !(l.reported >= lossMinPackets && age >= lossMinWindow) &&
		!(l.reported >= lossFewPackets && age >= lossMaxWindow) {
		return false
	}
	ratio := float64(l.lost) / float64(l.reported)
	l.reported, l.lost, l.windowStart = 0, 0, now
	l.apply(ratio, estimate, now)
	return true
}

// apply updates the cap with a loss ratio measured up to now (from a
// transport-cc window or a receiver report).
func (l *lossControl) apply(ratio, estimate float64, now int64) {
	l.lastRatio = ratio
	dt := 1.0
	if l.lastUpdate != 0 {
		dt = min(float64(now-l.lastUpdate)/1e9, 1)
	}
	l.lastUpdate = now
	switch {
	case ratio > lossHigh:
		if now-l.lastCut < lossCutInterval && l.lastCut != 0 {
			return
		}
		// Cut from what we actually send, not from a cap far above it.
		l.limit = min(l.limit, estimate) * (1 - ratio/2)
		l.lastCut = now
	case ratio < lossLow:
		if !math.IsInf(l.limit, 1) {
			l.limit = l.limit*math.Pow(lossGrowthPerSec, dt) + 1000
			if l.limit > 1e12 {
				l.limit = math.Inf(1) // far above any Max: no cap at all
			}
		}
	}
}

// raise lifts the cap to at least bps: a probe cluster delivered that much
// without high loss.
func (l *lossControl) raise(bps float64) {
	if bps > l.limit {
		l.limit = bps
	}
}
