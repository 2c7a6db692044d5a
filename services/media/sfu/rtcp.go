package sfu

import (
	"encoding/binary"
	"time"
)

// RTCP the edge reads from players and writes to them. Players' RTCP is
// parsed here, without pion's unmarshal (which allocates a packet per
// report): the edge only needs NACKs, keyframe requests and receiver
// reports about one SSRC.

const (
	rtcpSR    = 200
	rtcpRR    = 201
	rtcpRTPFB = 205
	rtcpPSFB  = 206

	maxNacksPerRead = 256
	// maxTWCCPerRead bounds the transport-cc feedback packets taken from
	// one compound packet.
	maxTWCCPerRead = 8
	rtpfbTWCC      = 15 // transport-wide congestion control feedback
)

// rtcpFeedback is what one compound RTCP packet says about one of the
// edge's outgoing SSRCs.
type rtcpFeedback struct {
	nacks    [maxNacksPerRead]uint16
	numNacks int
	keyframe bool // PLI or FIR
	report   bool // a report block was found
	// From the report block (RFC 3550 6.4.1).
	fractionLost uint8
	totalLost    uint32
	highestSeq   uint32
	jitter       uint32
	lsr, dlsr    uint32
	// twcc[:numTWCC] are the transport-wide congestion control feedback
	// packets found (RTPFB FMT 15, slices of the packet read, padding
	// included), in order: a compound packet may carry several (pion's
	// interceptor sends what it built since its last tick together), each
	// about other packets, and the estimator needs every one. remb is a
	// REMB estimate in bits per second, 0 if none. Both are about the
	// player's whole connection, not one SSRC.
	twcc    [maxTWCCPerRead][]byte
	numTWCC int
	remb    int64
}

func (f *rtcpFeedback) reset() {
	f.numNacks, f.keyframe, f.report, f.numTWCC, f.remb = 0, false, false, 0, 0
}

func (f *rtcpFeedback) addNack(seq uint16) {
	if f.numNacks < len(f.nacks) {
		f.nacks[f.numNacks] = seq
		f.numNacks++
	}
}

// parseRTCP walks a compound RTCP packet and fills f with what concerns
// ssrc. It stops at the first malformed packet and reports false; what was
// read before it is kept. Transport-wide feedback and REMB are taken when
// their media SSRC is ssrc, or for any SSRC when ssrc is 0 (the
// connection-level sink for feedback about no SSRC of the edge's).
func parseRTCP(b []byte, ssrc uint32, f *rtcpFeedback) bool {
	f.reset()
	for len(b) > 0 {
		if len(b) < 4 || b[0]>>6 != 2 {
			return false
		}
		count := int(b[0] & 0x1f)
		pt := b[1]
		n := 4 * (int(binary.BigEndian.Uint16(b[2:])) + 1)
		if n > len(b) {
			return false
		}
		p := b[:n]
		whole := p // with its padding: transport-cc feedback is parsed again whole
		b = b[n:]
		if p[0]&0x20 != 0 { // padding
			pad := int(p[n-1])
			if pad == 0 || pad > n-4 {
				return false
			}
			p = p[:n-pad]
		}
		switch pt {
		case rtcpSR, rtcpRR:
			off := 8
			if pt == rtcpSR {
				off = 28
			}
			for i := 0; i < count && off+24 <= len(p); i++ {
				blk := p[off : off+24]
				off += 24
				if binary.BigEndian.Uint32(blk) != ssrc {
					continue
				}
				f.report = true
				f.fractionLost = blk[4]
				f.totalLost = uint32(blk[5])<<16 | uint32(blk[6])<<8 | uint32(blk[7])
				f.highestSeq = binary.BigEndian.Uint32(blk[8:])
				f.jitter = binary.BigEndian.Uint32(blk[12:])
				f.lsr = binary.BigEndian.Uint32(blk[16:])
				f.dlsr = binary.BigEndian.Uint32(blk[20:])
			}
		case rtcpRTPFB:
			if count == rtpfbTWCC && len(p) >= 20 {
				if m := binary.BigEndian.Uint32(p[8:]); (m == ssrc || ssrc == 0) && f.numTWCC < len(f.twcc) {
					f.twcc[f.numTWCC] = whole
					f.numTWCC++
				}
				continue
			}
			if count != 1 || len(p) < 12 || binary.BigEndian.Uint32(p[8:]) != ssrc {
				continue
			}
			for off := 12; off+4 <= len(p); off += 4 {
				pid := binary.BigEndian.Uint16(p[off:])
				blp := binary.BigEndian.Uint16(p[off+2:])
				f.addNack(pid)
				for i := range 16 {
					if blp&(1<<i) != 0 {
						f.addNack(pid + uint16(i) + 1)
					}
				}
			}
		case rtcpPSFB:
			if len(p) < 12 {
				continue
			}
			switch count {
			case 1: // PLI
				if binary.BigEndian.Uint32(p[8:]) == ssrc {
					f.keyframe = true
				}
			case 15: // REMB (draft-alvestrand-rmcat-remb): "REMB", count, exp+mantissa, SSRCs
				if len(p) >= 20 && string(p[12:16]) == "REMB" {
					n := int(p[16])
					exp := uint(p[17] >> 2)
					mant := int64(p[17]&3)<<16 | int64(p[18])<<8 | int64(p[19])
					for i := 0; i < n && 24+4*i <= len(p); i++ {
						if m := binary.BigEndian.Uint32(p[20+4*i:]); m == ssrc || ssrc == 0 {
							if exp < 40 {
								f.remb = mant << exp
							}
							break
						}
					}
				}
			case 4: // FIR: entries of SSRC + seq
				for off := 12; off+8 <= len(p); off += 8 {
					if binary.BigEndian.Uint32(p[off:]) == ssrc {
						f.keyframe = true
					}
				}
			}
		}
	}
	return true
}

// ntpTime is t in NTP format (seconds since 1900, 32.32 fixed point).
func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	s := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return s<<32 | frac
}

// rttFromReport is the round trip a receiver report measures (RFC 3550
// 6.4.1), given the middle 32 bits of the NTP time it arrived at; 0 when the
// report does not refer to a sender report of ours.
func rttFromReport(now32, lsr, dlsr uint32) time.Duration {
	if lsr == 0 {
		return 0
	}
	d := now32 - lsr - dlsr
	if int32(d) < 0 {
		return 0
	}
	return time.Duration(uint64(d) * uint64(time.Second) >> 16)
}
