// Package e2e runs OnAir's services as they run in production (real
// embedded etcd, real gRPC over loopback, discovery through etcd) and checks
// what a user of the system would check.
package e2e

import (
	"testing"
	"time"

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
