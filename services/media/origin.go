package media

import (
	"context"
	"sync"
	"time"

	"github.com/onair-dev/onair/errcode"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// origin is a stream published on this edge. It outlives its publisher
// session: when the same user publishes the stream again (the SDK's retry
// after a broken connection), the new session's tracks are spliced into
// every player's downtracks, and players stay on their peer connections.
type origin struct {
	s      *Server
	key    streamKey
	roomID string
	userID string

	mu      sync.Mutex
	pub     *session
	tracks  []*uptrack // the current publisher's, in SDP order
	players map[*session]struct{}
	ended   bool
	grace   *time.Timer
	// registered, userName, extraInfo and lease are what the stream was
	// registered with and the lease it lives under: enough to register it
	// again when the edge's lease is lost (Reregister).
	registered          bool
	userName, extraInfo string
	lease               int64
	room                *roomLogin
	why                 *streamv1.DeleteReason
	// pull is set when the stream is relayed here from another edge
	// (relay.go); downs are the edges this edge feeds it to.
	pull  *relayPull
	downs map[*relayOut]struct{}
}

func newOrigin(s *Server, key streamKey, roomID, userID string) *origin {
	return &origin{s: s, key: key, roomID: roomID, userID: userID, players: map[*session]struct{}{}}
}

// publisher is the stream's current publisher session.
func (o *origin) publisher() *session {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pub
}

// currentTracks are the current publisher's tracks.
func (o *origin) currentTracks() []*uptrack {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*uptrack(nil), o.tracks...)
}

// adopt makes ss (with tracks) the stream's publisher. Players' downtracks
// switch to the new tracks of their kind; they splice them in at the new
// source's first keyframe. The previous publisher session, if any, is
// closed and returned tracks are released.
func (o *origin) adopt(ss *session, tracks []*uptrack) bool {
	o.mu.Lock()
	if o.ended {
		o.mu.Unlock()
		return false
	}
	old, oldTracks := o.pub, o.tracks
	o.pub, o.tracks, o.why = ss, tracks, nil
	if o.grace != nil {
		o.grace.Stop()
		o.grace = nil
	}
	for p := range o.players {
		sub := p.sub
		for _, d := range sub.tracks {
			d.setLayers(layersOf(tracks, d.kind))
		}
		sub.signal()
	}
	o.kickDowns()
	o.mu.Unlock()
	for _, u := range oldTracks {
		u.close()
	}
	if old != nil && old != ss {
		old.finish(mediav1.SessionEvent_STATE_CLOSED, 0, "replaced by a new publish of the stream")
	}
	return true
}

// addPlayer adds a player session; false when the stream has ended.
func (o *origin) addPlayer(ss *session) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended {
		return false
	}
	o.players[ss] = struct{}{}
	return true
}

// removePlayer forgets a player and stops its forwarding.
func (o *origin) removePlayer(ss *session) {
	o.mu.Lock()
	delete(o.players, ss)
	pull := o.pull
	o.mu.Unlock()
	if pull != nil {
		pull.idle()
	}
	if ss.sub == nil {
		return
	}
	ss.sub.stop()
	for _, d := range ss.sub.tracks {
		for _, u := range *d.layers.Load() {
			u.unsubscribe(ss.sub)
		}
	}
}

// publisherEnded: the stream ends with its publisher session, unless that
// session was replaced, or it broke and may come back within the grace.
func (o *origin) publisherEnded(ss *session) {
	o.mu.Lock()
	if o.pub != ss || o.ended {
		o.mu.Unlock()
		return
	}
	o.s.mu.Lock()
	closing := o.s.closed
	o.s.mu.Unlock()
	grace := o.s.cfg.RepublishGrace
	if ss.isFinal() || closing || grace < 0 {
		o.mu.Unlock()
		o.end(o.reason())
		return
	}
	o.grace = time.AfterFunc(grace, func() {
		o.mu.Lock()
		due := o.pub == ss && !o.ended
		o.mu.Unlock()
		if due {
			o.end(o.reason())
		}
	})
	o.mu.Unlock()
}

// end stops the stream: players are told and closed, the registry and the
// room are updated unless the edge is going away.
func (o *origin) end(reason streamv1.DeleteReason) {
	o.s.mu.Lock()
	if o.s.origins[o.key] == o {
		delete(o.s.origins, o.key)
	}
	closing := o.s.closed
	o.s.mu.Unlock()
	o.mu.Lock()
	if o.ended {
		o.mu.Unlock()
		return
	}
	o.ended = true
	o.kickDowns()
	players := make([]*session, 0, len(o.players))
	for p := range o.players {
		players = append(players, p)
	}
	clear(o.players)
	tracks := o.tracks
	registered := o.registered
	o.registered = false
	room := o.room
	o.room = nil
	pub := o.pub
	if o.grace != nil {
		o.grace.Stop()
		o.grace = nil
	}
	o.mu.Unlock()
	for _, u := range tracks {
		u.close()
	}
	if pub != nil {
		pub.setFinal()
		pub.finish(mediav1.SessionEvent_STATE_CLOSED, 0, "the stream ended")
	}
	if closing {
		for _, p := range players {
			p.finish(mediav1.SessionEvent_STATE_FAILED, int32(errcode.ServiceUnavailable), "the media edge shut down")
		}
		return
	}
	for _, p := range players {
		p.finish(mediav1.SessionEvent_STATE_CLOSED, int32(errcode.StreamNotFound), "the stream ended")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if registered {
		// Only unregister what is still ours: a publisher that moved to
		// another edge has taken the stream over there.
		st, err := o.s.cfg.Streams.GetStream(ctx, &streamv1.GetStreamRequest{AppId: o.key.app, StreamId: o.key.stream})
		if err == nil && st.GetStream().GetEdgeId() == o.s.cfg.EdgeID {
			if _, err := o.s.cfg.Streams.UnregisterStream(ctx, &streamv1.UnregisterStreamRequest{
				AppId: o.key.app, StreamId: o.key.stream, Reason: reason}); err != nil && errcode.Of(err) != errcode.StreamNotFound {
				o.s.log.Warn("media: unregister stream", "stream", o.key.stream, "err", err)
			}
		}
	}
	if room != nil {
		room.stop(true)
	}
}

// reason is why the stream is ending when its publisher session ends;
// STOPPED unless the session failed.
func (o *origin) reason() streamv1.DeleteReason {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.why == nil {
		return streamv1.DeleteReason_DELETE_REASON_STOPPED
	}
	return *o.why
}

func (o *origin) setReason(r streamv1.DeleteReason) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.why == nil {
		o.why = &r
	}
}
