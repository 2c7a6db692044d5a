package certfile_test

import (
	"crypto/tls"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onair-dev/onair/internal/certfile"
	"github.com/onair-dev/onair/internal/testpki"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestNew(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	a, b := ca.Issue(t, "127.0.0.1"), ca.Issue(t, "127.0.0.1")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aCert, aKey, bKey := write("a.crt", a.CertPEM), write("a.key", a.KeyPEM), write("b.key", b.KeyPEM)
	junk := write("junk", []byte("not PEM"))
	missing := filepath.Join(dir, "missing")

	for _, tc := range []struct {
		name, cert, key string
		wantErr         string // "" for success
	}{
		{"valid pair", aCert, aKey, ""},
		{"no files named", "", "", "both a certificate file and a key file"},
		{"no key named", aCert, "", "both a certificate file and a key file"},
		{"missing certificate", missing, aKey, "no such file"},
		{"missing key", aCert, missing, "no such file"},
		{"key of another certificate", aCert, bKey, "private key does not match public key"},
		{"certificate file not PEM", junk, aKey, "failed to find any PEM data"},
		{"key file not PEM", aCert, junk, "failed to find any PEM data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := certfile.New(certfile.Config{CertFile: tc.cert, KeyFile: tc.key, Logger: quiet})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Certificate().Leaf.SerialNumber; got.Cmp(a.Cert.SerialNumber) != 0 {
				t.Fatalf("serving serial %s, want %s", got, a.Cert.SerialNumber)
			}
		})
	}
}

// server serves TLS with r on loopback; serial dials it as a new client and
// returns the serial number of the certificate it is shown.
func server(t *testing.T, r *certfile.Reloader, ca *testpki.CA) (serial func() *big.Int) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", r.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return func() *big.Int {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", lis.Addr().String(),
			&tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber
	}
}

// The renewal cases: what a new handshake sees after the files change.
func TestRenewal(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	for _, tc := range []struct {
		name string
		// renew changes the files; want says which certificate the next
		// handshakes must see: "old" or "new".
		renew    func(t *testing.T, certPath, keyPath string, next *testpki.Leaf, old *testpki.Leaf)
		interval time.Duration
		want     string
	}{
		{
			name:     "new pair written",
			renew:    func(t *testing.T, c, k string, next, _ *testpki.Leaf) { next.Write(t, c, k) },
			interval: time.Millisecond,
			want:     "new",
		},
		{
			name: "certificate written but not its key yet",
			renew: func(t *testing.T, c, k string, next, old *testpki.Leaf) {
				(&testpki.Leaf{CertPEM: next.CertPEM, KeyPEM: old.KeyPEM}).Write(t, c, k)
			},
			interval: time.Millisecond,
			want:     "old",
		},
		{
			name: "files removed",
			renew: func(t *testing.T, c, k string, _, _ *testpki.Leaf) {
				os.Remove(c)
				os.Remove(k)
			},
			interval: time.Millisecond,
			want:     "old",
		},
		{
			name:     "new pair written, next check not due",
			renew:    func(t *testing.T, c, k string, next, _ *testpki.Leaf) { next.Write(t, c, k) },
			interval: time.Hour,
			want:     "old",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
			old, next := ca.Issue(t, "127.0.0.1"), ca.Issue(t, "127.0.0.1")
			old.Write(t, certPath, keyPath)
			r, err := certfile.New(certfile.Config{CertFile: certPath, KeyFile: keyPath, CheckInterval: tc.interval, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			serial := server(t, r, ca)
			if got := serial(); got.Cmp(old.Cert.SerialNumber) != 0 {
				t.Fatalf("before renewal: serial %s, want %s", got, old.Cert.SerialNumber)
			}
			tc.renew(t, certPath, keyPath, next, old)
			if tc.interval < time.Second {
				time.Sleep(2 * tc.interval) // the next check is due
			}
			want := old.Cert.SerialNumber
			if tc.want == "new" {
				want = next.Cert.SerialNumber
			}
			for i := range 3 {
				if got := serial(); got.Cmp(want) != 0 {
					t.Fatalf("handshake %d after the change: serial %s, want the %s certificate's %s", i, got, tc.want, want)
				}
			}
		})
	}
}

// A renewal that is caught half written is picked up once it is complete,
// and Reload reads the files at once whatever the interval.
func TestRenewalCompletes(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	old, next := ca.Issue(t, "127.0.0.1"), ca.Issue(t, "127.0.0.1")
	old.Write(t, certPath, keyPath)
	r, err := certfile.New(certfile.Config{CertFile: certPath, KeyFile: keyPath, CheckInterval: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	serial := server(t, r, ca)

	(&testpki.Leaf{CertPEM: next.CertPEM, KeyPEM: old.KeyPEM}).Write(t, certPath, keyPath)
	if changed, err := r.Reload(); changed || err == nil {
		t.Fatalf("half-written renewal: changed %v, err %v; want no change and an error", changed, err)
	}
	if got := serial(); got.Cmp(old.Cert.SerialNumber) != 0 {
		t.Fatalf("half-written renewal: serial %s, want the old %s", got, old.Cert.SerialNumber)
	}
	next.Write(t, certPath, keyPath)
	if changed, err := r.Reload(); !changed || err != nil {
		t.Fatalf("complete renewal: changed %v, err %v", changed, err)
	}
	if got := serial(); got.Cmp(next.Cert.SerialNumber) != 0 {
		t.Fatalf("complete renewal: serial %s, want the new %s", got, next.Cert.SerialNumber)
	}
	if changed, err := r.Reload(); changed || err != nil {
		t.Fatalf("unchanged files: changed %v, err %v", changed, err)
	}
}

// A client certificate (the etcd client's) is renewed the same way.
func TestClientCertificate(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	old, next := ca.Issue(t, "client"), ca.Issue(t, "client")
	old.Write(t, certPath, keyPath)
	r, err := certfile.New(certfile.Config{CertFile: certPath, KeyFile: keyPath, CheckInterval: time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := ca.Issue(t, "127.0.0.1").TLS(t)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srv},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	seen := make(chan *big.Int, 1)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if tc.Handshake() == nil {
				seen <- tc.ConnectionState().PeerCertificates[0].SerialNumber
			}
			c.Close()
		}
	}()
	dial := func() *big.Int {
		t.Helper()
		c, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1",
			GetClientCertificate: r.GetClientCertificate})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The server reads the client's certificate in the handshake; a
		// read here waits for the server to finish it.
		_, _ = c.Read(make([]byte, 1))
		return <-seen
	}
	if got := dial(); got.Cmp(old.Cert.SerialNumber) != 0 {
		t.Fatalf("client serial %s, want %s", got, old.Cert.SerialNumber)
	}
	next.Write(t, certPath, keyPath)
	time.Sleep(5 * time.Millisecond)
	if got := dial(); got.Cmp(next.Cert.SerialNumber) != 0 {
		t.Fatalf("after renewal: client serial %s, want %s", got, next.Cert.SerialNumber)
	}
}

func TestLoadPool(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	dir := t.TempDir()
	good := ca.WriteCA(t, filepath.Join(dir, "ca.crt"))
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		ok   bool
	}{{good, true}, {junk, false}, {filepath.Join(dir, "missing"), false}} {
		p, err := certfile.LoadPool(tc.file)
		if (err == nil) != tc.ok || (tc.ok && p == nil) {
			t.Errorf("LoadPool(%s): %v, %v", filepath.Base(tc.file), p, err)
		}
	}
}
