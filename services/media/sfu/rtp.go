package sfu

import "encoding/binary"

// rtpInfo is what the edge reads of an RTP packet's fixed header. The edge
// parses publishers' packets itself (no pion unmarshal, nothing allocated):
// header extensions and CSRCs are skipped, padding is cut off, and what is
// forwarded is the payload under a header the downtrack writes afresh.
type rtpInfo struct {
	marker bool
	pt     uint8
	seq    uint16
	ts     uint32
	ssrc   uint32
	// payload is b[start:end] of the parsed packet.
	start, end int
}

// parseRTP reads an RTP packet's header; ok is false for anything that is
// not a well-formed RTP version 2 packet.
func parseRTP(b []byte) (h rtpInfo, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return h, false
	}
	cc := int(b[0] & 0x0f)
	h.marker = b[1]&0x80 != 0
	h.pt = b[1] & 0x7f
	h.seq = binary.BigEndian.Uint16(b[2:])
	h.ts = binary.BigEndian.Uint32(b[4:])
	h.ssrc = binary.BigEndian.Uint32(b[8:])
	off := 12 + 4*cc
	if off > len(b) {
		return h, false
	}
	if b[0]&0x10 != 0 { // extension
		if off+4 > len(b) {
			return h, false
		}
		words := int(binary.BigEndian.Uint16(b[off+2:]))
		off += 4 + 4*words
		if off > len(b) {
			return h, false
		}
	}
	end := len(b)
	if b[0]&0x20 != 0 { // padding
		pad := int(b[end-1])
		if pad == 0 || end-pad < off {
			return h, false
		}
		end -= pad
	}
	h.start, h.end = off, end
	return h, true
}

// seqUnwrapper turns 16-bit sequence numbers into a 64-bit count that does
// not wrap. The first packet is 1<<16 so a packet reordered before it still
// has a positive number.
type seqUnwrapper struct {
	started bool
	highest uint64
}

// unwrap returns the extended number of seq, relative to the highest seen
// (a packet within half the space behind it is old, not new).
func (u *seqUnwrapper) unwrap(seq uint16) uint64 {
	if !u.started {
		u.started = true
		u.highest = 1<<16 | uint64(seq)
		return u.highest
	}
	d := int16(seq - uint16(u.highest))
	ext := uint64(int64(u.highest) + int64(d))
	if ext > u.highest {
		u.highest = ext
	}
	return ext
}
