package bwe

import (
	"math"
	"sync"
	"sync/atomic"
)

// Config bounds the estimate, in bits per second. Zero fields take the
// defaults below.
type Config struct {
	// Initial is the estimate before any feedback (default 300 kbit/s).
	Initial int64
	// Min and Max clamp the estimate (defaults 30 kbit/s and 50 Mbit/s).
	Min, Max int64
}

// Defaults of Config.
const (
	DefaultInitial = 300_000
	DefaultMin     = 30_000
	DefaultMax     = 50_000_000
)

const (
	mediaWindowWidth = 25e6 // rate windows: 12 buckets of 25 ms = 300 ms
	twccStale        = 5e9  // no transport-cc for this long: REMB/RR rule, if any
)

// Estimator estimates the bandwidth to one player from transport-cc
// feedback (or REMB and receiver reports) about the packets sent to it.
//
// Sent and ProbeRate are meant for the forwarding worker, Feedback,
// FeedbackRTCP, REMB and ReceiverReport for the RTCP reader; any of them may
// run concurrently with the others. Estimate is lock-free.
type Estimator struct {
	cfg Config

	// estimate is the published estimate, written under mu by every update;
	// limited, likewise, whether it is a limit the link has shown.
	estimate  atomic.Int64
	limited   atomic.Bool
	congested atomic.Bool

	// mu guards everything below: the send history Sent writes and feedback
	// reads, the probe cluster both sides touch, and the controllers.
	mu sync.Mutex

	hist  history
	media rateWindow // non-probe bytes sent, by send time: the app's own rate
	acked rateWindow // received bytes, by arrival time (the player's clock)
	delay delayState
	rc    aimd
	loss  lossControl
	probe prober

	desired float64 // what the sender would send if it could; 0: cfg.Max

	remb     float64
	haveREMB bool
	twccAt   int64 // now of the last valid transport-cc feedback
	haveTWCC bool

	lastOveruse int64

	// Transport-cc reference time, unwrapped (units of 64 ms), and the
	// latest arrival time seen (ns, the player's clock).
	ref         int64
	lastRef24   int64
	haveRef     bool
	lastArrival int64

	// Counts of the feedback being applied, and since New.
	fbReported, fbLost int
	reported, lost     uint64
}

// New returns an estimator at c.Initial.
func New(c Config) *Estimator {
	if c.Min <= 0 {
		c.Min = DefaultMin
	}
	if c.Max <= 0 {
		c.Max = DefaultMax
	}
	if c.Max < c.Min {
		c.Max = c.Min
	}
	if c.Initial <= 0 {
		c.Initial = DefaultInitial
	}
	c.Initial = min(max(c.Initial, c.Min), c.Max)
	e := &Estimator{
		cfg:   c,
		media: rateWindow{width: mediaWindowWidth},
		acked: rateWindow{width: mediaWindowWidth},
		rc:    aimd{rate: float64(c.Initial), state: rcIncrease},
		loss:  newLossControl(),
		probe: newProber(),
	}
	e.delay.det.reset()
	e.estimate.Store(c.Initial)
	return e
}

// Sent records a packet sent to the player: every packet that carries a
// transport-wide sequence number, media, RTX and padding alike; size is
// what it takes on the wire (RTP header and payload; the estimator's rates
// are in those bytes). probe marks padding/RTX sent only because ProbeRate
// asked for it: it does not count as the sender's own rate, which ProbeRate
// tops up. Retransmissions answering NACKs are not probes. It does not
// allocate.
func (e *Estimator) Sent(seq uint16, size int, now int64, probe bool) {
	e.mu.Lock()
	cluster := e.probe.sending(now)
	if !probe {
		e.media.add(now, size)
	}
	e.hist.add(seq, size, now, probe, cluster)
	e.mu.Unlock()
}

// Estimate is the current target bitrate to the player, bits per second.
// Safe to call from any goroutine.
func (e *Estimator) Estimate() int64 { return e.estimate.Load() }

// ProbeRate is how many bits per second of padding or RTX the sender should
// add right now, on top of its own media, to probe for more bandwidth; 0
// when not probing. Send them with Sent(..., probe=true).
func (e *Estimator) ProbeRate(now int64) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.probe.sending(now) == 0 {
		return 0
	}
	media := min(e.media.rate(now), float64(e.estimate.Load()))
	return int64(max(e.probe.target-media, 0))
}

