package e2e

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/callback"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/keys"
	"github.com/onair-dev/onair/internal/loginbench"
	"github.com/onair-dev/onair/internal/testcluster"
)

// `onair bench logins` against the in-process stack (auth in dev mode, two
// room replicas): its summary counts what happened. Short runs, 4 workers:
// a check of the counting, not a measurement.
func TestBenchLoginsCountsWhatHappened(t *testing.T) {
	c := newCluster(t)
	c.DevMode = true // callbacks to the bench's receiver on loopback
	authNode := c.Start(discovery.Auth, discovery.Stream)
	r1, r2 := c.Start(discovery.Room), c.Start(discovery.Room)
	for _, tc := range []struct {
		name      string
		stay      bool
		rooms     int
		callbacks bool
	}{
		{name: "login and logout, callbacks", rooms: 3, callbacks: true},
		{name: "a single room filling up", rooms: 1, stay: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "bl-" + strings.ReplaceAll(tc.name, " ", "-")
			cfg := loginbench.Config{Servers: []string{r1.Addr(), r2.Addr()}, AppID: testcluster.AppID, Secret: testcluster.Secret,
				Workers: 4, Rooms: tc.rooms, Duration: 2 * time.Second, Stay: tc.stay, UserUpdates: true, CallTimeout: 20 * time.Second,
				RoomPrefix: prefix, PIDs: []int{os.Getpid()}, EtcdEndpoints: c.Etcd.Endpoints(), Drain: 30 * time.Second}
			if tc.callbacks {
				cfg.Callbacks = &loginbench.CallbackConfig{Listen: "127.0.0.1:0", AuthServer: authNode.Addr(), AdminKey: testcluster.AdminKey}
			}
			res, err := loginbench.Run(context.Background(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var sum strings.Builder
			res.Print(&sum)
			t.Logf("summary:%s", sum.String())
			if res.Cycles == 0 || res.ErrorCount() != 0 {
				t.Fatalf("%d cycles, %d errors (first: %s); want some and none", res.Cycles, res.ErrorCount(), res.FirstError)
			}
			wantLogouts := res.Cycles
			if tc.stay {
				wantLogouts = 0
			}
			if res.Logins != res.Cycles || res.Logouts != wantLogouts || int64(len(res.LoginTimes)) != res.Logins || int64(len(res.LogoutTimes)) != res.Logouts {
				t.Errorf("%d cycles, %d logins (%d timed), %d logouts (%d timed); want %d logins and %d logouts, all timed",
					res.Cycles, res.Logins, len(res.LoginTimes), res.Logouts, len(res.LogoutTimes), res.Cycles, wantLogouts)
			}
			// Every login writes to etcd: at least one revision each.
			if res.Revisions < res.Logins {
				t.Errorf("etcd moved %d revisions over %d logins", res.Revisions, res.Logins)
			}
			if len(res.CPU) != 1 || res.CPU[0] <= 0 {
				t.Errorf("CPU of this process: %v", res.CPU)
			}
			if tc.callbacks {
				cb := res.Callbacks
				if cb.ByEvent[callback.RoomLogin] != res.Logins || cb.ByEvent[callback.RoomLogout] != res.Logouts || cb.BadSignature != 0 {
					t.Errorf("callbacks %v (%d with a bad signature); want %d room_login and %d room_logout, all signed",
						cb.ByEvent, cb.BadSignature, res.Logins, res.Logouts)
				}
				if int64(len(cb.Delays)) != cb.Unique || cb.OutboxMax < 0 {
					t.Errorf("%d delays of %d callbacks, outbox depth max %d", len(cb.Delays), cb.Unique, cb.OutboxMax)
				}
			}
			// No session of the run's users is left once it returns: its
			// engines logged out (the staying ones after the clock).
			left, err := c.Etcd.Get(context.Background(), keys.Session(testcluster.AppID, prefix), clientv3.WithPrefix(), clientv3.WithKeysOnly())
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range left.Kvs {
				t.Errorf("session left behind: %s", kv.Key)
			}
		})
	}
}
