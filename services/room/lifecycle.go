package room

// A room's life, and the callbacks that report it.
//
// A room exists from its first login to the moment it has no user and no
// stream left. Its meta key (keys.RoomMeta) marks it: the login that finds
// none writes it, with the room_create callback, in its transaction. Then
// users and streams come and go, each with its callback in the transaction
// that makes the change (room.go, the stream registry).
//
// Two kinds of change happen without a transaction of ours: a session's
// lease expiring (heartbeat timeout: its member key and its streams go) and
// a media edge's lease expiring (its streams go). The lifecycle watcher,
// which one room replica runs at a time (keys.LifecycleLeader, under its
// lease), watches every room key in revision order. It turns each such
// deletion into its callback, and after any user or stream leaves a room it
// closes the room if it is now empty: the room's keys go and room_close is
// written, in one transaction that holds only if the room is still empty.
// Every one of its transactions also moves its cursor (keys.LifecycleCursor)
// and holds only if the cursor is where this watcher left it, so a deletion
// is reported exactly once even when two replicas briefly both think they
// lead. Deliverers wait for the cursor to pass a callback before sending
// it, which keeps each room's callbacks in the order of its changes.

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/keys"
	"github.com/onair-dev/onair/internal/leaseclaim"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// roomMeta is the value of a room's meta key.
type roomMeta struct {
	// RoomSessionID names this life of the room; every session in it
	// carries it.
	RoomSessionID string `json:"room_session_id"`
	CreateTimeMs  int64  `json:"create_time_ms"`
	// LastLeave is the room_logout reason of the user who left last,
	// which makes the room_close reason.
	LastLeave int `json:"last_leave,omitempty"`
}

// readMeta reads a room's meta and its create revision (nil, 0: the room
// does not exist).
func (s *Server) readMeta(ctx context.Context, appID uint32, roomID string) (*roomMeta, int64, error) {
	m, _, created, err := s.readMetaRevs(ctx, appID, roomID)
	return m, created, err
}

func (s *Server) readMetaRevs(ctx context.Context, appID uint32, roomID string) (m *roomMeta, mod, created int64, err error) {
	resp, err := s.cfg.Etcd.Get(ctx, keys.RoomMeta(appID, roomID))
	if err != nil {
		return nil, 0, 0, errcode.Unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, 0, nil
	}
	m = new(roomMeta)
	if err := json.Unmarshal(resp.Kvs[0].Value, m); err != nil {
		return nil, 0, 0, err
	}
	return m, resp.Kvs[0].ModRevision, resp.Kvs[0].CreateRevision, nil
}

// runLifecycle leads the lifecycle watcher whenever this replica can.
func (s *Server) runLifecycle(ctx context.Context) {
	for ctx.Err() == nil {
		if lead, err := leaseclaim.Acquire(ctx, s.cfg.Etcd, keys.LifecycleLeader, s.cfg.Lease()); err == nil {
			err := s.followRooms(ctx, lead)
			if ctx.Err() != nil {
				return
			}
			s.log.Debug("lifecycle: watcher stopped; starting over", "err", err)
			s.sleep(ctx, 200*time.Millisecond)
			continue
		}
		// Someone else leads (or etcd or our lease is away): wait until its
		// key goes (or a while).
		wctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 2*time.Second)
		for w := range s.cfg.Etcd.Watch(wctx, keys.LifecycleLeader) {
			if len(w.Events) > 0 && w.Events[len(w.Events)-1].Type == mvccpb.DELETE {
				cancel()
			}
		}
		cancel()
	}
}

func (s *Server) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

var errNotLeading = errors.New("lifecycle: no longer the leader, or another watcher moved the cursor")