// SetDesired tells the estimator the rate the sender would send if the
// estimate allowed it (say the top simulcast layer plus headroom): probing
// stops once the estimate reaches it. 0 means Config.Max.
func (e *Estimator) SetDesired(bps int64) {
	e.mu.Lock()
	e.desired = float64(bps)
	e.mu.Unlock()
}

// REMB applies a receiver estimated maximum bitrate: the estimate never
// exceeds the latest one, and without transport-cc it is the estimate
// (still capped by the loss from receiver reports).
func (e *Estimator) REMB(bps int64, now int64) {
	if bps <= 0 {
		return
	}
	e.mu.Lock()
	e.remb, e.haveREMB = float64(bps), true
	e.publish(now)
	e.mu.Unlock()
}

// ReceiverReport applies the fraction lost (RFC 3550, out of 256) of a
// receiver report about the media sent to the player. It is used only
// while there is no transport-cc feedback, which measures loss itself.
func (e *Estimator) ReceiverReport(fractionLost uint8, now int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.twccActive(now) {
		return
	}
	e.loss.apply(float64(fractionLost)/256, e.current(now), now)
	e.publish(now)
}

// Stats is a snapshot of the estimator's parts, for metrics and tests.
type Stats struct {
	Estimate   int64   // as Estimate
	DelayBased int64   // the delay-based (AIMD + probes) rate
	LossCap    int64   // the loss-based cap, 0 when there is none
	REMB       int64   // the latest REMB, 0 when none
	Acked      int64   // the acknowledged bitrate
	LossRatio  float64 // the loss of the last complete window
	Probing    bool    // a probe cluster is being sent or measured
	// Packets transport-cc feedback has reported, and of them lost, since
	// New (each packet counted at its first report).
	Reported, Lost uint64
}

// Stats returns a snapshot.
func (e *Estimator) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Stats{
		Estimate:   e.estimate.Load(),
		DelayBased: int64(e.rc.rate),
		REMB:       int64(e.remb),
		Acked:      int64(e.acked.rate(e.lastArrival)),
		LossRatio:  e.loss.lastRatio,
		Probing:    e.probe.active || e.probe.pending,
		Reported:   e.reported,
		Lost:       e.lost,
	}
	if !math.IsInf(e.loss.limit, 1) {
		s.LossCap = int64(e.loss.limit)
	}
	return s
}

func (e *Estimator) twccActive(now int64) bool {
	return e.haveTWCC && (now-e.twccAt < twccStale || !e.haveREMB)
}

// current is the combined estimate before clamping: the delay-based rate
// (or REMB without transport-cc), under the loss cap and any REMB.
func (e *Estimator) current(now int64) float64 {
	v := e.rc.rate
	if !e.twccActive(now) && e.haveREMB {
		v = e.remb
	}
	if e.haveREMB {
		v = min(v, e.remb)
	}
	return min(v, e.loss.limit)
}

func (e *Estimator) publish(now int64) {
	v := min(max(e.current(now), float64(e.cfg.Min)), float64(e.cfg.Max))
	e.estimate.Store(int64(v))
	e.limited.Store(e.rc.lastDecrease != 0 || !math.IsInf(e.loss.limit, 1) || e.haveREMB)
}

// Congested reports whether the latest feedback shows the link not
// carrying what is sent: the last loss window lost more than lossHigh, or
// the receiver got less than congestedDelivery of the media sent over the
// rate window. A delay-based cut alone is not congestion: a queue blip or
// a receiver's scheduling jitter cuts the estimate as well, and a sender
// that drops its video layer at once on such a cut (a keyframe to go down,
// another to come back after the next probe) freezes the picture for
// nothing.
func (e *Estimator) Congested() bool { return e.congested.Load() }

// congestedDelivery: below this share of the media sent arriving, the link
// is congested. Random loss of a few percent and bursty video (a keyframe
// sent but not yet acknowledged) stay well above it; a link that got
// slower than the sender (3 Mbit/s of video into 700 kbit/s) is far below.
const congestedDelivery = 0.6

// Limited reports whether the estimate is a limit the link has shown: the
// delay- or loss-based controller has cut it, or the player sends REMB.
// Before that it is only where a ramp started, and a sender should not
// hold media back on it (an SFU pausing a player's video, say).
func (e *Estimator) Limited() bool { return e.limited.Load() }

