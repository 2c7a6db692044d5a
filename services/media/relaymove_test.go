package media_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/testcluster"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
)

// at is an edge handle for one node of a cluster: publishes go to it.
func at(tb testing.TB, c *testcluster.Cluster, n *node.Node) *edge {
	cc, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close() })
	return &edge{c: c, n: n, mc: mediav1.NewMediaServiceClient(cc), tb: tb}
}

// TestRelayFollowsMovedPublisher: the publisher publishes its stream again
// on another edge while its first connection (on the origin) is still up,
// so the old origin never ends by itself: the relay edge can only move to
// the new origin because it watches the registry. The new origin is a third
// edge, or the relay edge itself. Its players stay on:
// no state change, one SSRC, no sequence number missing across the splice.
func TestRelayFollowsMovedPublisher(t *testing.T) {
	t.Run("to a third edge", func(t *testing.T) { relayFollowsMove(t, false) })
	t.Run("to the relay edge", func(t *testing.T) { relayFollowsMove(t, true) })
}

func relayFollowsMove(t *testing.T, ontoRelay bool) {
	c := testcluster.New(t)
	c.Media.RelayLinger = time.Second
	a := at(t, c, c.Start(testcluster.AllRoles...))
	b := c.Start(testcluster.AllRoles...)
	src := newVP8Source(t, 300*time.Millisecond, 1200, true)
	first := a.publish("host", "mv", src)

	var viewers []*viewer
	for i := range 4 {
		v := a.play(fmt.Sprintf("viewer%d", i), "mv")
		viewers = append(viewers, v)
	}
	for _, v := range viewers {
		testcluster.Eventually(t, "frames", func() bool { return v.s.frameCount() > 10 })
	}
	if b.MediaServer.Meta().Players == 0 {
		t.Fatal("no player was placed on the relay edge")
	}
	if up, pulls := b.MediaServer.Upstream(testcluster.AppID, "mv"); up != a.n.Addr() || pulls != 1 {
		t.Fatalf("the relay edge pulls from %q (%d connections), want the origin %s once", up, pulls, a.n.Addr())
	}

	// The publisher moves to a third edge (or to the relay edge, which then
	// pulls from itself until its pull lingers out); its first connection
	// stays up.
	var cn *edge
	if ontoRelay {
		cn = at(t, c, b)
	} else {
		cn = at(t, c, c.Start(testcluster.AllRoles...))
	}
	second := cn.publish("host", "mv", src)
	moved := time.Now()
	testcluster.Eventually(t, "the relay edge pulling from the new origin", func() bool {
		up, pulls := b.MediaServer.Upstream(testcluster.AppID, "mv")
		return up == cn.n.Addr() && pulls == 2
	})
	t.Logf("the relay edge pulled from the new origin %v after its publish was answered", time.Since(moved).Round(time.Millisecond))
	testcluster.Eventually(t, "the new origin feeding the relay edge", func() bool {
		return cn.n.MediaServer.Downstreams(testcluster.AppID, "mv") == 1
	})
	testcluster.Eventually(t, "the old origin feeding no edge", func() bool {
		return a.n.MediaServer.Downstreams(testcluster.AppID, "mv") == 0
	})
	before := make([]int, len(viewers))
	for i, v := range viewers {
		before[i] = v.s.frameCount()
	}
	for i, v := range viewers {
		testcluster.Eventually(t, "frames after the move", func() bool { return v.s.frameCount() > before[i]+40 })
	}
	for i, v := range viewers {
		v.s.mu.Lock()
		states, ssrcs := append([]string(nil), v.s.states...), len(v.s.ssrcs)
		v.s.mu.Unlock()
		if len(states) != 2 || states[0] != "1/0" || states[1] != "2/0" {
			t.Errorf("player %d states %v, want PlayRequesting then Playing only", i, states)
		}
		if ssrcs != 1 {
			t.Errorf("player %d saw %d video SSRCs", i, ssrcs)
		}
		if holes, span := v.s.holes(0); holes != 0 {
			t.Errorf("player %d: %d sequence numbers missing out of %d across the move", i, holes, span)
		}
	}
	_, _ = first, second
}
