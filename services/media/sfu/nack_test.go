package sfu

import (
	"sync/atomic"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// nackRig is a bound video downtrack with RTX, writing into a capture,
// over the layers given (publisher order), each an UpTrack fed by Ingest.
type nackRig struct {
	d      *downTrack
	w      *rtpCapture
	layers []*UpTrack
	next   []uint64 // each layer's next extended sequence number
	now    int64
}

func newNackRig(t *testing.T, layers ...*UpTrack) *nackRig {
	t.Helper()
	// One track's layers: one group (a switch among them is not a new
	// track).
	g := &LayerGroup{}
	for _, u := range layers {
		u.SetLayer(g, u.rid)
	}
	var egress atomic.Int64
	sub := NewPlayer(nil, nil, &egress, &DelayHist{})
	d := newDownTrack(sub, layers[0], "s")
	d.layers.Store(&layers)
	w := &rtpCapture{}
	d.ssrc, d.rtxSSRC, d.ws = 1000, 2000, w
	d.codecs = []webrtc.RTPCodecParameters{layers[0].Codec(), {RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX,
		ClockRate: 90000, SDPFmtpLine: "apt=96"}, PayloadType: 97}}
	d.bound.Store(true)
	r := &nackRig{d: d, w: w, layers: layers, now: 1e9}
	for i := range layers {
		r.next = append(r.next, uint64(1+i)<<20)
	}
	return r
}

// frame ingests one frame of n packets into layer l (a keyframe when key);
// every payload names its layer and source sequence number, so a
// retransmission shows where it came from.
func (r *nackRig) frame(l int, key bool, n int) {
	u := r.layers[l]
	for i := range n {
		p := make([]byte, 600)
		if i == 0 {
			p[0] = 0x10 // S bit, partition 0
			if !key {
				p[1] = 1 // inter frame
			} else {
				// A VP8 keyframe header: start code and a 64x64 size.
				p[1], p[2], p[3] = 0, 0, 0
				p[4], p[5], p[6] = 0x9d, 0x01, 0x2a
				p[7], p[8], p[9], p[10] = 64, 0, 64, 0
			}
		}
		ext := r.next[l]
		r.next[l]++
		p[100], p[101] = byte(l), byte(ext>>8)
		p[102] = byte(ext)
		u.Ingest(ext, r.now, uint32(r.now/1e6*90), 96, i == n-1, p)
	}
	r.now += 33e6
}

// pump runs the downtrack's turn until its replay is out.
func (r *nackRig) pump() {
	for more := true; more; {
		more, _ = r.d.pump(r.now)
	}
}

