package room

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/grpcserver"
	"github.com/onair-dev/onair/internal/keys"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// maxQueue is how far a subscriber may fall behind before it is given a
// fresh snapshot instead: a slow client never holds the others back.
const maxQueue = 4096

// maxBatchUsers caps the users in one batched user update.
const maxBatchUsers = 500

// subscriber is one SubscribeRoomEvents call.
type subscriber struct {
	rec    *keys.SessionRecord
	after  int64
	skipTo int64

	mu          sync.Mutex
	queue       []*item
	spare       []*item // the last queue taken, sent and emptied
	overflow    bool
	err         error
	tokenExpire int64
	wake        chan struct{}
}

func newSubscriber(rec *keys.SessionRecord, after int64) *subscriber {
	return &subscriber{rec: rec, after: after, tokenExpire: rec.TokenExpire, wake: make(chan struct{}, 1)}
}

func (s *subscriber) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// wants reports whether the item is for this session.
func (s *subscriber) wants(it *item) bool {
	var everyone route
	r := it.route
	if r == nil {
		r = &everyone
	}
	switch {
	case r.forSession != "":
		return r.forSession == s.rec.SessionID
	case it.userEvent && !s.rec.UserNotify:
		return false
	case r.fromSession != "" && r.fromSession == s.rec.SessionID:
		return false
	case r.fromUser != "" && r.fromUser == s.rec.UserID:
		return false
	case len(r.to) > 0:
		return slices.Contains(r.to, s.rec.UserID)
	}
	return true
}

// push queues an item if the session wants it, and reports whether it
// did (the one check of wants); called by the hub with its lock held.
func (s *subscriber) push(it *item) bool {
	if !s.wants(it) {
		return false
	}
	s.mu.Lock()
	if s.overflow {
		s.mu.Unlock()
		return true // a resync follows, which covers it
	}
	if len(s.queue) >= maxQueue {
		s.queue, s.overflow = nil, true
	} else {
		s.queue = append(s.queue, it)
	}
	s.mu.Unlock()
	s.signal()
	return true
}

func (s *subscriber) fail(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.signal()
}

func (s *subscriber) setTokenExpire(t int64) {
	s.mu.Lock()
	s.tokenExpire = t
	s.mu.Unlock()
	s.signal()
}

// dropSeen drops the queued room state items of revision rev or before (a
// snapshot at rev covers them); messages and items for this session alone
// stay. Called with the hub's lock held, so nothing is pushed meanwhile.
func (s *subscriber) dropSeen(rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = slices.DeleteFunc(s.queue, func(it *item) bool {
		return it.ev.GetMessage() == nil && it.forSession() == "" && it.ev.Revision <= rev
	})
}

// take returns what is queued, whether a resync is due, and a failure.
// The queue starts again in the slice recycle gave back, if any.
func (s *subscriber) take() ([]*item, bool, error, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, over := s.queue, s.overflow
	s.queue, s.spare, s.overflow = s.spare, nil, false
	return q, over, s.err, s.tokenExpire
}

// recycle gives back the slice take returned, once sent, for the queue to
// use again: a queue of one event at a time then allocates nothing. A
// large one is dropped rather than kept by an idle subscriber.
func (s *subscriber) recycle(q []*item) {
	if cap(q) == 0 || cap(q) > 64 {
		return
	}
	clear(q)
	s.mu.Lock()
	s.spare = q[:0]
	s.mu.Unlock()
}

