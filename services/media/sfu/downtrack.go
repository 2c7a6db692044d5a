package sfu

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Forwarding bounds.
const (
	// maxLag is the per-player queue: a player whose live packets fall
	// further behind than this skips ahead (to the latest keyframe when
	// there is one), and the skipped packets count as its drops.
	maxLag = 256
	// A replayed keyframe group goes out in bursts of replayBurst packets,
	// one burst per replayPace, so it does not overrun the player.
	replayBurst  = 24
	replayPace   = time.Millisecond
	maxNackQueue = 512
)

// downTrack is one player's copy of one publisher track: a pion TrackLocal
// whose packets come from the source's shared packet cache, rewritten into
// the downtrack's own SSRC, sequence and timestamp space. Its source can
// change under it (a publisher that reconnected is spliced in at a
// keyframe), which the player does not see.
type downTrack struct {
	sub      *Player
	kind     webrtc.RTPCodecType
	id       string
	streamID string
	want     atomic.Pointer[UpTrack] // the source to forward, nil: paused
	// layers are the source track's layers (one without simulcast); pref
	// the player's choice among them. selMu serializes choosing.
	layers  atomic.Pointer[[]*UpTrack]
	pref    Layer
	selMu   sync.Mutex
	chooser layerChooser
	paused  atomic.Bool
	// cutOld: the last switch was down on a congested link, so the layer
	// left stops at once rather than play on until the new layer's
	// keyframe: its packets only lengthen the bottleneck queue the
	// keyframe must get through.
	cutOld atomic.Bool

	// Set by Bind (pion's goroutine) before bound is set.
	bound   atomic.Bool
	ssrc    uint32
	rtxSSRC uint32
	codecs  []webrtc.RTPCodecParameters
	ws      webrtc.TrackLocalWriter
	twccID  uint8 // the transport-wide sequence number's extension ID, 0: none

	// Owned by the Player's turn (one worker at a time).
	src       *UpTrack
	pt, rtxPT uint8
	cursor    uint64 // next packet of src to send
	replayTo  uint64 // packets before it are a replay, sent paced
	restart   bool   // the next packet sent starts a segment
	rw        rewriter
	// seg is the source the rewriter's segment maps (d.src may already be
	// the next one, waiting for its first packet), past the segments
	// before it, newest first: a NACK for a packet sent just before a
	// layer switch (or a skip) names the old segment's sequence numbers,
	// and the old layer's cache still holds the packet.
	seg      *UpTrack
	past     [pastSegments]pastSegment
	initSeq  uint16
	initTS   uint32
	rtxSeq   uint16
	hdr      rtp.Header
	buf      [MaxPayload + 2]byte
	nackWork []uint16
	// resent counts resends of recent packets (resend.go), nil before
	// the first NACK.
	resent *resendRing
	ext    [1]rtp.Extension
	twcc   [2]byte
	// group is the layer group last forwarded: a source of the same group
	// is switched to at a fresh keyframe, not replayed.
	group *LayerGroup
	// oldestLive: the arrival of the oldest live packet sent since the
	// Player last looked (Server.TakeEdgeDelay), 0: none.
	oldestLive int64

	nackMu sync.Mutex
	nacks  []uint16

	// Counters, for tests and reports.
	sent, octets, retransmits, drops, nackMisses atomic.Int64
	switches, rtxDenied                          atomic.Int64
	// nackRepeats: NACKs not answered because the packet was resent
	// maxResends times already, or last less than a resend gap ago.
	nackRepeats          atomic.Int64
	reports              atomic.Int64 // receiver report blocks read
	fractionLost, jitter atomic.Uint32
	totalLost            atomic.Uint32
	rtt                  atomic.Int64
	lastTS               atomic.Uint32
	lastAt               atomic.Int64

	// dropOut (tests only) drops outgoing live packets, as a lossy path
	// would; retransmissions are not dropped.
	dropOut atomic.Pointer[func(seq uint16) bool]
}

// pastSegments is how many segments before the current one NACKs are
// still answered for: a switch and a skip right after it, say.
const pastSegments = 2

// pastSegment is a segment a downtrack sent before its current one: its
// source and its rewriter as it was when the segment ended.
type pastSegment struct {
	src *UpTrack
	rw  rewriter
}

