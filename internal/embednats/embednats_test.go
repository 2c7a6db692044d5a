package embednats_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/onair-dev/onair/internal/embednats"
	"github.com/onair-dev/onair/internal/testkit"
	"github.com/onair-dev/onair/internal/testpki"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// certOf serves one fixed certificate.
func certOf(t *testing.T, l *testpki.Leaf) func() *tls.Certificate {
	c := l.TLS(t)
	return func() *tls.Certificate { return &c }
}

func TestStartRejectsIncompleteTLS(t *testing.T) {
	ca := testpki.NewCA(t, "CA")
	cert := certOf(t, ca.Issue(t, "127.0.0.1"))
	for _, tc := range []struct {
		name    string
		cfg     embednats.Config
		wantErr string
	}{
		{"no certificate", embednats.Config{ClientAddr: "127.0.0.1:0", TLS: &embednats.TLS{CAs: ca.Pool()}}, "no certificate"},
		{"client verification without CAs", embednats.Config{ClientAddr: "127.0.0.1:0",
			TLS: &embednats.TLS{Certificate: cert, VerifyClients: true}}, "needs the CAs"},
		{"routes without CAs", embednats.Config{ClientAddr: "127.0.0.1:0", ClusterAddr: "127.0.0.1:0",
			TLS: &embednats.TLS{Certificate: cert}}, "routes need the CAs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := embednats.Start(tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// connect makes one connection attempt (no retries) with opts.
func connect(url string, opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(url, append([]nats.Option{nats.Timeout(5 * time.Second), nats.NoReconnect()}, opts...)...)
}

// The client listener over TLS: who gets in.
func TestClientTLS(t *testing.T) {
	ca, other := testpki.NewCA(t, "CA"), testpki.NewCA(t, "other CA")
	serverCert := ca.Issue(t, "127.0.0.1")
	clientCert, strangerCert := ca.Issue(t, "room"), other.Issue(t, "room")
	withCert := func(l *testpki.Leaf) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{l.TLS(t)}}
	}
	for _, verify := range []bool{false, true} {
		t.Run(fmt.Sprintf("verify clients %v", verify), func(t *testing.T) {
			s, err := embednats.Start(embednats.Config{ClientAddr: "127.0.0.1:0", Logger: quiet,
				TLS: &embednats.TLS{Certificate: certOf(t, serverCert), CAs: ca.Pool(), VerifyClients: verify}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			if !strings.HasPrefix(s.URL(), "tls://") {
				t.Fatalf("URL %s, want tls://", s.URL())
			}
			hostPort := strings.TrimPrefix(s.URL(), "tls://")
			for _, c := range []struct {
				name string
				url  string
				tls  *tls.Config // nil: plaintext
				want bool
			}{
				{"plaintext", "nats://" + hostPort, nil, false},
				{"TLS not trusting the CA", s.URL(), &tls.Config{}, false},
				{"TLS with the CA, no certificate", s.URL(), &tls.Config{RootCAs: ca.Pool()}, !verify},
				{"TLS with the CA and a certificate of the CA", s.URL(), withCert(clientCert), true},
				{"TLS with the CA and a certificate of another CA", s.URL(), withCert(strangerCert), !verify},
			} {
				t.Run(c.name, func(t *testing.T) {
					var opts []nats.Option
					if c.tls != nil {
						opts = append(opts, nats.Secure(c.tls))
					}
					nc, err := connect(c.url, opts...)
					if err == nil {
						// A refused client certificate can show only after
						// the handshake: a round trip tells.
						err = nc.Flush()
						nc.Close()
					}
					if got := err == nil; got != c.want {
						t.Fatalf("connected %v (err %v), want %v", got, err, c.want)
					}
				})
			}
		})
	}
}

// A renewed certificate reaches new connections without a restart.
func TestClientTLSRenewal(t *testing.T) {
	ca := testpki.NewCA(t, "CA")
	var cur atomic.Pointer[tls.Certificate]
	first, next := ca.Issue(t, "127.0.0.1"), ca.Issue(t, "127.0.0.1")
	c := first.TLS(t)
	cur.Store(&c)
	s, err := embednats.Start(embednats.Config{ClientAddr: "127.0.0.1:0", Logger: quiet,
		TLS: &embednats.TLS{Certificate: cur.Load}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for _, want := range []*testpki.Leaf{first, next} {
		c := want.TLS(t)
		cur.Store(&c)
		nc, err := connect(s.URL(), nats.Secure(&tls.Config{RootCAs: ca.Pool()}))
		if err != nil {
			t.Fatal(err)
		}
		st, err := nc.TLSConnectionState()
		nc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := st.PeerCertificates[0].SerialNumber; got.Cmp(want.Cert.SerialNumber) != 0 {
			t.Fatalf("served serial %s, want %s", got, want.Cert.SerialNumber)
		}
	}
}

// Two members route to each other over mutual TLS and carry messages; a
// member whose certificate another CA signed is kept out of the cluster.
func TestClusterTLS(t *testing.T) {
	ca, other := testpki.NewCA(t, "CA"), testpki.NewCA(t, "other CA")
	member := func(t *testing.T, name string, cert *testpki.Leaf, routes ...string) *embednats.Server {
		t.Helper()
		s, err := embednats.Start(embednats.Config{Name: name, ClientAddr: "127.0.0.1:0", ClusterAddr: "127.0.0.1:0",
			Routes: routes, Logger: quiet, TLS: &embednats.TLS{Certificate: certOf(t, cert), CAs: ca.Pool()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	route := func(s *embednats.Server) string { return "nats-route://" + s.ClusterAddr().String() }
	clientTLS := nats.Secure(&tls.Config{RootCAs: ca.Pool()})

	t.Run("members of one CA", func(t *testing.T) {
		a := member(t, "a", ca.Issue(t, "127.0.0.1"))
		b := member(t, "b", ca.Issue(t, "127.0.0.1"), route(a))
		testkit.Eventually(t, "the route", func() bool { return a.NumRoutes() > 0 && b.NumRoutes() > 0 })
		sub, err := connect(b.URL(), clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		ch := make(chan *nats.Msg, 16)
		if _, err := sub.ChanSubscribe("room.x", ch); err != nil {
			t.Fatal(err)
		}
		if err := sub.Flush(); err != nil {
			t.Fatal(err)
		}
		pub, err := connect(a.URL(), clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		// The subscription reaches a over the route a moment after b has
		// it: publish until one arrives.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if err := pub.Publish("room.x", []byte("hello")); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-ch:
				if string(m.Data) != "hello" {
					t.Fatalf("got %q", m.Data)
				}
				return
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatal("no message crossed the route")
			}
		}
	})

	t.Run("member of another CA", func(t *testing.T) {
		a := member(t, "a", ca.Issue(t, "127.0.0.1"))
		// The stranger trusts the cluster's CA, but its own certificate
		// is another CA's: a refuses the route it dials, and it refuses
		// a's certificate on a route a would dial to it.
		s := member(t, "stranger", other.Issue(t, "127.0.0.1"), route(a))
		time.Sleep(2 * time.Second) // long enough for several attempts
		if n := a.NumRoutes() + s.NumRoutes(); n != 0 {
			t.Fatalf("%d routes with a member of another CA", n)
		}
	})

	t.Run("route URL naming a host the certificate does not", func(t *testing.T) {
		a := member(t, "a", ca.Issue(t, "onair-nats.example"))
		// b dials 127.0.0.1, which a's certificate does not name.
		b := member(t, "b", ca.Issue(t, "127.0.0.1"), route(a))
		time.Sleep(2 * time.Second)
		if n := a.NumRoutes() + b.NumRoutes(); n != 0 {
			t.Fatalf("%d routes although the certificate does not name the route's host", n)
		}
	})
}
