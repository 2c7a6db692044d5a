package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/onair-dev/onair/internal/certfile"
	"github.com/onair-dev/onair/internal/natsconn"
)

// natsFlags say where the NATS that carries room messages between room
// replicas is, and how to reach it. Secrets (--nats-password, --nats-token)
// belong in the environment (ONAIR_NATS_PASSWORD, ONAIR_NATS_TOKEN), never
// on a command line.
type natsFlags struct {
	url, user, password, token, creds string
	ca, cert, key                     string
}

func (f *natsFlags) register(fs *flag.FlagSet, defaultURL string) {
	fs.StringVar(&f.url, "nats-url", defaultURL, "room: comma-separated NATS URLs (nats:// or tls://) of the NATS that carries room messages between room replicas")
	fs.StringVar(&f.user, "nats-user", "", "room: NATS user name (with --nats-password)")
	fs.StringVar(&f.password, "nats-password", "", "room: NATS password; set it through ONAIR_NATS_PASSWORD")
	fs.StringVar(&f.token, "nats-token", "", "room: NATS authentication token; set it through ONAIR_NATS_TOKEN")
	fs.StringVar(&f.creds, "nats-creds", "", "room: NATS credentials file (JWT and NKey seed)")
	fs.StringVar(&f.ca, "nats-ca", "", "room: PEM CA bundle that verifies the NATS servers (turns on TLS to NATS)")
	fs.StringVar(&f.cert, "nats-cert", "", "room: PEM client certificate presented to NATS (with --nats-key), re-read when the file changes")
	fs.StringVar(&f.key, "nats-key", "", "room: PEM private key of --nats-cert")
}

// connect opens the connection; it connects in the background if NATS is
// not reachable yet. extra comes last (an in-process server).
func (f *natsFlags) connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	cfg := natsconn.Config{URL: f.url, Name: name, User: f.user, Password: f.password, Token: f.token,
		CredsFile: f.creds, Options: extra, Logger: slog.Default()}
	if (f.cert == "") != (f.key == "") {
		return nil, errors.New("--nats-cert and --nats-key go together")
	}
	if f.ca != "" || f.cert != "" || strings.Contains(f.url, "tls://") {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if f.ca != "" {
			pool, err := certfile.LoadPool(f.ca)
			if err != nil {
				return nil, fmt.Errorf("--nats-ca: %w", err)
			}
			t.RootCAs = pool
		}
		if f.cert != "" {
			r, err := certfile.New(certfile.Config{CertFile: f.cert, KeyFile: f.key, Logger: slog.Default()})
			if err != nil {
				return nil, fmt.Errorf("--nats-cert/--nats-key: %w", err)
			}
			t.GetClientCertificate = r.GetClientCertificate
		}
		cfg.TLS = t
	}
	nc, err := natsconn.Connect(cfg)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", f.url, err)
	}
	return nc, nil
}
