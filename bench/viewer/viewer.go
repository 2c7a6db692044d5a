// Package viewer measures what a viewer sees of one received VP8 video
// track: the frames a decoder could render, the freezes between them, the
// bit rate and the picture size (the simulcast layer) received.
//
// It works on RTP packets as a player receives them (after SRTP), so any
// WebRTC client in Go can feed it: the OnAir bench and the LiveKit bench use
// the same Meter and so report the same thing the same way.
//
// # The model
//
// A frame is the set of packets with one RTP timestamp. It is complete when
// the packet that starts it (VP8 payload descriptor S bit set, partition 0),
// the packet that ends it (RTP marker) and every sequence number between them
// have arrived. It is decodable when it is complete and its reference chain
// is intact: a keyframe always is; an inter frame is when the frame just
// before it in sequence-number order (padding-only packets between them
// skipped) was decoded. So a frame that never completes breaks the chain,
// and no frame renders until the next complete keyframe, as a VP8 decoder
// without temporal layers needs (every inter frame references the last
// frame).
//
// The jitter buffer is modelled, simply: frames are decoded in order as they
// become decodable; a complete keyframe newer than the last decoded frame is
// decoded at once even when older frames are still missing packets (older
// frames are then dropped, as libwebrtc's frame buffer does). A decoded frame
// is rendered at
//
//	render = max(completed, capture + offset + delay, previous render + Δts/2)
//
// completed is the arrival of the packet that completed it; capture its RTP
// timestamp in local time, offset the smallest transit time (completed −
// capture) seen; delay the playout delay: how late (completed − capture −
// offset) a frame has been, the largest seen, shrinking by PlayoutDecay per
// second; Δts the RTP timestamp difference to the previous rendered frame.
// That is: frames play at their capture pace behind a delay that grows to
// absorb the lateness the link has shown (jitter, a queue, retransmissions
// after NACK, as libwebrtc's target delay adds the RTT once frames are
// NACKed) and slowly shrinks when the link calms down; a frame later than
// that is shown when it completes (the freeze a viewer sees), and a burst
// of frames released together after it plays out at no more than twice real
// time rather than counting as frames shown in one instant.
//
// Freezes are the WebRTC statistics' freezeCount and totalFreezesDuration: an
// interval between two rendered frames is a freeze when it is at least
// max(3 × avg, avg + 150 ms), avg being the mean of the last 30 intervals
// (libwebrtc's VideoQualityObserver; 1/30 s until 5 intervals are known).
// Unlike libwebrtc, intervals that were freezes stay out of the average: a
// stream that shows a frame every few seconds reads as frozen, where an
// average grown to seconds would call those gaps normal.
// Unlike the statistics, a Report also counts the interval still open at its
// end when it is already that long, so a picture frozen for the whole window
// reads as 100 % frozen rather than as no freeze.
package viewer

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/pion/rtp"
)

// clockRate is VP8's RTP clock.
const clockRate = 90000

// PlayoutDecay is how fast the modelled playout delay shrinks, per second
// of playout, when frames arrive earlier than it.
const PlayoutDecay = 50 * time.Millisecond

// KeyframeWait is how long a decoder waits for the frame that continues its
// reference chain, while later packets arrive, before KeyframeNeeded says to
// ask for a keyframe: longer than a retransmission takes on the links the
// benches make (NACK interval + RTT), as a browser waits for NACKs first.
const KeyframeWait = 500 * time.Millisecond

// StableSpan is how long video must play without a freeze to be stable
// (Report.FirstStable).
const StableSpan = 5 * time.Second

const (
	// ringSize is how many recent sequence numbers are remembered: far more
	// than a jitter buffer's worth of packets.
	ringSize = 1 << 13
	// intervalSamples is how many render intervals make the average a freeze
	// is judged against, and minSamples how many it needs (libwebrtc's).
	intervalSamples = 30
	minSamples      = 5
	// maxPending bounds the frames being assembled; older ones are dropped.
	maxPending = 512
	// defaultInterval is the frame interval assumed before one is measured.
	defaultInterval = time.Second / 30
)

