package media

import (
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	"github.com/onair-dev/onair/services/media/relay"
)

// The edge's side of the relay (package relay): the streams it serves to
// other edges and the local streams its pulls feed are the edge's own.

// Relay defaults (package relay's).
const (
	DefaultRelayFanout = relay.DefaultFanout
	DefaultRelayLinger = relay.DefaultLinger
)

// relayEdge is the edge as its relay sees it (relay.Edge).
type relayEdge struct{ s *Server }

func (e relayEdge) Published(key relay.StreamKey) relay.Stream {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	if o := e.s.origins[key]; o != nil {
		return o
	}
	return nil // not a nil *stream in the interface
}

func (e relayEdge) NewStream(key relay.StreamKey, roomID, userID string, pull *relay.Pull) relay.Stream {
	o := newStream(e.s, key, roomID, userID)
	o.pull = pull
	return o
}

func (e relayEdge) Closing() bool { return e.s.closedLocked() }

func (s *Server) closedLocked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// RelayService is the edge's MediaRelayService.
func (s *Server) RelayService() mediav1.MediaRelayServiceServer { return s.relay.Service() }

// Upstream is the edge a pulled stream comes from ("" if this edge does
// not pull it), and how many upstream connections the pull has made.
func (s *Server) Upstream(appID uint32, streamID string) (addr string, pulls int) {
	return s.relay.Upstream(relay.StreamKey{App: appID, Stream: streamID})
}

// Downstreams is how many edges pull the stream from this one.
func (s *Server) Downstreams(appID uint32, streamID string) int {
	key := relay.StreamKey{App: appID, Stream: streamID}
	s.mu.Lock()
	o := s.origins[key]
	s.mu.Unlock()
	var rs relay.Stream
	if o != nil {
		rs = o
	} else {
		rs = s.relay.Pulled(key)
	}
	if rs == nil {
		return 0
	}
	_, d := rs.Counts()
	return d
}

// RelayLayers are the simulcast layers of a stream this edge pulls, with
// whether each is pulled now (nil if it pulls none).
func (s *Server) RelayLayers(appID uint32, streamID string) []relay.LayerState {
	return s.relay.Layers(relay.StreamKey{App: appID, Stream: streamID})
}
