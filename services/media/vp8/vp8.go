// Package vp8 reads what the edge needs of VP8 over RTP: the payload
// descriptor (RFC 7741 4.2), whether a packet starts a keyframe, and a
// keyframe's picture size (RFC 6386 9.1, after the 9d 01 2a start code).
//
// Nothing here allocates: the edge calls it on every video packet it
// ingests. A change to how VP8 is parsed goes here, and only here (the
// SFU's keyframe detection and `onair bench fanout` both call it).
package vp8

import "encoding/binary"

// Descriptor is an RTP packet's VP8 payload descriptor.
type Descriptor struct {
	// Start (S) is set on the first packet of a VP8 partition;
	// PartitionID (PID) is the partition's index, 0 for the first.
	Start       bool
	PartitionID uint8
	// NonReference (N): the frame can be dropped without harm to others.
	NonReference bool
	// PictureID is the 7- or 15-bit picture ID (M says 15) if HasPictureID.
	HasPictureID, LongPictureID bool
	PictureID                   uint16
	// TL0PICIDX if HasTL0PICIDX; TID, LayerSync (Y) if HasTID; KEYIDX if
	// HasKEYIDX.
	HasTL0PICIDX, HasTID, HasKEYIDX bool
	TL0PICIDX                       uint8
	TID                             uint8
	LayerSync                       bool
	KEYIDX                          uint8
	// Len is the descriptor's length: the VP8 payload starts at p[Len].
	Len int
}

// Parse reads the payload descriptor at the start of p, an RTP packet's
// payload; ok is false when p is shorter than the descriptor it announces
// or holds no payload after it.
func Parse(p []byte) (d Descriptor, ok bool) {
	if len(p) < 1 {
		return d, false
	}
	d.Start, d.PartitionID = p[0]&0x10 != 0, p[0]&0x07
	d.NonReference = p[0]&0x20 != 0
	off := 1
	if p[0]&0x80 != 0 { // X
		if len(p) < 2 {
			return d, false
		}
		x := p[1]
		off = 2
		if x&0x80 != 0 { // I: picture ID
			if len(p) <= off {
				return d, false
			}
			d.HasPictureID = true
			if p[off]&0x80 != 0 {
				if len(p) <= off+1 {
					return d, false
				}
				d.LongPictureID = true
				d.PictureID = binary.BigEndian.Uint16(p[off:]) & 0x7fff
				off += 2
			} else {
				d.PictureID = uint16(p[off])
				off++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			if len(p) <= off {
				return d, false
			}
			d.HasTL0PICIDX, d.TL0PICIDX = true, p[off]
			off++
		}
		if x&0x30 != 0 { // T or K
			if len(p) <= off {
				return d, false
			}
			if x&0x20 != 0 {
				d.HasTID, d.TID, d.LayerSync = true, p[off]>>6, p[off]&0x20 != 0
			}
			if x&0x10 != 0 {
				d.HasKEYIDX, d.KEYIDX = true, p[off]&0x1f
			}
			off++
		}
	}
	if len(p) <= off {
		return d, false
	}
	d.Len = off
	return d, true
}

// FrameStart returns the VP8 payload of p if p is the first packet of a
// frame (S set, partition 0): the frame's first bytes, its frame tag.
func FrameStart(p []byte) (frame []byte, ok bool) {
	d, ok := Parse(p)
	if !ok || !d.Start || d.PartitionID != 0 {
		return nil, false
	}
	return p[d.Len:], true
}

// IsKeyframe reports whether RTP payload p starts a keyframe: the first
// packet of a frame whose frame tag has P (inter frame) clear.
func IsKeyframe(p []byte) bool {
	f, ok := FrameStart(p)
	return ok && f[0]&0x01 == 0
}

// KeyframeSize is a keyframe's picture size, read from frame, a VP8
// frame's start (FrameStart's): the 3-byte frame tag, the start code 9d 01
// 2a, then 14-bit width and height (the top 2 bits are the scale). ok is
// false for an inter frame, a bad start code, or a zero size.
func KeyframeSize(frame []byte) (width, height int, ok bool) {
	if len(frame) < 10 || frame[0]&0x01 != 0 {
		return 0, 0, false
	}
	if frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return 0, 0, false
	}
	width = int(binary.LittleEndian.Uint16(frame[6:]) & 0x3fff)
	height = int(binary.LittleEndian.Uint16(frame[8:]) & 0x3fff)
	return width, height, width > 0 && height > 0
}