// beginFeedback starts applying a transport-cc feedback whose reference
// time is ref24 (24 bits, 64 ms units) and returns that time in ns of the
// player's clock, unwrapped.
func (e *Estimator) beginFeedback(ref24 uint32) int64 {
	r := int64(ref24 & 0xffffff)
	if !e.haveRef {
		e.ref, e.haveRef = r+1<<24, true // kept positive for the rate windows
	} else {
		d := (r - e.lastRef24) << 40 >> 40 // sign-extend the 24-bit difference
		e.ref += d
	}
	e.lastRef24 = r
	e.fbReported, e.fbLost = 0, 0
	return e.ref * 64e6
}

// packet applies one packet's status from the feedback being applied.
func (e *Estimator) packet(seq uint16, received bool, arrival int64) {
	sp := e.hist.get(seq)
	if sp == nil || sp.flags&sentReceived != 0 {
		return // not ours any more, or already reported received
	}
	first := sp.flags&sentReported == 0
	sp.flags |= sentReported
	if first {
		e.fbReported++
		if !received {
			e.fbLost++
		}
	}
	if p := &e.probe; p.pending || p.active {
		if sp.cluster == p.id && (first || received) {
			p.result(sp, received, arrival)
		} else if p.pending && sp.sendTime >= p.end {
			p.coveredAfter = true
		}
	}
	if !received {
		return
	}
	sp.flags |= sentReceived
	e.lastArrival = max(e.lastArrival, arrival)
	e.acked.add(arrival, int(sp.size))
	e.delay.packet(sp.sendTime, arrival)
}

// endFeedback runs the controllers on what the feedback said.
func (e *Estimator) endFeedback(now int64) {
	e.twccAt, e.haveTWCC = now, true
	acked := e.acked.rate(e.lastArrival)
	u := e.delay.verdict()
	if u == usageOver {
		e.lastOveruse = now
	}
	if e.rc.update(u, acked, now) {
		floor := e.probe.floor(now)
		e.rc.rate = max(e.rc.rate, floor)
		// After a cut, look for the way back up once congestion is clear;
		// but a cut of a probe's own queue (floor > 0) keeps the backoff,
		// or a full link is probed, queued and frozen every 2 s.
		if floor == 0 {
			e.probe.gap = probeBaseGap
			if !e.probe.active && !e.probe.pending {
				e.probe.nextAt = now + probeAfterDrop
			}
		}
	}
	e.reported += uint64(e.fbReported)
	e.lost += uint64(e.fbLost)
	e.loss.add(e.fbReported, e.fbLost, e.current(now), now)

	e.probe.tick(now)
	if p := &e.probe; p.pending && (p.coveredAfter || now-p.end > probeTimeout) {
		if bps, _, saturated := p.finish(now); bps > 0 {
			if saturated && bps < e.rc.rate {
				// The cluster found the link full below the estimate: the
				// link got slower (a measurement, unlike a delay signal).
				e.rc.rate = max(bps, beta*e.rc.rate)
			} else if bps > e.rc.rate {
				e.rc.rate, e.rc.lastChange = bps, now
				if bps/1000 > e.rc.capKbps {
					e.rc.capKbps = 0
				}
			}
			e.loss.raise(bps)
		}
	}
	e.maybeProbe(now)
	e.publish(now)
	media := e.media.rate(now)
	e.congested.Store(e.loss.lastRatio > lossHigh || (media > 0 && acked < congestedDelivery*media))
}

// maybeProbe starts a probe cluster when one is due, congestion is clear
// and the estimate is below what the sender wants.
func (e *Estimator) maybeProbe(now int64) {
	p := &e.probe
	if p.active || p.pending || now < p.nextAt {
		return
	}
	if e.lastOveruse != 0 && now-e.lastOveruse < probeClearTime {
		return
	}
	if e.loss.lastRatio > lossHigh {
		return
	}
	want := float64(e.cfg.Max)
	if e.desired > 0 {
		want = min(want, e.desired)
	}
	est := min(max(e.current(now), float64(e.cfg.Min)), float64(e.cfg.Max))
	if want < est*probeMinStep {
		return
	}
	// Aim a little above what is wanted, so that a success leaves the
	// sender headroom there, but at least probeMinGain above the estimate
	// (a smaller step is lost in the measurement's noise) and at most
	// probeFactor times it (the overshoot a full link must queue).
	p.base = e.rc.rate
	p.begin(min(est*probeFactor, max(want*probeAbove, est*probeMinGain)), now)
}
