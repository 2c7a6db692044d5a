package bwe

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// firstAt is the first sample at or after from that satisfies ok, and
// whether there is one.
func firstAt(samples []sample, from time.Duration, ok func(sample) bool) (time.Duration, bool) {
	for _, s := range samples {
		if s.at >= from && ok(s) {
			return s.at, true
		}
	}
	return 0, false
}

// between are the samples in [from, to).
func between(samples []sample, from, to time.Duration) []sample {
	var out []sample
	for _, s := range samples {
		if s.at >= from && s.at < to {
			out = append(out, s)
		}
	}
	return out
}

func estimates(samples []sample) []int64 {
	out := make([]int64, len(samples))
	for i, s := range samples {
		out[i] = s.estimate
	}
	return out
}

func mean(samples []sample) int64 {
	var sum int64
	for _, s := range samples {
		sum += s.estimate
	}
	return sum / int64(max(len(samples), 1))
}

func trace(samples []sample) string {
	var b []byte
	for i, s := range samples {
		if i%5 == 0 {
			b = fmt.Appendf(b, "%.1fs:%dk ", s.at.Seconds(), s.estimate/1000)
		}
	}
	return string(b)
}

// TestSimulatedLink drives the estimator through a bottleneck link: a FIFO
// of the given capacity with a 200 ms drop-tail queue, random loss and
// propagation delay, the player sending transport-cc feedback every 50 ms
// and the sender sending min(estimate, 2.5 Mbit/s) of media plus the padding
// ProbeRate asks for.
func TestSimulatedLink(t *testing.T) {
	const app = 2_500_000
	cfg := Config{Initial: 300_000, Min: 30_000, Max: 10_000_000}
	high := Config{Initial: 2_500_000, Min: 30_000, Max: 10_000_000}
	tests := []struct {
		name  string
		sim   simConfig
		check func(t *testing.T, s []sample)
	}{{
		name: "rising: 5 Mbit/s from 300 kbit/s",
		sim:  simConfig{cfg: cfg, app: app, phases: []phase{{0, 5_000_000}}, prop: 20 * time.Millisecond, duration: 20 * time.Second},
		check: func(t *testing.T, s []sample) {
			at, ok := firstAt(s, 0, func(s sample) bool { return s.estimate >= app })
			if !ok || at > 5*time.Second {
				t.Errorf("estimate reached the app rate %d at %v (%v), want within 5 s", app, at, ok)
			}
			for _, x := range between(s, 5*time.Second, 20*time.Second) {
				if x.estimate < app*9/10 || x.estimate > 5_500_000 {
					t.Errorf("at %v estimate %d, want within [%d, 5.5M]", x.at, x.estimate, app*9/10)
				}
			}
		},
	}, {
		name: "falling: 3 Mbit/s to 700 kbit/s",
		sim:  simConfig{cfg: high, app: app, phases: []phase{{0, 3_000_000}, {10 * time.Second, 700_000}}, prop: 20 * time.Millisecond, duration: 30 * time.Second},
		check: func(t *testing.T, s []sample) {
			at, ok := firstAt(s, 10*time.Second, func(s sample) bool { return s.estimate < 700_000 })
			if !ok || at > 13*time.Second {
				t.Errorf("estimate below 700k at %v (%v), want within 3 s of the drop at 10 s", at, ok)
			}
			if m := mean(between(s, 15*time.Second, 30*time.Second)); m < 450_000 || m > 750_000 {
				t.Errorf("mean estimate on the 700k link %d, want within [450k, 750k]", m)
			}
		},
	}, {
		name: "recovering: 700 kbit/s back to 3 Mbit/s",
		sim:  simConfig{cfg: high, app: app, phases: []phase{{0, 3_000_000}, {10 * time.Second, 700_000}, {20 * time.Second, 3_000_000}}, prop: 20 * time.Millisecond, duration: 35 * time.Second},
		check: func(t *testing.T, s []sample) {
			at, ok := firstAt(s, 20*time.Second, func(s sample) bool { return s.estimate > 2_000_000 })
			if !ok || at > 30*time.Second {
				t.Errorf("estimate above 2M at %v (%v), want within 10 s of the rise at 20 s", at, ok)
			}
			if m := mean(between(s, 30*time.Second, 35*time.Second)); m < 2_000_000 {
				t.Errorf("mean estimate after recovery %d, want ≥ 2M", m)
			}
		},
	}, {
		// 5 % random loss is in GCC's hold band (2-10 %): the loss-based cap
		// neither grows nor cuts, so the rate found by probing holds. The
		// sender wants 3 Mbit/s, so the estimate stays near what it sends
		// and a loss cut would show.
		name: "lossy: 5 % random loss, no capacity limit",
		sim: simConfig{cfg: cfg, app: app, desired: 3_000_000, loss: 0.05, prop: 50 * time.Millisecond,
			duration: 40 * time.Second, seed: 7},
		check: func(t *testing.T, s []sample) {
			at, ok := firstAt(s, 0, func(s sample) bool { return s.estimate >= app })
			if !ok || at > 10*time.Second {
				t.Errorf("estimate reached the app rate at %v (%v), want within 10 s", at, ok)
			}
			for _, x := range between(s, 10*time.Second, 40*time.Second) {
				if x.estimate < 1_500_000 {
					t.Errorf("at %v estimate collapsed to %d, want ≥ 1.5M", x.at, x.estimate)
				}
			}
		},
	}, {
		// Its probes (2x the estimate) overshoot the link; the queue they
		// leave must not cut the estimate below what it was before them.
		name: "app-limited: a 600 kbit/s sender on 1 Mbit/s",
		sim:  simConfig{cfg: cfg, app: 600_000, phases: []phase{{0, 1_000_000}}, prop: 20 * time.Millisecond, duration: 30 * time.Second},
		check: func(t *testing.T, s []sample) {
			for _, x := range between(s, 5*time.Second, 30*time.Second) {
				if x.estimate < 850_000 || x.estimate > 1_050_000 {
					t.Errorf("at %v estimate %d, want within [850k, 1.05M]", x.at, x.estimate)
				}
			}
		},
	}, {
		name: "350 kbit/s, 40 ms RTT",
		sim:  simConfig{cfg: cfg, app: app, phases: []phase{{0, 350_000}}, prop: 20 * time.Millisecond, duration: 30 * time.Second},
		check: func(t *testing.T, s []sample) {
			if m := mean(between(s, 5*time.Second, 30*time.Second)); m < 250_000 || m > 400_000 {
				t.Errorf("mean estimate %d, want within [250k, 400k]", m)
			}
		},
	}, {
		name: "lossy and capped: 5 % loss on 1 Mbit/s, 100 ms RTT",
		sim:  simConfig{cfg: cfg, app: app, loss: 0.05, phases: []phase{{0, 1_000_000}}, prop: 50 * time.Millisecond, duration: 30 * time.Second, seed: 3},
		check: func(t *testing.T, s []sample) {
			if m := mean(between(s, 10*time.Second, 30*time.Second)); m < 600_000 || m > 1_100_000 {
				t.Errorf("mean estimate %d, want within [600k, 1.1M]", m)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, s := simulate(t, tt.sim)
			tt.check(t, s)
			if t.Failed() {
				t.Log(trace(s))
			}
			// The same run with raw RTCP feedback and sequence numbers that
			// wrap early on must estimate exactly the same.
			alt := tt.sim
			alt.raw, alt.startSeq = true, 65_500
			if _, s2 := simulate(t, alt); !slices.Equal(estimates(s), estimates(s2)) {
				t.Errorf("raw feedback with wrapping sequence numbers estimates differently:\n%s\n%s", trace(s), trace(s2))
			}
		})
	}
}

// TestDesiredStopsProbing: a sender that wants no more than 1 Mbit/s is
// not asked to probe beyond it.
func TestDesiredStopsProbing(t *testing.T) {
	sc := simConfig{cfg: Config{Initial: 300_000, Max: 10_000_000}, app: 1_000_000, desired: 1_000_000,
		phases: []phase{{0, 5_000_000}}, prop: 20 * time.Millisecond, duration: 10 * time.Second}
	est, s := simulate(t, sc)
	if got := est.Estimate(); got < 1_000_000 || got > 2_000_000 {
		t.Errorf("estimate %d with 1M desired, want within [1M, 2M] (%s)", got, trace(s))
	}
	if at, probing := firstAt(s, 5*time.Second, func(s sample) bool { return s.stats.Probing }); probing {
		t.Errorf("still probing at %v with the estimate above what is desired", at)
	}
}

// TestCongested: Congested tells a link that does not carry what is sent
// (a cap that drops below the sender's rate) from one that merely loses or
// delays some packets: random loss of 5 % with a long round trip never
// reads as congestion, a drop from 3 Mbit/s to 700 kbit/s under a 2.5
// Mbit/s sender does within a second.
func TestCongested(t *testing.T) {
	const drop = 10 * time.Second
	for _, tc := range []struct {
		name       string
		sc         simConfig
		wantWithin time.Duration // congested within this after drop; 0: never congested after warm-up
	}{
		{"clean", simConfig{app: 2_500_000, duration: 20 * time.Second, prop: 20 * time.Millisecond}, 0},
		{"5% loss, 100 ms RTT", simConfig{app: 2_500_000, loss: 0.05, duration: 20 * time.Second, prop: 50 * time.Millisecond, seed: 7}, 0},
		{"3 Mbit/s to 700 kbit/s", simConfig{app: 2_500_000, duration: 20 * time.Second, prop: 20 * time.Millisecond,
			phases: []phase{{0, 3_000_000}, {drop, 700_000}}}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.sc.cfg = Config{Initial: 3_000_000}
			_, samples := simulate(t, tc.sc)
			if tc.wantWithin == 0 {
				for _, s := range between(samples, 3*time.Second, tc.sc.duration) {
					if s.congested {
						t.Fatalf("congested at %v (estimate %d, loss %.3f): %s", s.at, s.estimate, s.stats.LossRatio, trace(samples))
					}
				}
				return
			}
			for _, s := range between(samples, 3*time.Second, drop) {
				if s.congested {
					t.Fatalf("congested at %v before the drop: %s", s.at, trace(samples))
				}
			}
			at, ok := firstAt(samples, drop, func(s sample) bool { return s.congested })
			if !ok || at-drop > tc.wantWithin {
				t.Fatalf("congested %v after the drop (found %v), want within %v: %s", at-drop, ok, tc.wantWithin, trace(samples))
			}
		})
	}
}