// SubscribeRoomEvents streams the session's room. See roomv1 for the
// contract; events carry revisions and a client resumes on any replica.
func (s *Server) SubscribeRoomEvents(req *roomv1.SubscribeRoomEventsRequest, srv roomv1.RoomService_SubscribeRoomEventsServer) error {
	ctx := srv.Context()
	// A client subscribes right after its login, mostly on the replica
	// that logged it in: the watch cache knows the session (cache.go).
	rec, err := s.cachedSession(ctx, req.GetSessionId())
	if err != nil {
		return err
	}
	k := roomKey{rec.AppID, rec.RoomID}
	sub := newSubscriber(rec, req.GetFromRevision())
	// Room messages come over NATS, not the room watch: the replica takes
	// the room's messages while this stream is open.
	defer s.msgs.leave(k, s.msgs.join(s, k))
	h, err := s.attach(ctx, k, sub)
	if err != nil {
		return err
	}
	defer h.remove(sub)
	if err := srv.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	var warned int64
	// The loop waits on the wake channel alone (a receive, not a select
	// per event): the end of the call and the token's timer signal it too.
	stopWake := context.AfterFunc(ctx, sub.signal)
	defer stopWake()
	var timer *time.Timer
	var due time.Time // when timer fires; zero: not set
	var fired atomic.Bool
	ring := func() { fired.Store(true); sub.signal() }
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if ctx.Err() != nil {
			return nil
		}
		items, resync, err, expire := sub.take()
		if err != nil {
			return err
		}
		if resync {
			h.mu.Lock()
			snap := h.snapshot(sub, true)
			// What was queued since the overflow is in the snapshot.
			sub.dropSeen(snap.ev.Revision)
			h.mu.Unlock()
			items = []*item{snap}
		}
		for _, ev := range batch(items, sub) {
			if err := send(srv, ev); err != nil {
				return err
			}
			if ev.endsSession {
				return nil
			}
		}
		sub.recycle(items)
		var next time.Time // zero: nothing to wait for but events
		if expire > 0 {
			now := s.cfg.Now()
			exp := time.Unix(expire, 0)
			switch {
			case !now.Before(exp):
				_ = s.endSession(context.WithoutCancel(ctx), rec, roomv1.UserLeaveReason_USER_LEAVE_REASON_TOKEN_EXPIRED,
					errcode.KickedTokenExpired, streamv1.DeleteReason_DELETE_REASON_KICKED)
				next = now.Add(time.Second) // the kick arrives through the hub
			case !now.Before(exp.Add(-TokenWarning)) && warned != expire:
				warned = expire
				if err := srv.Send(&roomv1.RoomEvent{Event: &roomv1.RoomEvent_SessionState{SessionState: &roomv1.SessionState{
					Kind: roomv1.SessionState_KIND_TOKEN_WILL_EXPIRE, TokenExpireUnix: expire,
					Message: "the token expires in 30 seconds: renew it"}}}); err != nil {
					return err
				}
				next = exp
			case warned == expire:
				next = exp
			default:
				next = exp.Add(-TokenWarning)
			}
		}
		// The timer moves only when what it waits for does, not on every
		// event.
		if !next.Equal(due) {
			due = next
			switch {
			case next.IsZero():
				timer.Stop()
			case timer == nil:
				timer = time.AfterFunc(next.Sub(s.cfg.Now()), ring)
			default:
				timer.Reset(next.Sub(s.cfg.Now()))
			}
		}
		<-sub.wake
		if fired.Swap(false) {
			due = time.Time{} // spent: set it again, whatever it waits for
		}
	}
}

// batch drops what the subscriber has already seen and merges runs of user
// updates of one kind into single messages.
func batch(items []*item, sub *subscriber) []*item {
	out := items[:0] // in place: an item is read before its slot is written
	for _, it := range items {
		// Messages carry no revision: none of them was seen before.
		if sub.skipTo > 0 && it.ev.GetSnapshot() == nil && it.ev.GetMessage() == nil && it.ev.Revision <= sub.skipTo && it.forSession() == "" {
			continue
		}
		if it.ev.GetSnapshot() != nil {
			sub.skipTo = 0
		}
		if n := len(out); n > 0 {
			last := out[n-1]
			lu, cu := last.ev.GetUserUpdate(), it.ev.GetUserUpdate()
			if lu != nil && cu != nil && lu.UpdateType == cu.UpdateType && lu.Reason == cu.Reason && len(lu.Users)+len(cu.Users) <= maxBatchUsers {
				merged := &roomv1.UserUpdate{UpdateType: lu.UpdateType, Reason: lu.Reason, Users: append(slices.Clip(lu.Users), cu.Users...)}
				out[n-1] = &item{userEvent: true, ev: &roomv1.RoomEvent{Revision: it.ev.Revision, More: it.ev.More,
					Event: &roomv1.RoomEvent_UserUpdate{UserUpdate: merged}}}
				continue
			}
		}
		out = append(out, it)
	}
	return out
}

// send writes an item to the subscriber's stream, in the encoding made
// once for every receiver when it has one and the server can send it as
// it is (grpcserver.EncodedSender).
func send(srv roomv1.RoomService_SubscribeRoomEventsServer, it *item) error {
	if it.route != nil && it.route.wire != nil {
		if g, ok := srv.(*grpc.GenericServerStream[roomv1.SubscribeRoomEventsRequest, roomv1.RoomEvent]); ok {
			if enc, ok := g.ServerStream.(grpcserver.EncodedSender); ok {
				return enc.SendEncoded(it.route.wire)
			}
		}
	}
	return srv.Send(it.ev)
}
