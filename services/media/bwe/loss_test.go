package bwe

import (
	"math"
	"testing"
)

// TestLossBands: the loss-based cap of GCC section 6, from a cap of 1 Mbit/s
// at an estimate of 1 Mbit/s, one second after the last update.
func TestLossBands(t *testing.T) {
	tests := []struct {
		loss float64
		want float64
	}{
		{0, 1_081_000},           // below 2 %: +8 % a second, +1 kbit/s
		{0.019, 1_081_000},       //
		{0.02, 1_000_000},        // 2-10 %: hold (random loss of a radio link)
		{0.05, 1_000_000},        //
		{0.10, 1_000_000},        //
		{0.15, 1_000_000 * .925}, // above 10 %: cut by half the loss
		{0.50, 750_000},          //
	}
	for _, tt := range tests {
		l := newLossControl()
		l.limit, l.lastUpdate = 1_000_000, 1e9
		l.apply(tt.loss, 1_000_000, 2e9)
		if math.Abs(l.limit-tt.want) > 1 {
			t.Errorf("loss %.3f: cap %.0f, want %.0f", tt.loss, l.limit, tt.want)
		}
	}
}
