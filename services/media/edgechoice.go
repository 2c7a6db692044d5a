package media

// Edge choice: where a player plays, by package placement's rule.
//
// OnlyRTC (and the modes OnAir has no tier for: CDN, CDN+, custom, treated
// as OnlyRTC) plays on the stream's origin edge: an edge that is not the
// origin answers with a redirect there, after looking the stream up.
// Default and OnlyL3 play at the edge placement chooses. The gateway
// chooses before it calls an edge and marks the request placed; a request
// that is not placed (an SDK's, sent to the edge it is connected to) is
// placed here first, before anything is looked up, and redirected at once
// if another edge is chosen. The edge a placed request reaches serves it,
// relaying the stream if it is not its origin: it never chooses again, and
// the token and the stream are looked up once per play.

import (
	"context"
	"time"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/placement"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/services/media/relay"
)

// DefaultOriginRoom is Config.OriginRoom's default.
const DefaultOriginRoom = 50

// egressMeter is the edge's egress bitrate, measured between two metadata
// refreshes (a field of Server, guarded by Server.place's lock).
type egressMeter struct {
	lastOctets int64
	lastAt     time.Time
	kbps       int64
}

// l3 reports whether mode plays at a chosen edge.
func l3(mode mediav1.ResourceMode) bool {
	return mode == mediav1.ResourceMode_RESOURCE_MODE_UNSPECIFIED || mode == mediav1.ResourceMode_RESOURCE_MODE_ONLY_L3
}

// placeFirst is the edge a play that is not placed belongs on, when it is
// another edge ("" to go on here): Default and OnlyL3 only, before the
// token or the stream are looked up.
func (s *Server) placeFirst(ctx context.Context, req *mediav1.PlayRequest) string {
	if req.GetPlaced() || !l3(req.GetResourceMode()) || s.cfg.Edges == nil {
		return ""
	}
	edges, err := s.cfg.Edges(ctx)
	if err != nil || len(edges) == 0 {
		return "" // edges cannot be listed: play here
	}
	for i := range edges {
		if edges[i].Addr == s.cfg.EdgeAddr {
			edges[i].Meta = s.liveMeta() // fresher than discovery's
		}
	}
	if next := s.chooser.Choose(edges, placement.Player); next != s.cfg.EdgeAddr {
		return next
	}
	return ""
}

// placePlay is where a play request of st is served: the stream as this
// edge holds it (published here, or pulled: package relay), or redirect,
// the origin's address for a play that must be served there.
func (s *Server) placePlay(ctx context.Context, req *mediav1.PlayRequest, st *streamv1.StreamRecord) (o *stream, redirect string, err error) {
	originHere := st.GetEdgeId() == s.cfg.EdgeID
	if (!l3(req.GetResourceMode()) || s.cfg.Edges == nil) && !originHere {
		return nil, st.GetEdgeAddr(), nil
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

// measureEgress updates the egress bitrate (players' and downstream
// edges', since the last call).
func (s *Server) measureEgress() {
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
	s.placeMu.Lock()
	defer s.placeMu.Unlock()
	e := &s.egress
	if !e.lastAt.IsZero() {
		if dt := now.Sub(e.lastAt).Seconds(); dt > 0 {
			// Players that left take their octets with them: never below 0.
			e.kbps = int64(max(0, float64(octets-e.lastOctets)*8/1000/dt))
		}
	}
	e.lastOctets, e.lastAt = octets, now
}

// liveMeta is the edge's metadata now, with the egress bitrate last
// measured.
func (s *Server) liveMeta() placement.Meta {
	room := s.cfg.OriginRoom
	if room <= 0 {
		room = DefaultOriginRoom
	}
	pubs, players := s.sessionLoad()
	s.placeMu.Lock()
	kbps := s.egress.kbps
	s.placeMu.Unlock()
	return placement.Meta{SessionTag: s.tag, Publishers: pubs, Players: players, EgressKbps: int(kbps),
		RelayUpstreams: s.relay.Upstreams(), RelayDownstreams: int(s.relay.Counters.Downstreams.Load()), OriginRoom: room}
}
