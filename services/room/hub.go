package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/grpcserver"
	"github.com/onair-dev/onair/internal/keys"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// ringSize bounds the resume history a hub keeps; a client further behind
// gets a fresh snapshot to reconcile with.
const ringSize = 8192

// item is one room event with what a hub needs to route it.
type item struct {
	ev *roomv1.RoomEvent
	// route, when set, narrows who gets the item. Apart from the item
	// because the ring (ringSize of them per room and replica) holds
	// mostly user updates, which need none: 24 bytes an item instead of
	// 96, some 120 bytes of each idle session in a room of 10,000.
	route *route
	// userEvent items go only to sessions that asked for user updates.
	userEvent bool
	// endsSession closes forSession's subscription after delivery.
	endsSession bool
}

// route is who an item is (not) for.
type route struct {
	// to limits a custom command to these users.
	to []string
	// fromSession is not echoed its own message; fromUser is not told of its
	// own room extra info change.
	fromSession, fromUser string
	// forSession, when set, is the only session the item is for.
	forSession string
	// wire, when set, is the item's event in its wire encoding, made once
	// for all the subscribers it goes to (a room message; see send).
	wire grpcserver.Encoded
}

// forSession is the only session the item is for, or "".
func (it *item) forSession() string {
	if it.route == nil {
		return ""
	}
	return it.route.forSession
}

// hub is one replica's view of one room: a single etcd watch of the room
// prefix, merged with the stream registry's WatchStreams, applied to an
// in-memory state and fanned out to local subscribers.
type hub struct {
	s      *Server
	key    roomKey
	prefix string
	cancel context.CancelFunc

	mu      sync.Mutex
	rev     int64 // every event up to rev is applied
	users   map[string]*member
	streams map[string]*streamv1.Stream
	info    map[string]*roomv1.RoomExtraInfo
	ring    []*item
	// complete: the ring holds every event after this revision.
	complete int64
	subs     map[*subscriber]struct{}
	idleAt   time.Time
	failed   error
	// advanced is closed (and replaced) whenever rev moves on or the hub
	// fails: cache reads wait on it (cache.go).
	advanced chan struct{}
	// pending are user updates of a large room applied (state, ring) but
	// not yet handed to subscribers (fanout.go); pendingTimer hands them.
	pending      []*item
	pendingTimer *time.Timer
}

// snapshotAt reads the room as of rev (0 = now).
func (s *Server) snapshotAt(ctx context.Context, k roomKey, rev int64) (*hub, error) {
	h := &hub{s: s, key: k, prefix: keys.Room(k.app, k.room), users: map[string]*member{},
		streams: map[string]*streamv1.Stream{}, info: map[string]*roomv1.RoomExtraInfo{}, subs: map[*subscriber]struct{}{},
		advanced: make(chan struct{})}
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	users, err := s.cfg.Etcd.Get(ctx, keys.RoomUsers(k.app, k.room), opts...)
	if err != nil {
		return nil, err
	}
	if rev == 0 {
		rev = users.Header.Revision
		opts = append(opts, clientv3.WithRev(rev))
	}
	info, err := s.cfg.Etcd.Get(ctx, keys.RoomInfo(k.app, k.room), opts...)
	if err != nil {
		return nil, err
	}
	streams, err := s.cfg.Streams.ListStreams(ctx, &streamv1.ListStreamsRequest{AppId: k.app, RoomId: k.room, Revision: rev})
	if err != nil {
		return nil, err
	}
	for _, kv := range users.Kvs {
		m := new(member)
		if json.Unmarshal(kv.Value, m) == nil && !m.Left {
			m.Lease = kv.Lease
			m.public()
			h.users[m.UserID] = m
		}
	}
	for _, kv := range info.Kvs {
		ri := new(roomv1.RoomExtraInfo)
		if protojson.Unmarshal(kv.Value, ri) == nil {
			h.info[ri.Key] = ri
		}
	}
	for _, st := range streams.GetStreams() {
		h.streams[st.StreamId] = st.Public()
	}
	h.rev, h.complete = rev, rev
	return h, nil
}

