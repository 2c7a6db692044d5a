package main

import (
	"flag"
	"testing"
)

func TestNATSTLSFlags(t *testing.T) {
	caFile, cert, key, missing := testTLSFiles(t)
	pair := []string{"--tls-cert", cert, "--tls-key", key}

	for _, tc := range []struct {
		name      string
		args      []string
		clustered bool
		wantErr   string
		tls, cas  bool
		verify    bool
	}{
		{name: "nothing: plaintext"},
		{name: "nothing, clustered: plaintext", clustered: true},
		{name: "single server over TLS", args: pair, tls: true},
		{name: "cluster over TLS", args: append(pair, "--tls-ca", caFile), clustered: true, tls: true, cas: true},
		{name: "client certificates verified", args: append(pair, "--tls-ca", caFile, "--tls-verify-clients"), tls: true, cas: true, verify: true},
		{name: "cluster without a CA", args: pair, clustered: true, wantErr: "needs --tls-ca"},
		{name: "client verification without a CA", args: append(pair, "--tls-verify-clients"), wantErr: "--tls-verify-clients needs --tls-ca"},
		{name: "certificate without key", args: []string{"--tls-cert", cert}, wantErr: "go together"},
		{name: "key without certificate", args: []string{"--tls-key", key}, wantErr: "go together"},
		{name: "CA without certificate", args: []string{"--tls-ca", caFile}, wantErr: "need --tls-cert"},
		{name: "client verification without certificate", args: []string{"--tls-verify-clients"}, wantErr: "need --tls-cert"},
		{name: "unreadable certificate", args: []string{"--tls-cert", missing, "--tls-key", key}, wantErr: "no such file"},
		{name: "unreadable CA", args: append(pair, "--tls-ca", missing), wantErr: "--tls-ca"},
		{name: "CA not PEM", args: append(pair, "--tls-ca", key), wantErr: "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			var f natsTLSFlags
			f.register(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := f.build(tc.clustered)
			if errorCase(t, err, tc.wantErr) {
				return
			}
			if (got != nil) != tc.tls {
				t.Fatalf("TLS %v, want %v", got != nil, tc.tls)
			}
			if got == nil {
				return
			}
			if got.Certificate == nil || got.Certificate() == nil {
				t.Error("no certificate")
			}
			if (got.CAs != nil) != tc.cas || got.VerifyClients != tc.verify {
				t.Errorf("CAs %v verify clients %v, want %v %v", got.CAs != nil, got.VerifyClients, tc.cas, tc.verify)
			}
		})
	}
}
