package media

import (
	"context"
	"testing"
	"time"

	"github.com/onair-dev/onair/sdk/express"
)

// TestEdgeKilled: the origin edge dies mid-stream. The stream leaves the
// room with reason 5 (disconnected) once the edge's lease expires; the
// publisher's SDK keeps retrying and publishes again as soon as an edge is
// back at its address; the player, redirected to the origin from another
// node, resumes by itself.
func TestEdgeKilled(t *testing.T) {
	c := newCluster(t)
	a := c.Start(allRoles...)
	b := c.Start(allRoles...)
	aAddr := a.Addr()

	host := c.login(aAddr, "room1", "host")
	viewer := c.login(b.Addr(), "room1", "viewer")
	tp, err := express.NewTestPattern(express.TestPatternOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := host.e.StartPublishingStream(ctx, "s1", tp, express.PublisherConfig{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the viewer's stream Add", func() bool { return viewer.has("stream Add s1") })
	if err := viewer.e.StartPlayingStream(ctx, "s1", frameSink{viewer.recorder, "s1"}, express.PlayerConfig{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "frames from edge A", func() bool { return viewer.frameCount("s1") > 10 })

	a.Kill()
	killed := time.Now()
	eventually(t, "the stream's Delete with reason 5", func() bool {
		return viewer.has(`stream Delete s1 {"stream_delete_reason":[{"stream_id":"s1","code":5}]}`)
	})
	t.Logf("stream deleted %v after the kill", time.Since(killed).Round(time.Millisecond))
	eventually(t, "the publisher retrying", func() bool { return host.has("publisher s1 1 1002051") })
	eventually(t, "the player retrying", func() bool { return viewer.has("player s1 1 1002051") })

	// An edge comes back at A's address (a restarted pod keeps its address).
	_ = c.StartAt(aAddr, allRoles...)
	before := viewer.frameCount("s1")
	eventually(t, "the stream back in the room", func() bool {
		n := 0
		for _, l := range viewer.lines() {
			if l == "stream Add s1 {}" {
				n++
			}
		}
		return n >= 2
	})
	eventually(t, "the publisher publishing again", func() bool {
		lines := host.lines()
		for i := len(lines) - 1; i >= 0; i-- {
			if lines[i] == "publisher s1 2 0" {
				return true
			}
			if lines[i] == "publisher s1 1 1002051" {
				return false
			}
		}
		return false
	})
	eventually(t, "the player's frames resuming", func() bool { return viewer.frameCount("s1") > before+30 })
	t.Logf("player resumed %v after the kill", time.Since(killed).Round(time.Millisecond))
}
