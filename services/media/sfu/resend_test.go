package sfu

import (
	"testing"
	"time"
)

// TestResendCap: a player's NACK generator asks for a lost packet again
// every ~100 ms until it sees it (pion's, for seconds, not noticing a
// repair that came as RTX). The edge resends one packet at most three
// times, each at least 3/4 of min(100 ms, 2 x RTT) after the one before
// (of 100 ms without an RTT measured; a generator's repeat may come a few
// milliseconds early), and counts each NACK left unanswered.
func TestResendCap(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		rtt  time.Duration
		// nacks: when each NACK arrives after the packet was sent, and
		// which of the packets sent it names.
		at          []time.Duration
		pkt         []int
		wantResends int
	}{
		{"one NACK", 0, []time.Duration{20 * ms}, nil, 1},
		{"repeat inside the gap", 0, []time.Duration{20 * ms, 90 * ms}, nil, 1},
		{"repeat after the gap", 0, []time.Duration{20 * ms, 130 * ms}, nil, 2},
		{"repeats every 100 ms, a little early", 0, []time.Duration{20 * ms, 115 * ms, 210 * ms, 305 * ms}, nil, 3},
		{"every 100 ms for 2.3 s", 0, every(20*ms, 101*ms, 23), nil, maxResends},
		{"short RTT, shorter gap", 20 * ms, []time.Duration{10 * ms, 41 * ms, 72 * ms}, nil, 3},
		{"short RTT, inside its gap", 20 * ms, []time.Duration{10 * ms, 35 * ms}, nil, 1},
		{"long RTT, gap still 100 ms", 300 * ms, []time.Duration{20 * ms, 70 * ms, 121 * ms, 222 * ms}, nil, 3},
		{"each packet its own count", 0, []time.Duration{20 * ms, 20 * ms, 20 * ms, 20 * ms, 20 * ms}, []int{0, 1, 2, 3, 4}, 5},
		{"duplicate in one NACK", 0, []time.Duration{20 * ms, 20 * ms}, []int{0, 0}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newNackRig(t, testLayer("f", 0, 0, 0))
			r.frame(0, true, 3)
			r.pump()
			r.frame(0, false, 6)
			r.pump()
			r.d.rtt.Store(int64(tc.rtt))
			var live []uint16
			for _, h := range r.w.hdrs {
				if h.SSRC == 1000 {
					live = append(live, h.SequenceNumber)
				}
			}
			base := r.now - 33e6 // the last frame went out then
			before := len(r.w.hdrs)
			for i, at := range tc.at {
				k := len(live) - 1
				if tc.pkt != nil {
					k = len(live) - 1 - tc.pkt[i]
				}
				r.now = base + int64(at)
				r.d.addNacks([]uint16{live[k]})
				r.pump()
			}
			resends := len(r.w.hdrs) - before
			if resends != tc.wantResends {
				t.Fatalf("%d NACKs: %d resends, want %d", len(tc.at), resends, tc.wantResends)
			}
			if got, want := r.d.nackRepeats.Load(), int64(len(tc.at)-tc.wantResends); got != want {
				t.Fatalf("%d NACKs left unanswered as repeats, want %d", got, want)
			}
		})
	}
}

func every(first, gap time.Duration, n int) []time.Duration {
	var ts []time.Duration
	for i := range n {
		ts = append(ts, first+time.Duration(i)*gap)
	}
	return ts
}

// TestResendRingWrap: a slot about another sequence number, or about the
// same one 65,536 packets before, does not hold a packet back.
func TestResendRingWrap(t *testing.T) {
	var r resendRing
	for range maxResends {
		r.mark(7, 1000)
	}
	tests := []struct {
		name  string
		seq   uint16
		nowMs uint32
		want  bool
	}{
		{"resent three times", 7, 1500, false},
		{"same slot, another packet", 7 + resendSlots, 1500, true},
		{"same number, long after", 7, 1000 + uint32(resendForget/time.Millisecond) + 1, true},
		{"millisecond clock wrapped", 7, 1000 + 1<<31, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.allow(tc.seq, tc.nowMs, resendGap); got != tc.want {
				t.Fatalf("allow(%d, %d) = %v, want %v", tc.seq, tc.nowMs, got, tc.want)
			}
		})
	}
}
