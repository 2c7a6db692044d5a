package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/onair-dev/onair/internal/certfile"
	"github.com/onair-dev/onair/internal/etcdclient"
)

// tlsFlags are the transport security flags of the cluster roles and the
// gateway (not of `onair dev`, which stays plaintext).
//
// One switch: a process given --tls-cert and --tls-key serves TLS on its
// gRPC and HTTP listeners and calls the other services over TLS too,
// verifying them against --tls-ca (or the system's CAs) and checking the
// name in their certificates: the IP address each instance registered, or
// --tls-server-name when their certificates name no IP (pod IPs change, so
// in Kubernetes one certificate with a fixed name serves every pod). The certificate files are read again when they change,
// so a renewal needs no restart. The etcd client uses TLS when any
// --etcd-* file is given (the endpoints must then be https://).
type tlsFlags struct {
	cert, key, ca, serverName string
	etcdCA, etcdCert, etcdKey string
}

func (f *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cert, "tls-cert", "", "PEM certificate (chain) served on the gRPC and HTTP listeners; with --tls-key turns TLS on, re-read when the file changes")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.ca, "tls-ca", "", "PEM CA bundle that verifies the other services' certificates when this process calls them (default: the system's CAs)")
	fs.StringVar(&f.serverName, "tls-server-name", "", "name the other services' certificates are checked against (default: the IP address each instance registered; set it when their certificates name no IP, e.g. pods)")
	fs.StringVar(&f.etcdCA, "etcd-ca", "", "PEM CA bundle that verifies the etcd members (turns on TLS to etcd; default: the system's CAs)")
	fs.StringVar(&f.etcdCert, "etcd-cert", "", "PEM client certificate presented to etcd (with --etcd-key), re-read when the file changes")
	fs.StringVar(&f.etcdKey, "etcd-key", "", "PEM private key of --etcd-cert")
}

// transportTLS is what the flags turn into; nil fields mean plaintext.
type transportTLS struct {
	// server is served on the gRPC and HTTP listeners.
	server *tls.Config
	// peers verifies the other services when this process calls them.
	peers *tls.Config
	// etcd is the etcd client's.
	etcd *tls.Config
}

// build loads the files named by the flags.
func (f *tlsFlags) build() (*transportTLS, error) {
	var t transportTLS
	if (f.cert == "") != (f.key == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if f.cert == "" && (f.ca != "" || f.serverName != "") {
		return nil, errors.New("--tls-ca and --tls-server-name need --tls-cert and --tls-key: a process either serves and calls over TLS or does neither")
	}
	if f.cert != "" {
		r, err := certfile.New(certfile.Config{CertFile: f.cert, KeyFile: f.key, Logger: slog.Default()})
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		t.server = r.ServerConfig()
		t.peers = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.serverName}
		if f.ca != "" {
			if t.peers.RootCAs, err = certfile.LoadPool(f.ca); err != nil {
				return nil, fmt.Errorf("--tls-ca: %w", err)
			}
		}
	}
	if (f.etcdCert == "") != (f.etcdKey == "") {
		return nil, errors.New("--etcd-cert and --etcd-key go together")
	}
	if f.etcdCA != "" || f.etcdCert != "" {
		t.etcd = &tls.Config{MinVersion: tls.VersionTLS12}
		if f.etcdCA != "" {
			pool, err := certfile.LoadPool(f.etcdCA)
			if err != nil {
				return nil, fmt.Errorf("--etcd-ca: %w", err)
			}
			t.etcd.RootCAs = pool
		}
		if f.etcdCert != "" {
			r, err := certfile.New(certfile.Config{CertFile: f.etcdCert, KeyFile: f.etcdKey, Logger: slog.Default()})
			if err != nil {
				return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
			}
			t.etcd.GetClientCertificate = r.GetClientCertificate
		}
	}
	return &t, nil
}

// etcdConfig is the etcd client's configuration for endpoints. With TLS
// every endpoint must be https://: the etcd client silently drops TLS for
// an http:// one.
func etcdConfig(endpoints string, t *tls.Config) (etcdclient.Config, error) {
	eps := etcdclient.ParseEndpoints(endpoints)
	if t != nil {
		for _, ep := range eps {
			if u, err := url.Parse(ep); err != nil || u.Scheme != "https" {
				return etcdclient.Config{}, fmt.Errorf("--etcd-endpoints: %q is not an https:// URL, but --etcd-ca/--etcd-cert ask for TLS to etcd", ep)
			}
		}
	}
	return etcdclient.Config{Endpoints: eps, TLS: t}, nil
}
