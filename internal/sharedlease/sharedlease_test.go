package sharedlease_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/sharedlease"
	"github.com/onair-dev/onair/internal/testkit"
)

// A lease that etcd lost before its rotation was due (a stall, an outage)
// is replaced on the next write instead of failing writes until rotation.
func TestDoReplacesALostLease(t *testing.T) {
	cli := testkit.Etcd(t)
	ctx := context.Background()
	pool := sharedlease.New(cli, time.Minute, time.Hour)
	put := func(key string) (used clientv3.LeaseID, err error) {
		err = pool.Do(ctx, func(id clientv3.LeaseID) error {
			used = id
			_, err := cli.Put(ctx, key, "v", clientv3.WithLease(id))
			return err
		})
		return used, err
	}
	first, err := put("/a")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := put("/b"); err != nil || again != first {
		t.Fatalf("second write: lease %x, %v; want the shared lease %x", again, err, first)
	}
	if _, err := cli.Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	fresh, err := put("/c")
	if err != nil {
		t.Fatalf("write after the lease was revoked: %v", err)
	}
	if fresh == first {
		t.Fatal("the revoked lease was used again")
	}
	resp, err := cli.Get(ctx, "/c")
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != fresh {
		t.Fatalf("/c after the retry: %v %v", resp, err)
	}
}
