package vp8_test

import (
	"testing"

	"github.com/pion/rtp/codecs"

	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/services/media/vp8"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		p    []byte
		want vp8.Descriptor
		ok   bool
	}{
		{"minimal, start of partition 0", []byte{0x10, 0xaa}, vp8.Descriptor{Start: true, Len: 1}, true},
		{"continuation, partition 2", []byte{0x02, 0xaa}, vp8.Descriptor{PartitionID: 2, Len: 1}, true},
		{"non-reference", []byte{0x30, 0xaa}, vp8.Descriptor{Start: true, NonReference: true, Len: 1}, true},
		{"7-bit picture ID", []byte{0x90, 0x80, 0x05, 0xaa},
			vp8.Descriptor{Start: true, HasPictureID: true, PictureID: 5, Len: 3}, true},
		{"15-bit picture ID", []byte{0x90, 0x80, 0x81, 0x02, 0xaa},
			vp8.Descriptor{Start: true, HasPictureID: true, LongPictureID: true, PictureID: 0x102, Len: 4}, true},
		{"every field", []byte{0x90, 0xf0, 0xff, 0xff, 0x07, 0b10_1_00011, 0xaa},
			vp8.Descriptor{Start: true, HasPictureID: true, LongPictureID: true, PictureID: 0x7fff, HasTL0PICIDX: true,
				TL0PICIDX: 7, HasTID: true, TID: 2, LayerSync: true, HasKEYIDX: true, KEYIDX: 3, Len: 6}, true},
		{"KEYIDX alone", []byte{0x90, 0x10, 0x04, 0xaa}, vp8.Descriptor{Start: true, HasKEYIDX: true, KEYIDX: 4, Len: 3}, true},
		{"empty", nil, vp8.Descriptor{}, false},
		{"no payload after the descriptor", []byte{0x10}, vp8.Descriptor{}, false},
		{"X without its byte", []byte{0x90}, vp8.Descriptor{}, false},
		{"picture ID cut short", []byte{0x90, 0x80, 0x81}, vp8.Descriptor{}, false},
		{"TL0PICIDX missing", []byte{0x90, 0x40}, vp8.Descriptor{}, false},
		{"no payload after TID", []byte{0x90, 0x20, 0x40}, vp8.Descriptor{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := vp8.Parse(tc.p)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if ok && got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// Packets as pion's packetizer cuts a frame: keyframe detection and the
// picture size must agree with what goes on the wire.
func TestKeyframe(t *testing.T) {
	tests := []struct {
		name          string
		payloader     codecs.VP8Payloader
		frame         []byte
		keys          []bool // IsKeyframe per packet
		width, height int    // of the first packet, 0: not a keyframe
	}{
		{"keyframe with picture ID", codecs.VP8Payloader{EnablePictureID: true}, express.VP8Frame(true, 640, 480, 3000, 1),
			[]bool{true, false, false}, 640, 480},
		{"keyframe without picture ID", codecs.VP8Payloader{}, express.VP8Frame(true, 1280, 720, 100, 1),
			[]bool{true}, 1280, 720},
		{"odd size", codecs.VP8Payloader{}, express.VP8Frame(true, 321, 241, 100, 1), []bool{true}, 321, 241},
		{"inter frame", codecs.VP8Payloader{EnablePictureID: true}, express.VP8Frame(false, 640, 480, 1500, 2),
			[]bool{false, false}, 0, 0},
		{"zero size", codecs.VP8Payloader{}, express.VP8Frame(true, 0, 0, 100, 1), []bool{true}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkts := tc.payloader.Payload(1200, tc.frame)
			if len(pkts) != len(tc.keys) {
				t.Fatalf("%d packets, want %d", len(pkts), len(tc.keys))
			}
			for i, p := range pkts {
				if got := vp8.IsKeyframe(p); got != tc.keys[i] {
					t.Errorf("packet %d: keyframe %v, want %v", i, got, tc.keys[i])
				}
			}
			f, ok := vp8.FrameStart(pkts[0])
			if !ok {
				t.Fatal("the first packet does not start a frame")
			}
			w, h, ok := vp8.KeyframeSize(f)
			if ok != (tc.width > 0) || w != tc.width || h != tc.height {
				t.Errorf("size %dx%d (%v), want %dx%d", w, h, ok, tc.width, tc.height)
			}
		})
	}
}

func TestKeyframeSizeBadStartCode(t *testing.T) {
	f := express.VP8Frame(true, 640, 480, 100, 1)
	f[4] = 0
	if _, _, ok := vp8.KeyframeSize(f); ok {
		t.Error("a keyframe with a bad start code has a size")
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range (&codecs.VP8Payloader{EnablePictureID: true}).Payload(1200, express.VP8Frame(true, 64, 48, 100, 1)) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		d, ok := vp8.Parse(p)
		if ok && d.Len >= len(p) {
			t.Fatalf("Len %d of %d bytes", d.Len, len(p))
		}
		if fr, ok := vp8.FrameStart(p); ok {
			_, _, _ = vp8.KeyframeSize(fr)
		}
	})
}
