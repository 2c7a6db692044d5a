package bwe

import (
	"encoding/binary"

	"github.com/pion/rtcp"
)

// Transport-cc feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01
// section 3.1), from pion's parsed packet or from raw RTCP. Either way the
// packet is checked whole before any of it is applied, so a truncated or
// inconsistent one changes nothing.

const (
	rtcpRTPFB = 205
	rtcpPSFB  = 206
	fmtTCC    = 15
	fmtREMB   = 15 // application layer feedback, "REMB"

	// Status symbols.
	symNotReceived = 0
	symSmallDelta  = 1
	symLargeDelta  = 2

	deltaUnit = 250e3 // ns per receive delta tick (250 us)
)

// Feedback applies a transport-cc feedback packet as pion parses it. It
// reports false, changing nothing, when the packet is inconsistent (more
// statuses than chunks, fewer deltas than received packets, reserved
// symbols). It does not allocate.
func (e *Estimator) Feedback(fb *rtcp.TransportLayerCC, now int64) bool {
	if fb == nil || !walkTCC(fb, nil) {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	walkTCC(fb, e)
	e.endFeedback(now)
	return true
}

// walkTCC walks fb's statuses and deltas and gives each packet to e, or
// only checks fb when e is nil.
func walkTCC(fb *rtcp.TransportLayerCC, e *Estimator) bool {
	var arrival int64
	if e != nil {
		arrival = e.beginFeedback(fb.ReferenceTime)
	}
	seq := fb.BaseSequenceNumber
	left := int(fb.PacketStatusCount)
	di := 0
	// step applies one status symbol; false when fb is inconsistent.
	step := func(sym uint16) bool {
		var received bool
		switch sym {
		case symNotReceived:
		case symSmallDelta, symLargeDelta:
			if di >= len(fb.RecvDeltas) || fb.RecvDeltas[di] == nil {
				return false
			}
			arrival += fb.RecvDeltas[di].Delta * 1000
			di++
			received = true
		default:
			return false
		}
		if e != nil {
			e.packet(seq, received, arrival)
		}
		seq++
		left--
		return true
	}
	for _, c := range fb.PacketChunks {
		if left == 0 {
			break
		}
		var (
			run *rtcp.RunLengthChunk
			vec *rtcp.StatusVectorChunk
		)
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			run = c
		case *rtcp.StatusVectorChunk:
			vec = c
		}
		if run == nil && vec == nil {
			return false
		}
		if run != nil {
			for range min(int(run.RunLength), left) {
				if !step(run.PacketStatusSymbol) {
					return false
				}
			}
			continue
		}
		for _, sym := range vec.SymbolList {
			if left == 0 {
				break
			}
			if vec.SymbolSize == rtcp.TypeTCCSymbolSizeOneBit && sym > 1 {
				return false
			}
			if !step(sym) {
				return false
			}
		}
	}
	return left == 0
}

// FeedbackRTCP applies the transport-cc feedback (RTPFB FMT 15) and REMB
// (PSFB FMT 15) packets of a compound RTCP packet, ignoring the rest. It
// stops at the first malformed packet and reports false; the packets before
// it are applied. It does not allocate.
func (e *Estimator) FeedbackRTCP(b []byte, now int64) bool {
	for len(b) > 0 {
		if len(b) < 4 || b[0]>>6 != 2 {
			return false
		}
		n := 4 * (int(binary.BigEndian.Uint16(b[2:])) + 1)
		if n > len(b) {
			return false
		}
		p := b[:n]
		b = b[n:]
		if p[0]&0x20 != 0 { // padding
			pad := int(p[n-1])
			if pad == 0 || pad > n-4 {
				return false
			}
			p = p[:n-pad]
		}
		switch {
		case p[1] == rtcpRTPFB && p[0]&0x1f == fmtTCC:
			if !tccValid(p) {
				return false
			}
			e.mu.Lock()
			tccApply(p, e)
			e.endFeedback(now)
			e.mu.Unlock()
		case p[1] == rtcpPSFB && p[0]&0x1f == fmtREMB:
			if len(p) < 20 || string(p[12:16]) != "REMB" {
				continue // another application layer feedback
			}
			exp := uint(p[17] >> 2)
			mantissa := uint64(p[17]&3)<<16 | uint64(p[18])<<8 | uint64(p[19])
			bps := mantissa << exp
			if exp > 40 || bps > 1<<62 {
				return false
			}
			e.REMB(int64(bps), now)
		}
	}
	return true
}