// attach finds or starts the room's hub and subscribes sub to it, from
// sub.after (0: with a snapshot). It returns the hub sub is on.
func (s *Server) attach(ctx context.Context, k roomKey, sub *subscriber) (*hub, error) {
	for {
		s.mu.Lock()
		h := s.hubs[k]
		s.mu.Unlock()
		if h == nil {
			var err error
			h, err = s.startHub(ctx, k, sub.after)
			if err != nil {
				return nil, err
			}
		}
		if h.add(sub) {
			return h, nil
		}
		// The hub was closing; start a new one.
	}
}

func (s *Server) startHub(ctx context.Context, k roomKey, from int64) (*hub, error) {
	h, err := s.snapshotAt(ctx, k, from)
	if from > 0 && (errors.Is(err, rpctypes.ErrCompacted) || errcode.Of(err) == errcode.InvalidParameter) {
		h, err = s.snapshotAt(ctx, k, 0)
	}
	if err != nil {
		return nil, errcode.Unavailable(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if existing := s.hubs[k]; existing != nil {
		return existing, nil
	}
	hctx, cancel := context.WithCancel(s.ctx)
	h.cancel = cancel
	s.hubs[k] = h
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := h.run(hctx)
		s.mu.Lock()
		if s.hubs[k] == h {
			delete(s.hubs, k)
		}
		s.mu.Unlock()
		h.close(err)
	}()
	return h, nil
}

// add subscribes sub: a snapshot if it starts fresh or is too far behind,
// otherwise the events after sub.after from the ring.
func (h *hub) add(sub *subscriber) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failed != nil {
		return false
	}
	// Whatever the subscriber starts from (a snapshot at h.rev, or the
	// ring) covers the pending user updates: the others get them first.
	h.flushPending()
	h.subs[sub] = struct{}{}
	switch {
	case sub.after == 0 || sub.after < h.complete:
		sub.push(h.snapshot(sub, sub.after != 0))
	default:
		for _, it := range h.ring {
			if it.ev.Revision > sub.after {
				sub.push(it)
			}
		}
	}
	if sub.after > h.rev {
		// The client has seen more than this hub: skip what it has.
		sub.skipTo = sub.after
	}
	sub.push(h.countItem())
	return true
}

func (h *hub) remove(sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, sub)
	if len(h.subs) == 0 {
		h.idleAt = time.Now()
	}
}

func (h *hub) snapshot(sub *subscriber, resync bool) *item {
	h.flushPending()
	snap := &roomv1.Snapshot{OnlineCount: uint32(len(h.users)), Resync: resync, ExtraInfo: map[string]*roomv1.RoomExtraInfo{}}
	if sub.rec.UserNotify {
		snap.Users = make([]*roomv1.User, 0, len(h.users))
		for _, m := range h.users {
			snap.Users = append(snap.Users, m.public())
		}
	}
	for _, st := range h.streams {
		snap.Streams = append(snap.Streams, st)
	}
	for k, v := range h.info {
		snap.ExtraInfo[k] = v
	}
	return &item{ev: &roomv1.RoomEvent{Revision: h.rev, Event: &roomv1.RoomEvent_Snapshot{Snapshot: snap}}}
}

func (h *hub) countItem() *item {
	return &item{ev: &roomv1.RoomEvent{Revision: h.rev, Event: &roomv1.RoomEvent_OnlineCount{OnlineCount: &roomv1.OnlineCount{Count: uint32(len(h.users))}}}}
}

// close ends every subscription with err (they reconnect and resync).
func (h *hub) close(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		err = errcode.New(errcode.ConnectionBroken, "room hub stopped")
	}
	h.failed = err
	h.pending = nil
	if h.pendingTimer != nil {
		h.pendingTimer.Stop()
	}
	close(h.advanced)
	h.advanced = make(chan struct{})
	for sub := range h.subs {
		sub.fail(err)
	}
	clear(h.subs)
}

// streamFeed is the registry's WatchStreams for the room, reconnected from
// the last revision it delivered whenever the registry replica goes away.
type streamFeed struct {
	h    *hub
	from int64
	recv func() (*streamv1.StreamEvent, error)
	stop context.CancelFunc
}

