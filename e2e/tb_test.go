package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/embedetcd"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/token04"
)

func newClusterTB(tb testing.TB) *cluster {
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
	tb.Cleanup(func() { cli.Close() })
	return &cluster{etcd: e, cli: cli, appID: 1234567890, secret: "0123456789abcdef0123456789abcdef"}
}

func (c *cluster) startTB(tb testing.TB, roles ...string) *node.Node {
	tb.Helper()
	ctx := context.Background()
	n, err := node.Start(ctx, node.Config{Roles: roles, Etcd: c.cli, GRPCAddr: "127.0.0.1:0",
		InternalKey: internalKey, LeaseTTL: 2 * time.Second, Logger: quietLogger(), Room: c.room})
	if err != nil {
		tb.Fatal(err)
	}
	var once sync.Once
	tb.Cleanup(func() {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.Stop(sctx, time.Second)
		})
	})
	if n.AuthServer != nil {
		if _, err := n.AuthServer.EnsureApp(ctx, c.appID, c.secret); err != nil {
			tb.Fatal(err)
		}
	}
	return n
}

func (c *cluster) tokenTB(tb testing.TB, userID string) string {
	tok, err := token04.Mint(c.appID, userID, c.secret, time.Hour, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}
