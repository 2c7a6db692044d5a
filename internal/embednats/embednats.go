// Package embednats runs a NATS server inside an OnAir process: in `onair
// dev` (in-process connections only, no port), as one member of the NATS
// cluster of `onair cluster` (`onair nats`), and in tests.
//
// OnAir uses NATS only to carry room messages between room replicas (see
// services/room): nothing is persisted, JetStream stays off.
//
// With TLS set, the client listener serves TLS only and routes are mutual
// TLS: room messages are user content, and routes cross nodes.
package embednats

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"
)

// Config configures one server.
type Config struct {
	// Name is the server's name in its cluster (a random one if empty).
	Name string
	// ClientAddr is the host:port clients connect to. Empty: no listener,
	// in-process connections only (InProcess). "127.0.0.1:0" picks a port.
	ClientAddr string
	// ClusterName and ClusterAddr make the server a member of a cluster
	// that takes routes on ClusterAddr; Routes are the other members'
	// route URLs (nats-route://host:port). Empty: a single server.
	ClusterName string
	ClusterAddr string
	Routes      []string
	// User and Password, when set, are required of clients.
	User, Password string
	// TLS, when set, turns on TLS for clients and for routes.
	TLS    *TLS
	Logger *slog.Logger
}

// TLS is a server's transport security. The client listener then takes
// TLS connections only; routes (with ClusterAddr) are mutual TLS: each
// member serves Certificate to the members that route to it and presents
// it to those it routes to, and each checks the other's against CAs.
type TLS struct {
	// Certificate is asked for at every handshake, so a renewed
	// certificate reaches new connections without a restart
	// (certfile.Reloader.Certificate). Required.
	Certificate func() *tls.Certificate
	// CAs verifies the other members' certificates on routes, both ways;
	// on a route this member dials, the name checked is the host in the
	// route URL (an IP address or a DNS name the certificate must hold).
	// Required with ClusterAddr; with VerifyClients it verifies clients
	// too.
	CAs *x509.CertPool
	// VerifyClients makes clients present a certificate signed by CAs
	// (on top of User and Password, if set).
	VerifyClients bool
}

// tlsTimeout bounds a TLS handshake, for clients and routes. nats-server's
// default is 2 s; a member on a busy node can take longer than that, and a
// handshake cut short costs a client a reconnect and a route a retry, so
// the bound is looser: it only has to stop a peer that never finishes.
const tlsTimeout = 5 * time.Second

// configs are the nats-server TLS configurations of t: client is served on
// the client listener, route is used both ways on routes.
func (t *TLS) configs() (client, route *tls.Config, err error) {
	if t.Certificate == nil {
		return nil, nil, errors.New("nats TLS: no certificate")
	}
	if t.VerifyClients && t.CAs == nil {
		return nil, nil, errors.New("nats TLS: verifying client certificates needs the CAs that signed them")
	}
	get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return t.Certificate(), nil }
	client = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: get}
	if t.VerifyClients {
		client.ClientAuth, client.ClientCAs = tls.RequireAndVerifyClientCert, t.CAs
	}
	// nats-server is the TLS server on a route it accepts and the TLS
	// client on one it dials (it then fills in ServerName from the route
	// URL), with the same configuration.
	route = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: get,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return t.Certificate(), nil },
		ClientAuth:           tls.RequireAndVerifyClientCert, ClientCAs: t.CAs, RootCAs: t.CAs}
	return client, route, nil
}

// Server is a running NATS server.
type Server struct {
	*server.Server
}

// Start starts a server and waits until it takes connections.
func Start(cfg Config) (*Server, error) {
	opts := &server.Options{ServerName: cfg.Name, NoSigs: true, MaxPayload: 64 << 10, Username: cfg.User}
	if cfg.Password != "" {
		// The server keeps only a hash of it.
		h, err := bcrypt.GenerateFromPassword([]byte(cfg.Password), bcrypt.DefaultCost)
		if err != nil {
			return nil, err
		}
		opts.Password = string(h)
	}
	var clientTLS, routeTLS *tls.Config
	if cfg.TLS != nil {
		var err error
		if clientTLS, routeTLS, err = cfg.TLS.configs(); err != nil {
			return nil, err
		}
		if cfg.ClusterAddr != "" && cfg.TLS.CAs == nil {
			// Without a CA a member would take any certificate the system
			// trusts as a fellow member.
			return nil, errors.New("nats TLS: routes need the CAs that verify the other members")
		}
	}
	if cfg.ClientAddr == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitAddr(cfg.ClientAddr)
		if err != nil {
			return nil, fmt.Errorf("nats client address: %w", err)
		}
		opts.Host, opts.Port = host, port
		if port == 0 {
			opts.Port = server.RANDOM_PORT
		}
		if clientTLS != nil {
			opts.TLSConfig, opts.TLSTimeout = clientTLS, tlsTimeout.Seconds()
		}
	}
	if cfg.ClusterAddr != "" {
		host, port, err := splitAddr(cfg.ClusterAddr)
		if err != nil {
			return nil, fmt.Errorf("nats cluster address: %w", err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		// Explicit routes are retried for as long as a member is away.
		opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: host, Port: port}
		if opts.Cluster.Name == "" {
			opts.Cluster.Name = "onair"
		}
		if routeTLS != nil {
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = routeTLS, tlsTimeout.Seconds()
		}
		for _, r := range cfg.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("nats route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	if cfg.Logger != nil {
		s.SetLoggerV2(slogLogger{cfg.Logger}, false, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server did not start")
	}
	return &Server{s}, nil
}

// Close stops the server and waits until it has.
func (s *Server) Close() {
	s.Shutdown()
	s.WaitForShutdown()
}

// URL is the client URL of a server that listens: nats://host:port, or
// tls://host:port when it serves TLS.
func (s *Server) URL() string { return s.ClientURL() }

// InProcess is the connection option that reaches this server without a
// socket (the only way to reach a server started without ClientAddr).
func (s *Server) InProcess() nats.Option { return nats.InProcessServer(s.Server) }

func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	return host, port, nil
}

// slogLogger hands the server's log to slog; its notices (start-up banner,
// routes coming and going), debug and trace output are Debug.
type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Noticef(f string, v ...any) { l.l.Debug(fmt.Sprintf(f, v...), "component", "nats") }
func (l slogLogger) Warnf(f string, v ...any)   { l.l.Warn(fmt.Sprintf(f, v...), "component", "nats") }
func (l slogLogger) Fatalf(f string, v ...any)  { l.l.Error(fmt.Sprintf(f, v...), "component", "nats") }
func (l slogLogger) Errorf(f string, v ...any)  { l.l.Error(fmt.Sprintf(f, v...), "component", "nats") }
func (l slogLogger) Debugf(f string, v ...any)  { l.l.Debug(fmt.Sprintf(f, v...), "component", "nats") }
func (l slogLogger) Tracef(f string, v ...any)  { l.l.Debug(fmt.Sprintf(f, v...), "component", "nats") }
