package e2e

import (
	"context"
	"fmt"
	"testing"

	"github.com/onair-dev/onair/internal/testcluster"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// BenchmarkLoginLogoutCycle logs users into a room that stays open (one
// user stays in it) and out again, one at a time, and reports etcd's
// revisions per login+logout cycle: the etcd writes a user's visit costs,
// callbacks and their delivery included (no callback URL: dropped).
func BenchmarkLoginLogoutCycle(b *testing.B) {
	c, rooms, _ := startBench(b)
	ctx := context.Background()
	login := func(user string) *roomv1.LoginRoomResponse {
		resp, err := rooms[0].LoginRoom(ctx, &roomv1.LoginRoomRequest{AppId: testcluster.AppID, RoomId: "cycle", Token: c.Token(user, nil),
			User: &roomv1.User{UserId: user, UserName: user}, AttemptId: user + "-attempt"})
		if err != nil {
			b.Fatal(err)
		}
		return resp
	}
	login("stays")
	tokens := make([]string, b.N)
	for i := range tokens {
		tokens[i] = c.Token(fmt.Sprint("u", i), nil)
	}
	rev := func() int64 {
		resp, err := c.Etcd.Get(ctx, "/")
		if err != nil {
			b.Fatal(err)
		}
		return resp.Header.Revision
	}
	start := rev()
	b.ResetTimer()
	for i := range b.N {
		user := fmt.Sprint("u", i)
		resp, err := rooms[0].LoginRoom(ctx, &roomv1.LoginRoomRequest{AppId: testcluster.AppID, RoomId: "cycle", Token: tokens[i],
			User: &roomv1.User{UserId: user, UserName: user}, AttemptId: user + "-attempt"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := rooms[0].LogoutRoom(ctx, &roomv1.LogoutRoomRequest{SessionId: resp.SessionId}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(rev()-start)/float64(b.N), "revisions/cycle")
}