// Report is what a viewer saw in a measurement window.
type Report struct {
	// Window is the time from Start to the report.
	Window time.Duration
	// Frames is how many frames were rendered in the window, FPS per second.
	Frames int
	FPS    float64
	// Freezes and FreezeTime are the freezes in the window (the part of a
	// freeze that began before Start counts from Start), FreezePct the
	// frozen share of the window in percent.
	Freezes    int
	FreezeTime time.Duration
	FreezePct  float64
	// Kbps is the received video bit rate (RTP headers and payload).
	Kbps float64
	// Width and Height are the picture size of the latest rendered keyframe:
	// the layer the viewer sees (0 before any).
	Width, Height int
	// LayerAt is when the current Width x Height started, since Start (0 if
	// it was already shown at Start).
	LayerAt time.Duration
	// FirstStable is the time from Start until the end of the first
	// StableSpan without a freeze; negative when there was none.
	FirstStable time.Duration
	// Packets is the distinct video packets received in the window, Lost
	// those of the window's sequence numbers that never arrived.
	Packets, Lost int
}

// LayerChange is a change of the rendered picture size (a layer switch).
type LayerChange struct {
	// At is since Start (negative: before it).
	At            time.Duration
	Width, Height int
}

// maxLayerChanges bounds the layer history.
const maxLayerChanges = 1000

// seqSlot remembers one received sequence number.
type seqSlot struct {
	ext     int64 // extended sequence number + 1; 0: empty
	ts      int64 // the packet's extended RTP timestamp
	padding bool  // carries no frame data
}

type layerChange struct {
	at            time.Time
	width, height int
}

// frame is a frame being assembled.
type frame struct {
	ts            int64
	start, end    int64 // extended sequence numbers; -1 until seen
	seqs          []int64
	key           bool
	width, height int
	completed     time.Time
	complete      bool
}

// Meter measures one video track. It is safe for concurrent use: Packet
// from the track's reader, Report from anyone.
type Meter struct {
	mu sync.Mutex

	// Unwrapping.
	started bool
	highSeq int64 // highest extended sequence number
	highTS  int64 // extended RTP timestamp of highSeq's packet
	ring    [ringSize]seqSlot

	pending map[int64]*frame // by extended RTP timestamp

	// Decoder state.
	decoded      bool  // a frame has been decoded
	lastEnd      int64 // the last decoded frame's end sequence number
	lastTS       int64
	lastRender   time.Time
	lastDecode   time.Time // when the last frame was decoded
	firstPacket  time.Time
	lastPacket   time.Time
	offset       time.Duration // smallest completed − capture seen
	tsBase       int64         // the first decoded frame's timestamp
	delay        time.Duration // the playout delay
	intervals    [intervalSamples]time.Duration
	nIntervals   int
	width        int
	height       int
	layerChanged time.Time
	layers       []layerChange

	// The window.
	start      time.Time
	windowSet  bool
	frames     int
	freezes    int
	freezeTime time.Duration
	bytes      int64
	packets    int
	baseSeq    int64 // highSeq at Start
	baseUnset  bool  // Start came before the first packet
	inWindow   int   // distinct packets with sequence numbers above baseSeq
	stableFrom time.Time
	stableAt   time.Duration // FirstStable; -1 until known
}

// NewMeter returns a Meter for a VP8 track on a 90 kHz RTP clock. Until
// Start, it decodes but its window is empty.
func NewMeter() *Meter {
	return &Meter{pending: map[int64]*frame{}, stableAt: -1}
}

// Start begins the measurement window at at (after a warm-up): the counters
// are reset; the decoder's state (reference chain, render history, layer) is
// kept.
func (m *Meter) Start(at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.start, m.windowSet = at, true
	m.frames, m.freezes, m.freezeTime = 0, 0, 0
	m.bytes, m.packets, m.inWindow = 0, 0, 0
	m.baseSeq, m.baseUnset = m.highSeq, !m.started
	m.stableFrom, m.stableAt = at, -1
}

