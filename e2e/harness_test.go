// Package e2e runs OnAir's services as they run in production (real
// embedded etcd, real gRPC over loopback, discovery through etcd) and checks
// what a user of the system would check.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/embedetcd"
	"github.com/onair-dev/onair/internal/grpcserver"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/services/auth"
	"github.com/onair-dev/onair/token04"
)

const internalKey = "e2e-internal-key"

type cluster struct {
	t      *testing.T
	etcd   *embedetcd.Server
	cli    *clientv3.Client
	appID  uint32
	secret string
	room   node.RoomConfig
}

func quietLogger() *slog.Logger {
	if os.Getenv("E2E_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	ctx := context.Background()
	e, err := embedetcd.Start(ctx, embedetcd.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &cluster{t: t, etcd: e, cli: cli, appID: 1234567890, secret: "0123456789abcdef0123456789abcdef",
		room: node.RoomConfig{OnlineCountInterval: 200 * time.Millisecond}}
}

// start runs a node with the roles; the first auth node seeds the app.
func (c *cluster) start(roles ...string) *node.Node {
	c.t.Helper()
	ctx := context.Background()
	n, err := node.Start(ctx, node.Config{Roles: roles, Etcd: c.cli, GRPCAddr: "127.0.0.1:0",
		InternalKey: internalKey, LeaseTTL: 2 * time.Second, Logger: quietLogger(),
		Auth: node.AuthConfig{AdminKey: "admin"}, Room: c.room})
	if err != nil {
		c.t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.Stop(sctx, time.Second)
		})
	}
	c.t.Cleanup(stop)
	if n.AuthServer != nil {
		if _, err := n.AuthServer.EnsureApp(ctx, c.appID, c.secret); err != nil {
			c.t.Fatal(err)
		}
	}
	return n
}

// dial connects to a service through discovery, as a service would.
func (c *cluster) dial(service string, internal bool) *grpc.ClientConn {
	c.t.Helper()
	var opts []grpc.DialOption
	if internal {
		opts = append(opts, grpcserver.InternalCredentials(internalKey))
	}
	cc, err := discovery.Dial(c.cli, service, opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cc.Close() })
	return cc
}

func (c *cluster) token(userID string, opts *token04.Options) string {
	c.t.Helper()
	tok, err := token04.Mint(c.appID, userID, c.secret, time.Hour, opts)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// eventually polls cond until it holds or the deadline passes. Deadlines
// here are generous bounds for correctness, not performance assertions.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = auth.Sign
var _ = fmt.Sprint