// TestNackAcrossSwitch: a player's NACK names the downtrack's own sequence
// numbers; after a layer switch (or two) one for a packet sent before it
// must still be answered, from the cache of the layer that packet came
// from, with the original sequence number the player asked for.
func TestNackAcrossSwitch(t *testing.T) {
	tests := []struct {
		name     string
		switches []int // layers switched to, in turn, after the first one
		// nack picks, among the live packets sent (index into them), the one
		// to ask for; -1 counts from the end.
		nack      int
		wantLayer int  // the layer the retransmission must come from
		wantMiss  bool // not answerable
	}{
		{"current segment", nil, -2, 0, false},
		{"last packet before a switch", []int{1}, 5, 0, false},
		{"new layer after a switch", []int{1}, -1, 1, false},
		{"before two switches", []int{1, 2}, 5, 0, false},
		{"middle segment", []int{1, 2}, 11, 1, false},
		{"beyond what was sent", nil, 1 << 20, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newNackRig(t, testLayer("q", 0, 0, 0), testLayer("h", 0, 0, 0), testLayer("f", 0, 0, 0))
			// Every layer runs; the player starts on layer 0.
			for l := range r.layers {
				r.frame(l, true, 3)
			}
			r.pump()
			r.frame(0, false, 3)
			r.pump()
			cur := 0
			for _, l := range tc.switches {
				r.d.want.Store(r.layers[l])
				r.frame(cur, false, 3)
				r.frame(l, true, 3) // fresh: the switch replays it
				r.pump()
				if r.d.src != r.layers[l] {
					t.Fatalf("did not switch to layer %d", l)
				}
				r.frame(l, false, 3)
				r.pump()
				cur = l
			}
			var live []int // indexes of live packets in the capture
			for i, h := range r.w.hdrs {
				if h.SSRC == 1000 {
					live = append(live, i)
				}
			}
			for i := 1; i < len(live); i++ {
				if a, b := r.w.hdrs[live[i-1]].SequenceNumber, r.w.hdrs[live[i]].SequenceNumber; b != a+1 {
					t.Fatalf("sequence numbers %d then %d", a, b)
				}
			}
			var seq uint16
			switch {
			case tc.nack >= len(live):
				seq = r.w.hdrs[live[len(live)-1]].SequenceNumber + 1
			case tc.nack < 0:
				seq = r.w.hdrs[live[len(live)+tc.nack]].SequenceNumber
			default:
				seq = r.w.hdrs[live[tc.nack]].SequenceNumber
			}
			before := len(r.w.hdrs)
			r.d.addNacks([]uint16{seq})
			r.pump()
			if tc.wantMiss {
				if len(r.w.hdrs) != before || r.d.nackMisses.Load() != 1 {
					t.Fatalf("NACK of %d beyond what was sent: %d packets written, %d misses", seq, len(r.w.hdrs)-before, r.d.nackMisses.Load())
				}
				return
			}
			if len(r.w.hdrs) != before+1 {
				t.Fatalf("NACK of %d: %d packets written (%d misses), want one retransmission", seq, len(r.w.hdrs)-before, r.d.nackMisses.Load())
			}
			h, p := r.w.hdrs[before], r.w.last
			if h.SSRC != 2000 || h.PayloadType != 97 {
				t.Fatalf("retransmission header %+v, want RTX", h)
			}
			if osn := uint16(p[0])<<8 | uint16(p[1]); osn != seq {
				t.Fatalf("RTX carries sequence number %d, asked for %d", osn, seq)
			}
			if got := int(p[2+100]); got != tc.wantLayer {
				t.Fatalf("retransmitted a packet of layer %d, want %d", got, tc.wantLayer)
			}
			// The payload is the one sent under that sequence number.
			orig := live[slicesIndexSeq(r.w.hdrs, live, seq)]
			if r.w.lens[orig]+2 != len(p) {
				t.Fatalf("RTX payload %d bytes, original %d", len(p), r.w.lens[orig])
			}
		})
	}
}

func slicesIndexSeq(hdrs []rtp.Header, live []int, seq uint16) int {
	for i, j := range live {
		if hdrs[j].SequenceNumber == seq {
			return i
		}
	}
	return -1
}

// TestCutOldLayer: a switch down whose new layer has no fresh keyframe
// waits for one. On a congested link (cutOld) the old layer stops at once,
// so the bottleneck drains before the keyframe; otherwise it plays on.
// Either way the new layer starts at its keyframe with the sequence
// numbers running on.
func TestCutOldLayer(t *testing.T) {
	tests := []struct {
		name    string
		cut     bool
		wantOld int // old-layer packets sent while waiting for the keyframe
	}{
		{"congested: the old layer stops", true, 0},
		{"not congested: the old layer plays on", false, 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newNackRig(t, testLayer("f", 0, 0, 0), testLayer("q", 0, 0, 0))
			r.frame(0, true, 3)
			r.frame(1, true, 3)
			r.pump()
			for range 6 { // the low layer's keyframe goes stale
				r.frame(0, false, 3)
				r.frame(1, false, 1)
				r.pump()
			}
			r.d.cutOld.Store(tc.cut)
			r.d.want.Store(r.layers[1])
			before := len(r.w.hdrs)
			for range 3 {
				r.frame(0, false, 3)
				r.frame(1, false, 1)
				r.pump()
			}
			if got := len(r.w.hdrs) - before; got != tc.wantOld {
				t.Fatalf("%d packets sent while waiting for the keyframe, want %d", got, tc.wantOld)
			}
			r.frame(1, true, 3)
			r.pump()
			if r.d.src != r.layers[1] {
				t.Fatal("did not switch at the keyframe")
			}
			if got := len(r.w.hdrs) - before - tc.wantOld; got != 3 || r.w.last[100] != 1 {
				t.Fatalf("after the keyframe: %d packets, the last of layer %d; want the keyframe's 3 of layer 1", got, r.w.last[100])
			}
			for i := 1; i < len(r.w.hdrs); i++ {
				if a, b := r.w.hdrs[i-1].SequenceNumber, r.w.hdrs[i].SequenceNumber; b != a+1 {
					t.Fatalf("sequence numbers %d then %d", a, b)
				}
			}
		})
	}
}
