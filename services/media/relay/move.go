package relay

// A publisher that moves to another edge (its SDK reconnected elsewhere)
// takes its stream over in the registry at once, but its old origin only
// ends when the republish grace runs out, and a relay pulling from it would
// see nothing until then: seconds of frozen players. So while a pull is
// connected to an upstream, it watches its room's streams in the registry
// (StreamService.WatchStreams, one etcd watch per pulled stream), and when
// the stream names another origin edge it drops the upstream and pulls
// again from the new origin at once; the new source is spliced into its
// players like a publisher that came back. Edges below a relay edge need no
// watch of their own to follow: their upstream's source changes, which
// they see as new tracks on the same relay stream. (They do watch, as every
// pull does, which only matters when their upstream is the origin.)

import (
	"context"
	"time"

	"github.com/onair-dev/onair/errcode"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// watchMove calls moved once, when the registry names an origin edge for
// the pulled stream other than originEdge, until ctx ends. The watch
// starts from now; the registry is read once after it is open, so a move
// made just before is not missed.
func (p *Pull) watchMove(ctx context.Context, originEdge string, moved func()) {
	if originEdge == "" || p.roomID == "" {
		return
	}
	isMove := func(st *streamv1.StreamRecord) bool {
		return st != nil && st.GetStreamId() == p.key.Stream && !st.GetEnded() &&
			st.GetEdgeId() != "" && st.GetEdgeId() != originEdge
	}
	for ctx.Err() == nil {
		w, err := p.r.cfg.Streams.WatchStreams(ctx, &streamv1.WatchStreamsRequest{AppId: p.key.App, RoomId: p.roomID})
		if err == nil {
			_, err = w.Header()
		}
		if err == nil {
			gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, gerr := p.r.cfg.Streams.GetStream(gctx, &streamv1.GetStreamRequest{AppId: p.key.App, StreamId: p.key.Stream})
			cancel()
			if gerr == nil && isMove(st.GetStream()) {
				moved()
				return
			}
			for {
				ev, rerr := w.Recv()
				if rerr != nil {
					err = rerr
					break
				}
				if isMove(ev.GetStream()) {
					moved()
					return
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		if errcode.Of(err) == errcode.InvalidParameter {
			return // a room ID the registry does not take: rely on the upstream ending
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}
