package sfu

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Congestion control per player. Every packet a player gets carries a
// transport-wide sequence number (when it negotiated the extension); its
// transport-cc feedback drives the player's bandwidth estimate (bwe), and
// REMB does when that is all it sends. After each feedback the player's
// video layer is chosen again (layers.go), and retransmissions draw on a
// budget that is a share of the estimate, so repairing loss cannot itself
// congest the link.

// Estimate bounds, bits per second. A player starts at initialEstimate:
// enough for a middle layer, so a constrained link is not flooded with the
// top layer while the estimate is still unknown; probing takes a clean
// link up within seconds.
const (
	initialEstimate = 1_200_000
	minEstimate     = 50_000
	maxEstimate     = 20_000_000
	// rtxShare of the estimate may go to retransmissions, in bursts of up
	// to rtxBurst of it.
	rtxShare = 0.2
	rtxBurst = 250 * time.Millisecond
	// A packet older than maxRepairAge plus the player's round trip
	// arrives after the player's jitter buffer gave up on it: it is not
	// resent.
	maxRepairAge = 400 * time.Millisecond
)

// stampTWCC gives the packet in d.hdr the player's next transport-wide
// sequence number and tells the estimator it is being sent.
func (d *downTrack) stampTWCC(payloadLen int, now int64, probe bool) {
	s := d.sub
	if d.twccID == 0 || s.est == nil {
		return
	}
	seq := s.twSeq
	s.twSeq++
	binary.BigEndian.PutUint16(d.twcc[:], seq)
	d.hdr.Extensions = d.ext[:0] // appended to in place: no allocation
	_ = d.hdr.SetExtension(d.twccID, d.twcc[:])
	s.est.Sent(seq, 12+8+payloadLen, now, probe)
}

// feedback takes the congestion feedback found in one RTCP packet from the
// player and chooses its layers again.
func (s *Player) feedback(fb *rtcpFeedback, reports bool) {
	if s.est == nil || (fb.numTWCC == 0 && fb.remb == 0 && !(reports && fb.report)) {
		return
	}
	now := time.Now().UnixNano()
	switch {
	case fb.numTWCC > 0:
		for _, b := range fb.twcc[:fb.numTWCC] {
			s.est.FeedbackRTCP(b, now)
		}
	case fb.remb > 0:
		s.est.REMB(fb.remb, now)
	default:
		s.est.ReceiverReport(fb.fractionLost, now)
	}
	s.allocate(now)
}

// allocate chooses each video downtrack's layer for the current estimate.
func (s *Player) allocate(now int64) {
	audio := s.audioReserve()
	budget := s.est.Estimate() - audio
	var desired int64
	for _, d := range s.tracks {
		if d.kind == webrtc.RTPCodecTypeVideo {
			desired += d.choose(budget, now)
		}
	}
	// Probing stops once the estimate would carry the best layer wanted.
	s.est.SetDesired(desired + audio)
}

// audioReserve is what the estimate keeps for the player's audio: the
// measured rate of the audio it plays, with the estimator's per-packet
// overhead; minAudioReserve before it is measured, 0 without audio.
func (s *Player) audioReserve() int64 {
	var r int64
	for _, d := range s.tracks {
		if d.kind != webrtc.RTPCodecTypeAudio {
			continue
		}
		u := d.want.Load()
		if u == nil {
			continue
		}
		if m := u.rate.Load(); m > 0 {
			r += m + audioOverhead
		} else {
			r += minAudioReserve
		}
	}
	return r
}

// probeTick is how often a probing player's turn comes back to send
// padding between media packets.
const probeTick = 5 * time.Millisecond

// probe sends the padding the estimator asks for to find more bandwidth:
// retransmissions, on the RTX stream, of the newest video packet sent (a
// duplicate the player drops), so a probe needs no payload of its own. It
// reports whether the player is probing (its turn should come back soon).
func (s *Player) probe(now int64) bool {
	if s.est == nil {
		return false
	}
	rate := s.est.ProbeRate(now)
	if rate <= 0 {
		s.probeAt, s.probeCredit = 0, 0
		return false
	}
	if s.probeAt == 0 {
		s.probeAt = now
	}
	s.probeCredit += float64(rate) / 8 * float64(min(now-s.probeAt, int64(20*time.Millisecond))) / 1e9
	s.probeAt = now
	for _, d := range s.tracks {
		for s.probeCredit > 0 {
			n := d.probePacket(now)
			if n == 0 {
				break
			}
			s.probeCredit -= float64(n)
		}
	}
	return true
}

