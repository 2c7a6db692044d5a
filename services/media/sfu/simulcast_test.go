package sfu

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/onair-dev/onair/services/media/bwe"
)

// testLayer is an uptrack standing for a simulcast layer: its RID, its
// picture size (0: no keyframe seen) and measured bitrate (0: not yet).
func testLayer(rid string, w, h int, rate int64) *UpTrack {
	u := NewUpTrack(nil, webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, 0)
	u.rid = rid
	u.size.Store(uint32(w)<<16 | uint32(h))
	u.rate.Store(rate)
	return u
}

func rids(ls []*UpTrack) string {
	var s []string
	for _, u := range ls {
		s = append(s, u.rid)
	}
	return strings.Join(s, ",")
}

func TestSortLayers(t *testing.T) {
	type l struct {
		rid  string
		w, h int
		rate int64
	}
	for _, tc := range []struct {
		name string
		in   []l
		want string
	}{
		{"browser q/h/f by size", []l{{"f", 1280, 720, 2_500_000}, {"q", 320, 180, 150_000}, {"h", 640, 360, 600_000}}, "q,h,f"},
		{"size beats rate", []l{{"a", 1280, 720, 100_000}, {"b", 320, 180, 2_000_000}}, "b,a"},
		{"size beats rid", []l{{"q", 1280, 720, 0}, {"f", 320, 180, 0}}, "f,q"},
		{"l/m/h by size", []l{{"h", 1280, 720, 0}, {"m", 640, 360, 0}, {"l", 320, 180, 0}}, "l,m,h"},
		{"no sizes: by rate", []l{{"x", 0, 0, 2_500_000}, {"y", 0, 0, 150_000}, {"z", 0, 0, 600_000}}, "y,z,x"},
		{"rates too close: by rid", []l{{"f", 0, 0, 1_000_000}, {"h", 0, 0, 900_000}, {"q", 0, 0, 1_100_000}}, "q,h,f"},
		{"nothing known: q < h < f", []l{{"f", 0, 0, 0}, {"h", 0, 0, 0}, {"q", 0, 0, 0}}, "q,h,f"},
		{"nothing known: 0 < 1 < 2", []l{{"2", 0, 0, 0}, {"0", 0, 0, 0}, {"1", 0, 0, 0}}, "0,1,2"},
		{"one size missing: rate decides", []l{{"f", 0, 0, 2_500_000}, {"h", 640, 360, 600_000}, {"q", 320, 180, 150_000}}, "q,h,f"},
		{"one layer", []l{{"", 640, 360, 500_000}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in []*UpTrack
			for _, x := range tc.in {
				in = append(in, testLayer(x.rid, x.w, x.h, x.rate))
			}
			before := rids(in)
			if got := rids(sortLayers(in)); got != tc.want {
				t.Fatalf("sorted %s, want %s", got, tc.want)
			}
			if rids(in) != before {
				t.Fatal("sortLayers reordered its argument")
			}
		})
	}
}

// chooserStep: after dt, the estimate leaves budget for video; the chooser
// must answer want ("" for pause).
type chooserStep struct {
	dt     time.Duration
	budget int64
	want   string
	// calm: the estimator shows no congestion (the budget is a
	// delay-based cut alone); steps are congested otherwise.
	calm bool
}

