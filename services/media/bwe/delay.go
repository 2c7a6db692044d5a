package bwe

import "math"

// The delay-based half of GCC: packet groups, the trendline filter and the
// overuse detector with its adaptive threshold.

// usage is the overuse detector's verdict.
type usage int8

const (
	usageNormal usage = iota
	usageOver
	usageUnder
)

const (
	burstTime = 5e6 // a group is the packets sent within 5 ms of its first

	trendWindow    = 20   // groups in the linear regression
	trendSmoothing = 0.9  // EWMA of the accumulated delay
	trendGain      = 4.0  // the threshold gain of the modified trend
	maxTrendDeltas = 60   // the trend is scaled by min(deltas, 60)
	overuseTimeMs  = 10.0 // overuse must last this long to count

	threshInitial = 12.5 // ms
	threshMin     = 6.0
	threshMax     = 600.0
	kUp           = 0.0087 // threshold adaptation when above it
	kDown         = 0.039  // and when below
)

// group is a burst of packets sent within burstTime.
type group struct {
	firstSend, lastSend, lastArrival int64
}

// trendline accumulates inter-group delay variations and fits a line to the
// smoothed accumulated delay over the last trendWindow groups: its slope is
// how fast the bottleneck queue grows.
type trendline struct {
	numDeltas  int
	firstArr   int64 // arrival time of the first group, ns (remote clock)
	accDelay   float64
	smoothed   float64
	xs, ys     [trendWindow]float64
	count, pos int
}

func (t *trendline) reset() { *t = trendline{} }

// update adds one group's delay variation (ms) arriving at arrival (ns) and
// returns the slope, 0 until the window is full.
func (t *trendline) update(deltaMs float64, arrival int64) float64 {
	if t.numDeltas == 0 && t.count == 0 {
		t.firstArr = arrival
	}
	t.numDeltas = min(t.numDeltas+1, 1000)
	t.accDelay += deltaMs
	t.smoothed = trendSmoothing*t.smoothed + (1-trendSmoothing)*t.accDelay
	t.xs[t.pos] = float64(arrival-t.firstArr) / 1e6
	t.ys[t.pos] = t.smoothed
	t.pos = (t.pos + 1) % trendWindow
	if t.count < trendWindow {
		t.count++
	}
	if t.count < trendWindow {
		return 0
	}
	var sx, sy float64
	for i := range trendWindow {
		sx += t.xs[i]
		sy += t.ys[i]
	}
	mx, my := sx/trendWindow, sy/trendWindow
	var num, den float64
	for i := range trendWindow {
		dx := t.xs[i] - mx
		num += dx * (t.ys[i] - my)
		den += dx * dx
	}
	if den == 0 {
		return 0
	}
	return num / den
}

// detector compares the modified trend with an adaptive threshold, which
// follows the trend slowly so that a competing TCP flow does not starve us
// (the threshold rises) and small noise does not trigger (it falls slowly).
type detector struct {
	thresh      float64 // ms
	lastUpdate  int64   // ns, remote clock; 0 before the first
	timeOver    float64 // ms spent above the threshold, -1 when not
	overCount   int
	prevTrend   float64
	hypothesis  usage
	initialized bool
}

func (d *detector) reset() {
	*d = detector{thresh: threshInitial, timeOver: -1, initialized: true}
}

// detect turns the trend (slope) of numDeltas groups, the latest spaced
// tsDeltaMs apart in send time, at arrival (ns), into a verdict.
func (d *detector) detect(trend, tsDeltaMs float64, numDeltas int, arrival int64) usage {
	if !d.initialized {
		d.reset()
	}
	if numDeltas < 2 {
		return usageNormal
	}
	m := float64(min(numDeltas, maxTrendDeltas)) * trend * trendGain
	switch {
	case m > d.thresh:
		if d.timeOver == -1 {
			d.timeOver = tsDeltaMs / 2
		} else {
			d.timeOver += tsDeltaMs
		}
		d.overCount++
		if d.timeOver > overuseTimeMs && d.overCount > 1 && trend >= d.prevTrend {
			d.timeOver, d.overCount = 0, 0
			d.hypothesis = usageOver
		}
	case m < -d.thresh:
		d.timeOver, d.overCount = -1, 0
		d.hypothesis = usageUnder
	default:
		d.timeOver, d.overCount = -1, 0
		d.hypothesis = usageNormal
	}
	d.prevTrend = trend
	d.adapt(m, arrival)
	return d.hypothesis
}

func (d *detector) adapt(m float64, arrival int64) {
	if d.lastUpdate == 0 {
		d.lastUpdate = arrival
	}
	am := math.Abs(m)
	// A spike far above the threshold (a route change, a sudden cap) must
	// not drag the threshold up with it.
	if am > d.thresh+15 {
		d.lastUpdate = arrival
		return
	}
	k := kUp
	if am < d.thresh {
		k = kDown
	}
	dt := min(float64(arrival-d.lastUpdate)/1e6, 100)
	if dt < 0 {
		dt = 0
	}
	d.thresh += k * (am - d.thresh) * dt
	d.thresh = min(max(d.thresh, threshMin), threshMax)
	d.lastUpdate = arrival
}

// delayState is the grouping of acknowledged packets in send order feeding
// the trendline and the detector.
type delayState struct {
	cur, prev      group
	haveCur        bool
	havePrev       bool
	trend          trendline
	det            detector
	sawOveruse     bool // an overuse verdict during the current feedback
	lastHypothesis usage
}

// packet adds one received packet, in feedback (sequence) order.
func (s *delayState) packet(send, arrival int64) {
	if !s.haveCur {
		s.cur = group{firstSend: send, lastSend: send, lastArrival: arrival}
		s.haveCur = true
		return
	}
	if send < s.cur.firstSend {
		return // a retransmission or reordering: no use for the delay
	}
	if send-s.cur.firstSend <= burstTime {
		s.cur.lastSend = max(s.cur.lastSend, send)
		s.cur.lastArrival = max(s.cur.lastArrival, arrival)
		return
	}
	// cur is complete: compare it with prev.
	if s.havePrev {
		sendDelta := s.cur.lastSend - s.prev.lastSend
		arrDelta := s.cur.lastArrival - s.prev.lastArrival
		switch {
		case arrDelta < 0 || arrDelta > 3e9:
			// Reordered groups or a long gap (the sender paused): the
			// accumulated delay no longer means anything.
			s.trend.reset()
			s.det.reset()
		default:
			delta := float64(arrDelta-sendDelta) / 1e6
			slope := s.trend.update(delta, s.cur.lastArrival)
			h := s.det.detect(slope, float64(sendDelta)/1e6, s.trend.numDeltas, s.cur.lastArrival)
			s.lastHypothesis = h
			if h == usageOver {
				s.sawOveruse = true
			}
		}
	}
	s.prev, s.havePrev = s.cur, true
	s.cur = group{firstSend: send, lastSend: send, lastArrival: arrival}
}

// verdict is the detector's state for one feedback: overuse if any group
// in it was overusing, else the latest hypothesis.
func (s *delayState) verdict() usage {
	if s.sawOveruse {
		s.sawOveruse = false
		return usageOver
	}
	return s.lastHypothesis
}
