package loginbench

// Lean clients: what a crowd run's users are when the SDK's own
// bookkeeping would not fit in the bench.
//
// An SDK engine keeps every user it was told of (a map of names), so
// 10,000 engines that each see 10,000 users hold 10^8 entries, some 10 GB,
// in the bench's one process. A lean client does to the room service what
// an engine does (its own connection, LoginRoom with user updates, the
// event stream, heartbeats, LogoutRoom at the end) but only counts the
// users it was told of. The server cannot tell the two apart; the count is
// exact as long as the stream is not broken (the bench reports streams that
// broke instead of resuming them).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

// leanClient is one user of a crowd run.
type leanClient struct {
	conn    *grpc.ClientConn
	rooms   roomv1.RoomServiceClient
	user    string
	session string
	cancel  context.CancelFunc
	done    chan struct{}
	// others is how many other users the stream has reported present;
	// changed is when it last moved (Unix ns).
	others, changed atomic.Int64
	// left counts the users it was told left (in a crowd run nobody leaves).
	left   atomic.Int64
	broken atomic.Bool
}

// newLean connects a lean client to server.
func newLean(server string) (*leanClient, error) {
	conn, err := grpc.NewClient(server, grpc.WithTransportCredentials(insecure.NewCredentials()),
		// As the SDK: fixed windows, no bandwidth-delay pings.
		grpc.WithStaticStreamWindowSize(1<<20), grpc.WithStaticConnWindowSize(1<<20))
	if err != nil {
		return nil, err
	}
	return &leanClient{conn: conn, rooms: roomv1.NewRoomServiceClient(conn)}, nil
}

// login logs the user in with user updates on and opens the event stream;
// it returns once the stream's first event (the snapshot) has arrived, as
// the SDK's LoginRoom does.
func (l *leanClient) login(ctx context.Context, appID uint32, room, user, token string) error {
	var b [12]byte
	_, _ = rand.Read(b[:])
	attempt := hex.EncodeToString(b[:])
	resp, err := l.rooms.LoginRoom(ctx, &roomv1.LoginRoomRequest{AppId: appID, RoomId: room, Token: token,
		AttemptId: attempt, User: &roomv1.User{UserId: user, UserName: user},
		Config: &roomv1.RoomConfig{IsUserStatusNotify: true}})
	if err != nil {
		// As the SDK: a login whose answer was lost may have made the
		// session; the logout by attempt removes it.
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = l.rooms.LogoutRoom(cctx, &roomv1.LogoutRoomRequest{SessionId: "-", AppId: appID, UserId: user, AttemptId: attempt})
		cancel()
		return err
	}
	l.user, l.session = user, resp.GetSessionId()
	sctx, cancel := context.WithCancel(context.Background())
	fail := func(err error) error {
		cancel()
		cctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = l.rooms.LogoutRoom(cctx, &roomv1.LogoutRoomRequest{SessionId: l.session})
		stop()
		return err
	}
	stream, err := l.rooms.SubscribeRoomEvents(sctx, &roomv1.SubscribeRoomEventsRequest{SessionId: l.session})
	if err != nil {
		return fail(err)
	}
	first, err := stream.Recv()
	if err != nil {
		return fail(err)
	}
	l.cancel, l.done = cancel, make(chan struct{})
	l.apply(first)
	every := time.Duration(resp.GetHeartbeatIntervalMs()) * time.Millisecond
	if every <= 0 {
		every = 10 * time.Second
	}
	go l.heartbeats(sctx, every)
	go func() {
		defer close(l.done)
		for {
			ev, err := stream.Recv()
			if err != nil {
				if sctx.Err() == nil {
					l.broken.Store(true)
				}
				return
			}
			l.apply(ev)
		}
	}()
	return nil
}

// apply counts the users an event reports.
func (l *leanClient) apply(ev *roomv1.RoomEvent) {
	var n int64
	switch x := ev.Event.(type) {
	case *roomv1.RoomEvent_Snapshot:
		for _, u := range x.Snapshot.GetUsers() {
			if u.GetUserId() != l.user {
				n++
			}
		}
		l.others.Store(n)
		l.changed.Store(time.Now().UnixNano())
		return
	case *roomv1.RoomEvent_UserUpdate:
		for _, u := range x.UserUpdate.GetUsers() {
			if u.GetUserId() != l.user {
				n++
			}
		}
		if x.UserUpdate.GetUpdateType() != streamv1.UpdateType_UPDATE_TYPE_ADD {
			l.left.Add(n)
			n = -n
		}
	default:
		return
	}
	if n != 0 {
		l.others.Add(n)
		l.changed.Store(time.Now().UnixNano())
	}
}

func (l *leanClient) heartbeats(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, every)
		_, _ = l.rooms.Heartbeat(hctx, &roomv1.HeartbeatRequest{SessionId: l.session})
		cancel()
	}
}

// close logs the user out and disconnects.
func (l *leanClient) close() {
	if l.cancel != nil {
		l.cancel()
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = l.rooms.LogoutRoom(ctx, &roomv1.LogoutRoomRequest{SessionId: l.session})
		cancel()
	}
	_ = l.conn.Close()
}
