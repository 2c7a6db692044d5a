package transport

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/onair-dev/onair/errcode"
	"github.com/onair-dev/onair/internal/embedetcd"
	"github.com/onair-dev/onair/internal/supervise"
	"github.com/onair-dev/onair/internal/testkit"
	"github.com/onair-dev/onair/internal/testpki"
	"github.com/onair-dev/onair/internal/testproc"
	authv1 "github.com/onair-dev/onair/proto/onair/auth/v1"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
	"github.com/onair-dev/onair/sdk/express"
	"github.com/onair-dev/onair/services/auth"
	"github.com/onair-dev/onair/token04"
)

const (
	appID     uint32 = 1234567890
	appSecret        = "0123456789abcdef0123456789abcdef"
	adminKey         = "tls-test-admin-key"
)

// proc is one onair process of the test.
type proc struct {
	*testproc.Proc
	role, grpcAddr, httpAddr string
	// name and clientURL are an `onair nats` server's.
	name, clientURL string
}

// procsOf is what testproc.StartOnFreeAddrs is given of ps.
func procsOf(ps []*proc) []*testproc.Proc {
	var out []*testproc.Proc
	for _, p := range ps {
		out = append(out, p.Proc)
	}
	return out
}

// files are the PEM files the processes are given, and where things are.
type files struct {
	ca, cert, key                 string // served on every listener; ca verifies the peers
	etcdCert, etcdKey             string // etcd's server pair
	etcdClientCert, etcdClientKey string // what the processes present to etcd
	etcdClientLeaf                *testpki.Leaf

	etcdEndpoint, gateway, roomGRPC string
}

