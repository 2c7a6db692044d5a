// Package e2e runs OnAir's services as they run in production (real
// embedded etcd, real gRPC over loopback, discovery through etcd) and checks
// what a user of the system would check.
package e2e

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/onair-dev/onair/gateway"
	"github.com/onair-dev/onair/internal/testcluster"
)

var eventually = testcluster.Eventually

// newCluster starts an etcd whose rooms push the online count often enough
// for a test to see it.
func newCluster(tb testing.TB) *testcluster.Cluster {
	c := testcluster.New(tb)
	c.Room.OnlineCountInterval = 200 * time.Millisecond
	return c
}

// restGateway serves the REST gateway of c on a loopback HTTP server.
func restGateway(t *testing.T, c *testcluster.Cluster) *httptest.Server {
	t.Helper()
	gw, err := gateway.New(context.Background(), gateway.Config{Etcd: c.Etcd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	web := httptest.NewServer(gw)
	t.Cleanup(web.Close)
	return web
}
