package media

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/sdk/express"
)

// relayCluster is three edges (every role on each) and a publisher on the
// first, the origin.
func relayCluster(t *testing.T, fanout int) (*cluster, []*node.Node, *client, func()) {
	c := newCluster(t)
	c.Media.RelayFanout = fanout
	c.Media.RelayLinger = time.Second
	var edges []*node.Node
	for range 3 {
		edges = append(edges, c.Start(allRoles...))
	}
	host := c.login(edges[0].Addr(), "room1", "host")
	tp, err := express.NewTestPattern(express.TestPatternOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := host.e.StartPublishingStream(ctx, "s1", tp, express.PublisherConfig{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Publishing", func() bool { return host.has("publisher s1 2 0") })
	return c, edges, host, func() { tp.Close() }
}

// players starts n L3 players of s1, logged in at server; each counts its
// frames.
func (c *cluster) players(t *testing.T, server string, n int, mode express.ResourceMode) []*client {
	var out []*client
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range n {
		v := c.login(server, "room1", fmt.Sprintf("viewer%d-%d", mode, i))
		if err := v.e.StartPlayingStream(ctx, "s1", frameSink{v.recorder, "s1"}, express.PlayerConfig{ResourceMode: mode}); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func playersOn(n *node.Node) int { return n.MediaServer.Meta().Players }

// TestRelaySpread: L3 players, all entering through the origin's node, are
// spread over the three edges; each relay edge pulls the stream once
// (however many players it serves) and the origin feeds exactly one relay
// per edge with players; every player gets frames, a relay player's first
// frame at once from the relay's cache; OnlyRTC players stay on the origin.
// When the publisher stops, every player gets NoPlay and the room's stream
// Delete with reason 1. Thirty players in all, as the issue asks.
func TestRelaySpread(t *testing.T) {
	c, edges, host, done := relayCluster(t, 8)
	defer done()
	a := edges[0]
	viewers := c.players(t, a.Addr(), 28, express.ResourceModeOnlyL3)
	rtc := c.players(t, a.Addr(), 2, express.ResourceModeOnlyRTC)
	for i, v := range append(viewers, rtc...) {
		eventually(t, fmt.Sprintf("frames at player %d", i), func() bool { return v.frameCount("s1") > 10 })
	}
	relays := 0
	for i, n := range edges {
		p := playersOn(n)
		t.Logf("edge %d: %d players, load %+v", i, p, n.MediaServer.Meta())
		if p == 0 {
			t.Errorf("edge %d has no player", i)
		}
		if i == 0 {
			continue
		}
		up, pulls := n.MediaServer.Upstream(testcluster.AppID, "s1")
		if p > 0 {
			relays++
			if up != a.Addr() || pulls != 1 {
				t.Errorf("edge %d pulls from %q (%d connections), want %s once", i, up, pulls, a.Addr())
			}
		}
	}
	if d := a.MediaServer.Downstreams(testcluster.AppID, "s1"); d != relays {
		t.Errorf("the origin feeds %d edges, want %d", d, relays)
	}
	if p := playersOn(a); p < 2 {
		t.Errorf("the origin has %d players, want at least the 2 OnlyRTC ones", p)
	}

	if err := host.e.StopPublishingStream(context.Background(), "s1"); err != nil {
		t.Fatal(err)
	}
	for i, v := range append(viewers, rtc...) {
		eventually(t, fmt.Sprintf("NoPlay at player %d", i), func() bool { return v.has("player s1 0 ") })
		eventually(t, fmt.Sprintf("the room's stream Delete (reason 1) at player %d", i), func() bool {
			return v.has(`stream Delete s1 {"stream_delete_reason":[{"stream_id":"s1","code":1}]}`)
		})
	}
	for i, n := range edges[1:] {
		eventually(t, fmt.Sprintf("edge %d's relay gone", i+1), func() bool {
			up, _ := n.MediaServer.Upstream(testcluster.AppID, "s1")
			return up == ""
		})
	}
}

// TestRelayTree: with a fan-out of one, the origin feeds one edge and the
// third edge pulls from the second, not from the origin.
func TestRelayTree(t *testing.T) {
	c, edges, _, done := relayCluster(t, 1)
	defer done()
	a := edges[0]
	viewers := c.players(t, a.Addr(), 6, express.ResourceModeOnlyL3)
	for i, v := range viewers {
		eventually(t, fmt.Sprintf("frames at player %d", i), func() bool { return v.frameCount("s1") > 10 })
	}
	ups := map[string]string{}
	for i, n := range edges[1:] {
		if playersOn(n) == 0 {
			t.Fatalf("edge %d has no player", i+1)
		}
		up, _ := n.MediaServer.Upstream(testcluster.AppID, "s1")
		ups[n.Addr()] = up
	}
	if d := a.MediaServer.Downstreams(testcluster.AppID, "s1"); d != 1 {
		t.Errorf("the origin feeds %d edges, want 1", d)
	}
	b, c3 := edges[1], edges[2]
	if !(ups[b.Addr()] == a.Addr() && ups[c3.Addr()] == b.Addr()) && !(ups[c3.Addr()] == a.Addr() && ups[b.Addr()] == c3.Addr()) {
		t.Errorf("upstreams %v: want a chain from the origin %s", ups, a.Addr())
	}
}

// TestRelayLinger: a relay edge's pull ends a linger after its last player
// left, and a new player there starts one again.
func TestRelayLinger(t *testing.T) {
	c, edges, _, done := relayCluster(t, 8)
	defer done()
	a := edges[0]
	viewers := c.players(t, a.Addr(), 3, express.ResourceModeOnlyL3)
	for _, v := range viewers {
		eventually(t, "frames", func() bool { return v.frameCount("s1") > 10 })
	}
	var relayed []*node.Node
	for _, n := range edges[1:] {
		if up, _ := n.MediaServer.Upstream(testcluster.AppID, "s1"); up != "" {
			relayed = append(relayed, n)
		}
	}
	if len(relayed) == 0 {
		t.Fatal("no edge relays the stream")
	}
	for _, v := range viewers {
		if err := v.e.StopPlayingStream(context.Background(), "s1"); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range relayed {
		eventually(t, "the pull gone after the linger", func() bool {
			up, _ := n.MediaServer.Upstream(testcluster.AppID, "s1")
			return up == ""
		})
	}
	eventually(t, "the origin feeding no edge", func() bool { return a.MediaServer.Downstreams(testcluster.AppID, "s1") == 0 })
}