func newDownTrack(sub *Player, src *UpTrack, streamID string) *downTrack {
	d := &downTrack{sub: sub, kind: src.kind, id: src.kind.String(), streamID: streamID,
		initSeq: uint16(rand.Uint32()), initTS: rand.Uint32(), rtxSeq: uint16(rand.Uint32()),
		nacks: make([]uint16, 0, 64), nackWork: make([]uint16, 0, 64)}
	d.want.Store(src)
	one := []*UpTrack{src}
	d.layers.Store(&one)
	return d
}

// ID, RID, StreamID and Kind: webrtc.TrackLocal.
func (d *downTrack) ID() string                            { return d.id }
func (d *downTrack) RID() string                           { return "" }
func (d *downTrack) StreamID() string                      { return d.streamID }
func (d *downTrack) Kind() webrtc.RTPCodecType             { return d.kind }
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error { d.bound.Store(false); return nil }

var errNoCodec = errors.New("media: the player accepts none of the publisher's codecs")

// Bind picks the player's codec matching the source's.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codecs := ctx.CodecParameters()
	c, ok := pickCodec(codecs, d.want.Load().Codec())
	if !ok {
		return webrtc.RTPCodecParameters{}, errNoCodec
	}
	d.ssrc = uint32(ctx.SSRC())
	d.rtxSSRC = uint32(ctx.SSRCRetransmission())
	d.codecs = append([]webrtc.RTPCodecParameters(nil), codecs...)
	d.ws = ctx.WriteStream()
	for _, e := range ctx.HeaderExtensions() {
		if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 15 {
			d.twccID = uint8(e.ID)
		}
	}
	d.bound.Store(true)
	return c, nil
}

// pickCodec finds want's codec among a player's: same MIME type, the same
// fmtp line if there is one.
func pickCodec(codecs []webrtc.RTPCodecParameters, want webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	var found *webrtc.RTPCodecParameters
	for i := range codecs {
		c := &codecs[i]
		if !strings.EqualFold(c.MimeType, want.MimeType) {
			continue
		}
		if c.SDPFmtpLine == want.SDPFmtpLine {
			return *c, true
		}
		if found == nil {
			found = c
		}
	}
	if found == nil {
		return webrtc.RTPCodecParameters{}, false
	}
	return *found, true
}

// rtxFor is the payload type of the RTX codec for pt, 0 if none.
func rtxFor(codecs []webrtc.RTPCodecParameters, pt uint8) uint8 {
	apt := "apt=" + itoa(int(pt))
	for _, c := range codecs {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) && strings.Contains(c.SDPFmtpLine, apt) {
			return uint8(c.PayloadType)
		}
	}
	return 0
}

