package bwe

// Probing: the delay-based controller can only see capacity the sender
// uses, and an app-limited sender (a lower simulcast layer, a paused video)
// or one that was just cut never uses more. So when congestion is clear and
// the estimate is below what the sender wants, the estimator asks for a
// probe cluster: for probeDuration the sender adds padding/RTX so that it
// sends at probeFactor times the estimate. The cluster's packets are tagged
// in the send history; once feedback covers them, the rate they were
// received at (bounded by the rate they were sent at) is a measured lower
// bound of the capacity and lifts the estimate. A cluster that delivered
// most of its target is followed at once by the next, so the estimate
// doubles per round trip; one that did not ends the sequence and the next
// try backs off.

const (
	probeFactor      = 2.0
	probeDuration    = 100e6         // ns a cluster lasts
	probeMinPackets  = 5             // received packets for a result to count
	probeSuccess     = 0.75          // of the target delivered: go on probing
	probeSaturated   = 0.9           // received below this share of sent: the link is full
	probeUtilization = 0.95          // and its capacity is taken as this share of the received rate
	probeMinBits     = 15 * 1200 * 8 // a cluster lasts long enough for ~15 full packets
	probeMaxDuration = 300e6
	// Random loss of a few percent must not fail a probe (its receive rate
	// already counts only what arrived); a queue overflowing does.
	probeMaxLoss   = 0.20
	probeTimeout   = 1500e6 // waiting for a cluster's feedback
	probeBaseGap   = 3e9    // between unsuccessful probes, growing
	probeMaxGap    = 5e9
	probeAfterDrop = 1500e6 // first probe after a decrease, once clear
	probeClearTime = 1e9    // no overuse for this long before probing
	probeMinStep   = 1.02   // probe while the estimate is 2 % short of what is wanted
	probeAbove     = 1.1    // aiming 10 % above it
	probeMinGain   = 1.2    // and at least 20 % above the estimate
	probeGuard     = 1e9    // after a cluster is measured, its queue drains and the trend settles
)

// prober is the probe controller and the cluster being measured.
type prober struct {
	id      uint8 // current cluster id, 1..255
	active  bool  // sending: now in [start, end)
	pending bool  // sent, waiting for its feedback
	target  float64
	start   int64
	end     int64
	nextAt  int64 // a cluster may start from then (0: at once)
	gap     int64 // backoff after an unsuccessful cluster

	// The guard against cutting for our own probe: the delay-based rate
	// when the cluster began, and the end and result of the last one.
	base       float64
	finishedAt int64
	lastResult float64

	// Results of the cluster, from feedback.
	recv, lost                 int
	bytes, firstSize, lastSize int64
	firstSend, lastSend        int64
	firstArrival, lastArrival  int64
	coveredAfter               bool // feedback reported a packet sent after the cluster
}

func newProber() prober { return prober{gap: probeBaseGap} }

// tick ends a cluster whose time is over.
func (p *prober) tick(now int64) {
	if p.active && now >= p.end {
		p.active, p.pending = false, true
	}
}

// sending is the cluster id a packet sent at now belongs to, 0 for none.
func (p *prober) sending(now int64) uint8 {
	p.tick(now)
	if p.active && now >= p.start {
		return p.id
	}
	return 0
}

// begin starts a cluster at target bits/s.
func (p *prober) begin(target float64, now int64) {
	p.id++
	if p.id == 0 {
		p.id = 1
	}
	d := max(probeDuration, min(int64(probeMinBits*1e9/target), probeMaxDuration))
	*p = prober{id: p.id, gap: p.gap, nextAt: p.nextAt, active: true, target: target, start: now, end: now + d, base: p.base}
}

// floor is the least a delay-based cut at now may leave. A cluster that
// overshoots a full link queues up to probeDuration of excess, which the
// detector rightly calls overuse; but it was our probe, not the sender's
// rate, so the cut must not go below the rate before the probe, nor, once
// the cluster is measured, below the capacity it showed (when that is less
// the link really got slower). 0: no floor.
func (p *prober) floor(now int64) float64 {
	switch {
	case p.active || p.pending:
		return p.base
	case p.finishedAt != 0 && now-p.finishedAt < probeGuard:
		return min(p.base, p.lastResult)
	}
	return 0
}

// result records feedback for one packet of the current cluster.
func (p *prober) result(sp *sentPacket, received bool, arrival int64) {
	if !received {
		p.lost++
		return
	}
	size := int64(sp.size)
	if p.recv == 0 {
		p.firstSize, p.lastSize = size, size
		p.firstSend, p.lastSend = sp.sendTime, sp.sendTime
		p.firstArrival, p.lastArrival = arrival, arrival
	}
	p.recv++
	p.bytes += size
	if sp.sendTime < p.firstSend {
		p.firstSend = sp.sendTime
	}
	if sp.sendTime >= p.lastSend {
		p.lastSend, p.lastSize = sp.sendTime, size
	}
	if arrival < p.firstArrival {
		p.firstArrival, p.firstSize = arrival, size
	}
	p.lastArrival = max(p.lastArrival, arrival)
}

// finish measures a cluster whose feedback is complete (or timed out):
// the capacity it showed (0 for no result), whether it succeeded, and
// whether it found the link full (received clearly slower than sent).
func (p *prober) finish(now int64) (bps float64, ok, saturated bool) {
	p.pending = false
	p.finishedAt = now
	defer func() {
		p.lastResult = bps
		if ok {
			p.gap, p.nextAt = probeBaseGap, now
		} else {
			p.nextAt = now + p.gap
			p.gap = min(p.gap*3/2, probeMaxGap)
		}
	}()
	if p.recv < probeMinPackets || float64(p.lost) > probeMaxLoss*float64(p.recv+p.lost) {
		return 0, false, false
	}
	sendSpan := p.lastSend - p.firstSend
	recvSpan := p.lastArrival - p.firstArrival
	if sendSpan <= 0 || recvSpan <= 0 {
		return 0, false, false
	}
	// The last packet sent closes the send span and the first received
	// opens the receive span: neither counts in its rate.
	sendRate := float64(p.bytes-p.lastSize) * 8e9 / float64(sendSpan)
	recvRate := float64(p.bytes-p.firstSize) * 8e9 / float64(recvSpan)
	bps = min(sendRate, recvRate)
	saturated = recvRate < probeSaturated*sendRate
	if saturated {
		bps = probeUtilization * recvRate
	}
	return bps, bps >= probeSuccess*p.target, saturated
}