// followRooms watches every room key from the cursor and reports what the
// room's transactions could not, until leadership ends or the watch breaks.
func (s *Server) followRooms(ctx context.Context, lead *leaseclaim.Claim) error {
	cur, err := s.lifecycleCursor(ctx)
	if err != nil {
		return err
	}
	leading := lead.IsOwner()
	// closing holds the emptied rooms whose close waits out the linger
	// (nil: rooms close at once); a new leader finds those its predecessor
	// left open.
	var closing *closer
	if s.cfg.EmptyRoomLinger > 0 {
		closing = newCloser(s.cfg.EmptyRoomLinger)
		defer closing.stop()
		if err := s.findEmptyRooms(ctx, closing); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	skip := cur.N
	watch := s.cfg.Etcd.Watch(wctx, keys.Rooms, clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(cur.Rev))
	var batch []*clientv3.Event
	// ops counts the top-level operations batch makes (see
	// commitLifecycle): a close per room touched, a callback per departure
	// that reports one.
	ops, touched := 0, map[roomKey]bool{}
	pos := cur
	// done is how far the responses handled so far go: a watch response
	// never splits a revision, so everything up to its last one.
	done := cur
	// Group commit of the cursor: the responses that come while a commit
	// is in flight are handled together, so under load the watcher makes
	// one transaction (one cursor write) per commit time, not one per
	// revision of the rooms; idle, it commits each response at once. A
	// reader queues them: the watch channel hands over one response at a
	// time, so a non-blocking drain of it finds at most one or two.
	queue := newWatchQueue(watch)
	for {
		resps, open := queue.take(ctx, closing.wake())
		if len(resps) == 0 && !open {
			break
		}
		for _, w := range resps {
			if w.CompactRevision != 0 || w.Err() != nil {
				if done != cur {
					if cur, err = s.commitLifecycle(ctx, leading, closing, cur, done, batch); err != nil {
						return err
					}
				}
			}
			if w.CompactRevision != 0 {
				s.log.Error("lifecycle: room history compacted before the watcher read it; lease expiries in between are not reported",
					"from", cur.Rev, "to", w.CompactRevision)
				next := callback.Cursor{Rev: w.CompactRevision}
				if _, err := s.commitLifecycle(ctx, leading, closing, cur, next, nil); err != nil {
					return err
				}
				return errors.New("lifecycle: compacted")
			}
			if err := w.Err(); err != nil {
				return err
			}
			for _, ev := range w.Events {
				rev := ev.Kv.ModRevision
				if rev == cur.Rev && skip > 0 {
					skip--
					continue
				}
				skip = 0
				if rev != pos.Rev {
					pos = callback.Cursor{Rev: rev}
				}
				pos.N++
				if isDeparture(ev) {
					batch = append(batch, ev)
					app, room, _, _ := keys.SplitRoom(string(ev.Kv.Key))
					if !touched[roomKey{app, room}] {
						touched[roomKey{app, room}] = true
						ops++ // the room's close
					}
					if reportsDeparture(ev) {
						ops++ // its callback
					}
				}
				// Keep the transaction inside etcd's limit of 128
				// operations at one level (the cursor's put is one more).
				if ops >= maxLifecycleOps {
					if cur, err = s.commitLifecycle(ctx, leading, closing, cur, pos, batch); err != nil {
						return err
					}
					batch, ops = batch[:0], 0
					clear(touched)
				}
			}
			if len(w.Events) > 0 {
				done = callback.Cursor{Rev: w.Events[len(w.Events)-1].Kv.ModRevision + 1}
			}
		}
		if done != cur {
			if cur, err = s.commitLifecycle(ctx, leading, closing, cur, done, batch); err != nil {
				return err
			}
			batch, ops = batch[:0], 0
			clear(touched)
		}
		if err := s.closeDue(ctx, leading, closing); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// watchQueue reads a watch channel into a queue that its consumer takes
// whole; the reader stops when the watch ends (its context's cancel).
type watchQueue struct {
	mu     sync.Mutex
	resps  []clientv3.WatchResponse
	closed bool
	more   chan struct{}
}

func newWatchQueue(watch clientv3.WatchChan) *watchQueue {
	q := &watchQueue{more: make(chan struct{}, 1)}
	go func() {
		for w := range watch {
			q.mu.Lock()
			q.resps = append(q.resps, w)
			q.mu.Unlock()
			select {
			case q.more <- struct{}{}:
			default:
			}
		}
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		select {
		case q.more <- struct{}{}:
		default:
		}
	}()
	return q
}

// take waits for responses (or wake) and returns all queued; open is false
// once the watch has ended and nothing is left.
func (q *watchQueue) take(ctx context.Context, wake <-chan time.Time) (resps []clientv3.WatchResponse, open bool) {
	for {
		q.mu.Lock()
		resps, q.resps = q.resps, nil
		closed := q.closed
		q.mu.Unlock()
		if len(resps) > 0 || closed {
			return resps, !closed
		}
		select {
		case <-q.more:
		case <-wake:
			return nil, true
		case <-ctx.Done():
			return nil, false
		}
	}
}

// lifecycleCursor reads the cursor, starting it at the present if there is
// none yet.
func (s *Server) lifecycleCursor(ctx context.Context) (callback.Cursor, error) {
	resp, err := s.cfg.Etcd.Get(ctx, keys.LifecycleCursor)
	if err != nil {
		return callback.Cursor{}, err
	}
	if len(resp.Kvs) == 1 {
		return callback.ParseCursor(string(resp.Kvs[0].Value))
	}
	c := callback.Cursor{Rev: resp.Header.Revision + 1}
	if _, err := s.cfg.Etcd.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(keys.LifecycleCursor), "=", 0)).
		Then(clientv3.OpPut(keys.LifecycleCursor, c.String())).Commit(); err != nil {
		return callback.Cursor{}, err
	}
	return s.lifecycleCursor(ctx)
}

// isDeparture reports whether ev is a user or stream leaving a room.
func isDeparture(ev *clientv3.Event) bool {
	if ev.Type != mvccpb.DELETE {
		return false
	}
	_, _, rest, ok := keys.SplitRoom(string(ev.Kv.Key))
	if !ok {
		return false
	}
	return len(rest) > 6 && rest[:6] == "users/" || len(rest) > 8 && rest[:8] == "streams/"
}

// maxLifecycleOps bounds the top-level operations of one lifecycle
// transaction (a close per room, a callback per departure that reports one,
// the cursor's put): etcd refuses more than 128 at one level. Counting
// operations rather than departures lets a lagging watcher fold a room's
// many departures into one close attempt.
const maxLifecycleOps = 120

// reportsDeparture reports whether commitLifecycle writes a callback for
// the departure ev: a lease expiry, not a member or stream marked over by
// the transaction that reported it.
func reportsDeparture(ev *clientv3.Event) bool {
	if ev.PrevKv == nil {
		return false
	}
	_, _, rest, _ := keys.SplitRoom(string(ev.Kv.Key))
	if rest[0] == 'u' {
		var m member
		return json.Unmarshal(ev.PrevKv.Value, &m) == nil && !m.Left
	}
	st := new(streamv1.StreamRecord)
	return proto.Unmarshal(ev.PrevKv.Value, st) == nil && !st.Ended
}

// closeSeq puts a room_close after the other callbacks of its revision.
const closeSeq = 1 << 20

// commitLifecycle writes the callbacks of departures, closes the rooms they
// emptied (with closing: schedules their close), and moves the cursor from
// cur to next, in one transaction.
func (s *Server) commitLifecycle(ctx context.Context, leading clientv3.Cmp, closing *closer, cur, next callback.Cursor, departures []*clientv3.Event) (callback.Cursor, error) {
	now := s.cfg.Now()
	type touched struct {
		app      uint32
		room     string
		rev      int64
		lastLeft int // -1: no user left in this batch
	}
	var rooms []*touched
	byRoom := map[roomKey]*touched{}
	var ops []clientv3.Op
	// seq numbers the departures of one revision, in watch order.
	seqRev, seq := int64(0), 0
	for _, ev := range departures {
		rev := ev.Kv.ModRevision
		if rev != seqRev {
			seqRev, seq = rev, 0
		}
		seq++
		app, room, rest, _ := keys.SplitRoom(string(ev.Kv.Key))
		t := byRoom[roomKey{app, room}]
		if t == nil {
			t = &touched{app: app, room: room, lastLeft: -1}
			byRoom[roomKey{app, room}] = t
			rooms = append(rooms, t)
		}
		t.rev = rev
		if ev.PrevKv == nil {
			continue
		}
		if rest[0] == 'u' {
			var m member
			if json.Unmarshal(ev.PrevKv.Value, &m) != nil {
				continue
			}
			if m.Left {
				// Reported when it was marked.
				t.lastLeft = m.Reason
				continue
			}
			// No mark: the session's lease expired.
			t.lastLeft = callback.LogoutHeartbeatTimeout
			ops = append(ops, callback.Put(now, callback.Event{Event: callback.RoomLogout, AppID: app, RoomID: room,
				RoomSessionID: m.RoomSessionID, UserID: m.UserID, UserName: m.UserName, Reason: t.lastLeft}, rev, seq))
			continue
		}
		st := new(streamv1.StreamRecord)
		if proto.Unmarshal(ev.PrevKv.Value, st) != nil || st.Ended {
			continue // an ended stream was reported when it was marked
		}
		// The stream's owner lease expired: its publisher's session timed
		// out, or its media edge is gone.
		reason := streamv1.DeleteReason_DELETE_REASON_DISCONNECTED
		if st.OwnerKind == streamv1.OwnerKind_OWNER_KIND_SESSION {
			reason = streamv1.DeleteReason_DELETE_REASON_HEARTBEAT_TIMEOUT
		}
		ops = append(ops, callback.Put(now, callback.Event{Event: callback.StreamClose, AppID: app, RoomID: room,
			UserID: st.UserId, UserName: st.UserName, StreamID: st.StreamId, Reason: int(reason)}, rev, seq))
	}
	// The touched rooms' metas, in one read.
	var reads []clientv3.Op
	for _, t := range rooms {
		reads = append(reads, clientv3.OpGet(keys.RoomMeta(t.app, t.room)))
	}
	var metas *clientv3.TxnResponse
	if len(reads) > 0 {
		var err error
		if metas, err = s.cfg.Etcd.Txn(ctx).Then(reads...).Commit(); err != nil {
			return cur, err
		}
	}
	for i, t := range rooms {
		var meta *roomMeta
		var mod, created int64
		if kvs := metas.Responses[i].GetResponseRange().GetKvs(); len(kvs) == 1 {
			meta = new(roomMeta)
			if err := json.Unmarshal(kvs[0].Value, meta); err != nil {
				return cur, err
			}
			mod, created = kvs[0].ModRevision, kvs[0].CreateRevision
		}
		if created > t.rev {
			// The room read now is a later life than the one the departure
			// left: the watcher lags, and that life was closed, opened and
			// emptied again meanwhile. Its own last departure decides its
			// reason, not this one.
			t.lastLeft = -1
		}
		if closing != nil {
			// The room closes after the linger (closing.go), if it is
			// still empty then; what the close will need to know of this
			// departure goes into the meta now.
			if meta != nil && t.lastLeft >= 0 && t.lastLeft != meta.LastLeave {
				ops = append(ops, lastLeaveOp(t.app, t.room, meta, mod, t.lastLeft))
			}
			closing.schedule(roomKey{t.app, t.room}, now)
			continue
		}
		empty, closeOps := closeRoomOps(now, t.app, t.room, meta, mod, t.lastLeft)
		var keepOps []clientv3.Op
		if meta != nil && t.lastLeft >= 0 && t.lastLeft != meta.LastLeave {
			keepOps = append(keepOps, lastLeaveOp(t.app, t.room, meta, mod, t.lastLeft))
		}
		ops = append(ops, clientv3.OpTxn(empty, closeOps, keepOps))
	}
	return next, s.moveCursor(ctx, leading, cur, next, ops)
}

// closeRoomOps are a room's close, if it is empty and its meta still at
// revision mod: the comparisons, and the deletion of its keys with
// room_close (its reason from lastLeft, or the meta's when -1).
func closeRoomOps(now time.Time, app uint32, room string, meta *roomMeta, mod int64, lastLeft int) ([]clientv3.Cmp, []clientv3.Op) {
	empty := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(keys.RoomUsers(app, room)), "=", 0).WithPrefix(),
		clientv3.Compare(clientv3.CreateRevision(keys.RoomStreams(app, room)), "=", 0).WithPrefix(),
		clientv3.Compare(clientv3.ModRevision(keys.RoomMeta(app, room)), "=", mod),
	}
	closeOps := []clientv3.Op{clientv3.OpDelete(keys.Room(app, room), clientv3.WithPrefix())}
	if meta != nil {
		last := meta.LastLeave
		if lastLeft >= 0 {
			last = lastLeft
		}
		// room_close is ordered at this transaction's own revision (rev
		// 0), not the departure's: the close happens now, after every
		// change of the life it closes, and the life read now may have
		// begun after the departure (its room_create would otherwise be
		// delivered after its room_close).
		closeOps = append(closeOps, callback.Put(now, callback.Event{Event: callback.RoomClose, AppID: app, RoomID: room,
			RoomSessionID: meta.RoomSessionID, Reason: callback.CloseReason(last)}, 0, closeSeq))
	}
	return empty, closeOps
}

