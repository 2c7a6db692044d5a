package discovery_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/embedetcd"
	"github.com/onair-dev/onair/internal/testkit"
	"github.com/onair-dev/onair/internal/testproc"
)

// servingLog records what an Instance reports, in order.
type servingLog struct {
	mu     sync.Mutex
	states []bool
}

func (l *servingLog) add(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states = append(l.states, v)
}

func (l *servingLog) get() []bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bool(nil), l.states...)
}

// registered reports the addresses registered for service, read straight
// from etcd by a client of its own.
func registered(t *testing.T, cli *clientv3.Client, service string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := discovery.Instances(ctx, cli, service)
	if err != nil {
		return nil
	}
	return got
}

func TestInstanceHeals(t *testing.T) {
	var dir, clientAddr, peerAddr string
	start := func() (*embedetcd.Server, error) {
		return embedetcd.Start(context.Background(), embedetcd.Config{Dir: dir, ClientAddr: clientAddr, PeerAddr: peerAddr})
	}
	// The member is restarted on the same addresses below, so they are
	// picked here; another test may take one before the member listens,
	// and then it starts on new ones. (Another may take one while the
	// member is stopped too; that is seconds, not worth a workaround.)
	var e *embedetcd.Server
	for try := 1; e == nil; try++ {
		dir, clientAddr, peerAddr = t.TempDir(), testproc.FreeAddr(t), testproc.FreeAddr(t)
		var err error
		e, err = start()
		if err != nil && (!testproc.AddrInUse(err.Error()) || try == testproc.StartTries) {
			t.Fatal(err)
		}
	}
	defer func() { e.Close() }()
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	probe, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()

	var log servingLog
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inst, err := discovery.NewInstance(ctx, cli, discovery.InstanceConfig{TTL: 2 * time.Second, OnServing: log.add})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close(context.Background())
	ep, err := inst.Advertise(ctx, "probe", "127.0.0.1:1", map[string]int{"players": 1})
	if err != nil {
		t.Fatal(err)
	}
	// Something else attached to the lease, as a media edge's streams are.
	other := "/onair/test/attached"
	if err := inst.Attach(ctx, func(ctx context.Context, lease clientv3.LeaseID) error {
		_, err := cli.Put(ctx, other, "x", clientv3.WithLease(lease))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := ep.SetMeta(ctx, map[string]int{"players": 7}); err != nil {
		t.Fatal(err)
	}
	attachedThere := func() bool {
		resp, err := probe.Get(context.Background(), other)
		return err == nil && len(resp.Kvs) == 1
	}
	healed := func(lease clientv3.LeaseID) func() bool {
		return func() bool {
			got := registered(t, probe, "probe")
			meta, _ := got["127.0.0.1:1"].(map[string]any)
			return inst.Serving() && inst.Lease() != lease && meta != nil && meta["players"] == float64(7) && attachedThere()
		}
	}

	t.Run("lease revoked under it", func(t *testing.T) {
		first := inst.Lease()
		if _, err := probe.Revoke(context.Background(), first); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, "a fresh lease with the endpoint, its last metadata and the attached key", healed(first))
		states := log.get()
		if len(states) < 2 || states[0] != false || states[len(states)-1] != true {
			t.Fatalf("serving changes %v, want not serving, then serving", states)
		}
	})

	t.Run("etcd stopped past the TTL and started again", func(t *testing.T) {
		before := len(log.get())
		lease := inst.Lease()
		e.Close()
		testkit.Eventually(t, "not serving while etcd is away", func() bool { return !inst.Serving() })
		time.Sleep(3 * time.Second) // longer than the TTL
		restarted, err := start()
		if err != nil {
			t.Fatal(err)
		}
		e = restarted
		// The restarted member extends its leases, so the instance may
		// take its old lease back; either way it serves with everything
		// attached.
		testkit.Eventually(t, "serving again with the endpoint and the attached key", func() bool {
			got := registered(t, probe, "probe")
			return inst.Serving() && got["127.0.0.1:1"] != nil && attachedThere()
		})
		states := log.get()[before:]
		if len(states) != 2 || states[0] || !states[1] {
			t.Fatalf("serving changes %v, want [false true]", states)
		}
		t.Logf("lease before %x, after %x", lease, inst.Lease())
	})

	t.Run("close removes everything", func(t *testing.T) {
		if err := inst.Close(context.Background()); err != nil && !strings.Contains(err.Error(), "not found") {
			t.Fatal(err)
		}
		if got := registered(t, probe, "probe"); len(got) != 0 {
			t.Fatalf("after Close: %v registered", got)
		}
		if attachedThere() {
			t.Fatal("after Close the attached key is still there")
		}
	})
}