func (f *streamFeed) next(ctx context.Context) (*streamv1.StreamEvent, error) {
	backoff := 50 * time.Millisecond
	for {
		if f.recv == nil {
			sctx, cancel := context.WithCancel(ctx)
			w, err := f.h.s.cfg.Streams.WatchStreams(sctx, &streamv1.WatchStreamsRequest{AppId: f.h.key.app, RoomId: f.h.key.room, FromRevision: f.from})
			if err != nil {
				cancel()
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				time.Sleep(backoff)
				backoff = min(2*backoff, 2*time.Second)
				continue
			}
			f.recv, f.stop = w.Recv, cancel
		}
		ev, err := f.recv()
		if err == nil {
			f.from = ev.Revision
			return ev, nil
		}
		f.stop()
		f.recv = nil
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errcode.Of(err) == errcode.InvalidParameter {
			return nil, fmt.Errorf("stream history compacted: %w", err)
		}
		if !errors.Is(err, io.EOF) {
			f.h.s.log.Debug("stream watch broke; resuming", "room", f.h.key.room, "from", f.from, "err", err)
		}
	}
}

// watchBackoff is the first pause before a broken room watch is opened
// again; it doubles up to two seconds while etcd stays away.
const watchBackoff = 100 * time.Millisecond

// run watches the room until ctx ends or the hub has been idle for the
// linger time. Stream key changes seen on the room watch are resolved by the
// registry's events of the same revision, so the merged order is exactly
// etcd's.
func (h *hub) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	feed := &streamFeed{h: h, from: h.rev}
	defer func() {
		if feed.stop != nil {
			feed.stop()
		}
	}()
	// The watch is opened again from the last revision applied whenever it
	// breaks (etcd lost its leader, the member went away), so an etcd
	// outage costs subscribers nothing but the wait; only a compacted
	// history ends the hub, and its subscribers resync.
	var watch clientv3.WatchChan
	stopWatch := func() {}
	defer func() { stopWatch() }()
	rewatch := func() {
		stopWatch()
		var wctx context.Context
		wctx, stopWatch = context.WithCancel(ctx)
		watch = h.s.cfg.Etcd.Watch(wctx, h.prefix, clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(h.rev+1))
	}
	rewatch()
	backoff := watchBackoff
	linger := time.NewTicker(h.s.cfg.HubLinger / 2)
	defer linger.Stop()
	count := time.NewTicker(h.s.cfg.OnlineCountInterval)
	defer count.Stop()
	lastCount := -1
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-linger.C:
			h.mu.Lock()
			idle := len(h.subs) == 0 && !h.idleAt.IsZero() && time.Since(h.idleAt) > h.s.cfg.HubLinger
			h.mu.Unlock()
			if idle {
				return nil
			}
		case <-count.C:
			h.mu.Lock()
			if n := len(h.users); n != lastCount {
				lastCount = n
				h.publish(h.countItem(), false)
			}
			h.mu.Unlock()
		case resp, ok := <-watch:
			if ok && resp.CompactRevision != 0 {
				return errcode.New(errcode.ConnectionBroken, "room history compacted")
			}
			if !ok || resp.Err() != nil {
				if ctx.Err() != nil {
					return nil
				}
				h.s.log.Debug("room watch broke; resuming", "room", h.key.room, "from", h.rev, "err", resp.Err())
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 2*time.Second)
				rewatch()
				continue
			}
			backoff = watchBackoff
			if err := h.apply(ctx, feed, resp.Events); err != nil {
				return err
			}
		}
	}
}