// probePacket resends the newest packet sent, as RTX marked as a probe,
// or when there is none to resend (video paused, or not started) sends an
// RTX packet of padding only, which the player's RTX reader drops: a
// paused player must probe too, or its estimate, held near what audio
// alone proves, would never let its video resume. It returns the bytes
// sent, 0 if d cannot probe (not video, no RTX).
func (d *downTrack) probePacket(now int64) int {
	if d.rtxPT == 0 || d.kind != webrtc.RTPCodecTypeVideo || !d.bound.Load() {
		return 0
	}
	// The newest packet is often a frame's last, short fragment: a probe
	// of 50-byte copies sends thousands of packets a second whose IP and
	// UDP headers the link carries but the estimator does not count, and
	// measures the link at half its rate. So copy the newest full-sized
	// packet among the last few.
	for i := uint64(0); d.src != nil && d.seg != nil && d.rw.started && i < probeLookBack && d.rw.highest >= d.rw.segStart+i; i++ {
		p, ok := d.seg.cache.get(d.rw.highest-i, d.buf[2:], now, true)
		if !ok || p.n < probeMinCopy {
			continue
		}
		if d.write(p, &d.rw, now, true, true) {
			return p.n + 2 + 12 + 8
		}
		break
	}
	return d.writePadding(now)
}

// paddingProbe is the size of a padding-only probe packet's padding, the
// most RTP padding can say.
const paddingProbe = 255

// writePadding sends one RTX packet of padding only as a probe.
func (d *downTrack) writePadding(now int64) int {
	d.hdr = rtp.Header{Version: 2, Padding: true, PayloadType: d.rtxPT, SequenceNumber: d.rtxSeq, Timestamp: d.rw.lastTS, SSRC: d.rtxSSRC}
	d.rtxSeq++
	pad := d.buf[:paddingProbe]
	clear(pad[:paddingProbe-1])
	pad[paddingProbe-1] = paddingProbe
	d.stampTWCC(paddingProbe, now, true)
	if _, err := d.ws.WriteRTP(&d.hdr, pad); err != nil {
		return 0
	}
	return paddingProbe + 12 + 8
}

// probeLookBack is how many of the newest packets a probe looks at for one
// of at least probeMinCopy bytes to copy (else it sends padding).
const (
	probeLookBack = 8
	probeMinCopy  = 2 * paddingProbe
)

// choose sets the layer d forwards: the pinned one, or in auto mode what
// the chooser picks for budget. A change subscribes the player to the new
// layer first, so its packets wake the player while it waits for a keyframe.
// It returns the bitrate to probe for: what the best layer d could want
// needs, with probeMargin.
func (d *downTrack) choose(budget int64, now int64) (want int64) {
	d.selMu.Lock()
	defer d.selMu.Unlock()
	ls := d.layers.Load()
	if ls == nil || len(*ls) == 0 {
		return 0
	}
	sorted := sortLayers(*ls)
	if len(sorted) < 2 {
		// One layer: nothing to switch to, and its video is not paused:
		// a publisher without simulcast is played as it is sent.
		return int64(float64(sorted[0].rate.Load()) / upHeadroom)
	}
	cur := d.want.Load()
	var next *UpTrack
	if d.pref != LayerAuto {
		next = pinned(sorted, d.pref)
	} else {
		next = d.chooser.choose(sorted, cur, budget, now, d.sub.est.Limited(), d.sub.est.Congested())
	}
	top := sorted[len(sorted)-1]
	if d.pref != LayerAuto {
		top = next
	}
	want = int64(float64(top.rate.Load()) / upHeadroom * probeMargin)
	if next == cur {
		return want
	}
	if next != nil {
		next.Subscribe(d.sub)
	}
	d.cutOld.Store(next != nil && cur != nil && d.sub.est.Congested() && slices.Index(sorted, next) < slices.Index(sorted, cur))
	d.want.Store(next)
	d.paused.Store(next == nil)
	if next != nil {
		next.RequestKeyframe(false)
	}
	if cur != nil && !d.sub.uses(cur) {
		cur.Unsubscribe(d.sub)
	}
	d.sub.Signal()
	if f := d.sub.onLayer; f != nil {
		f(layerIndex(sorted, next), next == nil)
	}
	return want
}

