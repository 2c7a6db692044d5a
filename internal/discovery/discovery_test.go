package discovery_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/onair-dev/onair/internal/discovery"
	"github.com/onair-dev/onair/internal/testkit"
)

func serveHealth(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// Calls follow what is registered: none fails fast, two share the calls,
// a closed registration drops out.
func TestDialFollowsRegistrations(t *testing.T) {
	ctx := context.Background()
	cli := testkit.Etcd(t)
	cc, err := discovery.Dial(cli, "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	call := func() (string, error) {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		var p peer.Peer
		_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
		if err != nil {
			return "", err
		}
		return p.Addr.String(), nil
	}

	start := time.Now()
	if _, err := call(); status.Code(err) != codes.Unavailable {
		t.Fatalf("with nothing registered: %v, want Unavailable", err)
	}
	if waited := time.Since(start); waited > 15*time.Second {
		t.Fatalf("the call waited for its deadline (%v) instead of failing fast", waited)
	}

	a, b := serveHealth(t), serveHealth(t)
	ra, err := discovery.Register(ctx, cli, "probe", a, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := discovery.Register(ctx, cli, "probe", b, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close(ctx)
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 2; i++ {
		if addr, err := call(); err == nil {
			seen[addr] = true
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !seen[a] || !seen[b] {
		t.Fatalf("calls reached %v, want both %s and %s", seen, a, b)
	}

	if err := ra.Close(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		addrs := map[string]bool{}
		for range 10 {
			if addr, err := call(); err == nil {
				addrs[addr] = true
			}
		}
		if len(addrs) == 1 && addrs[b] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s left, calls reach %v", a, addrs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