// apply turns one watch response into items, grouped by revision. A
// revision's state changes are made together with its items' publication
// and the move of h.rev, under one hold of h.mu: a snapshot taken in
// between would otherwise hold a change at the previous revision and its
// subscriber would then be told of it again (a user added twice), and a
// resume from that revision would miss nothing but repeat it.
func (h *hub) apply(ctx context.Context, feed *streamFeed, events []*clientv3.Event) error {
	var batch []*item
	var changes []func()
	flush := func(rev int64) {
		h.mu.Lock()
		for _, f := range changes {
			f()
		}
		for i, it := range batch {
			it.ev.Revision = rev
			it.ev.More = i < len(batch)-1
			h.publish(it, true)
		}
		h.rev = rev
		close(h.advanced)
		h.advanced = make(chan struct{})
		h.mu.Unlock()
		batch, changes = batch[:0], changes[:0]
	}
	for i, ev := range events {
		rev := ev.Kv.ModRevision
		kind, name := keys.Parse(h.prefix, string(ev.Kv.Key))
		var it []*item
		var change func()
		var err error
		switch kind {
		case keys.KindUser:
			it, change = h.userChange(ev, name)
		case keys.KindStream:
			it, change, err = h.streamChange(ctx, feed, rev)
		case keys.KindInfo:
			it, change = h.infoChange(ev)
		case keys.KindMeta:
			// A room that closes (lifecycle.go) keeps its hub for the
			// linger like any idle one: rooms that empty and fill again
			// (a user alone in a room, in and out) then cost no new
			// snapshot and watch per login.
		}
		if err != nil {
			return err
		}
		batch = append(batch, it...)
		if change != nil {
			changes = append(changes, change)
		}
		if i == len(events)-1 || events[i+1].Kv.ModRevision != rev {
			flush(rev)
		}
	}
	return nil
}

// publish appends it to the ring (if durable) and hands it to subscribers;
// a large room's user updates wait a moment to go out together
// (fanout.go). Called with h.mu held.
func (h *hub) publish(it *item, durable bool) {
	if durable {
		if len(h.ring) == ringSize {
			h.complete = h.ring[0].ev.Revision
			h.ring = h.ring[1:]
		}
		h.ring = append(h.ring, it)
	}
	if h.hold(it) {
		return
	}
	h.flushPending()
	for sub := range h.subs {
		sub.push(it)
	}
}

// userChange returns the items of a change to a user's key and the change
// to the hub's state, to be made with h.mu held (apply).
func (h *hub) userChange(ev *clientv3.Event, userID string) ([]*item, func()) {
	var prev *member
	if ev.PrevKv != nil {
		prev = new(member)
		if json.Unmarshal(ev.PrevKv.Value, prev) != nil {
			prev = nil
		}
	}
	var change func()
	leave := func(m *member, reason roomv1.UserLeaveReason) []*item {
		change = func() { delete(h.users, m.UserID) }
		return []*item{{userEvent: true, ev: &roomv1.RoomEvent{Event: &roomv1.RoomEvent_UserUpdate{UserUpdate: &roomv1.UserUpdate{
			UpdateType: streamv1.UpdateType_UPDATE_TYPE_DELETE, Reason: reason,
			Users: []*roomv1.User{m.public()}}}}}}
	}
	kick := func(m *member, code errcode.Code, reason string) *item {
		return &item{route: &route{forSession: m.SessionID}, endsSession: true, ev: &roomv1.RoomEvent{Event: &roomv1.RoomEvent_SessionState{
			SessionState: &roomv1.SessionState{Kind: roomv1.SessionState_KIND_KICKED_OUT, ErrorCode: int32(code), Message: reason}}}}
	}
	if ev.Type == mvccpb.DELETE {
		if prev == nil || prev.Left {
			return nil, nil
		}
		// No mark: the session's lease expired.
		return leave(prev, roomv1.UserLeaveReason_USER_LEAVE_REASON_HEARTBEAT_TIMEOUT), change
	}
	cur := new(member)
	if json.Unmarshal(ev.Kv.Value, cur) != nil {
		return nil, nil
	}
	cur.Lease = ev.Kv.Lease
	cur.public()
	if cur.UserID == userID {
		// The map keeps the member's own string, not the key's: userID
		// holds the whole etcd key, some 64 bytes of every member of a
		// replica's rooms for as long as they stay.
		userID = cur.UserID
	}
	set := func() { h.users[userID] = cur }
	switch {
	case cur.Left:
		if prev != nil && prev.Left {
			return nil, nil
		}
		out := leave(cur, callback.LeaveReason(cur.Reason))
		if cur.Code != 0 {
			out = append(out, kick(cur, cur.Code, leaveMessage(cur.Code)))
		}
		return out, change
	case prev == nil || prev.Left:
		return []*item{{userEvent: true, ev: &roomv1.RoomEvent{Event: &roomv1.RoomEvent_UserUpdate{UserUpdate: &roomv1.UserUpdate{
			UpdateType: streamv1.UpdateType_UPDATE_TYPE_ADD, Users: []*roomv1.User{cur.public()}}}}}}, set
	case prev.SessionID != cur.SessionID:
		// The user logged in again in this room: to the room it stays, the
		// earlier session is kicked out.
		return []*item{kick(prev, errcode.KickedSameUser, leaveMessage(errcode.KickedSameUser))}, set
	default:
		// Same session, new token expiry.
		return nil, func() {
			set()
			for sub := range h.subs {
				if sub.rec.SessionID == cur.SessionID {
					sub.setTokenExpire(cur.TokenExpire)
				}
			}
		}
	}
}

