package media

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/telemetry"
	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/services/media/relay"
)

// Relay edges carry the layers their players need: a relay edge whose only
// player is pinned to the low layer receives only that layer of a
// three-layer stream; an auto player there still moves between layers
// (each pulled when it moves to it), and a layer nobody forwards any more
// is let go.

// pulled is the RIDs of the layers the relay edge pulls now, and every
// layer's state.
func pulled(n *node.Node) (rids string, all []relay.LayerState) {
	all = n.MediaServer.RelayLayers(testcluster.AppID, "s1")
	var on []string
	for _, l := range all {
		if l.Pulled {
			on = append(on, l.RID)
		}
	}
	return strings.Join(on, ","), all
}

// TestRelayCarriesNeededLayers: see above; the relay edge's own state and
// its /metrics (onair_media_relay_layers, onair_media_players_video) say
// so.
func TestRelayCarriesNeededLayers(t *testing.T) {
	c := newCluster(t)
	c.Media.OriginRoom = 1 // after one player the origin takes no more L3 players
	origin := c.Start(allRoles...)
	edge := c.Start(allRoles...)
	p, err := telemetry.Setup(context.Background(), "onair-media-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	if err := edge.MediaServer.RegisterMetrics(p.MeterProvider()); err != nil {
		t.Fatal(err)
	}
	c.publishSimulcast(t, origin.Addr(), simulcastPattern(t))

	// A high player at the origin (OnlyRTC) fills its room; the next plays
	// at the relay edge, pinned low.
	c.playLayer(t, origin.Addr(), "at-origin", express.ResourceModeOnlyRTC, express.VideoLayerHigh)
	low := c.playLayer(t, origin.Addr(), "low", express.ResourceModeOnlyL3, express.VideoLayerLow)
	if playersOn(edge) != 1 {
		t.Fatalf("players: origin %d, relay edge %d; want the low player at the relay edge", playersOn(origin), playersOn(edge))
	}
	wantOnly(t, "the low player at the relay edge", low, "320x180")
	// Only the low layer (RID q) ever reached the relay edge.
	on, all := pulled(edge)
	t.Logf("relay edge layers with a low player: %+v", all)
	if on != "q" || len(all) != 3 {
		t.Fatalf("layers pulled %q of %d, want only q of 3", on, len(all))
	}
	for _, l := range all {
		if l.RID != "q" && l.Packets != 0 {
			t.Errorf("layer %s not pulled, yet %d of its packets reached the relay edge", l.RID, l.Packets)
		}
	}
	m := scrape(t, p, "onair_media_relay_layers", "state", "layer")
	if m[`onair_media_relay_layers{state="pulled"}`] != 1 || m[`onair_media_relay_layers{state="skipped"}`] != 2 {
		t.Errorf("onair_media_relay_layers: %v, want pulled 1, skipped 2", m)
	}

	// An auto player at the relay edge starts where its initial estimate
	// puts it and climbs to the top layer, which the edge then pulls; a
	// layer it only passed through is let go after the linger.
	auto := c.playLayer(t, origin.Addr(), "auto", express.ResourceModeOnlyL3, express.VideoLayerAuto)
	if playersOn(edge) != 2 {
		t.Fatalf("the auto player is not at the relay edge (players: origin %d, relay edge %d)", playersOn(origin), playersOn(edge))
	}
	eventually(t, "the auto player on the top layer", func() bool {
		_, last := auto.keySizes()
		q, ok := auto.lastQuality()
		return last == "1280x720" && ok && q.VideoLayer == express.VideoLayerHigh
	})
	d, _ := auto.keySizes()
	t.Logf("auto player's keyframe sizes in order: %v", d)
	eventually(t, "the relay edge pulling the low and top layers only", func() bool {
		on, _ := pulled(edge)
		return on == "f,q"
	})
	f0, _ := auto.counts()
	eventually(t, "frames on the top layer", func() bool { f, _ := auto.counts(); return f > f0+60 })
	wantOnly(t, "the low player, still", low, "320x180")
	m = scrape(t, p, "onair_media_relay_layers", "state", "layer")
	if m[`onair_media_relay_layers{state="pulled"}`] != 2 || m[`onair_media_relay_layers{state="skipped"}`] != 1 {
		t.Errorf("onair_media_relay_layers: %v, want pulled 2, skipped 1", m)
	}
	// The players' layers, as the relay edge's metrics count them.
	v := scrape(t, p, "onair_media_players_video", "state", "layer")
	if v[`onair_media_players_video{layer="low"}`] != 1 || v[`onair_media_players_video{layer="high"}`] != 1 {
		t.Errorf("onair_media_players_video: %v, want one low and one high", v)
	}
}

// TestRelayChainCarriesNeededLayers: with a fan-out of one the third edge
// pulls from the second; with only low-pinned players on both, neither
// receives any other layer: what an edge forwards to the edge below it
// counts as forwarded, so the middle edge asks the origin for the union
// of its players' and the end edge's layers.
func TestRelayChainCarriesNeededLayers(t *testing.T) {
	c := newCluster(t)
	c.Media.OriginRoom = 1
	c.Media.RelayFanout = 1
	origin := c.Start(allRoles...)
	edges := []*node.Node{c.Start(allRoles...), c.Start(allRoles...)}
	c.publishSimulcast(t, origin.Addr(), simulcastPattern(t))
	// A high player at the origin (OnlyRTC) fills its room: the low
	// players go to the relay edges.
	c.playLayer(t, origin.Addr(), "at-origin", express.ResourceModeOnlyRTC, express.VideoLayerHigh)
	var sinks []*layerSink
	for i := range 4 {
		sinks = append(sinks, c.playLayer(t, origin.Addr(), fmt.Sprintf("low%d", i), express.ResourceModeOnlyL3, express.VideoLayerLow))
	}
	for i, s := range sinks {
		wantOnly(t, fmt.Sprintf("low player %d", i), s, "320x180")
	}
	ups := map[string]bool{}
	for i, n := range edges {
		if playersOn(n) == 0 {
			t.Fatalf("relay edge %d has no player", i)
		}
		up, _ := n.MediaServer.Upstream(testcluster.AppID, "s1")
		ups[up] = true
		on, all := pulled(n)
		t.Logf("relay edge %d (upstream %s): %+v", i, up, all)
		if on != "q" {
			t.Errorf("relay edge %d pulls %q, want only q", i, on)
		}
		for _, l := range all {
			if l.RID != "q" && l.Packets != 0 {
				t.Errorf("relay edge %d: layer %s not pulled, yet %d of its packets arrived", i, l.RID, l.Packets)
			}
		}
	}
	if !ups[edges[0].Addr()] && !ups[edges[1].Addr()] {
		t.Errorf("no relay edge pulls from the other (upstreams %v): not a chain", ups)
	}
}
