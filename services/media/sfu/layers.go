package sfu

import (
	"slices"
	"sync/atomic"

	"github.com/pion/webrtc/v4"
)

// Simulcast: a publisher may send a video track as up to three layers
// (RIDs), each an uptrack of its own with its own packet and keyframe cache.
// Each player's video downtrack forwards one of them: the one it pinned, or
// in auto mode the highest whose bitrate fits the player's bandwidth
// estimate; below the lowest layer its video pauses and audio plays on.
// A switch happens at a keyframe of the new layer (the downtrack's rewriter
// keeps sequence numbers and timestamps continuous), asked of the
// publisher when the layer has none fresh.

// LayerGroup ties the layers of one publisher track together.
type LayerGroup struct {
	// order caches the layers' order (sortLayers, layerorder.go).
	order atomic.Pointer[layerOrder]
}

// MaxLayers is how many simulcast layers a track may have.
const MaxLayers = 3

// Layer is a player's layer preference. Its values are the
// mediav1.VideoLayer numbers.
type Layer int

// Layer preferences: auto follows the player's bandwidth estimate; the
// others pin a layer (the nearest one the publisher sends).
const (
	LayerAuto Layer = iota
	LayerLow
	LayerMedium
	LayerHigh
)

// orderLayers orders a track's layers from lowest to highest: by the
// picture size their keyframes announce, then by measured bitrate, then by
// RID name as browsers use them (q < h < f, l < m < h, 0 < 1 < 2).
// sortLayers caches its answer.
func orderLayers(ls []*UpTrack) []*UpTrack {
	out := slices.Clone(ls)
	slices.SortStableFunc(out, func(a, b *UpTrack) int {
		sa, sb := a.size.Load(), b.size.Load()
		if sa != 0 && sb != 0 && sa != sb {
			return cmpInt(pixels(sa), pixels(sb))
		}
		ra, rb := a.rate.Load(), b.rate.Load()
		if ra > 0 && rb > 0 && (ra > rb*3/2 || rb > ra*3/2) {
			return cmpInt(ra, rb)
		}
		return cmpInt(ridRank(a.rid), ridRank(b.rid))
	})
	return out
}

func pixels(size uint32) int64 { return int64(size>>16) * int64(size&0xffff) }

func cmpInt[T int | int64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func ridRank(rid string) int {
	switch rid {
	case "q", "l", "low", "0":
		return 0
	case "h", "m", "mid", "medium", "1":
		// "h" is half next to q/f but high next to l/m: picture sizes
		// settle it once keyframes arrive.
		return 1
	case "f", "high", "2":
		return 2
	}
	return 1
}

// LayersOf is the layer group of the first track of kind k, in publisher
// order (nil if none).
func LayersOf(tracks []*UpTrack, k webrtc.RTPCodecType) []*UpTrack {
	var g *LayerGroup
	var out []*UpTrack
	for _, u := range tracks {
		if u.kind != k {
			continue
		}
		if g == nil {
			g = u.group
		}
		if u.group == g {
			out = append(out, u)
		}
	}
	return out
}

// SetLayer makes u the simulcast layer rid of the track group stands for
// (a new UpTrack is a track of its own). Call it before u is shared.
func (u *UpTrack) SetLayer(g *LayerGroup, rid string) { u.group, u.rid = g, rid }

// RID is u's simulcast layer name, "" for a track without layers.
func (u *UpTrack) RID() string { return u.rid }

// Group is the track u is a layer of.
func (u *UpTrack) Group() *LayerGroup { return u.group }