// Packet takes one received video RTP packet, in arrival order, with its
// arrival time.
func (m *Meter) Packet(p *rtp.Packet, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ext, ts := m.unwrap(p.SequenceNumber, p.Timestamp)
	if m.firstPacket.IsZero() {
		m.firstPacket = at
	}
	m.lastPacket = at
	if m.baseUnset {
		m.baseSeq, m.baseUnset = ext-1, false
	}
	inWindow := m.windowSet && !at.Before(m.start)
	if inWindow {
		m.bytes += int64(p.Header.MarshalSize() + len(p.Payload))
	}
	slot := &m.ring[ext%ringSize]
	if slot.ext == ext+1 {
		return // a duplicate (a retransmission of what arrived)
	}
	if inWindow {
		m.packets++
		if ext > m.baseSeq {
			m.inWindow++
		}
	}
	*slot = seqSlot{ext: ext + 1, ts: ts, padding: len(p.Payload) == 0}
	if len(p.Payload) == 0 {
		m.decode(at) // padding may link the chain to a waiting frame
		return
	}
	if m.decoded && ts <= m.lastTS {
		return // too late: its frame was decoded or skipped
	}
	f := m.pending[ts]
	if f == nil {
		if len(m.pending) >= maxPending {
			m.dropOldest()
		}
		f = &frame{ts: ts, start: -1, end: -1}
		m.pending[ts] = f
	}
	if f.complete {
		return
	}
	f.seqs = append(f.seqs, ext)
	if vp, ok := frameStart(p.Payload); ok {
		f.start = ext
		if w, h, key := keyframeSize(vp); key {
			f.key, f.width, f.height = true, w, h
		}
	}
	if p.Marker {
		f.end = ext
	}
	if f.start >= 0 && f.end >= f.start && int64(len(f.seqs)) >= f.end-f.start+1 {
		n := int64(0)
		for _, s := range f.seqs {
			if s >= f.start && s <= f.end {
				n++
			}
		}
		if n == f.end-f.start+1 {
			f.complete, f.completed = true, at
			m.decode(at)
		}
	}
}

// unwrap extends a sequence number and a timestamp past their wraps,
// relative to the highest sequence number seen.
func (m *Meter) unwrap(seq uint16, ts uint32) (int64, int64) {
	if !m.started {
		m.started = true
		// Start high, so a packet reordered before the first is positive.
		m.highSeq, m.highTS = 1<<16+int64(seq), 1<<32+int64(ts)
		return m.highSeq, m.highTS
	}
	ext := m.highSeq + int64(int16(seq-uint16(m.highSeq)))
	ets := m.highTS + int64(int32(ts-uint32(m.highTS)))
	if ext > m.highSeq {
		m.highSeq, m.highTS = ext, ets
	}
	return ext, ets
}

// dropOldest forgets the oldest frame being assembled.
func (m *Meter) dropOldest() {
	var oldest int64
	first := true
	for ts := range m.pending {
		if first || ts < oldest {
			oldest, first = ts, false
		}
	}
	delete(m.pending, oldest)
}

// decode renders every frame that has become decodable, in order.
func (m *Meter) decode(at time.Time) {
	for {
		f := m.next()
		if f == nil {
			return
		}
		m.render(f)
		for ts := range m.pending {
			if ts <= f.ts {
				delete(m.pending, ts)
			}
		}
	}
}

// next is the frame to decode now, or nil: the chain's next frame when it
// is complete, else the oldest complete keyframe newer than the last decoded
// frame.
func (m *Meter) next() *frame {
	if m.decoded {
		s := m.lastEnd + 1
		for ; s <= m.highSeq; s++ {
			slot := m.ring[s%ringSize]
			if slot.ext != s+1 {
				break // missing: the chain waits or is broken
			}
			if !slot.padding {
				if f := m.pending[slot.ts]; f != nil && f.complete && f.start == s {
					return f
				}
				break
			}
		}
	}
	var key *frame
	for _, f := range m.pending {
		if f.complete && f.key && (!m.decoded || f.ts > m.lastTS) && (key == nil || f.ts < key.ts) {
			key = f
		}
	}
	return key
}

