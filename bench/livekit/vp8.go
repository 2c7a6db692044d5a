package main

import "encoding/binary"

// vp8Frame is a synthetic VP8 frame of size bytes: a valid frame tag (and
// for a keyframe the start code and the picture size, which is how a viewer
// tells the simulcast layer it receives) followed by filler that starts with
// seq. No encoder is needed and nothing decodes the filler: the SFU and the
// viewer meter read only the headers. It is sdk/express's VP8Frame, copied so
// this module does not compile the OnAir SDK's dependencies.
func vp8Frame(key bool, width, height, size int, seq uint32) []byte {
	hdr := 3
	if key {
		hdr = 10
	}
	size = max(size, hdr+4)
	b := make([]byte, size)
	tag := uint32(size-hdr)<<5 | 1<<4 // first partition size, show_frame, version 0
	if !key {
		tag |= 1 // inter frame
	}
	b[0], b[1], b[2] = byte(tag), byte(tag>>8), byte(tag>>16)
	if key {
		b[3], b[4], b[5] = 0x9d, 0x01, 0x2a
		binary.LittleEndian.PutUint16(b[6:], uint16(width&0x3fff))
		binary.LittleEndian.PutUint16(b[8:], uint16(height&0x3fff))
	}
	binary.BigEndian.PutUint32(b[hdr:], seq)
	return b
}