func TestLayerChooser(t *testing.T) {
	// q 150 kbit/s, h 600 kbit/s, f 2.5 Mbit/s. A layer is taken at
	// upHeadroom (0.97) of the budget (f: 2.58 Mbit/s, h: 619 kbit/s,
	// q: 155 kbit/s) and left above downHeadroom (1.05: f below 2.38
	// Mbit/s, h below 571 kbit/s, q below 143 kbit/s) after downHold, at
	// once above downSevere (1.35: f below 1.85 Mbit/s).
	const ms = time.Millisecond
	for _, tc := range []struct {
		name  string
		start string // the layer forwarded before the first step ("": none)
		steps []chooserStep
	}{
		{"first choice fits the top at once", "", []chooserStep{{0, 3_000_000, "f", false}}},
		{"first choice: the best that fits", "", []chooserStep{{0, 1_000_000, "h", false}}},
		{"first choice below the lowest: paused", "", []chooserStep{{0, 100_000, "", false}}},
		{"stays while it fits with down-headroom", "f", []chooserStep{{0, 2_450_000, "f", false}, {time.Second, 2_400_000, "f", false}}},
		{"down after downHold when a little over", "f", []chooserStep{
			{0, 2_300_000, "f", false}, {downHold - 100*ms, 2_300_000, "f", false}, {100 * ms, 2_300_000, "h", false}}},
		{"a short dip does not go down", "f", []chooserStep{
			{0, 2_300_000, "f", false}, {time.Second, 2_300_000, "f", false}, {100 * ms, 2_600_000, "f", false}, {downHold, 2_600_000, "f", false}}},
		{"down at once when far over", "f", []chooserStep{{0, 1_500_000, "h", false}}},
		{"down more than one layer", "f", []chooserStep{{0, 300_000, "q", false}}},
		{"up only after upHold", "h", []chooserStep{
			{0, 2_800_000, "h", false}, {500 * ms, 2_800_000, "h", false}, {900 * ms, 2_800_000, "h", false}, {100 * ms, 2_800_000, "f", false}}},
		{"up to the middle, then the top, each after upHold", "q", []chooserStep{
			{0, 1_000_000, "q", false}, {upHold, 1_000_000, "h", false}, {0, 3_000_000, "h", false}, {upHold, 3_000_000, "f", false}}},
		{"no flapping between the thresholds (top)", "f", []chooserStep{
			{0, 2_450_000, "f", false}, {100 * ms, 2_700_000, "f", false}, {100 * ms, 2_400_000, "f", false}, {100 * ms, 2_750_000, "f", false}, {100 * ms, 2_400_000, "f", false}}},
		{"no flapping: an estimate that keeps dipping never goes up", "h", []chooserStep{
			{0, 2_800_000, "h", false}, {time.Second, 2_550_000, "h", false}, {400 * ms, 2_800_000, "h", false}, {time.Second, 2_550_000, "h", false},
			{400 * ms, 2_800_000, "h", false}, {time.Second, 2_800_000, "h", false}, {600 * ms, 2_800_000, "f", false}}},
		{"a candidate flipping between two higher layers: up to the one that fitted throughout", "q", []chooserStep{
			{0, 3_000_000, "q", false}, {500 * ms, 1_000_000, "q", false}, {500 * ms, 3_000_000, "q", false}, {500 * ms, 1_000_000, "h", false},
			{0, 3_000_000, "h", false}, {upHold, 3_000_000, "f", false}}},
		{"pause below the lowest", "q", []chooserStep{{0, 145_000, "q", false}, {100 * ms, 100_000, "", false}, {time.Second, 120_000, "", false}}},
		{"resume after upHold once the lowest fits", "q", []chooserStep{
			{0, 100_000, "", false}, {100 * ms, 200_000, "", false}, {upHold - 100*ms, 200_000, "", false}, {100 * ms, 200_000, "q", false}}},
		{"no flapping around pause", "q", []chooserStep{
			{0, 100_000, "", false}, {100 * ms, 170_000, "", false}, {100 * ms, 140_000, "", false}, {100 * ms, 170_000, "", false}, {100 * ms, 140_000, "", false},
			{upHold, 170_000, "", false}}},
		{"a severe cut without congestion waits downHold (the next probe undoes it)", "f", []chooserStep{
			{0, 1_500_000, "f", true}, {time.Second, 1_500_000, "f", true}, {500 * ms, 3_000_000, "f", true}, {downHold, 3_000_000, "f", true}}},
		{"a severe cut without congestion that lasts goes down after downHold", "f", []chooserStep{
			{0, 1_500_000, "f", true}, {downHold - 100*ms, 1_500_000, "f", true}, {100 * ms, 1_500_000, "h", true}}},
		{"a severe cut goes down as soon as congestion shows", "f", []chooserStep{
			{0, 1_500_000, "f", true}, {300 * ms, 1_500_000, "h", false}}},
		{"a layer left twice at the margin waits twice upHold to come back", "h", []chooserStep{
			{0, 3_000_000, "h", false}, {upHold, 3_000_000, "f", false}, {0, 2_300_000, "f", false}, {downHold, 2_300_000, "h", false},
			{0, 3_000_000, "h", false}, {upHold, 3_000_000, "f", false}, {0, 2_300_000, "f", false}, {downHold, 2_300_000, "h", false},
			{0, 3_000_000, "h", false}, {upHold, 3_000_000, "h", false}, {upHold, 3_000_000, "f", false}}},
		{"a layer left for a severe drop comes back after upHold", "h", []chooserStep{
			{0, 3_000_000, "h", false}, {upHold, 3_000_000, "f", false}, {100 * ms, 1_500_000, "h", false},
			{0, 3_000_000, "h", false}, {upHold, 3_000_000, "f", false}, {100 * ms, 1_500_000, "h", false},
			{0, 3_000_000, "h", false}, {upHold, 3_000_000, "f", false}}},
		{"a strike is forgotten after strikeMemory", "h", []chooserStep{
			{0, 3_000_000, "h", false}, {upHold, 3_000_000, "f", false}, {0, 2_300_000, "f", false}, {downHold, 2_300_000, "h", false},
			{0, 3_000_000, "h", false}, {upHold, 3_000_000, "f", false}, {0, 2_300_000, "f", false}, {downHold, 2_300_000, "h", false},
			{strikeMemory, 1_000_000, "h", false}, {0, 3_000_000, "h", false}, {upHold, 3_000_000, "f", false}}},
		{"resume goes straight to what fits", "q", []chooserStep{
			{0, 100_000, "", false}, {100 * ms, 3_000_000, "", false}, {upHold, 3_000_000, "f", false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := []*UpTrack{testLayer("q", 320, 180, 150_000), testLayer("h", 640, 360, 600_000), testLayer("f", 1280, 720, 2_500_000)}
			sorted := sortLayers(ls)
			byRID := map[string]*UpTrack{}
			for _, u := range ls {
				byRID[u.rid] = u
			}
			var c layerChooser
			cur := byRID[tc.start]
			if cur != nil {
				// The player has been forwarding cur.
				c.choose(sorted, nil, 10_000_000, 1, true, false)
			}
			now := int64(time.Hour)
			for i, st := range tc.steps {
				now += int64(st.dt)
				cur = c.choose(sorted, cur, st.budget, now, true, !st.calm)
				got := ""
				if cur != nil {
					got = cur.rid
				}
				if got != st.want {
					t.Fatalf("step %d (budget %d): layer %q, want %q", i, st.budget, got, st.want)
				}
			}
		})
	}
}

// TestLayerRateUnmeasured: a layer not measured yet is judged too much,
// except the lowest, which counts as minLayerRate.
func TestLayerRateUnmeasured(t *testing.T) {
	q, f := testLayer("q", 320, 180, 0), testLayer("f", 1280, 720, 0)
	sorted := sortLayers([]*UpTrack{f, q})
	if r := layerRate(sorted, q); r != minLayerRate {
		t.Fatalf("unmeasured lowest layer: %d, want %d", r, minLayerRate)
	}
	var c layerChooser
	if got := c.choose(sorted, nil, 10_000_000, 1, true, false); got != q {
		t.Fatalf("with the top layer unmeasured the first choice is %v, want the lowest", got)
	}
}

// TestTWCCFeedbackWithPadding: transport-cc feedback whose length is not
// a multiple of four carries RTCP padding (pion's recorder, which builds a
// Go player's feedback, pads it so); parsed for a downtrack or the
// connection, it must still reach the estimator whole. Dropping it lost
// the large feedback that covers a probe cluster, so probes failed and a
// clean player stayed on a lower layer.
func TestTWCCFeedbackWithPadding(t *testing.T) {
	const me = 0x1234
	padded := 0
	for n := 1; n <= 40; n++ {
		// n packets received 1 ms apart, as a player's pion reports them.
		r := twcc.NewRecorder(1)
		for i := range n {
			r.Record(me, uint16(100+i), int64(i)*1000)
		}
		b := marshalRTCP(t, append(r.BuildFeedbackPacket(), &rtcp.PictureLossIndication{MediaSSRC: me})...)
		if b[0]&0x20 != 0 {
			padded++
		}
		for _, ssrc := range []uint32{me, 0} {
			var f rtcpFeedback
			if !parseRTCP(b, ssrc, &f) || f.numTWCC == 0 {
				t.Fatalf("%d packets, ssrc %x: no transport-cc found", n, ssrc)
			}
			est := bwe.New(bwe.Config{})
			if !est.FeedbackRTCP(f.twcc[0], time.Now().UnixNano()) {
				t.Fatalf("%d packets (padding %v), ssrc %x: the estimator refused the feedback found", n, b[0]&0x20 != 0, ssrc)
			}
		}
	}
	if padded == 0 {
		t.Fatal("no feedback had padding: the test shows nothing")
	}
}

// rtpCapture keeps the headers and payload sizes a downtrack writes.
type rtpCapture struct {
	hdrs []rtp.Header
	lens []int
	last []byte
}

func (c *rtpCapture) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	// A deep copy: the downtrack reuses its extension buffers.
	b, err := h.Marshal()
	if err != nil {
		return 0, err
	}
	var hc rtp.Header
	if _, err := hc.Unmarshal(b); err != nil {
		return 0, err
	}
	c.hdrs = append(c.hdrs, hc)
	c.lens = append(c.lens, len(p))
	c.last = append(c.last[:0], p...)
	return len(p), nil
}
func (c *rtpCapture) Write(b []byte) (int, error) { return len(b), nil }

