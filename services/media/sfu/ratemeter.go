package sfu

import "time"

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

// peakMeter measures what a layer needs of a link: the most it sent in
// any second (peakSpan buckets) over the last peakBuckets of them, so
// the keyframe of every group (one each two seconds, three frames' worth)
// is in the figure. The smoothed average (rateMeter) is below that
// whenever a keyframe goes out, and a layer judged by it fits an estimate
// in some windows and not in others: a player at the margin flaps. The
// peak is steady as long as the publisher's groups are.
type peakMeter struct {
	start   int64 // the open bucket began
	bytes   int64 // in the open bucket
	ring    [peakBuckets]int64
	head, n int // next slot of ring, buckets filled
}

const (
	peakBucket  = int64(250 * time.Millisecond)
	peakSpan    = 4  // buckets per window: one second
	peakBuckets = 12 // three seconds of windows: more than a 2 s group
)

// add counts n bytes at now; when a bucket closes it returns the peak
// rate, bits per second.
func (m *peakMeter) add(now int64, n int) (int64, bool) {
	if m.start == 0 {
		m.start = now
	}
	closed := false
	for i := 0; now-m.start >= peakBucket; i++ {
		if i == peakBuckets {
			// A long silence: everything before it is gone.
			m.start = now
			break
		}
		m.ring[m.head] = m.bytes
		m.head = (m.head + 1) % peakBuckets
		m.n = min(m.n+1, peakBuckets)
		m.bytes = 0
		m.start += peakBucket
		closed = true
	}
	m.bytes += int64(n)
	if !closed {
		return 0, false
	}
	return m.peak(), true
}

// peak is the highest one-second rate among the closed buckets (scaled up
// while fewer than a second's worth have closed).
func (m *peakMeter) peak() int64 {
	span := min(peakSpan, m.n)
	var best int64
	for s := 0; s+span <= m.n; s++ {
		var sum int64
		for k := range span {
			sum += m.ring[(m.head-m.n+s+k+2*peakBuckets)%peakBuckets]
		}
		best = max(best, sum)
	}
	return best * 8 * int64(time.Second) / (int64(span) * peakBucket)
}