func leaveMessage(code errcode.Code) string {
	switch code {
	case errcode.KickedSameUser:
		return "the same user logged in elsewhere"
	case errcode.KickedByServer:
		return "kicked out by the business server"
	case errcode.KickedTokenExpired:
		return "the token expired"
	}
	return "the session ended"
}

// streamChange reads the registry's event of revision rev and returns its
// items and the change to the hub's state, as userChange.
func (h *hub) streamChange(ctx context.Context, feed *streamFeed, rev int64) ([]*item, func(), error) {
	ev, err := feed.next(ctx)
	if err != nil {
		return nil, nil, err
	}
	if ev.Revision != rev {
		return nil, nil, fmt.Errorf("stream feed out of step: got revision %d, want %d", ev.Revision, rev)
	}
	// Room events go to clients: only the public part of the record.
	st := ev.GetStream().Public()
	set := func() { h.streams[st.StreamId] = st }
	switch ev.GetKind() {
	case streamv1.StreamEvent_KIND_ADD:
		return []*item{{ev: &roomv1.RoomEvent{Event: &roomv1.RoomEvent_StreamUpdate{StreamUpdate: &roomv1.StreamUpdate{
			UpdateType: streamv1.UpdateType_UPDATE_TYPE_ADD, Streams: []*streamv1.Stream{st}, ExtendedData: "{}"}}}}}, set, nil
	case streamv1.StreamEvent_KIND_DELETE:
		return []*item{{ev: &roomv1.RoomEvent{Event: &roomv1.RoomEvent_StreamUpdate{StreamUpdate: &roomv1.StreamUpdate{
				UpdateType: streamv1.UpdateType_UPDATE_TYPE_DELETE, Streams: []*streamv1.Stream{st}, Reason: ev.Reason, ExtendedData: streamv1.DeleteReasonData(ev.Reason, st.StreamId)}}}}},
			func() { delete(h.streams, st.StreamId) }, nil
	case streamv1.StreamEvent_KIND_EXTRA_INFO:
		return []*item{{ev: &roomv1.RoomEvent{Event: &roomv1.RoomEvent_StreamExtraInfoUpdate{StreamExtraInfoUpdate: &roomv1.StreamExtraInfoUpdate{
			Streams: []*streamv1.Stream{st}}}}}}, set, nil
	}
	return nil, nil, nil
}

// infoChange returns the items of a change to a room extra info key and
// the change to the hub's state, as userChange.
func (h *hub) infoChange(ev *clientv3.Event) ([]*item, func()) {
	if ev.Type == mvccpb.DELETE {
		// Only a room's close removes its extra info: forget it, so a room
		// opened again starts without it.
		_, key := keys.Parse(h.prefix, string(ev.Kv.Key))
		return nil, func() { delete(h.info, key) }
	}
	ri := new(roomv1.RoomExtraInfo)
	if protojson.Unmarshal(ev.Kv.Value, ri) != nil {
		return nil, nil
	}
	return []*item{{route: &route{fromUser: ri.GetUpdateUser().GetUserId()}, ev: &roomv1.RoomEvent{Event: &roomv1.RoomEvent_RoomExtraInfoUpdate{
		RoomExtraInfoUpdate: &roomv1.RoomExtraInfoUpdate{ExtraInfo: []*roomv1.RoomExtraInfo{ri}}}}}}, func() { h.info[ri.Key] = ri }
}

func marshal(m proto.Message) ([]byte, error) { return protojson.Marshal(m) }