// TestProbeWhilePaused: a player forwarding video probes with RTX copies
// of the newest packet; once its video is paused there is nothing to copy,
// and it probes with padding-only RTX packets instead (without them its
// estimate could never grow back and its video never resume).
func TestProbeWhilePaused(t *testing.T) {
	u := NewUpTrack(nil, webrtc.RTPCodecTypeVideo, webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}, 0)
	var egress atomic.Int64
	sub := NewPlayer(nil, nil, &egress, &DelayHist{})
	d := newDownTrack(sub, u, "s")
	w := &rtpCapture{}
	d.ssrc, d.rtxSSRC, d.ws, d.twccID = 1000, 2000, w, 3
	d.codecs = []webrtc.RTPCodecParameters{u.Codec(), {RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX,
		ClockRate: 90000, SDPFmtpLine: "apt=96"}, PayloadType: 97}}
	d.bound.Store(true)
	payload := make([]byte, 1000)
	payload[0] = 0x10 // S bit, partition 0; payload[1] 0: a keyframe
	u.cache.insert(1<<16, 1, 3000, 96, true, payload)
	u.cache.setKeyframe(1 << 16)
	d.pump(1)
	if len(w.hdrs) != 1 || w.hdrs[0].SSRC != 1000 {
		t.Fatalf("forwarded %d packets, want the keyframe", len(w.hdrs))
	}
	if n := d.probePacket(2); n == 0 || w.hdrs[1].SSRC != 2000 || w.hdrs[1].PayloadType != 97 || w.lens[1] != 1002 {
		t.Fatalf("probe while forwarding: %d bytes, header %+v, payload %d: want an RTX copy of the newest packet", n, w.hdrs[1], w.lens[1])
	}
	d.want.Store(nil) // paused
	d.pump(3)
	if d.src != nil {
		t.Fatal("still forwarding after the pause")
	}
	n := d.probePacket(4)
	h := w.hdrs[len(w.hdrs)-1]
	if n == 0 || h.SSRC != 2000 || h.PayloadType != 97 || !h.Padding || len(w.last) != paddingProbe || w.last[paddingProbe-1] != paddingProbe {
		t.Fatalf("probe while paused: %d bytes, header %+v, payload %d bytes: want an RTX packet of padding only", n, h, len(w.last))
	}
	if h.SequenceNumber != w.hdrs[1].SequenceNumber+1 {
		t.Fatalf("RTX sequence numbers %d then %d", w.hdrs[1].SequenceNumber, h.SequenceNumber)
	}
	var tw [2]uint16
	for i, x := range []rtp.Header{w.hdrs[1], h} {
		e := x.GetExtension(3)
		if len(e) != 2 {
			t.Fatalf("probe %d has no transport-wide sequence number", i)
		}
		tw[i] = uint16(e[0])<<8 | uint16(e[1])
	}
	if tw[1] != tw[0]+1 {
		t.Fatalf("transport-wide sequence numbers %d then %d", tw[0], tw[1])
	}
}