// lastLeaveOp records in a room's meta (if still at revision mod) the
// room_logout reason of the user who left last, for its room_close.
func lastLeaveOp(app uint32, room string, meta *roomMeta, mod int64, lastLeft int) clientv3.Op {
	m := *meta
	m.LastLeave = lastLeft
	b, _ := json.Marshal(&m)
	return clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(keys.RoomMeta(app, room)), "=", mod)},
		[]clientv3.Op{clientv3.OpPut(keys.RoomMeta(app, room), string(b))}, nil)
}

// closeIfEmpty closes a room now if it has no user and no stream, its last
// user having left with the room_logout reason lastLeave. The watcher
// would close it too; the meta's revision lets only one of them.
func (s *Server) closeIfEmpty(ctx context.Context, appID uint32, roomID string, lastLeave int) error {
	meta, mod, _, err := s.readMetaRevs(ctx, appID, roomID)
	if err != nil {
		return err
	}
	ops := []clientv3.Op{clientv3.OpDelete(keys.Room(appID, roomID), clientv3.WithPrefix())}
	if meta != nil {
		ops = append(ops, callback.Ops(s.cfg.Now(), callback.Event{Event: callback.RoomClose, AppID: appID, RoomID: roomID,
			RoomSessionID: meta.RoomSessionID, Reason: callback.CloseReason(lastLeave)})...)
	}
	if _, err := s.cfg.Etcd.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(keys.RoomUsers(appID, roomID)), "=", 0).WithPrefix(),
		clientv3.Compare(clientv3.CreateRevision(keys.RoomStreams(appID, roomID)), "=", 0).WithPrefix(),
		clientv3.Compare(clientv3.ModRevision(keys.RoomMeta(appID, roomID)), "=", mod),
	).Then(ops...).Commit(); err != nil {
		return errcode.Unavailable(err)
	}
	return nil
}

// moveCursor commits ops with the cursor's move from cur to next.
func (s *Server) moveCursor(ctx context.Context, leading clientv3.Cmp, cur, next callback.Cursor, ops []clientv3.Op) error {
	ops = append(ops, clientv3.OpPut(keys.LifecycleCursor, next.String()))
	for {
		resp, err := s.cfg.Etcd.Txn(ctx).If(leading, clientv3.Compare(clientv3.Value(keys.LifecycleCursor), "=", cur.String())).
			Then(ops...).Commit()
		switch {
		case err == nil && resp.Succeeded:
			return nil
		case err == nil:
			return errNotLeading
		case errors.Is(err, rpctypes.ErrLeaseNotFound), ctx.Err() != nil:
			return err
		}
		// etcd is away: the same transaction is right when it is back.
		s.sleep(ctx, 200*time.Millisecond)
	}
}
