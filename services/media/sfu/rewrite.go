package sfu

// rewriter maps a source's packets (extended sequence numbers, RTP
// timestamps) into one downtrack's own sequence and timestamp space. The
// mapping is an offset per source segment: the first source starts at a
// random point, and each later one (a publisher that reconnected, a player
// skipped ahead) is spliced in right after the last packet sent, so the
// player sees one unbroken stream. All arithmetic is modular: sequence
// numbers and timestamps wrap as RTP's do.
//
// A segment may start with a replay (the keyframe group sent to a player
// that joins a running stream): its timestamps are squeezed into a short
// window that ends at the live head's, so the player's jitter buffer
// renders the replay at once and is at the live edge when it ends.
type rewriter struct {
	started bool
	seqOff  uint64 // out seq = uint16(ext + seqOff)
	tsOff   uint32 // out ts = ts + tsOff
	// segStart is the first packet of the current segment; highest the
	// highest one sent in it, as lastSeq and lastTS.
	segStart, highest uint64
	lastSeq           uint16
	lastTS            uint32
	lastAt            int64 // unix nanoseconds lastTS was sent at

	// Squeeze of a replay: packets up to sqTo, whose timestamps lie within
	// sqSpan before sqHead, are mapped into sqWidth before it.
	sq                    bool
	sqTo                  uint64
	sqHead, sqSpan, sqWid uint32
}

// replayWindow is how much playout time a replayed keyframe group takes.
const replayWindowMillis = 20

// start begins a segment at packet ext (timestamp ts). When the segment
// opens with a replay up to packet replayTo (timestamp headTS), its
// timestamps are squeezed. initSeq and initTS are the first source's
// starting point; a later segment continues from the last packet sent,
// advanced by the wall time since then.
func (r *rewriter) start(ext uint64, ts uint32, now int64, clockRate uint32, replayTo uint64, headTS uint32, initSeq uint16, initTS uint32) {
	outSeq, outTS := initSeq, initTS
	if r.started {
		outSeq = r.lastSeq + 1
		elapsed := max(now-r.lastAt, 0)
		elapsed = min(elapsed, int64(60e9))
		outTS = r.lastTS + max(1, uint32(uint64(elapsed)*uint64(clockRate)/1e9))
	}
	r.started = true
	r.seqOff = uint64(outSeq) - ext
	r.segStart = ext
	r.highest = ext - 1
	r.sq = false
	span := headTS - ts
	if replayTo > ext && int32(span) > 0 {
		r.sq, r.sqTo, r.sqHead, r.sqSpan = true, replayTo, headTS, span
		r.sqWid = min(span, clockRate*replayWindowMillis/1000)
		r.tsOff = outTS + r.sqWid - headTS
	} else {
		r.tsOff = outTS - ts
	}
}

// mapTS is the outgoing timestamp of packet ext with timestamp ts.
func (r *rewriter) mapTS(ext uint64, ts uint32) uint32 {
	if r.sq && ext <= r.sqTo {
		back := r.sqHead - ts
		if int32(back) < 0 {
			back = 0
		}
		back = min(back, r.sqSpan)
		return r.sqHead + r.tsOff - uint32(uint64(back)*uint64(r.sqWid)/uint64(r.sqSpan))
	}
	return ts + r.tsOff
}

// mapPacket is the outgoing sequence number and timestamp of packet ext;
// ok is false for a packet from before the current segment.
func (r *rewriter) mapPacket(ext uint64, ts uint32) (seq uint16, outTS uint32, ok bool) {
	if !r.started || ext < r.segStart {
		return 0, 0, false
	}
	return uint16(ext + r.seqOff), r.mapTS(ext, ts), true
}

// sent records that packet ext went out as seq/ts at now.
func (r *rewriter) sent(ext uint64, seq uint16, ts uint32, now int64) {
	if ext > r.highest || r.highest < r.segStart {
		r.highest, r.lastSeq, r.lastTS, r.lastAt = ext, seq, ts, now
	}
}

// nackExt translates a sequence number a player asks for back to the
// source's extended sequence number; ok is false for one not sent in the
// current segment.
func (r *rewriter) nackExt(seq uint16) (uint64, bool) {
	if !r.started || r.highest < r.segStart || r.highest+1 == r.segStart {
		return 0, false
	}
	d := int64(int16(seq - r.lastSeq))
	ext := int64(r.highest) + d
	if d > 0 || ext < int64(r.segStart) {
		return 0, false
	}
	return uint64(ext), true
}
