package sfu

import (
	"testing"

	"github.com/pion/rtp/codecs"

	"github.com/onair-dev/onair/sdk/express"
)

// Frames as encoders emit them, cut into RTP payloads by pion's own
// packetizers: keyframe detection must agree with what goes on the wire.

// vp9Frame is a VP9 frame's uncompressed header start (frame_marker 2,
// profile 0, show_existing_frame 0, frame_type) then, for a keyframe, the
// sync code, then filler.
func vp9Frame(key bool, size int) []byte {
	b := make([]byte, size)
	b[0] = 0x80 // frame_marker 10, profile 0, show_existing 0, frame_type 0 (key)
	if !key {
		b[0] |= 0x04 // frame_type 1
	}
	b[1], b[2], b[3] = 0x49, 0x83, 0x42
	return b
}

// h264AU is an Annex B access unit.
func h264AU(key bool, size int) []byte {
	sc := []byte{0, 0, 0, 1}
	var out []byte
	if key {
		out = append(out, sc...)
		out = append(out, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40) // SPS
		out = append(out, sc...)
		out = append(out, 0x68, 0xce, 0x3c, 0x80) // PPS
		out = append(out, sc...)
		out = append(out, 0x65) // IDR slice
	} else {
		out = append(out, sc...)
		out = append(out, 0x41) // non-IDR slice
	}
	for len(out) < size {
		out = append(out, 0x5a)
	}
	return out
}

// av1TU is a temporal unit of OBUs with size fields: a keyframe starts with
// a sequence header.
func av1TU(key bool, size int) []byte {
	out := []byte{0x12, 0x00} // temporal delimiter
	if key {
		out = append(out, 0x0a, 0x0a, 0x00, 0x00, 0x00, 0x24, 0xc4, 0xff, 0xdf, 0x00, 0x68, 0x02) // sequence header
	}
	payload := make([]byte, size)
	payload[0] = 0x10       // frame header bits, opaque to the packetizer
	out = append(out, 0x32) // OBU_FRAME, has_size
	out = append(out, byte(size&0x7f)|0x80, byte(size>>7))
	return append(out, payload...)
}

func TestKeyframeDetection(t *testing.T) {
	tests := []struct {
		name  string
		codec codec
		pay   func() [][]byte
		want  []bool // per packet
	}{
		{"VP8 keyframe", codecVP8, func() [][]byte {
			return (&codecs.VP8Payloader{EnablePictureID: true}).Payload(1200, express.VP8Frame(true, 640, 480, 3000, 1))
		}, []bool{true, false, false}},
		{"VP8 inter frame", codecVP8, func() [][]byte {
			return (&codecs.VP8Payloader{EnablePictureID: true}).Payload(1200, express.VP8Frame(false, 640, 480, 1500, 2))
		}, []bool{false, false}},
		{"VP8 keyframe without picture ID", codecVP8, func() [][]byte {
			return (&codecs.VP8Payloader{}).Payload(1200, express.VP8Frame(true, 640, 480, 100, 1))
		}, []bool{true}},
		{"VP9 keyframe, non-flexible", codecVP9, func() [][]byte {
			return (&codecs.VP9Payloader{}).Payload(1200, vp9Frame(true, 2000))
		}, []bool{true, false}},
		{"VP9 inter frame, non-flexible", codecVP9, func() [][]byte {
			return (&codecs.VP9Payloader{}).Payload(1200, vp9Frame(false, 2000))
		}, []bool{false, false}},
		{"VP9 keyframe, flexible", codecVP9, func() [][]byte {
			return (&codecs.VP9Payloader{FlexibleMode: true}).Payload(1200, vp9Frame(true, 2000))
		}, []bool{true, false}},
		{"VP9 inter frame, flexible", codecVP9, func() [][]byte {
			return (&codecs.VP9Payloader{FlexibleMode: true}).Payload(1200, vp9Frame(false, 2000))
		}, []bool{false, false}},
		{"H264 IDR with SPS/PPS", codecH264, func() [][]byte {
			return (&codecs.H264Payloader{}).Payload(1200, h264AU(true, 3000))
		}, []bool{true, true, false, false}},
		{"H264 non-IDR", codecH264, func() [][]byte {
			return (&codecs.H264Payloader{}).Payload(1200, h264AU(false, 2000))
		}, []bool{false, false}},
		{"AV1 keyframe", codecAV1, func() [][]byte {
			return (&codecs.AV1Payloader{}).Payload(1200, av1TU(true, 2000))
		}, []bool{true, false}},
		{"AV1 inter frame", codecAV1, func() [][]byte {
			return (&codecs.AV1Payloader{}).Payload(1200, av1TU(false, 2000))
		}, []bool{false, false}},
		{"Opus is never a keyframe", codecOther, func() [][]byte { return [][]byte{{0xf8, 0xff, 0xfe}} }, []bool{false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkts := tc.pay()
			if len(pkts) != len(tc.want) {
				t.Fatalf("%d packets, want %d", len(pkts), len(tc.want))
			}
			for i, p := range pkts {
				if got := isKeyframe(tc.codec, p); got != tc.want[i] {
					t.Errorf("packet %d: keyframe %v, want %v (% x)", i, got, tc.want[i], p[:min(len(p), 8)])
				}
			}
		})
	}
}

func TestCodecOf(t *testing.T) {
	for mime, want := range map[string]codec{"video/VP8": codecVP8, "video/vp9": codecVP9, "video/H264": codecH264,
		"video/AV1": codecAV1, "audio/opus": codecOther} {
		if got := codecOf(mime); got != want {
			t.Errorf("codecOf(%s) = %d, want %d", mime, got, want)
		}
	}
}

func FuzzIsKeyframe(f *testing.F) {
	for _, p := range (&codecs.VP8Payloader{EnablePictureID: true}).Payload(1200, express.VP8Frame(true, 64, 48, 100, 1)) {
		f.Add(uint8(codecVP8), p)
	}
	f.Add(uint8(codecVP9), (&codecs.VP9Payloader{}).Payload(1200, vp9Frame(true, 100))[0])
	f.Add(uint8(codecH264), (&codecs.H264Payloader{}).Payload(1200, h264AU(true, 100))[0])
	f.Add(uint8(codecAV1), (&codecs.AV1Payloader{}).Payload(1200, av1TU(true, 100))[0])
	f.Fuzz(func(_ *testing.T, c uint8, p []byte) {
		_ = isKeyframe(codec(c%5), p)
	})
}
