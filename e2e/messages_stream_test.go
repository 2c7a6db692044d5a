package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/testcluster"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	"github.com/onair-dev/onair/sdk/express"
)

// olderRoom is a room replica from before SendRoomMessages.
type olderRoom struct{ roomv1.RoomServiceServer }

func (olderRoom) SendRoomMessages(roomv1.RoomService_SendRoomMessagesServer) error {
	return status.Error(codes.Unimplemented, "unknown method SendRoomMessages")
}

// The SDK sends room messages over its message stream, or, to a server
// without one, each with a call of its own: either way every message
// arrives once and in order, and a refused one fails with its code.
func TestRoomMessagesOverTheStreamOrNot(t *testing.T) {
	c := newCluster(t)
	c.Room.MessageRate = 1000
	c.Start(discovery.Auth, discovery.Stream)
	r1 := c.Start(discovery.Room)
	older := grpc.NewServer()
	roomv1.RegisterRoomServiceServer(older, olderRoom{r1.RoomServer})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = older.Serve(lis) }()
	t.Cleanup(older.Stop)

	for _, tt := range []struct {
		name, server string
	}{
		{"stream", r1.Addr()},
		{"older-server", lis.Addr().String()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			room := "stream-" + tt.name
			recv := msgLogin(t, c, []*node.Node{r1}, room, "recv")
			rec := newRecorder()
			e, err := express.CreateEngine(express.EngineProfile{AppID: testcluster.AppID, Server: tt.server}, rec)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.DestroyEngine(nil) })
			if err := e.LoginRoom(ctx, room, express.User{UserID: "sender", UserName: "sender"},
				express.RoomConfig{Token: c.Token("sender", nil)}); err != nil {
				t.Fatal(err)
			}
			var want []string
			for i := range 20 {
				msg := fmt.Sprint("m", i)
				if id, err := e.SendBroadcastMessage(ctx, room, msg); err != nil || id == "" {
					t.Fatalf("send %d: %q, %v", i, id, err)
				}
				want = append(want, "sender:"+msg)
			}
			if _, err := e.SendBroadcastMessage(ctx, room, ""); express.ErrorCode(err) != int(errcode.InvalidParameter) {
				t.Errorf("empty message: %v, want code %d", err, errcode.InvalidParameter)
			}
			// A send whose context has ended fails at once.
			dead, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
			defer cancel()
			if _, err := e.SendBroadcastMessage(dead, room, "late"); status.Code(err) != codes.DeadlineExceeded {
				t.Errorf("send with an ended context: %v, want DeadlineExceeded", err)
			}
			// The last one sent: once it is in, so is everything before it
			// (one sender's order), twice if sent twice.
			if _, err := e.SendBroadcastMessage(ctx, room, "end"); err != nil {
				t.Fatal(err)
			}
			want = append(want, "sender:end")
			testcluster.Eventually(t, "every message", func() bool {
				got := recv.rec.messages()
				return len(got) > 0 && got[len(got)-1] == "sender:end"
			})
			if got := recv.rec.messages(); !slices.Equal(got, want) {
				t.Errorf("received %v, want %v", got, want)
			}
		})
	}
}
