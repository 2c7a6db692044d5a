package media

import (
	"context"
	"testing"
	"time"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/sdk/express"
)

// TestPublishPlayStop: an SDK client publishes the VP8+Opus test pattern,
// another one in the room sees the stream, plays it, gets a first decodable
// frame and then a steady frame rate; when the publisher stops, the player
// sees Delete (reason 1) and NoPlay.
func TestPublishPlayStop(t *testing.T) {
	c := newCluster(t)
	n := c.Start(allRoles...)
	host := c.login(n.Addr(), "room1", "host")
	viewer := c.login(n.Addr(), "room1", "viewer")

	tp, err := express.NewTestPattern(express.TestPatternOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := host.e.StartPublishingStream(ctx, "s1", tp, express.PublisherConfig{ExtraInfo: "hi"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Publishing", func() bool { return host.has("publisher s1 2 0") })
	eventually(t, "the viewer's stream Add", func() bool { return viewer.has("stream Add s1") })

	requested := time.Now()
	if err := viewer.e.StartPlayingStream(ctx, "s1", frameSink{viewer.recorder, "s1"}, express.PlayerConfig{ResourceMode: express.ResourceModeOnlyRTC}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Playing", func() bool { return viewer.has("player s1 2 0") })
	eventually(t, "the first frame", func() bool { return viewer.has("firstframe s1") })
	viewer.mu.Lock()
	t.Logf("play request to first decodable frame: %v", viewer.firstFrame["s1"].Sub(requested))
	viewer.mu.Unlock()

	// A steady frame rate: the test pattern sends 30 fps; over 2 s the
	// player must assemble most of those frames (a loose bound, loopback).
	before := viewer.frameCount("s1")
	time.Sleep(2 * time.Second)
	got := viewer.frameCount("s1") - before
	if got < 40 {
		t.Fatalf("player assembled %d frames in 2 s, want about 60", got)
	}
	eventually(t, "quality reports", func() bool { return viewer.has("playquality s1") && host.has("pubquality s1") })

	// A second publisher of the same stream ID is refused.
	other := c.login(n.Addr(), "room1", "other")
	tp2, _ := express.NewTestPattern(express.TestPatternOptions{})
	defer tp2.Close()
	if err := other.e.StartPublishingStream(ctx, "s1", tp2, express.PublisherConfig{}); errcode.Code(express.ErrorCode(err)) != errcode.StreamIDExists {
		t.Fatalf("second publisher of s1: %v, want 1003028", err)
	}
	// Playing a stream that does not exist: 1004002.
	if err := viewer.e.StartPlayingStream(ctx, "nope", nil, express.PlayerConfig{}); errcode.Code(express.ErrorCode(err)) != errcode.StreamNotFound {
		t.Fatalf("play of an absent stream: %v, want 1004002", err)
	}

	if err := host.e.StopPublishingStream(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the viewer's stream Delete", func() bool {
		return viewer.has(`stream Delete s1 {"stream_delete_reason":[{"stream_id":"s1","code":1}]}`)
	})
	eventually(t, "NoPlay", func() bool { return viewer.has("player s1 0 1004002") })
	eventually(t, "NoPublish", func() bool { return host.has("publisher s1 0 0") })
	_ = discovery.Media
}