// layerIndex names u's place among sorted layers as a preference value.
func layerIndex(sorted []*UpTrack, u *UpTrack) Layer {
	for i, x := range sorted {
		if x == u {
			switch {
			case i == len(sorted)-1:
				return LayerHigh
			case i == 0:
				return LayerLow
			}
			return LayerMedium
		}
	}
	return LayerAuto
}

// uses reports whether any downtrack of s wants u.
func (s *Player) uses(u *UpTrack) bool {
	for _, d := range s.tracks {
		if d.want.Load() == u {
			return true
		}
	}
	return false
}

// tokenBucket meters retransmissions against a share of the estimate.
// Only the player's turn uses it.
type tokenBucket struct {
	tokens float64 // bytes
	at     int64
}

// take spends n bytes if the bucket, refilled at rate bits/s up to burst
// worth of it, has them.
func (b *tokenBucket) take(n int, rate int64, burst time.Duration, now int64) bool {
	if b.at == 0 {
		b.at = now
		b.tokens = float64(rate) / 8 * burst.Seconds()
	}
	b.tokens += float64(rate) / 8 * float64(now-b.at) / 1e9
	b.at = now
	if limit := float64(rate) / 8 * burst.Seconds(); b.tokens > limit {
		b.tokens = limit
	}
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// setLayers makes ls (a track's layers, in publisher order) the source of
// d and picks the layer to start with: the pinned one, or in auto mode
// what the current estimate fits. Play calls it, and adopt when a
// publisher came back with new tracks.
func (d *downTrack) setLayers(ls []*UpTrack) {
	if len(ls) == 0 {
		return
	}
	d.selMu.Lock()
	defer d.selMu.Unlock()
	d.layers.Store(&ls)
	sorted := sortLayers(ls)
	next := sorted[len(sorted)-1]
	if d.kind == webrtc.RTPCodecTypeVideo && len(sorted) > 1 {
		defer func() {
			if f := d.sub.onLayer; f != nil {
				f(layerIndex(sorted, next), false)
			}
		}()
		d.chooser.reset()
		if d.pref != LayerAuto {
			next = pinned(sorted, d.pref)
		} else if next = d.chooser.choose(sorted, nil, d.sub.est.Estimate()-d.sub.audioReserve(), time.Now().UnixNano(), false, false); next == nil {
			next = sorted[0]
		}
	}
	next.Subscribe(d.sub)
	if prev := d.want.Swap(next); prev != nil && prev != next && !d.sub.uses(prev) {
		prev.Unsubscribe(d.sub)
	}
	d.paused.Store(false)
}

// VideoState is what a player's video forwarding is doing, for metrics.
type VideoState struct {
	HasVideo, Simulcast, Paused bool
	Layer                       Layer // the layer forwarded (Simulcast)
	Estimate                    int64 // bits per second
	Switches, RTXDenied         int64
	// NackRepeats are NACKs not answered for a packet resent
	// maxResends times already or less than a resend gap ago.
	NackRepeats int64
	// Retransmits are the packets resent for NACKs.
	Retransmits int64
}

// Video reports the player's video forwarding.
func (s *Player) Video() VideoState {
	v := VideoState{Estimate: s.est.Estimate()}
	for _, d := range s.tracks {
		v.Switches += d.switches.Load()
		v.RTXDenied += d.rtxDenied.Load()
		v.NackRepeats += d.nackRepeats.Load()
		v.Retransmits += d.retransmits.Load()
		if d.kind != webrtc.RTPCodecTypeVideo {
			continue
		}
		v.HasVideo = true
		ls := *d.layers.Load()
		w := d.want.Load()
		v.Paused = w == nil
		v.Simulcast = len(ls) > 1
		if v.Simulcast && w != nil {
			v.Layer = layerIndex(sortLayers(ls), w)
		}
	}
	return v
}
