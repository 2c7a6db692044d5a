package sfu

import (
	"sync/atomic"
	"time"
)

// DelayHist holds the delay the edge adds to a live packet: from its
// arrival from the publisher to its player's turn on a forwarding worker
// having handed it to the socket (encrypted and queued; the batch's send
// follows). A player's turn observes once, from the oldest live packet it
// sent, so a figure is an upper bound for every packet of that turn. Replays of
// the keyframe group and retransmissions are left out: they are late on
// purpose. One per edge (media.Server.TakeEdgeDelay), for benchmarks: onair
// media logs it.

// DelayHist buckets: 50 µs wide up to 5 ms, 1 ms wide up to 100 ms, then
// one for anything later.
const (
	fineStep    = 50 * time.Microsecond
	fineBuckets = 100
	coarseStep  = time.Millisecond
	coarseTop   = 100 * time.Millisecond
)

// DelayHist is the delay histogram the edge's players observe into (one
// per edge, shared by its players; Take reads it).
type DelayHist struct {
	b [fineBuckets + int((coarseTop-fineBuckets*fineStep)/coarseStep) + 1]atomic.Int64
}

func (h *DelayHist) observe(d time.Duration) {
	var i int
	switch {
	case d < 0:
		i = 0
	case d < fineBuckets*fineStep:
		i = int(d / fineStep)
	case d < coarseTop:
		i = fineBuckets + int((d-fineBuckets*fineStep)/coarseStep)
	default:
		i = len(h.b) - 1
	}
	h.b[i].Add(1)
}

// upper is bucket i's upper bound.
func (h *DelayHist) upper(i int) time.Duration {
	if i < fineBuckets {
		return time.Duration(i+1) * fineStep
	}
	if i == len(h.b)-1 {
		return -1
	}
	return fineBuckets*fineStep + time.Duration(i-fineBuckets+1)*coarseStep
}

// Take returns the observations since the last take: how many, and the
// upper bounds of the buckets holding the 50th and 99th percentiles (-1:
// over 100 ms).
func (h *DelayHist) Take() (n int64, p50, p99 time.Duration) {
	var c [len(DelayHist{}.b)]int64
	for i := range h.b {
		c[i] = h.b[i].Swap(0)
		n += c[i]
	}
	if n == 0 {
		return 0, 0, 0
	}
	var acc int64
	for i, v := range c {
		acc += v
		if p50 == 0 && acc*2 >= n {
			p50 = h.upper(i)
		}
		if acc*100 >= n*99 {
			p99 = h.upper(i)
			break
		}
	}
	return n, p50, p99
}
