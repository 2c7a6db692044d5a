package relay

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	"github.com/onair-dev/onair/services/media/sfu"
)

// Simulcast over the relay: a pulling edge receives only the layers its
// players, and the edges it feeds, forward.
//
// The rule: a layer is pulled while a local player or downstream edge
// forwards it, or is switching to it, and for layerLinger after the last
// one left it. Players in auto mode are free to move: the edge chooses
// their layers among all of them, from every layer's bitrate and picture
// size that the upstream sends whether it sends the layer or not
// (RelayDownstream.layers). A player that moves to a layer not pulled
// subscribes to it; the pull asks the upstream for it at once
// (RelayUpstream.layers), which sends it from its latest keyframe group,
// each packet with its age, so the layer's keyframe is exactly as fresh
// here as there. The cost of a switch to a layer not pulled is one
// edge-to-edge round trip on top of what it costs at the origin: a switch
// usually waits for a new keyframe there too (the cached one is rarely
// fresh enough), which the player's keyframe request asks for on the
// same round trip. A first player pinned to a layer not pulled (or one
// that joins) starts from the replayed keyframe group, as at the origin.
// The linger keeps the old layer flowing while a switching player waits
// for the new layer's keyframe (the player plays the old layer until
// then), and keeps a player that flaps back from paying the round trip.
//
// What users would expect: a relay edge whose players all get the top
// layer (a clean network) carries only the top layer, one whose players
// are pinned low carries only the low layer, and a player's quality moves
// as at the origin.

// layerLinger is how long a layer stays pulled after the last player or
// feed here left it: a switch away from it completes within a keyframe
// request's throttle and round trip (well under a second), and a player
// flapping back within it finds the layer flowing.
const layerLinger = 3 * time.Second

// statsEvery: a feed sends the layers' figures when they changed, at most
// this often (a layer's bitrate is measured every half second).
const statsEvery = 250 * time.Millisecond

// simulcastLayers marks the tracks that are simulcast layers: video tracks
// whose group has another track among tracks.
func simulcastLayers(tracks []*sfu.UpTrack) []bool {
	out := make([]bool, len(tracks))
	for i, u := range tracks {
		if u.Kind() != webrtc.RTPCodecTypeVideo {
			continue
		}
		for j, x := range tracks {
			if j != i && x.Group() == u.Group() {
				out[i] = true
				break
			}
		}
	}
	return out
}

