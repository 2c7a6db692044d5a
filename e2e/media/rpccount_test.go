package media

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"google.golang.org/grpc"

	"github.com/onair-dev/onair/gateway"
	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/node"
	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/internal/testkit"
	streamv1 "github.com/onair-dev/onair/proto/onair/stream/v1"
	"github.com/onair-dev/onair/sdk/express"
)

// rpcLog records the OnAir RPCs the nodes of a cluster serve (unary calls
// and stream starts; health and reflection are not OnAir's).
type rpcLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *rpcLog) add(method string) {
	if !strings.HasPrefix(method, "/onair.") {
		return
	}
	l.mu.Lock()
	l.calls = append(l.calls, method[strings.LastIndex(method, "/")+1:])
	l.mu.Unlock()
}

// take returns the calls since the last take.
// peek is what was called since the last take, left in the log.
func (l *rpcLog) peek() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls)
}

func (l *rpcLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.calls
	l.calls = nil
	return out
}

func (l *rpcLog) options() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			l.add(info.FullMethod)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			l.add(info.FullMethod)
			return h(srv, ss)
		}),
	}
}

// livePublisher publishes a test pattern straight at the edge at addr (no
// room login: nothing in the background calls a service afterwards) and
// waits until the stream is in the registry.
func livePublisher(t *testing.T, c *cluster, addr, stream string) {
	t.Helper()
	tp, err := express.NewTestPattern(express.TestPatternOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tp.Close)
	se := webrtc.SettingEngine{}
	express.LoopbackOnly(&se)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	for _, tr := range tp.Tracks() {
		if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	resp := publishRPC(t, c, addr, "rpc", stream, testkit.Offer(t, pc))
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: resp.GetSdpAnswer()}); err != nil {
		t.Fatal(err)
	}
	streams := streamv1.NewStreamServiceClient(c.Dial(discovery.Stream, true))
	eventually(t, "the stream registered", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := streams.GetStream(ctx, &streamv1.GetStreamRequest{AppId: testcluster.AppID, StreamId: stream})
		return err == nil
	})
}

// playPath is calls without the relays' move watches: the first play of a
// stream at a relay edge starts the pull, which watches the registry for
// the publisher moving (WatchStreams, then one GetStream once the watch is
// open: services/media/relay/move.go) for as long as the edge pulls the
// stream, not for each play.
func playPath(calls []string) []string {
	out := slices.Clone(calls)
	for {
		i := slices.Index(out, "WatchStreams")
		if i < 0 {
			return out
		}
		out = slices.Delete(out, i, i+1)
		if j := slices.Index(out[i:], "GetStream"); j >= 0 {
			out = slices.Delete(out, i+j, i+j+1)
		}
	}
}

// whep posts a WHEP offer and returns the status and the Location.
func whep(t *testing.T, base, stream, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/whep/%d/%s", base, testcluster.AppID, stream), strings.NewReader(offer(t, nil)))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Location")
}

// TestWHEPPlayRPCs: a WHEP play on a cluster of three edges costs at most
// four RPCs in all (counted by an interceptor on every node's server) (the chosen edge's Play, the token check, the stream
// lookup, and a relay pull when the chosen edge is not the stream's
// origin): the gateway calls the chosen edge straight away, which neither
// chooses again nor redirects, and nothing is looked up twice. Every play
// lands at an edge (a session its REST events and stop reach), on every
// edge as players add up.
func TestWHEPPlayRPCs(t *testing.T) {
	c := newCluster(t)
	var log rpcLog
	c.ServerOptions = log.options()
	var edges []*node.Node
	for range 3 {
		// No room service: its callback watcher reads the app (GetApp) in
		// the background when the stream registers, which is no play's cost
		// and landed in whichever play was being counted.
		edges = append(edges, c.Start(discovery.Media, discovery.Auth, discovery.Stream))
	}
	gw, err := gateway.New(context.Background(), gateway.Config{Etcd: c.Etcd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	wh := gateway.NewWHIP(gateway.WHIPConfig{Etcd: c.Etcd})
	wh.Register(gw)
	t.Cleanup(func() { wh.Close() })
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	livePublisher(t, c, edges[0].Addr(), "cam")

	most := 0
	var sessions []string
	for i := range 6 {
		log.take()
		status, loc := whep(t, srv.URL, "cam", c.Token(fmt.Sprintf("viewer%d", i), nil))
		all := log.take()
		if slices.Contains(all, "Relay") {
			// A relay pull starts its move watch in the background: a
			// WatchStreams, then one read of the stream. Wait for both, so
			// they are not counted as the next play's.
			testcluster.Eventually(t, "the relay's move watch to read the stream", func() bool {
				seen := append(slices.Clone(all), log.peek()...)
				i := slices.Index(seen, "WatchStreams")
				return i >= 0 && slices.Contains(seen[i:], "GetStream")
			})
			all = append(all, log.take()...)
		}
		calls := playPath(all)
		t.Logf("WHEP play %d: %d RPCs %v (all: %v)", i, len(calls), calls, all)
		if status != http.StatusCreated {
			t.Fatalf("WHEP play %d: status %d, want 201", i, status)
		}
		most = max(most, len(calls))
		if len(calls) > 4 {
			t.Errorf("WHEP play %d made %d RPCs %v, want at most 4", i, len(calls), calls)
		}
		id := strings.TrimPrefix(loc, "/whep/sessions/")
		sessions = append(sessions, id)
		if got := firstEvent(t, srv.URL, id); !strings.HasPrefix(got, "200 ") {
			t.Fatalf("events of WHEP play %d (%s): %s, want 200", i, loc, got)
		}
	}
	t.Logf("at most %d RPCs per WHEP play", most)
	for i, n := range edges {
		if p := n.MediaServer.Meta().Players; p == 0 {
			t.Errorf("edge %d has no player of the 6", i)
		}
	}
	// The REST session calls reach each WHEP session's edge.
	for i, id := range sessions {
		if status, body := stop(t, srv.URL, id); status != http.StatusOK {
			t.Errorf("REST stop of WHEP play %d: %d %s, want 200", i, status, body)
		}
	}
}
