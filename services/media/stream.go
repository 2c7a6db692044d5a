package media

import (
	"context"
	"sync"
	"time"

	"github.com/onair-dev/onair/errcode"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/services/media/relay"
	"github.com/onair-dev/onair/services/media/sfu"
)

// stream is a stream as this edge holds it: its players, the edges it
// feeds (relay.Stream), and its source, one of
//   - a publisher session here (pub): the edge is the stream's origin, and
//     the stream is in Server.origins. It outlives its publisher session:
//     when the same user publishes the stream again (the SDK's retry after
//     a broken connection), the new session's tracks are spliced into
//     every player's downtracks, and players stay on their peer
//     connections;
//   - a relay pull (pull): the stream is published on another edge and
//     pulled here (package relay), its tracks replaced when the upstream
//     changes, spliced in the same way.
type stream struct {
	s      *Server
	key    relay.StreamKey
	roomID string
	userID string

	mu      sync.Mutex
	pub     *session
	tracks  []*sfu.UpTrack // the current source's, in SDP order
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
	// (package relay); downs are the edges this edge feeds it to.
	pull  *relay.Pull
	downs relay.Downstreams
}

func newStream(s *Server, key relay.StreamKey, roomID, userID string) *stream {
	return &stream{s: s, key: key, roomID: roomID, userID: userID, players: map[*session]struct{}{}}
}

// publisher is the stream's current publisher session.
func (o *stream) publisher() *session {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pub
}

// Tracks are the current source's tracks (relay.Stream).
func (o *stream) Tracks() []*sfu.UpTrack {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*sfu.UpTrack(nil), o.tracks...)
}

// adopt makes ss (with tracks) the stream's publisher. Players' downtracks
// switch to the new tracks of their kind; they splice them in at the new
// source's first keyframe. The previous publisher session, if any, is
// closed and returned tracks are released.
func (o *stream) adopt(ss *session, tracks []*sfu.UpTrack) bool {
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
		p.sub.SwitchTo(tracks)
		p.sub.Signal()
	}
	o.downs.Kick()
	o.mu.Unlock()
	for _, u := range oldTracks {
		u.Close()
	}
	if old != nil && old != ss {
		old.finish(mediav1.SessionEvent_STATE_CLOSED, 0, "replaced by a new publish of the stream")
	}
	return true
}

// addPlayer adds a player session; false when the stream has ended.
func (o *stream) addPlayer(ss *session) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended {
		return false
	}
	o.players[ss] = struct{}{}
	return true
}

// removePlayer forgets a player and stops its forwarding.
func (o *stream) removePlayer(ss *session) {
	o.mu.Lock()
	delete(o.players, ss)
	pull := o.pull
	o.mu.Unlock()
	if pull != nil {
		pull.Idle()
	}
	if ss.sub == nil {
		return
	}
	ss.sub.Close()
}

// publisherEnded: the stream ends with its publisher session, unless that
// session was replaced, or it broke and may come back within the grace.
func (o *stream) publisherEnded(ss *session) {
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
func (o *stream) end(reason streamv1.DeleteReason) {
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
	o.downs.Kick()
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
		u.Close()
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
		st, err := o.s.cfg.Streams.GetStream(ctx, &streamv1.GetStreamRequest{AppId: o.key.App, StreamId: o.key.Stream})
		if err == nil && st.GetStream().GetEdgeId() == o.s.cfg.EdgeID {
			if _, err := o.s.cfg.Streams.UnregisterStream(ctx, &streamv1.UnregisterStreamRequest{
				AppId: o.key.App, StreamId: o.key.Stream, Reason: reason}); err != nil && errcode.Of(err) != errcode.StreamNotFound {
				o.s.log.Warn("media: unregister stream", "stream", o.key.Stream, "err", err)
			}
		}
	}
	if room != nil {
		room.stop(true)
	}
}

// reason is why the stream is ending when its publisher session ends;
// STOPPED unless the session failed.
func (o *stream) reason() streamv1.DeleteReason {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.why == nil {
		return streamv1.DeleteReason_DELETE_REASON_STOPPED
	}
	return *o.why
}

func (o *stream) setReason(r streamv1.DeleteReason) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.why == nil {
		o.why = &r
	}
}

// The relay's view of the stream (relay.Stream): it feeds downstream edges
// from it, and a pull replaces its tracks.

// Ended reports whether the stream has ended.
func (o *stream) Ended() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ended
}

// Counts are the stream's players and downstream edges here.
func (o *stream) Counts() (players, downs int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.players), o.downs.Len()
}

// AddDown adds a downstream edge, unless the stream ended or this edge
// already feeds fanout others: then next is one of them to ask instead.
func (o *stream) AddDown(f *relay.Feed, fanout int) (next string, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended {
		return "", false
	}
	next, ok = o.downs.Add(f, fanout)
	if ok && o.pull != nil {
		o.pull.Touch()
	}
	return next, ok
}

// RemoveDown forgets a downstream edge.
func (o *stream) RemoveDown(f *relay.Feed) {
	o.mu.Lock()
	o.downs.Remove(f)
	pull := o.pull
	o.mu.Unlock()
	if pull != nil {
		pull.Idle()
	}
}

// Adopt makes a pull's tracks the stream's source.
func (o *stream) Adopt(tracks []*sfu.UpTrack) bool { return o.adopt(nil, tracks) }

// End ends the stream.
func (o *stream) End(reason streamv1.DeleteReason) { o.end(reason) }

// FailPlayers fails the players (their upstream edge was lost): they
// retry, as an origin's do when it dies.
func (o *stream) FailPlayers() {
	o.mu.Lock()
	players := make([]*session, 0, len(o.players))
	for ss := range o.players {
		players = append(players, ss)
	}
	o.mu.Unlock()
	for _, ss := range players {
		ss.finish(mediav1.SessionEvent_STATE_FAILED, int32(errcode.ServiceUnavailable), "the stream's upstream edge was lost")
	}
}
