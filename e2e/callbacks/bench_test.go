package callbacks

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/testcluster"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// BenchmarkCallbackDelivery logs 1,000 users into 50 rooms through two room
// replicas and measures, at the receiver, the delay from each login to its
// room_login callback and the callbacks delivered per second. Run it with
// -benchtime=1x: go test ./e2e/callbacks -run '^$' -bench . -benchtime=1x
func BenchmarkCallbackDelivery(b *testing.B) {
	const rooms, perRoom = 50, 20
	for i := range b.N {
		f := newFixtureTB(b, time.Minute)
		var mu sync.Mutex
		var delays []time.Duration
		var logins atomic.Int64
		f.recv.answer = func(g got, _ int) int {
			if g.Event.Event == callback.RoomLogin {
				mu.Lock()
				delays = append(delays, time.Since(time.UnixMilli(g.EventTimeMs)))
				mu.Unlock()
				logins.Add(1)
			}
			return http.StatusOK
		}
		start := time.Now()
		var wg sync.WaitGroup
		work := make(chan [2]string)
		for range 32 {
			wg.Go(func() {
				for w := range work {
					if _, err := f.rooms.LoginRoom(context.Background(), &roomv1.LoginRoomRequest{AppId: testcluster.AppID, RoomId: w[0],
						User: &roomv1.User{UserId: w[1], UserName: w[1]}, Token: f.Token(w[1], nil)}); err != nil {
						b.Error(err)
					}
				}
			})
		}
		for u := range perRoom {
			for r := range rooms {
				work <- [2]string{fmt.Sprintf("b%d-r%d", i, r), fmt.Sprintf("b%d-u%d-%d", i, r, u)}
			}
		}
		close(work)
		wg.Wait()
		b.ReportMetric(float64(rooms*perRoom)/time.Since(start).Seconds(), "logins/s")
		for logins.Load() < rooms*perRoom {
			time.Sleep(5 * time.Millisecond)
		}
		elapsed := time.Since(start)
		mu.Lock()
		slices.Sort(delays)
		b.ReportMetric(float64(delays[len(delays)/2].Milliseconds()), "p50-delay-ms")
		b.ReportMetric(float64(delays[len(delays)*99/100].Milliseconds()), "p99-delay-ms")
		mu.Unlock()
		b.ReportMetric(float64(len(f.recv.requests()))/elapsed.Seconds(), "callbacks/s")
	}
}
