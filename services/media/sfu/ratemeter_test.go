package sfu

import (
	"testing"
	"time"
)

// TestPeakMeter: the peak is the busiest second of the last three, so a
// layer's keyframe (three frames' worth every two seconds) is always in
// it, whatever second it fell in, and a second of silence does not lower
// it at once.
func TestPeakMeter(t *testing.T) {
	const frame = 10_000 // bytes: 2.4 Mbit/s at 30 frames a second
	type span struct {
		from, to time.Duration // frames sent at 30 a second in [from, to)
		key      time.Duration // keyframe interval (0: none)
	}
	for _, tc := range []struct {
		name  string
		spans []span
		at    time.Duration // the peak read at the first bucket closed at or after
		want  int64         // bits per second, within 3 %
	}{
		{"steady frames", []span{{0, 6 * time.Second, 0}}, 6 * time.Second, 2_400_000},
		{"a keyframe each 2 s: its second", []span{{0, 6 * time.Second, 2 * time.Second}}, 6 * time.Second, 2_560_000},
		{"a keyframe each 2 s, read just before the next one", []span{{0, 5900 * time.Millisecond, 2 * time.Second}}, 5900 * time.Millisecond, 2_560_000},
		{"still the peak a second into silence", []span{{0, 4 * time.Second, 0}}, 5 * time.Second, 2_400_000},
		{"forgotten after the window", []span{{0, 4 * time.Second, 0}, {8 * time.Second, 12 * time.Second, 0}}, 12 * time.Second, 2_400_000},
		{"a burst two seconds ago still counts", []span{{0, 2 * time.Second, 0}, {2 * time.Second, 3 * time.Second, 0}, {2 * time.Second, 3 * time.Second, 0},
			{3 * time.Second, 5 * time.Second, 0}}, 5 * time.Second, 4_800_000},
		{"the first second, scaled up", []span{{0, 500 * time.Millisecond, 0}}, 500 * time.Millisecond, 2_400_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type pkt struct {
				at int64
				n  int
			}
			var pkts []pkt
			for _, s := range tc.spans {
				for at := s.from; at < s.to; at += time.Second/30 + 1 { // 30 in a second, not 31
					n := frame
					if s.key > 0 && (at-s.from)%s.key <= time.Second/30 {
						n *= 3
					}
					pkts = append(pkts, pkt{int64(at), n})
				}
			}
			// Sent in order of time (spans may overlap: a burst).
			for i := 1; i < len(pkts); i++ {
				for j := i; j > 0 && pkts[j].at < pkts[j-1].at; j-- {
					pkts[j], pkts[j-1] = pkts[j-1], pkts[j]
				}
			}
			var m peakMeter
			base := int64(time.Hour)
			var got int64
			for _, p := range pkts {
				if p.at > int64(tc.at) {
					break
				}
				if r, ok := m.add(base+p.at, p.n); ok {
					got = r
				}
			}
			// A packet at tc.at closes the buckets up to it.
			if r, ok := m.add(base+int64(tc.at)+1, 0); ok {
				got = r
			}
			if d := float64(got-tc.want) / float64(tc.want); d > 0.03 || d < -0.03 {
				t.Fatalf("peak %d, want %d", got, tc.want)
			}
		})
	}
}
