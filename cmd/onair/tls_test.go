package main

import (
	"crypto/tls"
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onair-dev/onair/internal/testpki"
)

// testTLSFiles writes a test CA and a certificate for 127.0.0.1 that it
// issued, and returns their files and the name of a file that is missing.
func testTLSFiles(t *testing.T) (caFile, cert, key, missing string) {
	ca := testpki.NewCA(t, "test CA")
	dir := t.TempDir()
	caFile = ca.WriteCA(t, filepath.Join(dir, "ca.crt"))
	cert, key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.Issue(t, "127.0.0.1").Write(t, cert, key)
	return caFile, cert, key, filepath.Join(dir, "missing")
}

func TestTLSFlags(t *testing.T) {
	caFile, cert, key, missing := testTLSFiles(t)

	for _, tc := range []struct {
		name             string
		args             []string
		wantErr          string
		server, etcd     bool
		peerCA, peerName bool
	}{
		{name: "nothing: plaintext"},
		{name: "serving TLS, peers checked against the system CAs", args: []string{"--tls-cert", cert, "--tls-key", key}, server: true},
		{name: "serving TLS, peers checked against a CA and a name",
			args:   []string{"--tls-cert", cert, "--tls-key", key, "--tls-ca", caFile, "--tls-server-name", "onair-internal"},
			server: true, peerCA: true, peerName: true},
		{name: "certificate without key", args: []string{"--tls-cert", cert}, wantErr: "go together"},
		{name: "CA without certificate", args: []string{"--tls-ca", caFile}, wantErr: "need --tls-cert"},
		{name: "unreadable certificate", args: []string{"--tls-cert", missing, "--tls-key", key}, wantErr: "no such file"},
		{name: "unreadable CA", args: []string{"--tls-cert", cert, "--tls-key", key, "--tls-ca", missing}, wantErr: "--tls-ca"},
		{name: "etcd CA only", args: []string{"--etcd-ca", caFile}, etcd: true},
		{name: "etcd client certificate", args: []string{"--etcd-ca", caFile, "--etcd-cert", cert, "--etcd-key", key}, etcd: true},
		{name: "etcd key without certificate", args: []string{"--etcd-key", key}, wantErr: "go together"},
		{name: "etcd CA not PEM", args: []string{"--etcd-ca", key}, wantErr: "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			var f tlsFlags
			f.register(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			tt, err := f.build()
			if errorCase(t, err, tc.wantErr) {
				return
			}
			if (tt.server != nil) != tc.server || (tt.peers != nil) != tc.server || (tt.etcd != nil) != tc.etcd {
				t.Fatalf("server %v peers %v etcd %v", tt.server != nil, tt.peers != nil, tt.etcd != nil)
			}
			if tt.server != nil && tt.server.GetCertificate == nil {
				t.Error("the server configuration does not pick up renewals (no GetCertificate)")
			}
			if tt.peers != nil && ((tt.peers.RootCAs != nil) != tc.peerCA || (tt.peers.ServerName != "") != tc.peerName) {
				t.Errorf("peers: CA %v, server name %q", tt.peers.RootCAs != nil, tt.peers.ServerName)
			}
		})
	}
}

func TestEtcdConfig(t *testing.T) {
	tt := &transportTLS{}
	for _, tc := range []struct {
		endpoints string
		tls       bool
		ok        bool
	}{
		{"http://127.0.0.1:2379,http://127.0.0.1:2381", false, true},
		{"https://etcd:2379", true, true},
		{"https://etcd-0:2379, https://etcd-1:2379", true, true},
		{"http://etcd:2379", true, false},
		{"https://etcd-0:2379,http://etcd-1:2379", true, false},
	} {
		tt.etcd = nil
		if tc.tls {
			tt.etcd = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		cfg, err := etcdConfig(tc.endpoints, tt.etcd)
		if (err == nil) != tc.ok {
			t.Errorf("%s (TLS %v): err %v", tc.endpoints, tc.tls, err)
			continue
		}
		if err == nil && (cfg.TLS != nil) != tc.tls {
			t.Errorf("%s: TLS %v, want %v", tc.endpoints, cfg.TLS != nil, tc.tls)
		}
	}
}

// errorCase checks err against a table case's wanted error: one containing
// want when want is set, none otherwise. It reports whether the case
// expected an error, and so ends there.
func errorCase(t *testing.T, err error, want string) bool {
	t.Helper()
	if want != "" {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err %v, want one containing %q", err, want)
		}
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return false
}
