package media

// Edge choice: where a player plays.
//
// OnlyRTC (and the modes OnAir has no tier for: CDN, CDN+, custom, treated
// as OnlyRTC) plays on the stream's origin edge. Default and OnlyL3 play at
// the least loaded edge, by the edges' discovery metadata (Load: players,
// and egress bitrate, one player per Mbit/s), the origin only while its
// load is under Config.OriginRoom or when it is the only edge. Metadata is
// refreshed every few seconds, so an edge also counts the players it sent
// to each edge lately: a burst of players arriving through one edge is
// spread, not sent to one edge that looked empty. The chosen edge answers
// the redirected request (placed) itself, relaying the stream if it is not
// its origin.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onair-dev/onair/errcode"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/services/media/relay"
)

// DefaultOriginRoom is Config.OriginRoom's default.
const DefaultOriginRoom = 50

// placedWindow is how long a redirect counts toward its edge's load: a bit
// more than the metadata refresh.
const placedWindow = 6 * time.Second

// placement is the edge's bookkeeping of edge choice (a field of Server):
// the players it sent to each edge lately, and its own egress bitrate.
type placement struct {
	mu         sync.Mutex
	placed     map[string][]time.Time
	lastOctets int64
	lastAt     time.Time
	egressKbps atomic.Int64
}

// l3 reports whether mode plays at a chosen edge.
func l3(mode mediav1.ResourceMode) bool {
	return mode == mediav1.ResourceMode_RESOURCE_MODE_DEFAULT || mode == mediav1.ResourceMode_RESOURCE_MODE_ONLY_L3
}

// placePlay is where a play request is served: the stream as this edge holds
// it (published here, or pulled: package relay), or redirect, another edge's
// address.
func (s *Server) placePlay(ctx context.Context, req *mediav1.PlayRequest, st *streamv1.StreamRecord) (o *stream, redirect string, err error) {
	originHere := st.GetEdgeId() == s.cfg.EdgeID
	if !l3(req.GetResourceMode()) || s.cfg.Edges == nil {
		if !originHere {
			return nil, st.GetEdgeAddr(), nil
		}
	} else if !req.GetPlaced() {
		if next := s.chooseEdge(ctx, st); next != "" && next != s.cfg.EdgeAddr {
			return nil, next, nil
		}
	}
	if !originHere {
		rs, err := s.relay.Pull(ctx, st)
		if err != nil {
			return nil, "", err
		}
		// The relay's local streams are this edge's (relayEdge.NewStream).
		return rs.(*stream), "", nil
	}
	key := relay.StreamKey{App: req.GetAppId(), Stream: req.GetStreamId()}
	s.mu.Lock()
	o = s.origins[key]
	s.mu.Unlock()
	if o == nil {
		return nil, "", errcode.Newf(errcode.StreamNotFound, "stream %q is not live on this edge", req.GetStreamId())
	}
	return o, "", nil
}

// chooseEdge is the least loaded edge for a player of st ("" if edges
// cannot be listed: play here).
func (s *Server) chooseEdge(ctx context.Context, st *streamv1.StreamRecord) string {
	edges, err := s.cfg.Edges(ctx)
	if err != nil || len(edges) == 0 {
		return ""
	}
	room := s.cfg.OriginRoom
	if room <= 0 {
		room = DefaultOriginRoom
	}
	now := time.Now()
	s.place.mu.Lock()
	defer s.place.mu.Unlock()
	best, bestLoad := "", 0.0
	for addr, meta := range edges {
		var load float64
		if addr == s.cfg.EdgeAddr {
			load = float64(s.sessionLoad()["players"]) + float64(s.place.egressKbps.Load())/1000
		} else {
			m, _ := meta.(map[string]any)
			players, _ := m["players"].(float64)
			kbps, _ := m["egress_kbps"].(float64)
			load = players + kbps/1000
		}
		recent := s.place.placed[addr][:0]
		for _, t := range s.place.placed[addr] {
			if now.Sub(t) < placedWindow {
				recent = append(recent, t)
			}
		}
		if s.place.placed != nil {
			s.place.placed[addr] = recent
		}
		load += float64(len(recent))
		if addr == st.GetEdgeAddr() && len(edges) > 1 && load >= float64(room) {
			continue // the origin has no room
		}
		if best == "" || load < bestLoad || (load == bestLoad && addr < best) {
			best, bestLoad = addr, load
		}
	}
	if best != "" && best != s.cfg.EdgeAddr {
		if s.place.placed == nil {
			s.place.placed = map[string][]time.Time{}
		}
		s.place.placed[best] = append(s.place.placed[best], now)
	}
	return best
}

// relayLoad adds the relay figures and the egress bitrate (players' and
// downstream edges', since the last call) to the edge's load.
func (s *Server) relayLoad(m map[string]int) {
	s.mu.Lock()
	var octets int64
	for _, ss := range s.sessions {
		if ss.player && ss.sub != nil {
			octets += ss.sub.Octets()
		}
	}
	s.mu.Unlock()
	octets += s.relay.Counters.OutOctets.Load()
	now := time.Now()
	s.place.mu.Lock()
	if !s.place.lastAt.IsZero() {
		if dt := now.Sub(s.place.lastAt).Seconds(); dt > 0 {
			// Players that left take their octets with them: never below 0.
			s.place.egressKbps.Store(int64(max(0, float64(octets-s.place.lastOctets)*8/1000/dt)))
		}
	}
	s.place.lastOctets, s.place.lastAt = octets, now
	s.place.mu.Unlock()
	m["egress_kbps"] = int(s.place.egressKbps.Load())
	m["relay_upstreams"] = s.relay.Upstreams()
	m["relay_downstreams"] = int(s.relay.Counters.Downstreams.Load())
}
