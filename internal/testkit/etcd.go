package testkit

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/embedetcd"
)

// Etcd starts a single-member embedded etcd in tb's temporary directory and
// returns a client of it; both close when tb ends. It is the etcd of a unit
// test that needs real transactions, leases and watches but not a cluster.
func Etcd(tb testing.TB) *clientv3.Client {
	tb.Helper()
	e, err := embedetcd.Start(context.Background(), embedetcd.Config{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Close)
	cli, err := e.Client()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cli.Close() })
	return cli
}
