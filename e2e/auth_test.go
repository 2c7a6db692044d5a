package e2e

import (
	"context"
	"encoding/base64"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/testcluster"

	"net/http"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/discovery"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	"github.com/onair-dev/onair/token04"
)

// Two auth replicas: stopping one leaves calls succeeding through the other.
func TestAuthReplicaFailover(t *testing.T) {
	c := newCluster(t)
	a1 := c.Start(discovery.Auth)
	a2 := c.Start(discovery.Auth)
	client := authv1.NewAuthServiceClient(c.Dial(discovery.Auth, false))
	tok := c.Token("alice", nil)
	ctx := context.Background()
	verify := func() error {
		_, err := client.VerifyToken(ctx, &authv1.VerifyTokenRequest{AppId: testcluster.AppID, UserId: "alice", Token: tok})
		return err
	}
	eventually(t, "both replicas registered", func() bool {
		inst, _ := discovery.Instances(ctx, c.Etcd, discovery.Auth)
		return len(inst) == 2
	})
	for i := 0; i < 20; i++ {
		if err := verify(); err != nil {
			t.Fatalf("call %d with two replicas: %v", i, err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a1.Stop(sctx, time.Second); err != nil {
		t.Fatal(err)
	}
	inst, err := discovery.Instances(ctx, c.Etcd, discovery.Auth)
	_, survivor := inst[a2.Addr()]
	if err != nil || len(inst) != 1 || !survivor {
		t.Fatalf("after stop, registered = %v (%v), want only %s", inst, err, a2.Addr())
	}
	for i := 0; i < 50; i++ {
		if err := verify(); err != nil {
			t.Fatalf("call %d after one replica stopped: %v", i, err)
		}
	}
}

// A replica that dies without deregistering drops out when its lease expires.
func TestAuthReplicaCrashLeavesRotation(t *testing.T) {
	c := newCluster(t)
	a1 := c.Start(discovery.Auth)
	c.Start(discovery.Auth)
	ctx := context.Background()
	a1.Kill()
	eventually(t, "the dead replica's lease to expire", func() bool {
		inst, _ := discovery.Instances(ctx, c.Etcd, discovery.Auth)
		_, stillThere := inst[a1.Addr()]
		return len(inst) == 1 && !stillThere
	})
	client := authv1.NewAuthServiceClient(c.Dial(discovery.Auth, false))
	for i := 0; i < 20; i++ {
		if _, err := client.VerifyToken(ctx, &authv1.VerifyTokenRequest{AppId: testcluster.AppID, UserId: "u", Token: c.Token("u", nil)}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// A token minted by `onair token` verifies through gRPC and REST; bad ones
// get their codes on both.
func TestTokenFromCLIVerifiesOverGRPCAndREST(t *testing.T) {
	c := newCluster(t)
	c.Start(discovery.Auth)
	out, err := exec.Command("go", "run", "../cmd/onair", "token", "--app-id", "1234567890",
		"--app-secret", testcluster.Secret, "--user-id", "bob", "--room-id", "r1").CombinedOutput()
	if err != nil {
		t.Fatalf("onair token: %v\n%s", err, out)
	}
	cliToken := strings.TrimSpace(string(out))
	ctx := context.Background()
	web := restGateway(t, c)
	client := authv1.NewAuthServiceClient(c.Dial(discovery.Auth, false))

	expired, _ := token04.Mint(testcluster.AppID, "bob", testcluster.Secret, time.Second, &token04.Options{Now: func() time.Time { return time.Now().Add(-time.Hour) }})
	raw, _ := base64.StdEncoding.DecodeString(cliToken[2:])
	raw[len(raw)-5] ^= 0x01
	tampered := "04" + base64.StdEncoding.EncodeToString(raw)
	tests := []struct {
		name   string
		appID  uint32
		userID string
		token  string
		want   errcode.Code
		status int
	}{
		{"valid", testcluster.AppID, "bob", cliToken, 0, 200},
		{"no token", testcluster.AppID, "bob", "", errcode.NoToken, 401},
		{"expired", testcluster.AppID, "bob", expired, errcode.TokenExpired, 401},
		{"tampered", testcluster.AppID, "bob", tampered, errcode.LoginAuthFailed, 401},
		{"wrong app", testcluster.AppID, "bob", mustMint(t, 42, "bob", testcluster.Secret), errcode.TokenAppIDMismatch, 401},
		{"wrong user", testcluster.AppID, "carol", cliToken, errcode.TokenUserIDMismatch, 401},
		{"wrong version", testcluster.AppID, "bob", "03" + cliToken[2:], errcode.TokenWrongVersion, 401},
		{"wrong room", testcluster.AppID, "bob", cliToken, errcode.LoginAuthFailed, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &authv1.VerifyTokenRequest{AppId: tt.appID, UserId: tt.userID, Token: tt.token}
			if tt.name == "wrong room" {
				req.Action, req.RoomId = authv1.Action_ACTION_LOGIN, "r2"
			}
			resp, err := client.VerifyToken(ctx, req)
			if got := errcode.Of(err); got != tt.want {
				t.Fatalf("gRPC code = %d (%v), want %d", got, err, tt.want)
			}
			if err == nil && (resp.GetUserId() != "bob" || resp.GetPrivilege().GetRoomId() != "r1") {
				t.Errorf("claims = %v", resp)
			}
			body := `{"app_id":` + itoa(tt.appID) + `,"user_id":"` + tt.userID + `","token":"` + tt.token + `","action":"` + req.Action.String() + `","room_id":"` + req.RoomId + `"}`
			hresp, err := http.Post(web.URL+"/v1/tokens:verify", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer hresp.Body.Close()
			var got struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				UserID  string `json:"user_id"`
			}
			decodeJSON(t, hresp, &got)
			if hresp.StatusCode != tt.status || errcode.Code(got.Code) != tt.want {
				t.Errorf("REST = %d %+v, want %d code %d", hresp.StatusCode, got, tt.status, tt.want)
			}
			if tt.want != 0 && got.Message == "" {
				t.Error("REST error without a message")
			}
		})
	}
}

// Admin RPCs are closed to token holders and open with the admin key.
func TestAdminRPCsNeedAdminKey(t *testing.T) {
	c := newCluster(t)
	c.Start(discovery.Auth)
	web := restGateway(t, c)
	post := func(key string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", web.URL+"/v1/apps", strings.NewReader(`{"name":"x"}`))
		req.Header.Set("Authorization", "Bearer "+c.Token("u", nil))
		if key != "" {
			req.Header.Set("X-Onair-Admin-Key", key)
		}
		req.Header.Set("Grpc-Metadata-X-Onair-Internal-Key", testcluster.InternalKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		decodeJSON(t, resp, &m)
		return resp.StatusCode, m
	}
	if code, body := post(""); code != 403 || body["code"].(float64) != float64(errcode.AdminOnly) {
		t.Fatalf("without admin key: %d %v", code, body)
	}
	code, body := post("admin")
	if code != 200 {
		t.Fatalf("with admin key: %d %v", code, body)
	}
	app := body["app"].(map[string]any)
	if len(app["server_secret"].(string)) != 32 || app["app_id"].(float64) == 0 {
		t.Fatalf("created app = %v", app)
	}
}

// A service with no instance running answers 503 at once, not after the
// client's timeout.
func TestMissingServiceIs503(t *testing.T) {
	c := newCluster(t)
	c.Start(discovery.Auth) // no media edge
	web := restGateway(t, c)
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Post(web.URL+"/v1/media/play", "application/json", strings.NewReader(`{"app_id":1,"stream_id":"s"}`))
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	decodeJSON(t, resp, &body)
	if resp.StatusCode != http.StatusServiceUnavailable || errcode.Code(body.Code) != errcode.ServiceUnavailable {
		t.Errorf("got %d code %d, want 503 code %d", resp.StatusCode, body.Code, errcode.ServiceUnavailable)
	}
	// In our words, naming the service, not gRPC's balancer internals.
	if body.Message != "media service unavailable: no instance registered" {
		t.Errorf("message %q, want one that names the media service", body.Message)
	}
}
