// Package media runs the media edge end to end: real embedded etcd, real
// gRPC nodes found through discovery, real pion peers on loopback.
package media

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/embedetcd"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/token04"
)

const internalKey = "media-e2e-internal-key"

var allRoles = []string{discovery.Auth, discovery.Stream, discovery.Room, discovery.Media}

type cluster struct {
	t      testing.TB
	cli    *clientv3.Client
	appID  uint32
	secret string
}

func logger() *slog.Logger {
	lvl := slog.LevelError
	if os.Getenv("E2E_LOG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	e, err := embedetcd.Start(context.Background(), embedetcd.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &cluster{t: t, cli: cli, appID: 1234567890, secret: "0123456789abcdef0123456789abcdef"}
}

// start runs a node; lease TTL 2 s so a killed edge's streams go quickly.
func (c *cluster) start(roles ...string) *node.Node {
	c.t.Helper()
	ctx := context.Background()
	n, err := node.Start(ctx, node.Config{Roles: roles, Etcd: c.cli, GRPCAddr: "127.0.0.1:0",
		InternalKey: internalKey, LeaseTTL: 2 * time.Second, Logger: logger(),
		Room:  node.RoomConfig{OnlineCountInterval: time.Second},
		Media: node.MediaConfig{PublicIP: "127.0.0.1"}})
	if err != nil {
		c.t.Fatal(err)
	}
	var once sync.Once
	c.t.Cleanup(func() {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.Stop(sctx, time.Second)
		})
	})
	if n.AuthServer != nil {
		if _, err := n.AuthServer.EnsureApp(ctx, c.appID, c.secret); err != nil {
			c.t.Fatal(err)
		}
	}
	return n
}

func (c *cluster) token(userID string, priv *token04.Privilege) string {
	c.t.Helper()
	var opts *token04.Options
	if priv != nil {
		opts = &token04.Options{Privilege: priv}
	}
	tok, err := token04.Mint(c.appID, userID, c.secret, time.Hour, opts)
	if err != nil {
		c.t.Fatal(err)
	}
	return tok
}

// client is an SDK engine logged into a room, with a recorder.
type client struct {
	*recorder
	e    *express.Engine
	user string
}

func (c *cluster) login(server, roomID, userID string) *client {
	c.t.Helper()
	r := newRecorder()
	e, err := express.CreateEngine(express.EngineProfile{AppID: c.appID, Server: server, ReconnectTimeout: time.Minute}, r)
	if err != nil {
		c.t.Fatal(err)
	}
	e.SetMediaSettings(express.LoopbackOnly)
	c.t.Cleanup(func() {
		done := make(chan struct{})
		e.DestroyEngine(func() { close(done) })
		<-done
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.LoginRoom(ctx, roomID, express.User{UserID: userID, UserName: userID}, express.RoomConfig{Token: c.token(userID, nil)}); err != nil {
		c.t.Fatal(err)
	}
	return &client{recorder: r, e: e, user: userID}
}

// recorder writes down the callbacks the tests look at.
type recorder struct {
	express.BaseEventHandler
	mu         sync.Mutex
	log        []string
	firstFrame map[string]time.Time
	frames     map[string]int
	keyframes  map[string]int
}

func newRecorder() *recorder {
	return &recorder{firstFrame: map[string]time.Time{}, frames: map[string]int{}, keyframes: map[string]int{}}
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
}

// has reports whether a logged line starts with prefix.
func (r *recorder) has(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.log {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func (r *recorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

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

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