// render shows f, counting its interval and any freeze.
func (m *Meter) render(f *frame) {
	at := f.completed
	// capture is f's RTP time since the first decoded frame's, on a clock
	// that starts at the unix epoch; only differences matter.
	if !m.decoded {
		m.tsBase = f.ts
	}
	capture := time.Duration((f.ts - m.tsBase) * int64(time.Second) / clockRate)
	transit := f.completed.Sub(time.Unix(0, 0)) - capture
	if !m.decoded || transit < m.offset {
		m.offset = transit
	}
	if m.decoded {
		if due := time.Unix(0, 0).Add(capture + m.offset + m.delay); due.After(at) {
			at = due
		}
		// The delay shrinks with the playout time passed, not below zero.
		dts := time.Duration((f.ts - m.lastTS) * int64(time.Second) / clockRate)
		m.delay = max(0, m.delay-time.Duration(float64(dts)*PlayoutDecay.Seconds()))
	}
	m.delay = max(m.delay, transit-m.offset)
	if m.decoded && !m.lastRender.IsZero() {
		dts := time.Duration((f.ts - m.lastTS) * int64(time.Second) / clockRate)
		if paced := m.lastRender.Add(dts / 2); paced.After(at) {
			at = paced
		}
		interval := at.Sub(m.lastRender)
		if m.isFreeze(interval) {
			m.countFreeze(m.lastRender, at)
		} else {
			m.intervals[m.nIntervals%intervalSamples] = interval
			m.nIntervals++
		}
	}
	if f.key && (f.width != m.width || f.height != m.height) {
		m.width, m.height, m.layerChanged = f.width, f.height, at
		if len(m.layers) < maxLayerChanges {
			m.layers = append(m.layers, layerChange{at, f.width, f.height})
		}
	}
	m.decoded, m.lastEnd, m.lastTS, m.lastRender, m.lastDecode = true, f.end, f.ts, at, f.completed
	if m.windowSet && !at.Before(m.start) {
		m.frames++
	}
}

// threshold is the shortest interval between renders that is a freeze.
func (m *Meter) threshold() time.Duration {
	avg := defaultInterval
	if n := min(m.nIntervals, intervalSamples); n >= minSamples {
		var sum time.Duration
		for _, d := range m.intervals[:n] {
			sum += d
		}
		avg = sum / time.Duration(n)
	}
	return max(3*avg, avg+150*time.Millisecond)
}

func (m *Meter) isFreeze(interval time.Duration) bool { return interval >= m.threshold() }

// countFreeze adds the freeze from..to to the window and closes the
// stability span before it.
func (m *Meter) countFreeze(from, to time.Time) {
	if !m.windowSet || !to.After(m.start) {
		return
	}
	from = later(from, m.start)
	m.freezes++
	m.freezeTime += to.Sub(from)
	m.stable(from)
	m.stableFrom = to
}

// stable records FirstStable if the span without a freeze that ends at end
// is long enough.
func (m *Meter) stable(end time.Time) {
	if m.stableAt < 0 && end.Sub(m.stableFrom) >= StableSpan {
		m.stableAt = m.stableFrom.Add(StableSpan).Sub(m.start)
	}
}

