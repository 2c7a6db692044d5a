package e2e

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/testcluster"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/grpcserver"
	"github.com/onair-dev/onair/internal/node"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
)

func startBench(b *testing.B) (*testcluster.Cluster, [2]roomv1.RoomServiceClient, streamv1.StreamServiceClient) {
	b.Helper()
	tb := b
	c := newCluster(tb)
	c.Room = node.RoomConfig{LoginRate: 1e6, OnlineCountInterval: time.Hour}
	c.Start(discovery.Auth, discovery.Stream)
	r1 := c.Start(discovery.Room)
	r2 := c.Start(discovery.Room)
	var rooms [2]roomv1.RoomServiceClient
	for i, n := range []*node.Node{r1, r2} {
		cc, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		rooms[i] = roomv1.NewRoomServiceClient(cc)
	}
	// The registry is internal; the benchmark publishes as a media edge would.
	sc, err := discovery.Dial(c.Etcd, discovery.Stream, grpcserver.InternalCredentials(testcluster.InternalKey))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sc.Close() })
	return c, rooms, streamv1.NewStreamServiceClient(sc)
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)]
}

// BenchmarkLogin measures logins per second and login latency with 32
// concurrent clients over two room replicas, 50 users per room.
func BenchmarkLogin(b *testing.B) {
	c, rooms, _ := startBench(b)
	const n = 2000
	toks := make([]string, n)
	for i := range toks {
		toks[i] = c.Token("u"+strconv.Itoa(i), nil)
	}
	ctx := context.Background()
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		lat := make([]time.Duration, n)
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < 32; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					t0 := time.Now()
					_, err := rooms[i%2].LoginRoom(ctx, &roomv1.LoginRoomRequest{AppId: testcluster.AppID, RoomId: fmt.Sprintf("bench-%d-%d", it, i/50),
						Token: toks[i], User: &roomv1.User{UserId: "u" + strconv.Itoa(i), UserName: "u"}})
					if err != nil {
						b.Error(err)
						return
					}
					lat[i] = time.Since(t0)
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		b.ReportMetric(float64(n)/el.Seconds(), "logins/s")
		b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	}
}

// subscribeAll logs n users into room (alternating replicas) and subscribes
// each; onEvent is called for every event each subscriber receives.
func subscribeAll(b *testing.B, c *testcluster.Cluster, rooms [2]roomv1.RoomServiceClient, room string, n int, notify bool, onEvent func(i int, ev *roomv1.RoomEvent)) (cancel func(), heartbeat func()) {
	ctx, stop := context.WithCancel(context.Background())
	sessions := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			user := room + "-u" + strconv.Itoa(i)
			resp, err := rooms[i%2].LoginRoom(ctx, &roomv1.LoginRoomRequest{AppId: testcluster.AppID, RoomId: room, Token: c.Token(user, nil),
				User: &roomv1.User{UserId: user, UserName: user}, Config: &roomv1.RoomConfig{IsUserStatusNotify: notify}})
			if err != nil {
				b.Error(err)
				return
			}
			sessions[i] = resp.SessionId
			sub, err := rooms[i%2].SubscribeRoomEvents(ctx, &roomv1.SubscribeRoomEventsRequest{SessionId: resp.SessionId})
			if err != nil {
				b.Error(err)
				return
			}
			go func() {
				for {
					ev, err := sub.Recv()
					if err != nil {
						return
					}
					onEvent(i, ev)
				}
			}()
		}()
	}
	wg.Wait()
	return stop, func() {
		for i, s := range sessions {
			_, _ = rooms[i%2].Heartbeat(ctx, &roomv1.HeartbeatRequest{SessionId: s})
		}
	}
}

// BenchmarkStreamAddFanout measures the time from RegisterStream until each
// of 1,000 subscribers, spread over two replicas, has the Add.
func BenchmarkStreamAddFanout(b *testing.B) {
	c, rooms, streams := startBench(b)
	const n = 1000
	var mu sync.Mutex
	got := make([]time.Time, n)
	var want string
	stop, _ := subscribeAll(b, c, rooms, "fanout", n, false, func(i int, ev *roomv1.RoomEvent) {
		if u := ev.GetStreamUpdate(); u != nil && u.UpdateType == streamv1.UpdateType_UPDATE_TYPE_ADD {
			mu.Lock()
			if u.Streams[0].StreamId == want {
				got[i] = time.Now()
			}
			mu.Unlock()
		}
	})
	defer stop()
	ctx := context.Background()
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		mu.Lock()
		want = "s" + strconv.Itoa(it)
		clear(got)
		mu.Unlock()
		t0 := time.Now()
		if _, err := streams.RegisterStream(ctx, &streamv1.RegisterStreamRequest{AppId: testcluster.AppID, RoomId: "fanout", StreamId: want,
			UserId: "fanout-u0", Token: c.Token("fanout-u0", nil)}); err != nil {
			b.Fatal(err)
		}
		for {
			mu.Lock()
			done := !slices.Contains(got, time.Time{})
			mu.Unlock()
			if done {
				break
			}
			time.Sleep(time.Millisecond)
		}
		lat := make([]time.Duration, n)
		for i, g := range got {
			lat[i] = g.Sub(t0)
		}
		b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkLargeRoomJoin: a room of BENCH_ROOM_USERS (default 5,000) users
// with user notifications on, everyone joining at once, until every
// subscriber has been told about everyone. It also reports the heap each
// idle logged-in, subscribed session costs the whole process (etcd, both
// replicas and the clients together: an upper bound for the room service).
func BenchmarkLargeRoomJoin(b *testing.B) {
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("BENCH_ROOM_USERS")); err == nil {
		n = v
	}
	c, rooms, _ := startBench(b)
	for it := 0; it < b.N; it++ {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		room := "big" + strconv.Itoa(it)
		var total atomic.Int64
		seen := make([]map[string]bool, n)
		locks := make([]sync.Mutex, n)
		for i := range seen {
			seen[i] = map[string]bool{}
		}
		t0 := time.Now()
		stop, _ := subscribeAll(b, c, rooms, room, n, true, func(i int, ev *roomv1.RoomEvent) {
			var users []*roomv1.User
			if s := ev.GetSnapshot(); s != nil {
				users = s.Users
			} else if u := ev.GetUserUpdate(); u != nil && u.UpdateType == streamv1.UpdateType_UPDATE_TYPE_ADD {
				users = u.Users
			}
			locks[i].Lock()
			for _, u := range users {
				if !seen[i][u.UserId] {
					seen[i][u.UserId] = true
					total.Add(1)
				}
			}
			locks[i].Unlock()
		})
		for total.Load() < int64(n*n) {
			time.Sleep(10 * time.Millisecond)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "s-until-all-know-all")
		seen = nil
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(n)/1024, "KiB-heap/session")
		stop()
	}
}