// ageMicros is a packet's age for RelayPacket.age_us: at least 1 (0 says
// live), at most what the field holds.
func ageMicros(ns int64) uint32 {
	us := ns / 1000
	switch {
	case us < 1:
		return 1
	case us > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(us)
}

// want records the layers a downstream edge asked for (RelayLayers, by
// track ID) and wakes the feed.
func (r *Feed) want(ids []uint32) {
	r.mu.Lock()
	clear(r.wanted)
	for _, id := range ids {
		if u := r.byID[id]; u != nil {
			r.wanted[u] = true
		}
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// layerStats is what a feed last sent of the layers' figures.
type layerStats struct {
	at   int64
	sent []*mediav1.RelayLayerStats
}

// due is the message with the layers' figures when they changed since
// last sent (and statsEvery has passed), else nil.
func (s *layerStats) due(tracks []*sfu.UpTrack, ids []uint32, layer []bool, now int64) *mediav1.RelayDownstream {
	if now-s.at < int64(statsEvery) || !slices.Contains(layer, true) {
		return nil
	}
	s.at = now
	var cur []*mediav1.RelayLayerStats
	for i, u := range tracks {
		if !layer[i] {
			continue
		}
		rate, w, h := u.LayerStats()
		cur = append(cur, &mediav1.RelayLayerStats{Track: ids[i], Bitrate: rate, Width: uint32(w), Height: uint32(h)})
	}
	if slices.EqualFunc(cur, s.sent, func(a, b *mediav1.RelayLayerStats) bool {
		return a.GetTrack() == b.GetTrack() && a.GetBitrate() == b.GetBitrate() && a.GetWidth() == b.GetWidth() && a.GetHeight() == b.GetHeight()
	}) {
		return nil
	}
	s.sent = cur
	return &mediav1.RelayDownstream{Layers: cur}
}

// pullLayers is the pulling side: which of the current tracks' layers to
// ask the upstream for.
type pullLayers struct {
	// changed is poked when a layer's subscribers change (OnSubscribers)
	// or the tracks do.
	changed chan struct{}

	mu sync.Mutex
	// ids are the current tracks' simulcast layers, by upstream track ID;
	// lastUsed when each last had a subscriber, busy whether it had one
	// when last looked at; pulled what was last asked for (sent: whether
	// anything was, on this upstream connection).
	ids          map[*sfu.UpTrack]uint32
	lastUsed     map[*sfu.UpTrack]time.Time
	busy, pulled map[*sfu.UpTrack]bool
	sent         bool
}

func newPullLayers() pullLayers {
	return pullLayers{changed: make(chan struct{}, 1), ids: map[*sfu.UpTrack]uint32{},
		lastUsed: map[*sfu.UpTrack]time.Time{}, busy: map[*sfu.UpTrack]bool{}, pulled: map[*sfu.UpTrack]bool{}}
}

func (l *pullLayers) poke() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// setTracks makes the layers among tracks (upstream IDs ids) the ones to
// choose from, none pulled yet; their subscribers are watched from now on.
// Call it before the tracks are shared.
func (l *pullLayers) setTracks(tracks []*sfu.UpTrack, ids []uint32) {
	layer := simulcastLayers(tracks)
	l.mu.Lock()
	clear(l.ids)
	clear(l.lastUsed)
	clear(l.busy)
	clear(l.pulled)
	l.sent = false
	for i, u := range tracks {
		if layer[i] {
			l.ids[u] = ids[i]
			u.OnSubscribers(l.poke)
		}
	}
	l.mu.Unlock()
	l.poke()
}

// reconnected: a new upstream connection knows of no wants yet.
func (l *pullLayers) reconnected() {
	l.mu.Lock()
	l.sent = false
	l.mu.Unlock()
	l.poke()
}

// next is the RelayLayers to send, nil when the wanted layers did not
// change. A layer wanted again forgets its stale keyframe group, and so
// does one let go (packets of it still on the way must not leave a group
// a player would start from later).
func (l *pullLayers) next(now time.Time) *mediav1.RelayLayers {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ids) == 0 {
		return nil
	}
	changed := !l.sent
	var want []uint32
	for u, id := range l.ids {
		// A layer forwarded when last looked at was left since: now
		// (the poke of its last unsubscribe brings next here at once)
		// is when the linger starts.
		busy := u.Subscribers() > 0
		if busy || l.busy[u] {
			l.lastUsed[u] = now
		}
		l.busy[u] = busy
		at, used := l.lastUsed[u]
		w := used && now.Sub(at) < layerLinger
		if w != l.pulled[u] {
			changed = true
			u.ForgetKeyframe()
		}
		l.pulled[u] = w
		if w {
			want = append(want, id)
		}
	}
	if !changed {
		return nil
	}
	l.sent = true
	slices.Sort(want)
	return &mediav1.RelayLayers{Tracks: want}
}

// counts are the current tracks' simulcast layers, pulled and not.
func (l *pullLayers) counts() (pulled, skipped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for u := range l.ids {
		if l.pulled[u] {
			pulled++
		} else {
			skipped++
		}
	}
	return pulled, skipped
}

// LayerState is one simulcast layer of a stream this edge pulls: its RID,
// whether it is pulled now, and the packets received of it.
type LayerState struct {
	RID     string
	Pulled  bool
	Packets int64
}

// Layers are the simulcast layers of a stream this edge pulls (nil if it
// pulls none), lowest RID first.
func (r *Relay) Layers(key StreamKey) []LayerState {
	r.mu.Lock()
	p := r.pulls[key]
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	p.layers.mu.Lock()
	defer p.layers.mu.Unlock()
	var out []LayerState
	for u := range p.layers.ids {
		out = append(out, LayerState{RID: u.RID(), Pulled: p.layers.pulled[u], Packets: u.Packets()})
	}
	slices.SortFunc(out, func(a, b LayerState) int { return strings.Compare(a.RID, b.RID) })
	return out
}

// LayerCounts are the simulcast layers of the streams this edge pulls:
// pulled now, and not (no player here forwards them).
func (r *Relay) LayerCounts() (pulled, skipped int) {
	r.mu.Lock()
	pulls := make([]*Pull, 0, len(r.pulls))
	for _, p := range r.pulls {
		pulls = append(pulls, p)
	}
	r.mu.Unlock()
	for _, p := range pulls {
		a, b := p.layers.counts()
		pulled += a
		skipped += b
	}
	return pulled, skipped
}
