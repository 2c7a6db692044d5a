package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/onair-dev/onair/internal/testkit"
	"github.com/onair-dev/onair/internal/testpki"
	"github.com/onair-dev/onair/internal/testproc"
	roomv1 "github.com/onair-dev/onair/proto/onair/room/v1"
)

// startNATS runs n `onair nats` processes routed to each other as one
// cluster, and waits until each takes a client. Their certificate, key
// and CA come from env (ONAIR_TLS_*), as the roles' do; clients must
// present a certificate of the CA (--tls-verify-clients).
func startNATS(t *testing.T, bin string, n int, env []string, ca *testpki.CA, f files) []*proc {
	t.Helper()
	var ps []*proc
	startAll := func() []*testproc.Proc {
		clientAddrs, routeURLs := make([]string, n), make([]string, n)
		clusterAddrs := make([]string, n)
		for i := range n {
			clientAddrs[i], clusterAddrs[i] = testproc.FreeAddr(t), testproc.FreeAddr(t)
			routeURLs[i] = "nats-route://" + clusterAddrs[i]
		}
		ps = nil
		for i := range n {
			name := fmt.Sprintf("nats-%d", i)
			p := start(t, bin, "nats", []string{"--name", name, "--client-addr", clientAddrs[i], "--cluster-addr", clusterAddrs[i],
				"--routes", strings.Join(routeURLs, ","), "--tls-verify-clients"}, env)
			p.name, p.clientURL = name, "tls://"+clientAddrs[i]
			ps = append(ps, p)
		}
		return procsOf(ps)
	}
	testproc.StartOnFreeAddrs(t, startAll, func() bool {
		for _, p := range ps {
			nc, err := natsConnect(p.clientURL, natsClientTLS(t, f, ca))
			if err != nil {
				return false
			}
			nc.Close()
		}
		return true
	})
	return ps
}

// natsClientTLS is what a room replica presents to NATS: the CA and the
// processes' certificate.
func natsClientTLS(t *testing.T, f files, ca *testpki.CA) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}}
}

// natsConnect makes one connection attempt as the user the servers know,
// over TLS with tlsConfig (nil: plaintext), and a round trip.
func natsConnect(url string, tlsConfig *tls.Config) (*nats.Conn, error) {
	opts := []nats.Option{nats.UserInfo("onair", "tls-test-nats-password"), nats.Timeout(2 * time.Second), nats.NoReconnect()}
	if tlsConfig != nil {
		opts = append(opts, nats.Secure(tlsConfig))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, err
	}
	if err := nc.FlushTimeout(2 * time.Second); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// roomMessagesFlow logs alice into room on the replica at addrA and bob on
// the one at addrB, and checks that what alice broadcasts reaches bob: the
// replicas are on different NATS servers, so every message goes from
// replica A to its server, over the route to B's server, and to replica B.
func roomMessagesFlow(t *testing.T, addrA, addrB string, creds credentials.TransportCredentials, room string) {
	t.Helper()
	client := func(addr string) roomv1.RoomServiceClient {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return roomv1.NewRoomServiceClient(cc)
	}
	a, b := client(addrA), client(addrB)
	alice, bob := loginWith(t, a, room, "alice"), loginWith(t, b, room, "bob")

	ctx, cancel := context.WithCancel(context.Background())
	sub, err := b.SubscribeRoomEvents(ctx, &roomv1.SubscribeRoomEventsRequest{SessionId: bob})
	if err != nil {
		t.Fatal(err)
	}
	open := make(chan struct{})
	got := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		first := true
		for {
			ev, err := sub.Recv()
			if err != nil {
				return
			}
			if first {
				close(open)
				first = false
			}
			if m := ev.GetMessage(); m != nil {
				select {
				case got <- m.GetFromUser().GetUserId() + ": " + m.GetContent():
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-open:
	case <-time.After(30 * time.Second):
		t.Fatal("bob's event stream did not open")
	}

	send := func(msg string) error {
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		defer scancel()
		_, err := a.SendRoomMessage(sctx, &roomv1.SendRoomMessageRequest{SessionId: alice,
			Kind: roomv1.MessageKind_MESSAGE_KIND_BROADCAST, Content: msg})
		return err
	}
	// Bob's interest reaches alice's NATS server over the route a moment
	// after his stream opens (and a replica may still be connecting to
	// NATS): messages accepted before then are not his. Send until one
	// arrives.
	i := 0
	testkit.Eventually(t, "a room message from replica A to replica B", func() bool {
		i++
		msg := fmt.Sprintf("first-%d", i)
		if err := send(msg); err != nil {
			t.Logf("send %s: %v", msg, err)
			time.Sleep(200 * time.Millisecond)
			return false
		}
		deadline := time.After(500 * time.Millisecond)
		for {
			select {
			case m := <-got:
				if m == "alice: "+msg {
					return true
				}
			case <-deadline:
				return false
			}
		}
	})
	// Now every message gets through, in order.
	var want []string
	for i := range 5 {
		msg := fmt.Sprintf("m%d", i)
		// The room's rate limit (10 per second on a replica).
		time.Sleep(150 * time.Millisecond)
		if err := send(msg); err != nil {
			t.Fatalf("send %s: %v", msg, err)
		}
		want = append(want, "alice: "+msg)
	}
	for _, w := range want {
		for m := ""; m != w; {
			select {
			case m = <-got:
				if m != w && !strings.HasPrefix(m, "alice: first-") {
					t.Fatalf("bob got %q, want %q", m, w)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("bob did not get %q", w)
			}
		}
	}
}
