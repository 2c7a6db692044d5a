package media

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/sdk/express"
)

// retried is how many viewers had their play broken and retried (the SDK's
// PlayRequesting with a code), and whether any got NoPlay.
func retried(viewers []*client) (n int, noPlay bool) {
	for _, v := range viewers {
		r := false
		for _, l := range v.lines() {
			if strings.HasPrefix(l, "player s1 1 ") && l != "player s1 1 0" {
				r = true
			}
			if strings.HasPrefix(l, "player s1 0 ") {
				noPlay = true
			}
		}
		if r {
			n++
		}
	}
	return n, noPlay
}

// playingAgain: every viewer that retried is Playing again (its last play
// state line).
func playingAgain(viewers []*client) bool {
	for _, v := range viewers {
		last, retried := "", false
		for _, l := range v.lines() {
			if strings.HasPrefix(l, "player s1 ") {
				last = l
				if strings.HasPrefix(l, "player s1 1 ") && l != "player s1 1 0" {
					retried = true
				}
			}
		}
		if retried && last != "player s1 2 0" {
			return false
		}
	}
	return true
}

// framesGrow waits for every viewer's frames to grow by at least 30.
func framesGrow(t *testing.T, viewers []*client) {
	t.Helper()
	before := make([]int, len(viewers))
	for i, v := range viewers {
		before[i] = v.frameCount("s1")
	}
	for i, v := range viewers {
		eventually(t, fmt.Sprintf("frames at player %d again", i), func() bool { return v.frameCount("s1") > before[i]+30 })
	}
}

// TestRelayEdgeKilled: a relay edge dies. Its players play again on another
// edge through the SDK's retry; the players of the other edges are not
// touched; nobody gets NoPlay.
func TestRelayEdgeKilled(t *testing.T) {
	c, edges, _, done := relayCluster(t, 8)
	defer done()
	a := edges[0]
	viewers := c.players(t, a.Addr(), 9, express.ResourceModeOnlyL3)
	for i, v := range viewers {
		eventually(t, fmt.Sprintf("frames at player %d", i), func() bool { return v.frameCount("s1") > 10 })
	}
	var victim *node.Node
	for _, n := range edges[1:] {
		if playersOn(n) > 0 {
			victim = n
			break
		}
	}
	if victim == nil {
		t.Fatal("no relay edge has players")
	}
	lost := playersOn(victim)
	victim.Kill()
	killed := time.Now()
	eventually(t, "the killed edge's players retrying", func() bool { n, _ := retried(viewers); return n >= lost })
	eventually(t, "the killed edge's players playing again", func() bool { return playingAgain(viewers) })
	t.Logf("%d players playing again %v after the kill", lost, time.Since(killed).Round(time.Millisecond))
	framesGrow(t, viewers)
	n, noPlay := retried(viewers)
	if n != lost {
		t.Errorf("%d players retried, want the %d of the killed edge only", n, lost)
	}
	if noPlay {
		t.Error("a player got NoPlay")
	}
	total := 0
	for _, e := range edges {
		if e != victim {
			total += playersOn(e)
		}
	}
	if total != len(viewers) {
		t.Errorf("%d players on the living edges, want %d", total, len(viewers))
	}
}

// TestUpstreamRelayKilled: with a fan-out of one the edges form a chain,
// origin -> middle -> last. The middle edge dies: the last edge pulls again
// (from the origin, whose fan-out is free again) and its players stay
// connected; only the middle edge's players retry.
func TestUpstreamRelayKilled(t *testing.T) {
	c, edges, _, done := relayCluster(t, 1)
	defer done()
	a := edges[0]
	viewers := c.players(t, a.Addr(), 6, express.ResourceModeOnlyL3)
	for i, v := range viewers {
		eventually(t, fmt.Sprintf("frames at player %d", i), func() bool { return v.frameCount("s1") > 10 })
	}
	var middle, last *node.Node
	for _, n := range edges[1:] {
		up, _ := n.MediaServer.Upstream(testcluster.AppID, "s1")
		if up == a.Addr() {
			middle = n
		}
	}
	for _, n := range edges[1:] {
		if n != middle {
			last = n
		}
	}
	if up, _ := last.MediaServer.Upstream(testcluster.AppID, "s1"); middle == nil || up != middle.Addr() {
		t.Fatalf("no chain: the last edge pulls from %q", up)
	}
	lost, kept := playersOn(middle), playersOn(last)
	if kept == 0 {
		t.Fatal("the last edge has no players")
	}
	middle.Kill()
	killed := time.Now()
	eventually(t, "the last edge pulling from the origin", func() bool {
		up, pulls := last.MediaServer.Upstream(testcluster.AppID, "s1")
		return up == a.Addr() && pulls >= 2
	})
	t.Logf("the last edge pulled from the origin %v after the kill", time.Since(killed).Round(time.Millisecond))
	eventually(t, "the middle edge's players playing again", func() bool { return playingAgain(viewers) })
	t.Logf("%d players of the middle edge playing again %v after the kill", lost, time.Since(killed).Round(time.Millisecond))
	framesGrow(t, viewers)
	n, noPlay := retried(viewers)
	if n != lost {
		t.Errorf("%d players retried, want the %d of the killed middle edge only", n, lost)
	}
	if noPlay {
		t.Error("a player got NoPlay")
	}
	if p := playersOn(last); p < kept {
		t.Errorf("the last edge has %d players, had %d", p, kept)
	}
}