func itoa(n int) string {
	var b [8]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// addNacks queues sequence numbers a player asked for.
func (d *downTrack) addNacks(seqs []uint16) {
	d.nackMu.Lock()
	for _, s := range seqs {
		if len(d.nacks) < maxNackQueue {
			d.nacks = append(d.nacks, s)
		}
	}
	d.nackMu.Unlock()
	d.sub.Signal()
}

// pump sends what is due: retransmissions first, then the source's packets
// from the cursor on. more is true when a paced replay has packets left.
func (d *downTrack) pump(now int64) (more bool, sent int) {
	if !d.bound.Load() {
		return false, 0
	}
	d.nackMu.Lock()
	d.nacks, d.nackWork = d.nackWork[:0], d.nacks
	d.nackMu.Unlock()
	for _, seq := range d.nackWork {
		if d.retransmit(seq, now) {
			sent++
		}
	}
	if w := d.want.Load(); w != d.src {
		switch {
		case w == nil: // paused
			d.src = nil
		case d.src == nil && d.group != w.group, d.src != nil && d.src.group != w.group:
			if !d.begin(w) {
				return false, sent
			}
		default:
			d.switchLayer(w, now)
		}
	}
	if d.src == nil {
		return false, sent
	}
	head := d.src.cache.head.Load()
	if d.cursor >= d.replayTo && head > d.cursor+maxLag {
		d.skip(head)
	}
	n := 0
	for d.cursor < head {
		if d.cursor < d.replayTo && n >= replayBurst {
			return true, sent
		}
		ext := d.cursor
		d.cursor++
		p, ok := d.src.cache.get(ext, d.buf[2:], now, false)
		if !ok {
			continue // lost on the way in: the player will NACK it in vain
		}
		n++
		if d.write(p, &d.rw, now, false, false) {
			sent++
		}
	}
	return false, sent
}

// begin starts forwarding w: video from its latest keyframe group (a replay
// up to the live head), audio from its latest packet. False while w has
// nothing to start from.
func (d *downTrack) begin(w *UpTrack) bool {
	if w == nil {
		d.src = nil
		return false
	}
	head := w.cache.head.Load()
	if head == 0 {
		return false
	}
	start := head - 1
	if w.kind == webrtc.RTPCodecTypeVideo {
		ks, h, ok := w.cache.keyframeGroup()
		if !ok {
			w.RequestKeyframe(true)
			return false
		}
		start, head = ks, h
	}
	c := w.Codec()
	if pc, ok := pickCodec(d.codecs, c); ok {
		d.pt = uint8(pc.PayloadType)
		if d.rtxSSRC != 0 {
			d.rtxPT = rtxFor(d.codecs, d.pt)
		}
	}
	d.src, d.group = w, w.group
	d.cursor, d.replayTo, d.restart = start, head, true
	w.RequestKeyframe(true)
	return true
}

// switchLayer moves to w, another layer of the track forwarded (or the
// one forwarded before a pause), at a keyframe of w: its cached one when
// that is fresh (a replay of a few packets), else the next, which it asks
// for; the current layer (if any) plays on until then, unless the switch
// was down on a congested link (cutOld). The rewriter starts
// a new segment, so the player's sequence numbers and timestamps run on.
func (d *downTrack) switchLayer(w *UpTrack, now int64) {
	ks, head, ok := w.cache.keyframeGroup()
	if !ok || now-w.keyAt.Load() > int64(freshKeyframe) {
		w.RequestKeyframe(false)
		if d.src != nil && d.cutOld.Load() {
			// Nothing more of the old layer: the link drains while the
			// keyframe is on its way. Past segments keep answering NACKs.
			d.src = nil
		}
		return
	}
	if c, ok := pickCodec(d.codecs, w.Codec()); ok {
		d.pt = uint8(c.PayloadType)
		if d.rtxSSRC != 0 {
			d.rtxPT = rtxFor(d.codecs, d.pt)
		}
	}
	d.src, d.group = w, w.group
	d.cursor, d.replayTo, d.restart = ks, head, true
	d.switches.Add(1)
}

// skip moves a player that fell maxLag behind to the latest keyframe group
// (or the live head), as a new segment: its sequence numbers stay
// contiguous, so it does not NACK what it skipped.
func (d *downTrack) skip(head uint64) {
	target := head - 1
	if d.kind == webrtc.RTPCodecTypeVideo {
		if ks, h, ok := d.src.cache.keyframeGroup(); ok && ks > d.cursor {
			target, head = ks, h
		} else {
			d.src.RequestKeyframe(false)
		}
	}
	d.drops.Add(int64(target - d.cursor))
	d.cursor, d.replayTo, d.restart = target, head, true
}

// write sends cached packet p (its payload in d.buf[2:]), numbered by rw:
// d.rw, or for a retransmission the past segment it was sent in.
func (d *downTrack) write(p cachedPacket, rw *rewriter, now int64, rtx, probe bool) bool {
	if d.restart && !rtx {
		d.restart = false
		headTS, ok := d.src.cache.tsOf(d.replayTo - 1)
		if !ok {
			headTS = p.ts
		}
		if d.seg != nil && d.rw.started && d.rw.highest+1 != d.rw.segStart {
			copy(d.past[1:], d.past[:len(d.past)-1])
			d.past[0] = pastSegment{src: d.seg, rw: d.rw}
		}
		d.rw.start(p.ext, p.ts, now, d.src.clockRate.Load(), d.replayTo-1, headTS, d.initSeq, d.initTS)
		d.seg = d.src
	}
	seq, ts, ok := rw.mapPacket(p.ext, p.ts)
	if !ok {
		return false
	}
	d.hdr = rtp.Header{Version: 2, Marker: p.marker, PayloadType: d.pt, SequenceNumber: seq, Timestamp: ts, SSRC: d.ssrc}
	payload := d.buf[2 : 2+p.n]
	if rtx {
		if d.rtxPT != 0 {
			d.buf[0], d.buf[1] = byte(seq>>8), byte(seq)
			payload = d.buf[:2+p.n]
			d.hdr.SSRC, d.hdr.PayloadType, d.hdr.SequenceNumber = d.rtxSSRC, d.rtxPT, d.rtxSeq
			d.rtxSeq++
		}
	} else {
		d.rw.sent(p.ext, seq, ts, now)
		d.lastTS.Store(ts)
		d.lastAt.Store(now)
		if p.ext >= d.replayTo && (d.oldestLive == 0 || p.at < d.oldestLive) {
			d.oldestLive = p.at
		}
		if f := d.dropOut.Load(); f != nil && (*f)(seq) {
			return false
		}
	}
	if slow := d.sub.delay.Load(); slow > 0 {
		time.Sleep(time.Duration(slow))
	}
	d.stampTWCC(len(payload), now, probe)
	if _, err := d.ws.WriteRTP(&d.hdr, payload); err != nil {
		return false
	}
	d.sent.Add(1)
	d.octets.Add(int64(len(payload)))
	return true
}

// retransmit answers one NACKed sequence number from the shared cache of
// the source it was sent from: the current segment's, or a past one's;
// not when the packet was resent often enough or just now (resend.go).
func (d *downTrack) retransmit(seq uint16, now int64) bool {
	src, rw := d.seg, &d.rw
	if src == nil {
		return false
	}
	if d.resent == nil {
		d.resent = new(resendRing)
	}
	nowMs := uint32(now / 1e6)
	if !d.resent.allow(seq, nowMs, resendGapFor(time.Duration(d.rtt.Load()))) {
		d.nackRepeats.Add(1)
		return false
	}
	ext, ok := rw.nackExt(seq)
	for i := 0; !ok && i < len(d.past) && d.past[i].src != nil; i++ {
		src, rw = d.past[i].src, &d.past[i].rw
		ext, ok = rw.nackExt(seq)
	}
	if !ok {
		d.nackMisses.Add(1)
		return false
	}
	p, ok := src.cache.get(ext, d.buf[2:], now, true)
	if !ok {
		d.nackMisses.Add(1)
		return false
	}
	if now-p.at > int64(maxRepairAge)+d.rtt.Load() {
		d.nackMisses.Add(1) // too late to help
		return false
	}
	if est := d.sub.est; est != nil && !d.sub.rtxBkt.take(p.n+14, int64(float64(est.Estimate())*rtxShare), rtxBurst, now) {
		d.rtxDenied.Add(1)
		return false
	}
	if !d.write(p, rw, now, true, false) {
		return false
	}
	d.resent.mark(seq, nowMs)
	d.retransmits.Add(1)
	return true
}

// senderReport is the downtrack's RTCP sender report, nil before it sent
// anything.
func (d *downTrack) senderReport(now time.Time) rtcp.Packet {
	at := d.lastAt.Load()
	if at == 0 || !d.bound.Load() {
		return nil
	}
	w := d.want.Load()
	cr := uint64(90000)
	if w != nil {
		cr = uint64(w.clockRate.Load())
	}
	elapsed := uint64(max(now.UnixNano()-at, 0))
	return &rtcp.SenderReport{SSRC: d.ssrc, NTPTime: ntpTime(now), RTPTime: d.lastTS.Load() + uint32(elapsed*cr/1e9),
		PacketCount: uint32(d.sent.Load()), OctetCount: uint32(d.octets.Load())}
}

// handleRTCP takes one RTCP packet from the player about this downtrack
// (pion's SRTCP goroutine calls it through rtcpSink): NACKs are queued for
// the Player, keyframe requests go upstream (throttled), receiver
// reports are kept.
func (d *downTrack) handleRTCP(b []byte) {
	if !d.bound.Load() {
		return
	}
	var fb rtcpFeedback
	parseRTCP(b, d.ssrc, &fb)
	// Loss in receiver reports drives the estimate only for a player
	// without transport-cc feedback.
	d.sub.feedback(&fb, d.twccID == 0)
	if fb.numNacks > 0 {
		d.addNacks(fb.nacks[:fb.numNacks])
	}
	if fb.keyframe {
		if w := d.want.Load(); w != nil {
			w.RequestKeyframe(false)
		}
	}
	if fb.report {
		d.reports.Add(1)
		d.fractionLost.Store(uint32(fb.fractionLost))
		d.totalLost.Store(fb.totalLost)
		d.jitter.Store(fb.jitter)
		if rtt := rttFromReport(uint32(ntpTime(time.Now())>>16), fb.lsr, fb.dlsr); rtt > 0 {
			d.rtt.Store(int64(rtt))
		}
	}
}
