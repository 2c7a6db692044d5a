package sfu

import "slices"

// The order of a track's layers is asked for after every congestion
// feedback of every player of the track (thousands of times a second on a
// busy edge), but changes only when a layer's picture size or measured
// bitrate does (a keyframe of a new size; a rate window closing, twice a
// second). So the group keeps the order with what it was computed from,
// and a caller whose layers still show the same sizes and rates gets it
// without a copy or a sort.

// layerOrder is a group's layers sorted, and what the order was computed
// from: the layers as given, and each one's size and rate then.
type layerOrder struct {
	in     []*UpTrack
	sizes  [MaxLayers]uint32
	rates  [MaxLayers]int64
	sorted []*UpTrack
}

// matches reports whether ls, as they are now, are what o was computed
// from.
func (o *layerOrder) matches(ls []*UpTrack) bool {
	if len(ls) != len(o.in) {
		return false
	}
	for i, u := range ls {
		if u != o.in[i] || u.size.Load() != o.sizes[i] || u.rate.Load() != o.rates[i] {
			return false
		}
	}
	return true
}

// sortLayers is ls ordered from lowest to highest (orderLayers), from the
// group's cache when the layers have not changed since it was computed.
// The slice returned is shared: callers must not modify it.
func sortLayers(ls []*UpTrack) []*UpTrack {
	if len(ls) == 0 || len(ls) > MaxLayers || ls[0].group == nil {
		return orderLayers(ls)
	}
	g := ls[0].group
	if o := g.order.Load(); o != nil && o.matches(ls) {
		return o.sorted
	}
	// Sizes and rates are read before sorting: one that changes meanwhile
	// differs from what is recorded, and the next call sorts again.
	o := &layerOrder{in: slices.Clone(ls)}
	for i, u := range ls {
		o.sizes[i], o.rates[i] = u.size.Load(), u.rate.Load()
	}
	o.sorted = orderLayers(ls)
	g.order.Store(o)
	return o.sorted
}
