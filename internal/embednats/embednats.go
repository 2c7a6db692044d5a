// Package embednats runs a NATS server inside an OnAir process: in `onair
// dev` (in-process connections only, no port), as one member of the NATS
// cluster of `onair cluster` (`onair nats`), and in tests.
//
// OnAir uses NATS only to carry room messages between room replicas (see
// services/room): nothing is persisted, JetStream stays off.
package embednats

import (
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
	Logger         *slog.Logger
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

// URL is the client URL of a server that listens (nats://host:port).
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
