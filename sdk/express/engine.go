// Package express is the Go client SDK of OnAir, shaped like the Express
// engine: create an engine with a profile and an event handler, log into a
// room with a token, and get told as users and streams come and go.
//
// Calls that talk to the server take a context and return an error that
// carries the vendor's code (see ErrorCode); everything the server pushes
// arrives as EventHandler callbacks, in order, on one goroutine per engine.
// A broken connection is repaired by the engine itself: the handler sees
// Reconnecting and then Reconnected, and no user or stream update is lost
// or repeated in between.
package express

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/onair-dev/onair/errcode"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// ErrorCode returns the vendor error code carried by err (0 if none).
func ErrorCode(err error) int { return int(errcode.Of(err)) }

// Engine is a client of OnAir. It is safe for concurrent use.
type Engine struct {
	profile EngineProfile
	creds   credentials.TransportCredentials // every connection's
	conn    *grpc.ClientConn
	rooms   roomv1.RoomServiceClient
	events  *dispatcher

	mu      sync.Mutex
	handler EventHandler
	room    *roomSession
	closed  bool

	media mediaState    // publishing and playing (publish.go, play.go)
	msgs  messageSender // room messages' stream (messages.go)

	// bg counts cleanups that outlive a failed call (retry.go); bgCtx ends
	// them all.
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc
}