// Raw transport-cc layout: header (4), sender SSRC (4), media SSRC (4),
// base sequence (2), status count (2), reference time (3), feedback count
// (1), then 2-byte chunks and after them the receive deltas.
const tccChunks = 20

// tccCount is how many of the left statuses raw chunk c covers.
func tccCount(c uint16, left int) int {
	switch {
	case c&0x8000 == 0: // run length
		return min(int(c&0x1fff), left)
	case c&0x4000 == 0: // 14 one-bit symbols
		return min(14, left)
	default: // 7 two-bit symbols
		return min(7, left)
	}
}

// tccSymbol is the i-th status symbol of raw chunk c.
func tccSymbol(c uint16, i int) uint16 {
	switch {
	case c&0x8000 == 0:
		return (c >> 13) & 3
	case c&0x4000 == 0:
		return (c >> (13 - i)) & 1
	default:
		return (c >> (12 - 2*i)) & 3
	}
}

// tccValid checks a raw transport-cc packet (padding removed): chunks for
// every status, no reserved symbol, a delta for every received packet.
func tccValid(p []byte) bool {
	if len(p) < tccChunks {
		return false
	}
	left := int(binary.BigEndian.Uint16(p[14:]))
	pos, deltaBytes := tccChunks, 0
	for left > 0 {
		if pos+2 > len(p) {
			return false
		}
		c := binary.BigEndian.Uint16(p[pos:])
		n := tccCount(c, left)
		pos += 2
		if c&0x8000 == 0 && n > 0 {
			// A run: one symbol n times.
			switch tccSymbol(c, 0) {
			case symSmallDelta:
				deltaBytes += n
			case symLargeDelta:
				deltaBytes += 2 * n
			case symNotReceived:
			default:
				return false
			}
			left -= n
			continue
		}
		for i := range n {
			switch tccSymbol(c, i) {
			case symSmallDelta:
				deltaBytes++
			case symLargeDelta:
				deltaBytes += 2
			case symNotReceived:
			default:
				return false
			}
		}
		left -= n
	}
	return pos+deltaBytes <= len(p)
}

// tccApply gives every packet of a valid raw transport-cc packet to e.
func tccApply(p []byte, e *Estimator) {
	seq := binary.BigEndian.Uint16(p[12:])
	left := int(binary.BigEndian.Uint16(p[14:]))
	ref := uint32(p[16])<<16 | uint32(p[17])<<8 | uint32(p[18])
	arrival := e.beginFeedback(ref)
	// Find where the deltas start: after the chunks that cover the count.
	pos, count := tccChunks, left
	for count > 0 {
		count -= tccCount(binary.BigEndian.Uint16(p[pos:]), count)
		pos += 2
	}
	dpos := pos
	for pos = tccChunks; left > 0; pos += 2 {
		c := binary.BigEndian.Uint16(p[pos:])
		n := tccCount(c, left)
		for i := range n {
			received := true
			switch tccSymbol(c, i) {
			case symSmallDelta:
				arrival += int64(p[dpos]) * deltaUnit
				dpos++
			case symLargeDelta:
				arrival += int64(int16(binary.BigEndian.Uint16(p[dpos:]))) * deltaUnit
				dpos += 2
			default:
				received = false
			}
			e.packet(seq, received, arrival)
			seq++
		}
		left -= n
	}
}
