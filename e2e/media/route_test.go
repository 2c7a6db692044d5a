package media

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/onair-dev/onair/gateway"
	"github.com/onair-dev/onair/internal/testcluster"
	"github.com/onair-dev/onair/internal/testkit"
	mediav1 "github.com/onair-dev/onair/proto/onair/media/v1"
	"github.com/onair-dev/onair/sdk/express"
)

// offer is a loopback peer's complete offer: sending tp's tracks, or, with
// tp nil, receiving audio and video.
func offer(t *testing.T, tp *express.TestPattern) string {
	t.Helper()
	se := webrtc.SettingEngine{}
	express.LoopbackOnly(&se)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if tp != nil {
		for _, tr := range tp.Tracks() {
			if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
			if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return testkit.Offer(t, pc)
}

// publishAt starts a publish session directly on the edge at addr (the
// peer never connects: the session lives, CONNECTING, for the edge's
// connect timeout) and returns its ID.
func publishAt(t *testing.T, c *cluster, addr, stream string, tp *express.TestPattern) string {
	t.Helper()
	return publishRPC(t, c, addr, "route", stream, offer(t, tp)).GetSessionId()
}

// publishRPC calls the edge at addr's Publish with sdp as user "u-"+stream.
func publishRPC(t *testing.T, c *cluster, addr, room, stream, sdp string) *mediav1.PublishResponse {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	user := "u-" + stream
	resp, err := mediav1.NewMediaServiceClient(cc).Publish(ctx, &mediav1.PublishRequest{AppId: testcluster.AppID,
		RoomId: room, StreamId: stream, UserId: user, Token: c.Token(user, nil), SdpOffer: sdp})
	if err != nil {
		t.Fatalf("publish %s at %s: %v", stream, addr, err)
	}
	return resp
}

// stop stops a media session over REST.
func stop(t *testing.T, base, id string) (int, string) {
	t.Helper()
	resp, err := http.Post(base+"/v1/media/sessions/"+id+":stop", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// firstEvent reads the first line of a media session's REST event stream.
func firstEvent(t *testing.T, base, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/media/sessions/"+id+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil && err != io.EOF {
		t.Fatalf("events of %s: %v", id, err)
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(line))
}

// TestSessionCallsReachTheirEdge: with two edges behind one gateway, the
// REST calls on a media session (its event stream, Stop) reach the edge
// that holds the session every time, whichever edge that is, rather than
// whichever edge round-robin picks (which answered "no such session" about
// every other call). A REST play that reaches an edge which redirects is
// served at the edge it names.
func TestSessionCallsReachTheirEdge(t *testing.T) {
	c := newCluster(t)
	edges := []string{c.Start(allRoles...).Addr(), c.Start(allRoles...).Addr()}
	gw, err := gateway.New(context.Background(), gateway.Config{Etcd: c.Etcd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	tp, err := express.NewTestPattern(express.TestPatternOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()

	for i := range 10 {
		// Mostly on the second edge (B), some on the first.
		addr := edges[1]
		if i%4 == 3 {
			addr = edges[0]
		}
		id := publishAt(t, c, addr, fmt.Sprintf("r%d", i), tp)
		for j := range 6 {
			if got := firstEvent(t, srv.URL, id); !strings.HasPrefix(got, "200 ") || !strings.Contains(got, "STATE_CONNECTING") {
				t.Fatalf("session %d (edge %s), events call %d: %s, want 200 and the CONNECTING state", i, addr, j, got)
			}
		}
		if status, body := stop(t, srv.URL, id); status != http.StatusOK {
			t.Fatalf("stop session %d (edge %s): %d %s, want 200", i, addr, status, body)
		}
		// Stopped at its edge: gone for good, from whichever edge's view.
		if got := firstEvent(t, srv.URL, id); !strings.Contains(got, "1002083") {
			t.Fatalf("events of stopped session %d: %s, want 1002083", i, got)
		}
	}
	// REST Play of a stream whose origin is B, from the origin (OnlyRTC):
	// the edge the gateway places the play on may be A, which redirects to
	// B's internal address; the gateway follows it, so every play gets a
	// session (never a redirect a REST client cannot follow) that its
	// session calls then reach.
	publishAt(t, c, edges[1], "live", tp)
	for i := range 8 {
		body := fmt.Sprintf(`{"app_id":%d,"stream_id":"live","user_id":"p%d","token":%q,"sdp_offer":%q,"resource_mode":"RESOURCE_MODE_ONLY_RTC"}`,
			testcluster.AppID, i, c.Token(fmt.Sprintf("p%d", i), nil), offer(t, nil))
		resp, err := http.Post(srv.URL+"/v1/media/play", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var play struct {
			SessionID    string `json:"session_id"`
			RedirectAddr string `json:"redirect_addr"`
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(out, &play); err != nil || resp.StatusCode != http.StatusOK || play.SessionID == "" || play.RedirectAddr != "" {
			t.Fatalf("play %d: %d %s, want 200 with a session and no redirect", i, resp.StatusCode, out)
		}
		if got := firstEvent(t, srv.URL, play.SessionID); !strings.HasPrefix(got, "200 ") {
			t.Fatalf("play %d events: %s, want 200", i, got)
		}
		if status, body := stop(t, srv.URL, play.SessionID); status != http.StatusOK {
			t.Fatalf("stop play %d: %d %s, want 200", i, status, body)
		}
	}
}
