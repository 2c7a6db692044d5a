package bwe

import (
	"testing"
	"time"
)

// TestSimulcastSender: a sender of three simulcast layers (it sends the
// highest whose rate fits the estimate, going up after 1.5 s) on the
// shaped-link bench's changing cap: 3 Mbit/s, 700 kbit/s from 20 s, 3
// Mbit/s again from a time that varies against the probes' cadence.
// On the 700 kbit/s link the sender stays on the lowest layer; once the
// cap lifts the top layer is back within 5 s wherever the rise falls
// between two probes (probes every 5 s took up to 6.7 s).
func TestSimulcastSender(t *testing.T) {
	const drop = 20 * time.Second
	for _, rise := range []time.Duration{40e9, 40.7e9, 41.4e9, 42.1e9, 42.8e9, 43.5e9, 44.2e9} {
		t.Run(rise.String(), func(t *testing.T) {
			sc := simConfig{cfg: Config{Initial: 3_000_000, Max: 10_000_000}, desired: 3_200_000,
				layers: []int64{170_000, 650_000, 2_550_000}, upAfter: 1500 * time.Millisecond,
				phases: []phase{{0, 3_000_000}, {drop, 700_000}, {rise, 3_000_000}}, prop: 20 * time.Millisecond, duration: rise + 10*time.Second}
			_, s := simulate(t, sc)
			for _, x := range between(s, drop+2*time.Second, rise) {
				if x.app > 170_000 {
					t.Fatalf("at %v on the 700 kbit/s link: estimate %d, sending %d; want the lowest layer: %s", x.at, x.estimate, x.app, trace(s))
				}
			}
			up, ok := firstAt(s, rise, func(x sample) bool { return x.app > 2_000_000 })
			if !ok || up-rise > 5*time.Second {
				t.Fatalf("top layer %v after the rise (%v), want within 5 s: %s", up-rise, ok, trace(s))
			}
		})
	}
}