// Report is what the viewer saw from Start to at.
func (m *Meter) Report(at time.Time) Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.windowSet {
		return Report{FirstStable: -1, Width: m.width, Height: m.height}
	}
	r := Report{
		Window:     at.Sub(m.start),
		Frames:     m.frames,
		Freezes:    m.freezes,
		FreezeTime: m.freezeTime,
		Width:      m.width,
		Height:     m.height,
		Packets:    m.packets,
	}
	stableFrom, stableAt := m.stableFrom, m.stableAt
	// The interval still open: a freeze already if it is long enough.
	gap := m.start // the open interval began at the last render, or Start
	if m.decoded {
		gap = m.lastRender
	}
	last := later(gap, m.start)
	if at.After(last) && at.Sub(gap) >= m.threshold() {
		r.Freezes++
		r.FreezeTime += at.Sub(last)
		if stableAt < 0 && last.Sub(stableFrom) >= StableSpan {
			stableAt = stableFrom.Add(StableSpan).Sub(m.start)
		}
	} else if stableAt < 0 && at.Sub(stableFrom) >= StableSpan {
		stableAt = stableFrom.Add(StableSpan).Sub(m.start)
	}
	r.FirstStable = stableAt
	if m.width != 0 && m.layerChanged.After(m.start) {
		r.LayerAt = m.layerChanged.Sub(m.start)
	}
	if s := r.Window.Seconds(); s > 0 {
		r.FPS = float64(r.Frames) / s
		r.Kbps = float64(m.bytes) * 8 / s / 1000
		r.FreezePct = 100 * r.FreezeTime.Seconds() / s
	}
	if expected := m.highSeq - m.baseSeq; expected > int64(m.inWindow) {
		r.Lost = int(expected) - m.inWindow
	}
	return r
}

// KeyframeNeeded reports whether the decoder is stuck at at: packets kept
// arriving for KeyframeWait since the last frame was decoded (or since the
// first packet, before any) and none continued the picture. A player then
// asks for a keyframe (a PLI), as a browser does.
func (m *Meter) KeyframeNeeded(at time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	since := m.firstPacket
	if m.decoded {
		since = m.lastDecode
	}
	return !since.IsZero() && m.lastPacket.After(since) && at.Sub(since) >= KeyframeWait
}

// Layers is every change of the rendered picture size so far, the first
// keyframe's included, with times since Start.
func (m *Meter) Layers() []LayerChange {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]LayerChange, len(m.layers))
	for i, l := range m.layers {
		out[i] = LayerChange{At: l.at.Sub(m.start), Width: l.width, Height: l.height}
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// frameStart returns the VP8 payload of a packet that starts a frame (S bit
// set, partition 0), after the payload descriptor (RFC 7741 section 4.2).
func frameStart(p []byte) ([]byte, bool) {
	if len(p) < 1 || p[0]&0x10 == 0 || p[0]&0x07 != 0 {
		return nil, false
	}
	off := 1
	if p[0]&0x80 != 0 { // X: extension byte
		if len(p) < 2 {
			return nil, false
		}
		x := p[1]
		off = 2
		if x&0x80 != 0 { // I: picture ID, 7 or 15 bits
			if len(p) <= off {
				return nil, false
			}
			if p[off]&0x80 != 0 {
				off += 2
			} else {
				off++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			off++
		}
		if x&0x30 != 0 { // T or K: TID/Y/KEYIDX
			off++
		}
	}
	if off >= len(p) {
		return nil, false
	}
	return p[off:], true
}

// keyframeSize parses a VP8 frame's first bytes (RFC 6386 section 9.1): for a
// keyframe (P bit clear, start code 9d 01 2a) its 14-bit width and height.
func keyframeSize(vp []byte) (width, height int, key bool) {
	if len(vp) < 10 || vp[0]&1 != 0 || vp[3] != 0x9d || vp[4] != 0x01 || vp[5] != 0x2a {
		return 0, 0, false
	}
	return int(binary.LittleEndian.Uint16(vp[6:]) & 0x3fff), int(binary.LittleEndian.Uint16(vp[8:]) & 0x3fff), true
}

// KeyframeRepeat is how often a player whose picture stays stuck asks for a
// keyframe again (AskKeyframes).
const KeyframeRepeat = 500 * time.Millisecond

// AskKeyframes calls pli whenever the picture is stuck (KeyframeNeeded), at
// most every KeyframeRepeat, as a browser's receiver asks when it cannot
// decode, until ctx is done. Without it a player that lost a frame for good
// waits for the publisher's next keyframe, which a WebRTC encoder sends only
// when asked.
func (m *Meter) AskKeyframes(ctx context.Context, pli func()) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if now.Sub(last) >= KeyframeRepeat && m.KeyframeNeeded(now) {
				last = now
				pli()
			}
		}
	}
}
