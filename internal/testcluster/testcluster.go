// Package testcluster runs OnAir in-process for tests the way it runs in
// production: a real embedded etcd on loopback, nodes serving real gRPC and
// finding each other through etcd, and one app to log into. Everything it
// starts is stopped by the test's cleanup.
package testcluster

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/embednats"
	"github.com/onair-dev/onair/internal/grpcserver"
	"github.com/onair-dev/onair/internal/natsconn"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/testkit"
	"github.com/onair-dev/onair/token04"
)

// The app every cluster seeds, and the key its services share.
const (
	AppID       uint32 = 1234567890
	Secret             = "0123456789abcdef0123456789abcdef"
	InternalKey        = "test-internal-key"
	AdminKey           = "admin"
)

// AllRoles is every service role.
var AllRoles = []string{discovery.Auth, discovery.Stream, discovery.Room, discovery.Media}

// Cluster is an etcd and the nodes a test starts on it.
type Cluster struct {
	tb testing.TB
	// Etcd is a client of the embedded etcd.
	Etcd *clientv3.Client
	// NATS is the embedded NATS server (on a loopback port) that carries
	// room messages between the nodes' room roles; each node connects to
	// it on its own.
	NATS *embednats.Server
	// Room and Media configure the nodes started after they are set.
	Room  node.RoomConfig
	Media node.MediaConfig
	// DebugTokens turns on IssueDebugToken in auth nodes started after it
	// is set (it still needs the admin key).
	DebugTokens bool
	// DevMode lets apps send callbacks to loopback (a test's receiver), in
	// auth nodes started after it is set.
	DevMode bool
	// LeaseTTL is the nodes' discovery lease: short, so a killed node's
	// keys go quickly.
	LeaseTTL time.Duration
	// ServerOptions are added to the gRPC servers of nodes started after
	// they are set (an interceptor that counts RPCs).
	ServerOptions []grpc.ServerOption
}

// New starts an embedded etcd in a temporary directory.
func New(tb testing.TB) *Cluster {
	tb.Helper()
	cli := testkit.Etcd(tb)
	ns, err := embednats.Start(embednats.Config{ClientAddr: "127.0.0.1:0"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(ns.Close)
	return &Cluster{tb: tb, Etcd: cli, NATS: ns, LeaseTTL: 2 * time.Second, Media: node.MediaConfig{PublicIP: "127.0.0.1"}}
}

// Logger logs errors only, or everything when E2E_LOG is set.
func Logger() *slog.Logger {
	lvl := slog.LevelError
	if os.Getenv("E2E_LOG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// Start runs a node with roles on a free loopback port. A node with the
// auth role seeds the app.
func (c *Cluster) Start(roles ...string) *node.Node { return c.StartAt("127.0.0.1:0", roles...) }

// StartAt runs a node on addr, waiting for the port if a node that just
// died still holds it.
func (c *Cluster) StartAt(addr string, roles ...string) *node.Node {
	c.tb.Helper()
	ctx := context.Background()
	var n *node.Node
	nc, err := natsconn.Connect(natsconn.Config{URL: c.NATS.URL(), Name: "testcluster " + addr, Logger: Logger()})
	if err != nil {
		c.tb.Fatal(err)
	}
	room := c.Room
	room.NATS = nc
	for range 50 {
		n, err = node.Start(ctx, node.Config{Roles: roles, Etcd: c.Etcd, GRPCAddr: addr,
			InternalKey: InternalKey, LeaseTTL: c.LeaseTTL, Logger: Logger(), ServerOptions: c.ServerOptions,
			Auth: node.AuthConfig{AdminKey: AdminKey, DebugTokens: c.DebugTokens, DevMode: c.DevMode}, Room: room, Media: c.Media})
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.tb.Fatal(err)
	}
	var once sync.Once
	c.tb.Cleanup(func() {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.Stop(sctx, time.Second)
			nc.Close()
		})
	})
	if n.AuthServer != nil {
		if _, err := n.AuthServer.EnsureApp(ctx, AppID, Secret); err != nil {
			c.tb.Fatal(err)
		}
	}
	return n
}

// Dial connects to a service through discovery, as a client (or, with
// internal, as another service) would.
func (c *Cluster) Dial(service string, internal bool) *grpc.ClientConn {
	c.tb.Helper()
	var opts []grpc.DialOption
	if internal {
		opts = append(opts, grpcserver.InternalCredentials(InternalKey))
	}
	cc, err := discovery.Dial(c.Etcd, service, opts...)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.tb.Cleanup(func() { cc.Close() })
	return cc
}

// Token mints an hour-long token of the app for userID, with a privilege
// payload if priv is not nil.
func (c *Cluster) Token(userID string, priv *token04.Privilege) string {
	c.tb.Helper()
	tok, err := token04.Mint(AppID, userID, Secret, time.Hour, &token04.Options{Privilege: priv})
	if err != nil {
		c.tb.Fatal(err)
	}
	return tok
}

// Eventually is testkit.Eventually, here for the tests that already hold
// a cluster.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	testkit.Eventually(tb, what, cond)
}