// TestTLS runs etcd with client TLS (client certificates required), two
// `onair nats` servers (TLS clients with certificates, mutual TLS on the
// route between them), and the auth, stream, two room and the media roles
// and the gateway as processes whose every listener serves TLS, then
// checks what a client and an operator would: gRPC and REST work over TLS
// with the CA and not without it, room messages go from one room replica
// to the other over NATS with TLS, etcd and NATS refuse plaintext, and a
// renewed certificate is served to new connections without a restart.
func TestTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs onair processes")
	}
	bin := testproc.BuildOnair(t)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "OnAir test CA")
	f := files{
		ca: ca.WriteCA(t, filepath.Join(dir, "ca.crt")), cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key"),
		etcdCert: filepath.Join(dir, "etcd.crt"), etcdKey: filepath.Join(dir, "etcd.key"),
		etcdClientCert: filepath.Join(dir, "etcd-client.crt"), etcdClientKey: filepath.Join(dir, "etcd-client.key")}
	ca.Issue(t, "127.0.0.1").Write(t, f.cert, f.key)
	ca.Issue(t, "127.0.0.1").Write(t, f.etcdCert, f.etcdKey)
	f.etcdClientLeaf = ca.Issue(t, "onair")
	f.etcdClientLeaf.Write(t, f.etcdClientCert, f.etcdClientKey)

	e, err := embedetcd.Start(context.Background(), embedetcd.Config{Dir: filepath.Join(dir, "etcd"),
		ClientTLS: embedetcd.TLSFiles{CertFile: f.etcdCert, KeyFile: f.etcdKey, TrustedCAFile: f.ca}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	f.etcdEndpoint = e.Endpoints()[0]
	if !strings.HasPrefix(f.etcdEndpoint, "https://") {
		t.Fatalf("etcd serves clients on %s, want https://", f.etcdEndpoint)
	}

	// Paths and keys through the environment, as the manifests give them.
	env := []string{
		"ONAIR_TLS_CERT=" + f.cert, "ONAIR_TLS_KEY=" + f.key, "ONAIR_TLS_CA=" + f.ca,
		"ONAIR_ETCD_ENDPOINTS=" + f.etcdEndpoint, "ONAIR_ETCD_CA=" + f.ca,
		"ONAIR_ETCD_CERT=" + f.etcdClientCert, "ONAIR_ETCD_KEY=" + f.etcdClientKey,
		"ONAIR_INTERNAL_KEY=tls-test-internal-key", "ONAIR_ADMIN_KEY=" + adminKey,
		"ONAIR_LEASE_TTL=2s", "ONAIR_DRAIN_TIMEOUT=1s", "ONAIR_LOG_LEVEL=warn",
	}
	// NATS, as in production: every member serves TLS to clients and
	// wants their certificates, and routes to the others over mutual TLS.
	// Each room replica reaches a different member, so room messages
	// between them cross a route.
	env = append(env, "ONAIR_NATS_USER=onair", "ONAIR_NATS_PASSWORD=tls-test-nats-password")
	natsServers := startNATS(t, bin, 2, env, ca, f)

	var procs, rooms []*proc
	testproc.StartOnFreeAddrs(t, func() []*testproc.Proc {
		procs, rooms = nil, nil
		for _, role := range []string{"auth", "stream", "room", "room", "media"} {
			args := []string{"--grpc-addr", testproc.FreeAddr(t), "--http-addr", testproc.FreeAddr(t)}
			penv := env
			switch role {
			case "media":
				args = append(args, "--media-udp-port", "0", "--public-ip", "127.0.0.1")
			case "room":
				penv = append(slices.Clip(env), "ONAIR_NATS_URL="+natsServers[len(rooms)].clientURL, "ONAIR_NATS_CA="+f.ca,
					"ONAIR_NATS_CERT="+f.cert, "ONAIR_NATS_KEY="+f.key)
			}
			p := start(t, bin, role, args, penv)
			procs = append(procs, p)
			if role == "room" {
				rooms = append(rooms, p)
			}
		}
		procs = append(procs, start(t, bin, "gateway", []string{"--http-addr", testproc.FreeAddr(t)}, env))
		return procsOf(procs)
	}, func() bool {
		for _, p := range procs {
			if !ready(p, ca) {
				return false
			}
		}
		return true
	})
	f.gateway = procs[len(procs)-1].httpAddr
	f.roomGRPC = rooms[0].grpcAddr
	seedApp(t, procs[0].grpcAddr, ca)

	tlsCreds := credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()})
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}

	t.Run("gRPC login over TLS", func(t *testing.T) {
		// The room replica verifies the token with auth: a call between
		// services, over TLS too.
		login(t, f.roomGRPC, tlsCreds, "room-grpc", "grpc-user")
	})

	t.Run("the Go SDK over TLS", func(t *testing.T) {
		// EngineProfile.TLS: an engine logs in over TLS; without it the
		// same deployment refuses the engine with ConnectFailed.
		for _, withTLS := range []bool{true, false} {
			profile := express.EngineProfile{AppID: appID, Server: f.roomGRPC}
			if withTLS {
				profile.TLS = &tls.Config{RootCAs: ca.Pool()}
			}
			e, err := express.CreateEngine(profile, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = e.LoginRoom(ctx, "room-sdk", express.User{UserID: "sdk-user", UserName: "sdk-user"},
				express.RoomConfig{Token: mint(t, "sdk-user")})
			cancel()
			switch {
			case withTLS && err != nil:
				t.Errorf("LoginRoom with EngineProfile.TLS: %v", err)
			case !withTLS && express.ErrorCode(err) != int(errcode.ConnectFailed):
				t.Errorf("LoginRoom in plaintext against TLS: %v, want code %d", err, errcode.ConnectFailed)
			}
			e.DestroyEngine(nil)
		}
	})

	t.Run("plaintext gRPC is refused", func(t *testing.T) {
		for _, p := range procs {
			if p.grpcAddr == "" {
				continue
			}
			if err := health(p.grpcAddr, insecure.NewCredentials()); err == nil {
				t.Errorf("%s: a plaintext health check on %s succeeded", p.role, p.grpcAddr)
			}
			// TLS with no trust in the test CA fails too.
			if err := health(p.grpcAddr, credentials.NewTLS(&tls.Config{})); err == nil {
				t.Errorf("%s: a TLS client that does not trust the CA got through", p.role)
			}
		}
	})

	t.Run("REST over HTTPS", func(t *testing.T) {
		tok := mint(t, "rest-user")
		body := fmt.Sprintf(`{"app_id":%d,"user":{"user_id":"rest-user","user_name":"rest-user"},"token":%q,"config":{"is_user_status_notify":true}}`, appID, tok)
		resp, err := https.Post("https://"+f.gateway+"/v1/rooms/room-rest:login", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out struct {
			SessionID string `json:"session_id"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || out.SessionID == "" {
			t.Fatalf("REST login over HTTPS: %s %s", resp.Status, b)
		}
		if resp.TLS == nil {
			t.Fatal("the response did not come over TLS")
		}
		plain := &http.Client{Timeout: 5 * time.Second}
		if resp, err := plain.Get("http://" + f.gateway + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Error("the gateway answered plain HTTP")
			}
		}
	})

	t.Run("roles' metrics and health over HTTPS", func(t *testing.T) {
		for _, p := range procs {
			if p.grpcAddr == "" {
				continue
			}
			for _, path := range []string{"/healthz", "/metrics"} {
				resp, err := https.Get("https://" + p.httpAddr + path)
				if err != nil {
					t.Errorf("%s %s: %v", p.role, path, err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s %s: %s", p.role, path, resp.Status)
				}
			}
		}
	})

	t.Run("WHEP reaches the media edge over TLS", func(t *testing.T) {
		// The edge, not the gateway, judges the token: a 401 means the
		// gateway's connection to the edge works (a broken one is a 503).
		offer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\na=recvonly\r\n"
		req, _ := http.NewRequest("POST", fmt.Sprintf("https://%s/whep/%d/no-such-stream", f.gateway, appID), strings.NewReader(offer))
		req.Header.Set("Content-Type", "application/sdp")
		req.Header.Set("Authorization", "Bearer 04not-a-token")
		resp, err := https.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("WHEP with a bad token: %s %s, want 401 from the edge", resp.Status, b)
		}
	})

	t.Run("etcd only over TLS with a client certificate", func(t *testing.T) {
		port := strings.TrimPrefix(f.etcdEndpoint, "https://")
		if err := etcdGet("http://"+port, nil); err == nil {
			t.Error("a plaintext etcd client read from etcd")
		}
		if err := etcdGet(f.etcdEndpoint, &tls.Config{RootCAs: ca.Pool()}); err == nil {
			t.Error("an etcd client without a client certificate read from etcd")
		}
		cert := f.etcdClientLeaf.TLS(t)
		if err := etcdGet(f.etcdEndpoint, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}}); err != nil {
			t.Errorf("an etcd client with the CA and a client certificate: %v", err)
		}
	})

	t.Run("room messages between replicas over NATS with TLS", func(t *testing.T) {
		roomMessagesFlow(t, rooms[0].grpcAddr, rooms[1].grpcAddr, tlsCreds, "room-nats-tls")
	})

	t.Run("NATS only over TLS with a client certificate", func(t *testing.T) {
		for _, n := range natsServers {
			plain := "nats://" + strings.TrimPrefix(n.clientURL, "tls://")
			if nc, err := natsConnect(plain, nil); err == nil {
				nc.Close()
				t.Errorf("%s: a plaintext client connected", n.name)
			}
			if nc, err := natsConnect(n.clientURL, &tls.Config{}); err == nil {
				nc.Close()
				t.Errorf("%s: a TLS client that does not trust the CA connected", n.name)
			}
			if nc, err := natsConnect(n.clientURL, &tls.Config{RootCAs: ca.Pool()}); err == nil {
				nc.Close()
				t.Errorf("%s: a TLS client without a certificate connected", n.name)
			}
			nc, err := natsConnect(n.clientURL, natsClientTLS(t, f, ca))
			if err != nil {
				t.Errorf("%s: a TLS client with the CA and a certificate: %v", n.name, err)
				continue
			}
			nc.Close()
		}
	})

	t.Run("renewed certificate served without a restart", func(t *testing.T) {
		next := ca.Issue(t, "127.0.0.1")
		next.Write(t, f.cert, f.key)
		want := next.Cert.SerialNumber
		addrs := map[string]string{"gateway https": f.gateway}
		for _, p := range procs {
			if p.grpcAddr != "" {
				addrs[p.role+" grpc"], addrs[p.role+" https"] = p.grpcAddr, p.httpAddr
			}
		}
		for what, addr := range addrs {
			testkit.Eventually(t, what+" serves the renewed certificate", func() bool {
				got, err := serial(addr, ca)
				return err == nil && got.Cmp(want) == 0
			})
		}
		for _, n := range natsServers {
			testkit.Eventually(t, n.name+" serves the renewed certificate", func() bool {
				nc, err := natsConnect(n.clientURL, natsClientTLS(t, f, ca))
				if err != nil {
					return false
				}
				defer nc.Close()
				st, err := nc.TLSConnectionState()
				return err == nil && st.PeerCertificates[0].SerialNumber.Cmp(want) == 0
			})
		}
		for _, p := range append(procs, natsServers...) {
			if !p.Alive() {
				t.Fatalf("%s exited", p.role)
			}
		}
		// New connections work end to end with the new certificate.
		login(t, f.roomGRPC, tlsCreds, "room-renewed", "renewed-user")
	})
}

// start starts `onair role args` with env added to an environment cleared
// of ONAIR_* variables; the test's cleanup stops it and, if the test
// failed, prints its log.
func start(t *testing.T, bin, role string, args, env []string) *proc {
	t.Helper()
	p := &proc{role: role}
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "--grpc-addr":
			p.grpcAddr = args[i+1]
		case "--http-addr":
			p.httpAddr = args[i+1]
		}
	}
	cmd := exec.Command(bin, append([]string{role}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ONAIR_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	p.Proc = testproc.Start(t, cmd)
	return p
}

// ready reports whether a role is SERVING over TLS, or the gateway
// answers /healthz over HTTPS.
func ready(p *proc, ca *testpki.CA) bool {
	if p.grpcAddr != "" {
		return health(p.grpcAddr, credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()})) == nil
	}
	https := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	defer https.CloseIdleConnections()
	resp, err := https.Get("https://" + p.httpAddr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// health checks the server at addr with creds; nil if it is SERVING.
func health(addr string, creds credentials.TransportCredentials) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return supervise.GRPCServing(ctx, addr, creds)
}

// seedApp creates the app with live streaming on, over TLS with the admin
// key.
func seedApp(t *testing.T, authAddr string, ca *testpki.CA) {
	t.Helper()
	cc, err := grpc.NewClient(authAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cli := authv1.NewAuthServiceClient(cc)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), auth.AdminKeyHeader, adminKey), 10*time.Second)
	defer cancel()
	if _, err := cli.CreateApp(ctx, &authv1.CreateAppRequest{Name: "tls", AppId: appID, ServerSecret: appSecret}); err != nil {
		t.Fatalf("CreateApp over TLS: %v", err)
	}
	if _, err := cli.EnableService(ctx, &authv1.EnableServiceRequest{AppId: appID,
		Service: authv1.Service_SERVICE_LIVE_STREAMING, Enabled: true}); err != nil {
		t.Fatalf("EnableService over TLS: %v", err)
	}
}

func mint(t *testing.T, user string) string {
	t.Helper()
	tok, err := token04.Mint(appID, user, appSecret, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// login logs user into room over a new connection to addr.
func login(t *testing.T, addr string, creds credentials.TransportCredentials, room, user string) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	loginWith(t, roomv1.NewRoomServiceClient(cc), room, user)
}

// loginWith logs user into room and returns the session ID.
func loginWith(t *testing.T, rooms roomv1.RoomServiceClient, room, user string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := rooms.LoginRoom(ctx, &roomv1.LoginRoomRequest{AppId: appID, RoomId: room,
		User: &roomv1.User{UserId: user, UserName: user}, Token: mint(t, user)})
	if err != nil {
		t.Fatalf("LoginRoom over TLS: %v", err)
	}
	if resp.GetSessionId() == "" {
		t.Fatal("LoginRoom over TLS: no session")
	}
	return resp.GetSessionId()
}

// etcdGet reads from etcd at endpoint with tlsConfig (nil: plaintext).
func etcdGet(endpoint string, tlsConfig *tls.Config) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: tlsConfig,
		DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/onair/services/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	if resp.Count == 0 {
		return fmt.Errorf("no service registered in etcd")
	}
	return nil
}

// serial is the serial number of the certificate a new TLS connection to
// addr is shown.
func serial(addr string, ca *testpki.CA) (*big.Int, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"h2"}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}
