package media

import (
	"strings"

	"github.com/pion/webrtc/v4"
)

// The keyframe cache: per video track, the packets from the latest keyframe
// on, so a player that joins a running stream gets a decodable picture at
// once instead of waiting for the publisher's next keyframe (which a
// publisher that ignores PLI sends only every few seconds). The packets are
// the packet cache's own: the cache pins the group's first packet and keeps
// everything after it.

// codec is a video codec the edge knows keyframes of.
type codec uint8

const (
	codecOther codec = iota
	codecVP8
	codecVP9
	codecH264
	codecAV1
)

func codecOf(mime string) codec {
	switch strings.ToLower(mime) {
	case strings.ToLower(webrtc.MimeTypeVP8):
		return codecVP8
	case strings.ToLower(webrtc.MimeTypeVP9):
		return codecVP9
	case strings.ToLower(webrtc.MimeTypeH264):
		return codecH264
	case strings.ToLower(webrtc.MimeTypeAV1):
		return codecAV1
	}
	return codecOther
}

// isKeyframe reports whether an RTP payload carries (the start of) a
// keyframe: for H.264 an IDR slice or the SPS that precedes it, for AV1 the
// start of a new coded video sequence, for VP8 and VP9 the first packet of
// an intra frame.
func isKeyframe(c codec, p []byte) bool {
	switch c {
	case codecVP8:
		return vp8Keyframe(p)
	case codecVP9:
		return vp9Keyframe(p)
	case codecH264:
		return h264Keyframe(p)
	case codecAV1:
		// Aggregation header Z|Y|W W|N: N starts a coded video sequence,
		// which begins with a keyframe (RTP payload format for AV1, 4.4).
		return len(p) > 1 && p[0]&0x08 != 0
	}
	return false
}

// vp8Keyframe: RFC 7741 payload descriptor, then the VP8 payload header
// whose P bit is 0 for a keyframe, in the first packet of the frame.
func vp8Keyframe(p []byte) bool {
	off, ok := vp8PayloadStart(p)
	return ok && p[off]&0x01 == 0
}

// vp8PayloadStart is where the VP8 payload begins after the RFC 7741
// payload descriptor, in the first packet of a frame (S set, partition 0);
// ok is false for any other packet or a truncated descriptor.
func vp8PayloadStart(p []byte) (int, bool) {
	if len(p) < 1 {
		return 0, false
	}
	s, pid := p[0]&0x10 != 0, p[0]&0x07
	off := 1
	if p[0]&0x80 != 0 { // X
		if len(p) < 2 {
			return 0, false
		}
		x := p[1]
		off = 2
		if x&0x80 != 0 { // I: picture ID
			if len(p) <= off {
				return 0, false
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
		if x&0x30 != 0 { // T or K
			off++
		}
	}
	if !s || pid != 0 || len(p) <= off {
		return 0, false
	}
	return off, true
}

// vp9Keyframe: the payload descriptor (RFC 9628) says where a frame begins
// (B); the frame's uncompressed header says whether it is a keyframe (the
// descriptor's P bit is not set by every packetizer).
func vp9Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	d := p[0]
	if d&0x08 == 0 { // B
		return false
	}
	if d&0x40 != 0 { // P: inter-picture predicted
		return false
	}
	off := 1
	if d&0x80 != 0 { // I
		if len(p) <= off {
			return false
		}
		if p[off]&0x80 != 0 {
			off += 2
		} else {
			off++
		}
	}
	flexible := d&0x10 != 0
	if d&0x20 != 0 { // L
		off++
		if !flexible {
			off++ // TL0PICIDX
		}
	}
	if flexible && d&0x40 != 0 {
		for i := 0; i < 3; i++ { // P_DIFF
			if len(p) <= off {
				return false
			}
			more := p[off]&0x01 != 0
			off++
			if !more {
				break
			}
		}
	}
	if d&0x02 != 0 { // V: scalability structure
		if len(p) <= off {
			return false
		}
		ss := p[off]
		off++
		ns := int(ss>>5) + 1
		if ss&0x10 != 0 { // Y
			off += 4 * ns
		}
		if ss&0x08 != 0 { // G
			if len(p) <= off {
				return false
			}
			ng := int(p[off])
			off++
			for range ng {
				if len(p) <= off {
					return false
				}
				r := int(p[off]>>2) & 0x03
				off += 1 + r
			}
		}
	}
	if len(p) <= off {
		return false
	}
	// Uncompressed header: frame_marker(2) profile_low profile_high
	// [reserved_zero if profile 3] show_existing_frame frame_type.
	h := p[off]
	if h>>6 != 2 {
		return false
	}
	profile := (h>>5)&1 | (h>>4)&1<<1
	bit := 4 // next bit, counted from the top
	if profile == 3 {
		bit++
	}
	if h&(0x80>>bit) != 0 { // show_existing_frame
		return false
	}
	bit++
	var frameType byte
	if bit < 8 {
		frameType = h & (0x80 >> bit)
	} else {
		if len(p) <= off+1 {
			return false
		}
		frameType = p[off+1] & 0x80
	}
	return frameType == 0
}

// h264Keyframe: an SPS or IDR NAL unit, alone, in a STAP-A or starting a
// FU-A (RFC 6184).
func h264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	key := func(t byte) bool { return t == 5 || t == 7 }
	switch t := p[0] & 0x1f; {
	case t >= 1 && t <= 23:
		return key(t)
	case t == 24: // STAP-A
		for off := 1; off+2 < len(p); {
			n := int(p[off])<<8 | int(p[off+1])
			off += 2
			if n == 0 || off+n > len(p) {
				return false
			}
			if key(p[off] & 0x1f) {
				return true
			}
			off += n
		}
	case t == 28: // FU-A
		return len(p) > 1 && p[1]&0x80 != 0 && key(p[1]&0x1f)
	}
	return false
}

// setKeyframe pins the keyframe group starting at ext, if the ring still
// holds it.
func (c *packetCache) setKeyframe(ext uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.highest >= ext && c.highest-ext < uint64(len(c.slots)) {
		c.key = ext
	}
}

// keyframeGroup is where the latest keyframe group starts and the live
// head (one past the highest packet); ok is false without a group.
func (c *packetCache) keyframeGroup() (start, head uint64, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.key, c.highest + 1, c.key != 0
}
