package express

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/onair-dev/onair/errcode"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// roomSession is one logged-in room: the event subscription, heartbeats,
// and what the handler has been told, which is what reconciliation after a
// broken resume is computed against.
type roomSession struct {
	e      *Engine
	roomID string
	user   User

	mu        sync.Mutex
	config    RoomConfig
	id        string
	lastRev   int64
	heartbeat time.Duration
	cancel    context.CancelFunc
	done      chan struct{}

	// open is closed when the first event stream delivers its first event:
	// the server has the stream, and so sends it every later message.
	open     chan struct{}
	openOnce sync.Once

	// users and streams are what the handler currently knows; only the
	// session goroutine touches them.
	users    known[User]
	streams  known[Stream]
	loggedIn bool

	// attempt is the login's attempt ID, the same in every try; mayExist
	// is set once a try failed without a clear refusal (its session may
	// exist). Only the goroutine that logs in touches them: LoginRoom's,
	// then run's.
	attempt  string
	mayExist bool
}

func (rs *roomSession) sessionID() string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.id
}

func (rs *roomSession) login(ctx context.Context) (*roomv1.LoginRoomResponse, error) {
	rs.mu.Lock()
	cfg := rs.config
	rs.mu.Unlock()
	if rs.attempt == "" {
		rs.attempt = newAttemptID()
	}
	req := &roomv1.LoginRoomRequest{
		AppId: rs.e.profile.AppID, RoomId: rs.roomID, Token: cfg.Token, AttemptId: rs.attempt,
		User:   &roomv1.User{UserId: rs.user.UserID, UserName: rs.user.UserName},
		Config: &roomv1.RoomConfig{IsUserStatusNotify: cfg.IsUserStatusNotify, MaxMemberCount: cfg.MaxMemberCount},
	}
	var resp *roomv1.LoginRoomResponse
	err := retrying(ctx, func(ctx context.Context) (err error) {
		resp, err = rs.e.rooms.LoginRoom(ctx, req)
		if err != nil && errcode.Of(err) == 0 || transient(err) {
			// No answer from the room service (a broken connection, a
			// deadline): the try may have made the session.
			rs.mayExist = true
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	rs.mu.Lock()
	rs.id, rs.lastRev = resp.GetSessionId(), 0
	rs.heartbeat = time.Duration(resp.GetHeartbeatIntervalMs()) * time.Millisecond
	rs.mu.Unlock()
	return resp, nil
}

func (rs *roomSession) start() {
	ctx, cancel := context.WithCancel(context.Background())
	rs.mu.Lock()
	rs.cancel, rs.done = cancel, make(chan struct{})
	rs.mu.Unlock()
	go rs.heartbeats(ctx)
	go func() {
		defer close(rs.done)
		rs.run(ctx)
	}()
}

// streamOpenWait bounds how long LoginRoom waits for the event stream; past
// it the login stands and the stream keeps trying.
const streamOpenWait = 5 * time.Second

// waitOpen returns once the event stream is open, ctx is done or
// streamOpenWait has passed.
func (rs *roomSession) waitOpen(ctx context.Context) {
	t := time.NewTimer(streamOpenWait)
	defer t.Stop()
	select {
	case <-rs.open:
	case <-ctx.Done():
	case <-t.C:
	}
}

func (rs *roomSession) stop() {
	rs.mu.Lock()
	cancel, done := rs.cancel, rs.done
	rs.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (rs *roomSession) heartbeats(ctx context.Context) {
	for {
		rs.mu.Lock()
		every := rs.heartbeat
		rs.mu.Unlock()
		if every <= 0 {
			every = 10 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		hctx, cancel := context.WithTimeout(ctx, every)
		_, _ = rs.e.rooms.Heartbeat(hctx, &roomv1.HeartbeatRequest{SessionId: rs.sessionID()})
		cancel()
	}
}

// run keeps a subscription open, resuming after the last complete revision
// whenever it breaks, until the session ends.
func (rs *roomSession) run(ctx context.Context) {
	var brokenSince time.Time
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := rs.subscribe(ctx, func() {
			rs.openOnce.Do(func() { close(rs.open) })
			if !brokenSince.IsZero() {
				brokenSince = time.Time{}
				backoff = 100 * time.Millisecond
				rs.e.emit(func(h EventHandler) {
					h.OnRoomStateChanged(RoomStateChangedReasonReconnected, 0, "{}", rs.roomID)
				})
			}
		})
		if ctx.Err() != nil || errors.Is(err, errStopped) {
			return
		}
		if brokenSince.IsZero() {
			brokenSince = time.Now()
			rs.e.emit(func(h EventHandler) {
				h.OnRoomStateChanged(RoomStateChangedReasonReconnecting, int(errcode.ConnectionBroken), "{}", rs.roomID)
			})
		}
		if time.Since(brokenSince) > rs.e.profile.ReconnectTimeout {
			rs.giveUp(errcode.ReconnectGaveUp)
			return
		}
		if errcode.Of(err) == errcode.SessionNotFound {
			// The server dropped the session (we were away longer than the
			// heartbeat timeout): log in again and reconcile from scratch.
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			rs.attempt = "" // a new login, not a retry of the first
			_, lerr := rs.login(lctx)
			cancel()
			if c := errcode.Of(lerr); c != 0 && c != errcode.ServiceUnavailable {
				rs.giveUp(c)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (rs *roomSession) giveUp(code errcode.Code) {
	rs.e.emit(func(h EventHandler) {
		h.OnRoomStateChanged(RoomStateChangedReasonReconnectFailed, int(code), "{}", rs.roomID)
	})
	rs.detach()
}

// detach forgets the session in the engine so a new login can start.
func (rs *roomSession) detach() {
	rs.e.mu.Lock()
	if rs.e.room == rs {
		rs.e.room = nil
	}
	rs.e.mu.Unlock()
}

func (rs *roomSession) subscribe(ctx context.Context, connected func()) error {
	rs.mu.Lock()
	req := &roomv1.SubscribeRoomEventsRequest{SessionId: rs.id, FromRevision: rs.lastRev}
	rs.mu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := rs.e.rooms.SubscribeRoomEvents(sctx, req)
	if err != nil {
		return err
	}
	first := true
	for {
		ev, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return status.Error(codes.Unavailable, "event stream ended")
			}
			return err
		}
		if first {
			first = false
			connected()
		}
		if stop := rs.handle(ev); stop {
			return errStopped
		}
		if !ev.GetMore() && ev.GetRevision() > 0 {
			rs.mu.Lock()
			rs.lastRev = max(rs.lastRev, ev.GetRevision())
			rs.mu.Unlock()
		}
	}
}

// handle turns one event into callbacks; it reports whether the session is
// over.
func (rs *roomSession) handle(ev *roomv1.RoomEvent) bool {
	room := rs.roomID
	switch x := ev.Event.(type) {
	case *roomv1.RoomEvent_Snapshot:
		rs.reconcile(x.Snapshot)
	// The proto's update types are not the vendor's numbers; the handler
	// gets UpdateTypeAdd or UpdateTypeDelete (the vendor's) from
	// addUsers/deleteUsers and the like. An unset type tells nothing.
	case *roomv1.RoomEvent_UserUpdate:
		switch x.UserUpdate.GetUpdateType() {
		case streamv1.UpdateType_UPDATE_TYPE_ADD:
			rs.addUsers(fromUsers(x.UserUpdate.GetUsers()))
		case streamv1.UpdateType_UPDATE_TYPE_DELETE:
			rs.deleteUsers(fromUsers(x.UserUpdate.GetUsers()))
		}
	case *roomv1.RoomEvent_StreamUpdate:
		u := x.StreamUpdate
		switch u.GetUpdateType() {
		case streamv1.UpdateType_UPDATE_TYPE_ADD:
			rs.addStreams(fromStreams(u.GetStreams()))
		case streamv1.UpdateType_UPDATE_TYPE_DELETE:
			rs.deleteStreams(fromStreams(u.GetStreams()), u.GetExtendedData())
		}
	case *roomv1.RoomEvent_StreamExtraInfoUpdate:
		if changed := rs.streams.update(fromStreams(x.StreamExtraInfoUpdate.GetStreams())); len(changed) > 0 {
			rs.e.emit(func(h EventHandler) { h.OnRoomStreamExtraInfoUpdate(changed, room) })
		}
	case *roomv1.RoomEvent_RoomExtraInfoUpdate:
		infos := fromInfos(x.RoomExtraInfoUpdate.GetExtraInfo())
		rs.e.emit(func(h EventHandler) { h.OnRoomExtraInfoUpdate(infos, room) })
	case *roomv1.RoomEvent_Message:
		m := x.Message
		from := User{UserID: m.GetFromUser().GetUserId(), UserName: m.GetFromUser().GetUserName()}
		if m.GetKind() == roomv1.MessageKind_MESSAGE_KIND_CUSTOM_COMMAND {
			rs.e.emit(func(h EventHandler) { h.OnIMRecvCustomCommand(m.GetContent(), from, room) })
		} else {
			msg := BroadcastMessageInfo{Message: m.GetContent(), MessageID: m.GetMessageId(),
				SendTime: time.UnixMilli(m.GetSendTimeMs()), FromUser: from}
			rs.e.emit(func(h EventHandler) { h.OnIMRecvBroadcastMessage([]BroadcastMessageInfo{msg}, room) })
		}
	case *roomv1.RoomEvent_OnlineCount:
		n := int(x.OnlineCount.GetCount())
		rs.e.emit(func(h EventHandler) { h.OnRoomOnlineUserCountUpdate(n, room) })
	case *roomv1.RoomEvent_SessionState:
		st := x.SessionState
		switch st.GetKind() {
		case roomv1.SessionState_KIND_KICKED_OUT:
			code := int(st.GetErrorCode())
			rs.e.emit(func(h EventHandler) { h.OnRoomStateChanged(RoomStateChangedReasonKickOut, code, "{}", room) })
			rs.detach()
			return true
		case roomv1.SessionState_KIND_TOKEN_WILL_EXPIRE:
			remain := int(time.Until(time.Unix(st.GetTokenExpireUnix(), 0)).Round(time.Second) / time.Second)
			rs.e.emit(func(h EventHandler) { h.OnRoomTokenWillExpire(max(remain, 0), room) })
		}
	}
	return false
}

// reconcile applies a snapshot: on the first one it lists what exists; after
// a broken resume it reports exactly the differences from what the handler
// was told.
func (rs *roomSession) reconcile(snap *roomv1.Snapshot) {
	room := rs.roomID
	users := fromUsers(snap.GetUsers())
	rs.users.sort(users)
	streams := fromStreams(snap.GetStreams())
	rs.streams.sort(streams)
	rs.deleteStreams(rs.streams.absentFrom(streams), "{}")
	if rs.config.IsUserStatusNotify {
		rs.deleteUsers(rs.users.absentFrom(users))
		rs.addUsers(users)
	}
	rs.addStreams(streams)
	if !rs.loggedIn {
		rs.loggedIn = true
		if infos := snap.GetExtraInfo(); len(infos) > 0 {
			list := make([]*roomv1.RoomExtraInfo, 0, len(infos))
			for _, v := range infos {
				list = append(list, v)
			}
			out := fromInfos(list)
			rs.e.emit(func(h EventHandler) { h.OnRoomExtraInfoUpdate(out, room) })
		}
	}
}

func (rs *roomSession) ownUser(u User) bool      { return u.UserID == rs.user.UserID }
func (rs *roomSession) ownStream(st Stream) bool { return st.User.UserID == rs.user.UserID }

func (rs *roomSession) addUsers(in []User) {
	if out := rs.users.add(in, rs.ownUser); len(out) > 0 {
		room := rs.roomID
		rs.e.emit(func(h EventHandler) { h.OnRoomUserUpdate(UpdateTypeAdd, out, room) })
	}
}

func (rs *roomSession) deleteUsers(in []User) {
	if out := rs.users.remove(in); len(out) > 0 {
		room := rs.roomID
		rs.e.emit(func(h EventHandler) { h.OnRoomUserUpdate(UpdateTypeDelete, out, room) })
	}
}

func (rs *roomSession) addStreams(in []Stream) {
	if out := rs.streams.add(in, rs.ownStream); len(out) > 0 {
		room := rs.roomID
		rs.e.emit(func(h EventHandler) { h.OnRoomStreamUpdate(UpdateTypeAdd, out, "{}", room) })
	}
}

func (rs *roomSession) deleteStreams(in []Stream, extended string) {
	out := rs.streams.remove(in)
	if len(out) > 0 {
		if extended == "{}" || extended == "" {
			ids := make([]string, len(out))
			for i, st := range out {
				ids[i] = st.StreamID
			}
			extended = streamv1.DeleteReasonData(streamv1.DeleteReason_DELETE_REASON_STOPPED, ids...)
		}
		room := rs.roomID
		rs.e.emit(func(h EventHandler) { h.OnRoomStreamUpdate(UpdateTypeDelete, out, extended, room) })
	}
}

func fromUsers(in []*roomv1.User) []User {
	out := make([]User, len(in))
	for i, u := range in {
		out[i] = User{UserID: u.GetUserId(), UserName: u.GetUserName()}
	}
	return out
}

func fromStreams(in []*streamv1.Stream) []Stream {
	out := make([]Stream, len(in))
	for i, st := range in {
		out[i] = Stream{User: User{UserID: st.GetUserId(), UserName: st.GetUserName()}, StreamID: st.GetStreamId(), ExtraInfo: st.GetExtraInfo()}
	}
	return out
}

func fromInfos(in []*roomv1.RoomExtraInfo) []RoomExtraInfo {
	out := make([]RoomExtraInfo, len(in))
	for i, ri := range in {
		out[i] = RoomExtraInfo{Key: ri.GetKey(), Value: ri.GetValue(),
			UpdateUser: User{UserID: ri.GetUpdateUser().GetUserId(), UserName: ri.GetUpdateUser().GetUserName()},
			UpdateTime: time.UnixMilli(ri.GetUpdateTimeMs())}
	}
	return out
}
