package sfu

import "testing"

// TestSortLayersCached: the order is computed again only when a layer's
// size or rate changed, and asking again costs no allocation.
func TestSortLayersCached(t *testing.T) {
	q, h, f := testLayer("q", 320, 180, 150_000), testLayer("h", 640, 360, 600_000), testLayer("f", 1280, 720, 2_500_000)
	g := q.Group()
	h.SetLayer(g, "h")
	f.SetLayer(g, "f")
	ls := []*UpTrack{f, h, q}
	tests := []struct {
		name   string
		change func()
		want   string
	}{
		{"first", func() {}, "q,h,f"},
		{"unchanged", func() {}, "q,h,f"},
		{"a rate changed within its class", func() { h.rate.Store(610_000) }, "q,h,f"},
		{"sizes unknown again: rates decide", func() {
			for _, u := range ls {
				u.size.Store(0)
			}
			q.rate.Store(5_000_000)
		}, "h,f,q"},
		{"keyframes' sizes", func() {
			for i, u := range []*UpTrack{q, h, f} {
				u.size.Store(uint32(320<<i)<<16 | uint32(180<<i))
			}
		}, "q,h,f"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.change()
			if got := rids(sortLayers(ls)); got != tc.want {
				t.Fatalf("sorted %s, want %s", got, tc.want)
			}
			if got := rids(sortLayers(ls)); got != tc.want {
				t.Fatalf("asked again: %s, want %s", got, tc.want)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { sortLayers(ls) }); n != 0 {
		t.Fatalf("%v allocations per cached sort, want 0", n)
	}
	// Another list of the same group (a player given fewer layers) gets
	// its own order, not the cached one.
	if got := rids(sortLayers([]*UpTrack{f, q})); got != "q,f" {
		t.Fatalf("two layers sorted %s, want q,f", got)
	}
}
