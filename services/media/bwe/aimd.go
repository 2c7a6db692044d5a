package bwe

import "math"

// The delay-based rate controller: additive/multiplicative increase while
// the detector says normal, a decrease to beta times the acknowledged
// bitrate on overuse, hold on underuse (the queue is draining).

type rcState int8

const (
	rcHold rcState = iota
	rcIncrease
	rcDecrease
)

const (
	beta           = 0.85
	reduceInterval = 200e6 // at most one decrease per 200 ms (about an RTT)
	responseTime   = 200e6 // 100 ms + an assumed 100 ms RTT, for the additive step
	maxIncreasePS  = 1.08  // multiplicative increase per second
	ackedHeadroom  = 1.5   // the rate stays within 1.5x the acked rate + 10 kbit/s
)

// aimd is the rate controller's state.
type aimd struct {
	rate         float64 // bits/s
	state        rcState
	lastChange   int64 // ns of the last rate update
	lastDecrease int64
	// The link capacity seen at overuse (an EWMA of the acked rate when a
	// decrease happened, kbit/s) and its normalised variance: near it the
	// increase is additive, far from it multiplicative.
	capKbps, capVar float64
}

// update applies one detector verdict with the current acked rate (0 when
// not known yet) at now, returning whether the rate was decreased.
func (a *aimd) update(u usage, acked float64, now int64) bool {
	switch u {
	case usageOver:
		// Reduce again only after the last reduction has had time to show,
		// unless the acked rate says we are far too high.
		if now-a.lastDecrease < reduceInterval && !(acked > 0 && acked < a.rate/2) {
			a.state = rcHold
			return false
		}
		a.state = rcDecrease
	case usageUnder:
		a.state = rcHold
	default:
		if a.state == rcHold || a.state == rcDecrease {
			a.state = rcIncrease
			a.lastChange = now
		}
	}
	switch a.state {
	case rcIncrease:
		a.increase(acked, now)
	case rcDecrease:
		a.decrease(acked, now)
		a.state = rcHold
		return true
	}
	return false
}

func (a *aimd) increase(acked float64, now int64) {
	if a.capKbps > 0 && acked/1000 > a.capKbps+3*math.Sqrt(a.capVar*a.capKbps) {
		a.capKbps = 0 // the link got faster: the old capacity no longer holds
	}
	dt := float64(now-a.lastChange) / 1e9
	if dt < 0 {
		dt = 0
	}
	var next float64
	if a.capKbps > 0 {
		// Near the capacity seen last: about one packet per response time.
		bitsPerFrame := a.rate / 30
		packetsPerFrame := math.Ceil(bitsPerFrame / (1200 * 8))
		packetBits := bitsPerFrame / packetsPerFrame
		next = a.rate + max(1000, packetBits*min(dt*1e9/responseTime, 1))
	} else {
		next = a.rate * math.Pow(maxIncreasePS, min(dt, 1))
	}
	// Do not run away from what the receiver gets (an app-limited sender
	// proves nothing above it); probing is how to go further.
	if acked > 0 {
		limit := ackedHeadroom*acked + 10000
		if next > limit {
			next = max(a.rate, limit)
		}
	}
	a.rate = next
	a.lastChange = now
}

func (a *aimd) decrease(acked float64, now int64) {
	next := beta * a.rate
	if acked > 0 {
		next = beta * acked
		// The capacity estimate: an EWMA of the acked rate at overuse.
		k := acked / 1000
		if a.capKbps == 0 {
			a.capKbps = k
		} else {
			a.capKbps = 0.95*a.capKbps + 0.05*k
		}
		norm := max(a.capKbps, 1)
		a.capVar = 0.95*a.capVar + 0.05*(a.capKbps-k)*(a.capKbps-k)/norm
		a.capVar = min(max(a.capVar, 0.4), 2.5)
	}
	if next < a.rate {
		a.rate = next
	}
	a.lastDecrease, a.lastChange = now, now
}
