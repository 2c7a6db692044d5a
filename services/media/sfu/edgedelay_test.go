package sfu

import (
	"testing"
	"time"
)

func TestDelayHist(t *testing.T) {
	var h DelayHist
	for range 98 {
		h.observe(120 * time.Microsecond)
	}
	h.observe(3 * time.Millisecond)
	h.observe(2 * time.Second)
	n, p50, p99 := h.Take()
	if n != 100 || p50 != 150*time.Microsecond || p99 != 3050*time.Microsecond {
		t.Fatalf("n %d p50 %v p99 %v, want 100, 150µs, 3.05ms", n, p50, p99)
	}
	for range 10 {
		h.observe(30 * time.Millisecond)
	}
	h.observe(time.Minute)
	if n, p50, p99 := h.Take(); n != 11 || p50 != 31*time.Millisecond || p99 != -1 {
		t.Fatalf("n %d p50 %v p99 %v, want 11, 31ms, -1", n, p50, p99)
	}
	if n, _, _ := h.Take(); n != 0 {
		t.Fatalf("a take after a take: %d observations", n)
	}
}
