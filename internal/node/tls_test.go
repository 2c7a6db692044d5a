package node

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/onair-dev/onair/internal/testpki"
)

// A discovery channel's authority is the service's etcd prefix; the peer's
// certificate is checked against the dialed IP, or the fixed server name.
func TestPeerCredentials(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	for _, tc := range []struct {
		name       string
		certNames  []string
		serverName string
		ok         bool
	}{
		{"certificate names the IP", []string{"127.0.0.1"}, "", true},
		{"certificate names a fixed name, given", []string{"onair-internal"}, "onair-internal", true},
		{"certificate names a fixed name, not given", []string{"onair-internal"}, "", false},
		{"certificate names another fixed name", []string{"onair-internal"}, "other", false},
		{"certificate names another IP", []string{"127.0.0.2"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{ca.Issue(t, tc.certNames...).TLS(t)}})))
			healthpb.RegisterHealthServer(srv, health.NewServer())
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(lis)
			defer srv.Stop()

			// The channel's authority is a service name; the connection
			// goes to the instance's address, as discovery's do.
			dial := func(ctx context.Context, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", lis.Addr().String())
			}
			cc, err := grpc.NewClient("passthrough:///onair-services-auth", grpc.WithContextDialer(dial),
				grpc.WithTransportCredentials(PeerCredentials(&tls.Config{RootCAs: ca.Pool(), ServerName: tc.serverName})))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			if (err == nil) != tc.ok {
				t.Fatalf("health check: %v, want success %v", err, tc.ok)
			}
		})
	}
}
