package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"github.com/onair-dev/onair/internal/certfile"
	"github.com/onair-dev/onair/internal/embednats"
)

// natsTLSFlags are the transport security flags of `onair nats`, named as
// the roles' (--tls-cert, --tls-key, --tls-ca, ONAIR_TLS_*), so one
// certificate Secret and one set of variables serve every OnAir pod.
//
// A server given --tls-cert and --tls-key takes TLS clients only, and its
// routes to the other members are mutual TLS, checked against --tls-ca: a
// route carries every room message of the cluster between nodes.
type natsTLSFlags struct {
	cert, key, ca string
	verifyClients bool
}

func (f *natsTLSFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cert, "tls-cert", "", "PEM certificate (chain) served to clients and on routes, and presented to the other members; with --tls-key turns TLS on, re-read when the file changes")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.ca, "tls-ca", "", "PEM CA bundle that verifies the other members' certificates on routes (required with --cluster-addr and TLS), and clients' with --tls-verify-clients")
	fs.BoolVar(&f.verifyClients, "tls-verify-clients", false, "clients must present a certificate signed by --tls-ca (room replicas: --nats-cert, --nats-key)")
}

// build turns the flags into the server's TLS; nil means plaintext.
// clustered says the server takes routes (--cluster-addr).
func (f *natsTLSFlags) build(clustered bool) (*embednats.TLS, error) {
	if (f.cert == "") != (f.key == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if f.cert == "" {
		if f.ca != "" || f.verifyClients {
			return nil, errors.New("--tls-ca and --tls-verify-clients need --tls-cert and --tls-key: a NATS server either serves TLS or does not")
		}
		return nil, nil
	}
	if f.verifyClients && f.ca == "" {
		return nil, errors.New("--tls-verify-clients needs --tls-ca, the CA that signed the clients' certificates")
	}
	if clustered && f.ca == "" {
		return nil, errors.New("--cluster-addr with --tls-cert needs --tls-ca: the members check each other's certificates on routes")
	}
	r, err := certfile.New(certfile.Config{CertFile: f.cert, KeyFile: f.key, Logger: slog.Default()})
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	t := &embednats.TLS{Certificate: r.Certificate, VerifyClients: f.verifyClients}
	if f.ca != "" {
		if t.CAs, err = certfile.LoadPool(f.ca); err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
	}
	return t, nil
}

// runNATS runs one NATS server (a member of a cluster when given
// --cluster-addr and --routes) in this process until SIGTERM or SIGINT, so
// `onair cluster` needs nothing but the onair binary, as with `onair etcd`.
func runNATS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	name := fs.String("name", "", "server name in the cluster")
	clientAddr := fs.String("client-addr", "127.0.0.1:4222", "host:port clients (room replicas) connect to")
	clusterAddr := fs.String("cluster-addr", "", "host:port other members route to; empty for a single server")
	clusterName := fs.String("cluster-name", "onair", "name of the NATS cluster (the same on every member)")
	routes := fs.String("routes", "", "the other members' route URLs, comma-separated (nats-route://host:port); with TLS each member's certificate must name the host its URL has")
	user := fs.String("nats-user", "", "user name clients must give (with --nats-password)")
	password := fs.String("nats-password", "", "password clients must give; set it through ONAIR_NATS_PASSWORD")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	var tf natsTLSFlags
	tf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := setupLogging(*logLevel); err != nil {
		return err
	}
	if (*user == "") != (*password == "") {
		return errors.New("--nats-user and --nats-password go together")
	}
	tlsCfg, err := tf.build(*clusterAddr != "")
	if err != nil {
		return err
	}
	var rs []string
	for r := range strings.SplitSeq(*routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			rs = append(rs, r)
		}
	}
	s, err := embednats.Start(embednats.Config{Name: *name, ClientAddr: *clientAddr, ClusterName: *clusterName,
		ClusterAddr: *clusterAddr, Routes: rs, User: *user, Password: *password, TLS: tlsCfg, Logger: slog.Default()})
	if err != nil {
		return err
	}
	defer s.Close()
	slog.Info("serving", "role", "nats", "name", *name, "client", s.URL(), "cluster", *clusterAddr, "routes", rs, "tls", tlsCfg != nil)
	<-ctx.Done()
	slog.Info("shutting down", "role", "nats", "name", *name)
	return nil
}