// CreateEngine connects an engine to OnAir. The connection is made lazily;
// LoginRoom reports when the server can't be reached.
func CreateEngine(profile EngineProfile, handler EventHandler) (*Engine, error) {
	if profile.AppID == 0 {
		return nil, errcode.New(errcode.InvalidParameter, "EngineProfile.AppID is required")
	}
	if profile.Server == "" {
		return nil, errcode.New(errcode.InvalidParameter, "EngineProfile.Server is required")
	}
	if profile.ReconnectTimeout <= 0 {
		profile.ReconnectTimeout = 20 * time.Minute
	}
	if handler == nil {
		handler = BaseEventHandler{}
	}
	// A manual resolver with every given address and pick_first: the engine
	// sticks to one server and moves to the next when it goes away.
	r := manual.NewBuilderWithScheme("onair")
	var addrs []resolver.Address
	for _, a := range strings.Split(profile.Server, ",") {
		if a = strings.TrimSpace(a); a != "" {
			// Over TLS each server is checked against its own host, not
			// the resolver's made-up authority.
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				host = a
			}
			addrs = append(addrs, resolver.Address{Addr: a, ServerName: host})
		}
	}
	r.InitialState(resolver.State{Addresses: addrs})
	creds := insecure.NewCredentials()
	if profile.TLS != nil {
		creds = credentials.NewTLS(profile.TLS)
	}
	conn, err := grpc.NewClient(r.Scheme()+":///onair",
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"pick_first":{}}]}`),
		// Fixed flow-control windows turn off gRPC's bandwidth-delay
		// estimation, which pings the server after nearly every event
		// frame it receives on a quiet stream (a ping the server must read
		// and answer: as much server work as the event itself). An engine
		// carries signaling and room events, far below 1 MiB in flight.
		grpc.WithStaticStreamWindowSize(sdkWindow),
		grpc.WithStaticConnWindowSize(sdkWindow))
	if err != nil {
		return nil, err
	}
	e := &Engine{profile: profile, creds: creds, conn: conn, rooms: roomv1.NewRoomServiceClient(conn), handler: handler}
	e.bgCtx, e.bgCancel = context.WithCancel(context.Background())
	e.events = newDispatcher()
	return e, nil
}

// sdkWindow is the engine connection's fixed flow-control window.
const sdkWindow = 1 << 20

// SetEventHandler replaces the handler; callbacks already queued go to the
// new one.
func (e *Engine) SetEventHandler(h EventHandler) {
	if h == nil {
		h = BaseEventHandler{}
	}
	e.mu.Lock()
	e.handler = h
	e.mu.Unlock()
}

// emit queues a callback for the handler goroutine.
func (e *Engine) emit(f func(h EventHandler)) {
	e.events.push(func() {
		e.mu.Lock()
		h := e.handler
		e.mu.Unlock()
		f(h)
	})
}

// LoginRoom logs user into roomID with config.Token and starts receiving
// the room's events. It returns when the server has refused the login, or
// has accepted it and opened the user's event stream (at most 5 s after
// accepting it), so every room message sent after LoginRoom returns reaches
// the user. The handler sees Logining, then Logined or LoginFailed.
//
// While the server answers UNAVAILABLE (it or its store is briefly away,
// as in an etcd leader election), the login is tried again until ctx ends
// (10 s without a deadline), as one attempt: a try whose reply was lost
// is found, not repeated. A login that fails leaves no session: if a try
// may have made one, the engine removes it in the background.
func (e *Engine) LoginRoom(ctx context.Context, roomID string, user User, config RoomConfig) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return errcode.New(errcode.InvalidParameter, "the engine is destroyed")
	}
	if e.room != nil {
		e.mu.Unlock()
		return errcode.Newf(errcode.LoginTwice, "already logged into room %q: log out first", e.room.roomID)
	}
	rs := &roomSession{e: e, roomID: roomID, user: user, config: config, open: make(chan struct{}),
		users:   newKnown(func(u User) string { return u.UserID }),
		streams: newKnown(func(st Stream) string { return st.StreamID })}
	e.room = rs
	e.mu.Unlock()

	e.emit(func(h EventHandler) { h.OnRoomStateChanged(RoomStateChangedReasonLogining, 0, "{}", roomID) })
	resp, err := rs.login(ctx)
	if err != nil && rs.mayExist {
		// A try may have made the session and lost its reply: the attempt
		// ID finds it, if it is there.
		req := &roomv1.LogoutRoomRequest{SessionId: "-", AppId: e.profile.AppID, UserId: user.UserID, AttemptId: rs.attempt}
		e.inBackground(func(ctx context.Context) { _ = e.logout(ctx, req) })
	}
	if err != nil {
		code := ErrorCode(err)
		if code == 0 {
			code = int(errcode.ConnectFailed)
			err = errcode.Newf(errcode.ConnectFailed, "could not reach OnAir: %v", err)
		}
		e.emit(func(h EventHandler) { h.OnRoomStateChanged(RoomStateChangedReasonLoginFailed, code, "{}", roomID) })
		e.mu.Lock()
		e.room = nil
		e.mu.Unlock()
		return err
	}
	e.emit(func(h EventHandler) {
		h.OnRoomStateChanged(RoomStateChangedReasonLogined, 0, roomSessionData(resp.GetRoomSessionId()), roomID)
	})
	rs.start()
	// Logged in means receiving: the room's messages sent once LoginRoom
	// has returned reach this user, as the server delivers messages only
	// to open event streams.
	rs.waitOpen(ctx)
	return nil
}

func roomSessionData(id string) string { return fmt.Sprintf(`{"room_session_id":%q}`, id) }

func (e *Engine) session(roomID string) (*roomSession, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.room == nil || (roomID != "" && e.room.roomID != roomID) {
		return nil, errcode.Newf(errcode.SessionNotFound, "not logged into room %q", roomID)
	}
	return e.room, nil
}

// LogoutRoom leaves the room; the handler sees Logout (or LogoutFailed).
// Like LoginRoom it rides through UNAVAILABLE until ctx ends (10 s without
// a deadline); a logout that still fails goes on in the background for a
// while, so the user does not linger in the room until its heartbeat
// timeout.
func (e *Engine) LogoutRoom(ctx context.Context, roomID string) error {
	rs, err := e.session(roomID)
	if err != nil {
		return err
	}
	rs.stop()
	e.mu.Lock()
	if e.room == rs {
		e.room = nil
	}
	e.mu.Unlock()
	req := &roomv1.LogoutRoomRequest{SessionId: rs.sessionID()}
	err = e.logout(ctx, req)
	if err != nil {
		if transient(err) || errors.Is(err, context.DeadlineExceeded) || errcode.Of(err) == errcode.ConnectFailed ||
			status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.Canceled {
			e.inBackground(func(ctx context.Context) { _ = e.logout(ctx, req) })
		}
		code := ErrorCode(err)
		e.emit(func(h EventHandler) { h.OnRoomStateChanged(RoomStateChangedReasonLogoutFailed, code, "{}", rs.roomID) })
		return err
	}
	e.emit(func(h EventHandler) { h.OnRoomStateChanged(RoomStateChangedReasonLogout, 0, "{}", rs.roomID) })
	return nil
}

// RenewToken gives the session a new token before the old one expires.
func (e *Engine) RenewToken(ctx context.Context, roomID, token string) error {
	rs, err := e.session(roomID)
	if err != nil {
		return err
	}
	if _, err := e.rooms.RenewToken(ctx, &roomv1.RenewTokenRequest{SessionId: rs.sessionID(), Token: token}); err != nil {
		return err
	}
	rs.mu.Lock()
	rs.config.Token = token
	rs.mu.Unlock()
	return nil
}

// SetRoomExtraInfo sets one key of the room's extra info; the others in the
// room get OnRoomExtraInfoUpdate.
func (e *Engine) SetRoomExtraInfo(ctx context.Context, roomID, key, value string) error {
	rs, err := e.session(roomID)
	if err != nil {
		return err
	}
	_, err = e.rooms.SetRoomExtraInfo(ctx, &roomv1.SetRoomExtraInfoRequest{SessionId: rs.sessionID(), Key: key, Value: value})
	return err
}

// SendBroadcastMessage sends a message to everyone else in the room and
// returns its ID.
//
// Delivery: everyone whose room connection is up when the message is
// accepted (this call returned the ID) gets it exactly once, and one
// sender's messages arrive in the order sent. Messages sent while a
// receiver reconnects may be missed, as with the vendor: unlike users,
// streams and extra info, messages are not resumed. The room's broadcast
// rate limit (1000015) holds per room on each server replica. When the
// server cannot reach its message bus the call fails at once with
// 1000037; try again shortly. The same holds for SendCustomCommand.
func (e *Engine) SendBroadcastMessage(ctx context.Context, roomID, message string) (string, error) {
	rs, err := e.session(roomID)
	if err != nil {
		return "", err
	}
	return e.sendMessage(ctx, &roomv1.SendRoomMessageRequest{SessionId: rs.sessionID(),
		Kind: roomv1.MessageKind_MESSAGE_KIND_BROADCAST, Content: message})
}

// SendCustomCommand sends a command to the listed users of the room.
func (e *Engine) SendCustomCommand(ctx context.Context, roomID, command string, toUsers []User) error {
	rs, err := e.session(roomID)
	if err != nil {
		return err
	}
	to := make([]string, len(toUsers))
	for i, u := range toUsers {
		to[i] = u.UserID
	}
	_, err = e.sendMessage(ctx, &roomv1.SendRoomMessageRequest{SessionId: rs.sessionID(),
		Kind: roomv1.MessageKind_MESSAGE_KIND_CUSTOM_COMMAND, Content: command, ToUserIds: to})
	return err
}

// DestroyEngine logs out, closes the connection and calls callback (if not
// nil) once every queued callback has been delivered. A logout (or the
// cleanup of a failed login) that cannot finish within 5 s goes on in the
// background, for at most 30 s, before the connection closes.
func (e *Engine) DestroyEngine(callback func()) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	rs := e.room
	e.mu.Unlock()
	if rs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = e.LogoutRoom(ctx, rs.roomID)
		cancel()
	}
	e.stopMedia()
	e.events.close(callback)
	done := make(chan struct{})
	go func() { e.bg.Wait(); close(done) }()
	select {
	case <-done:
		e.bgCancel()
		_ = e.conn.Close()
	default:
		go func() {
			<-done
			e.bgCancel()
			_ = e.conn.Close()
		}()
	}
}

// dispatcher runs callbacks in order on one goroutine, with an unbounded
// queue so the network side never waits for the application.
type dispatcher struct {
	mu    sync.Mutex
	queue []func()
	wake  chan struct{}
	done  chan struct{}
	final func()
	stop  bool
}

func newDispatcher() *dispatcher {
	d := &dispatcher{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go d.run()
	return d
}

func (d *dispatcher) push(f func()) {
	d.mu.Lock()
	if !d.stop {
		d.queue = append(d.queue, f)
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) run() {
	defer close(d.done)
	for range d.wake {
		for {
			d.mu.Lock()
			q := d.queue
			d.queue = nil
			stop := d.stop
			d.mu.Unlock()
			for _, f := range q {
				f()
			}
			if len(q) > 0 {
				continue
			}
			if stop {
				if d.final != nil {
					d.final()
				}
				return
			}
			break
		}
	}
}

func (d *dispatcher) close(final func()) {
	d.mu.Lock()
	d.stop, d.final = true, final
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

var errStopped = errors.New("express: room session stopped")
