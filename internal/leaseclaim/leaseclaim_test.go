package leaseclaim_test

import (
	"context"
	"errors"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/leaseclaim"
	"github.com/onair-dev/onair/internal/testkit"
)

func TestClaim(t *testing.T) {
	ctx := context.Background()
	cli := testkit.Etcd(t)
	grant := func() clientv3.LeaseID {
		l, err := cli.Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		return l.ID
	}
	// guarded writes key "done" only under c.
	guarded := func(c *leaseclaim.Claim) bool {
		resp, err := cli.Txn(ctx).If(c.IsOwner()).Then(clientv3.OpPut(c.Key()+"/done", "")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Succeeded
	}
	for _, tc := range []struct {
		name string
		// run acquires and checks; key is fresh for each case.
		run func(t *testing.T, key string)
	}{
		{"a free key is taken, and guards writes", func(t *testing.T, key string) {
			a := grant()
			c, err := leaseclaim.Acquire(ctx, cli, key, a)
			if err != nil {
				t.Fatal(err)
			}
			if c.Lease() != a || c.Key() != key || !guarded(c) {
				t.Errorf("claim %v of %q under %x: a guarded write failed", c.Lease(), c.Key(), a)
			}
		}},
		{"the holder acquires again", func(t *testing.T, key string) {
			a := grant()
			if _, err := leaseclaim.Acquire(ctx, cli, key, a); err != nil {
				t.Fatal(err)
			}
			if _, err := leaseclaim.Acquire(ctx, cli, key, a); err != nil {
				t.Errorf("second acquire under the same lease: %v", err)
			}
		}},
		{"another lease finds it held", func(t *testing.T, key string) {
			if _, err := leaseclaim.Acquire(ctx, cli, key, grant()); err != nil {
				t.Fatal(err)
			}
			if _, err := leaseclaim.Acquire(ctx, cli, key, grant()); !errors.Is(err, leaseclaim.ErrHeld) {
				t.Errorf("acquire of a held key: %v, want ErrHeld", err)
			}
		}},
		{"a holder whose lease ended can no longer write; another takes it", func(t *testing.T, key string) {
			a := grant()
			c, err := leaseclaim.Acquire(ctx, cli, key, a)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cli.Revoke(ctx, a); err != nil {
				t.Fatal(err)
			}
			if guarded(c) {
				t.Error("a write guarded by a lost claim went through")
			}
			if _, err := leaseclaim.Acquire(ctx, cli, key, grant()); err != nil {
				t.Errorf("acquire after the holder's lease ended: %v", err)
			}
		}},
		{"release only when the extra comparison holds", func(t *testing.T, key string) {
			c, err := leaseclaim.Acquire(ctx, cli, key, grant())
			if err != nil {
				t.Fatal(err)
			}
			busy := clientv3.Compare(clientv3.CreateRevision(key+"/work"), "=", 0)
			if _, err := cli.Put(ctx, key+"/work", "x"); err != nil {
				t.Fatal(err)
			}
			if ok, err := c.Release(ctx, busy); err != nil || ok {
				t.Fatalf("release with work left: %v, %v; want false", ok, err)
			}
			if _, err := cli.Delete(ctx, key+"/work"); err != nil {
				t.Fatal(err)
			}
			if ok, err := c.Release(ctx, busy); err != nil || !ok {
				t.Fatalf("release: %v, %v; want true", ok, err)
			}
			if guarded(c) {
				t.Error("a write guarded by a released claim went through")
			}
			if _, err := leaseclaim.Acquire(ctx, cli, key, grant()); err != nil {
				t.Errorf("acquire after release: %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, "/test/claim/"+tc.name) })
	}
}
