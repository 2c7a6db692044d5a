// Package media runs the media edge end to end: real embedded etcd, real
// gRPC nodes found through discovery, real pion peers on loopback.
package media

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/internal/testkit"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/onair-dev/onair/sdk/express"
)

var (
	allRoles   = testcluster.AllRoles
	eventually = testcluster.Eventually
)

// cluster is an etcd for media nodes, plus logging SDK clients in.
type cluster struct {
	*testcluster.Cluster
	tb testing.TB
}

func newCluster(tb testing.TB) *cluster {
	c := testcluster.New(tb)
	c.Room.OnlineCountInterval = time.Second
	return &cluster{Cluster: c, tb: tb}
}

// client is an SDK engine logged into a room, with a recorder.
type client struct {
	*recorder
	e    *express.Engine
	user string
}

func (c *cluster) login(server, roomID, userID string) *client {
	c.tb.Helper()
	r := newRecorder()
	e, err := express.CreateEngine(express.EngineProfile{AppID: testcluster.AppID, Server: server, ReconnectTimeout: time.Minute}, r)
	if err != nil {
		c.tb.Fatal(err)
	}
	e.SetMediaSettings(express.LoopbackOnly)
	c.tb.Cleanup(func() {
		done := make(chan struct{})
		e.DestroyEngine(func() { close(done) })
		<-done
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.LoginRoom(ctx, roomID, express.User{UserID: userID, UserName: userID}, express.RoomConfig{Token: c.Token(userID, nil)}); err != nil {
		c.tb.Fatal(err)
	}
	return &client{recorder: r, e: e, user: userID}
}

// recorder writes down the callbacks the tests look at.
type recorder struct {
	express.BaseEventHandler
	testkit.Recorder
	mu         sync.Mutex // guards the maps
	firstFrame map[string]time.Time
	frames     map[string]int
	keyframes  map[string]int
}

func newRecorder() *recorder {
	return &recorder{firstFrame: map[string]time.Time{}, frames: map[string]int{}, keyframes: map[string]int{}}
}

func (r *recorder) add(s string) { r.Add(s) }

// has reports whether a logged line starts with prefix.
func (r *recorder) has(prefix string) bool { return r.HasPrefix(prefix) }

func (r *recorder) lines() []string { return r.Lines() }

func (r *recorder) OnRoomStreamUpdate(t express.UpdateType, streams []express.Stream, ext string, _ string) {
	for _, s := range streams {
		r.add(fmt.Sprintf("stream %s %s %s", t, s.StreamID, ext))
	}
}

func (r *recorder) OnPublisherStateUpdate(st express.PublisherState, code int, _ string, id string) {
	r.add(fmt.Sprintf("publisher %s %d %d", id, st, code))
}

func (r *recorder) OnPlayerStateUpdate(st express.PlayerState, code int, _ string, id string) {
	r.add(fmt.Sprintf("player %s %d %d", id, st, code))
}

func (r *recorder) OnPlayerRecvVideoFirstFrame(id string) {
	r.mu.Lock()
	r.firstFrame[id] = time.Now()
	r.mu.Unlock()
	r.add("firstframe " + id)
}

func (r *recorder) OnPublisherQualityUpdate(q express.PublishStreamQuality, id string) {
	r.add(fmt.Sprintf("pubquality %s %.0f", id, q.VideoFPS))
}

func (r *recorder) OnPlayerQualityUpdate(q express.PlayStreamQuality, id string) {
	r.add(fmt.Sprintf("playquality %s %.0f", id, q.VideoFPS))
}

// frameSink counts the decodable video frames of one stream.
type frameSink struct {
	r  *recorder
	id string
}

func (s frameSink) WriteRTP(webrtc.RTPCodecParameters, *rtp.Packet) {}

func (s frameSink) WriteVideoFrame(f media.Sample, key bool) {
	s.r.mu.Lock()
	s.r.frames[s.id]++
	if key {
		s.r.keyframes[s.id]++
	}
	s.r.mu.Unlock()
}

func (r *recorder) frameCount(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.frames[id]
}
