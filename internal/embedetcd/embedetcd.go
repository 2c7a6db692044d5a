// Package embedetcd runs an etcd member inside the process, for `onair dev`,
// the local cluster and tests.
package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/onair-dev/onair/internal/etcdclient"
)

// Config describes an embedded member. Zero values give a single-member
// cluster on random loopback ports.
type Config struct {
	// Name is the member name; "default" if empty.
	Name string
	// Dir holds the member's data.
	Dir string
	// ClientAddr and PeerAddr are host:port to listen on; empty picks a free
	// loopback port.
	ClientAddr, PeerAddr string
	// InitialCluster is "name=http://peer,..." for a multi-member cluster;
	// empty for a single member.
	InitialCluster string
	// AutoCompactionRetention keeps this much revision history (e.g. "1h");
	// empty keeps etcd's default (no auto compaction).
	AutoCompactionRetention string
	// ClientTLS, when its certificate and key are set, serves clients over
	// TLS (an https:// client URL); peers stay on plain HTTP.
	ClientTLS TLSFiles
}

// TLSFiles are the PEM files of a TLS listener.
type TLSFiles struct {
	// CertFile and KeyFile are the member's certificate and key.
	CertFile, KeyFile string
	// TrustedCAFile, when set, makes clients authenticate with a
	// certificate signed by one of its CAs.
	TrustedCAFile string
}

// Server is a running embedded member.
type Server struct {
	etcd      *embed.Etcd
	endpoints []string
	closed    sync.Once
}

// pickTries is how many times Start picks free ports for a member that
// was given none.
const pickTries = 3

// Start starts a member and waits until it serves clients.
//
// A port Start picks (ClientAddr or PeerAddr empty) is free only when
// picked: another process may take it before the member listens, so on
// "address already in use" Start picks again, a few times.
func Start(ctx context.Context, c Config) (*Server, error) {
	picked := c.ClientAddr == "" || c.PeerAddr == ""
	for try := 1; ; try++ {
		s, err := start(ctx, c)
		if err == nil || !picked || !errors.Is(err, syscall.EADDRINUSE) || try == pickTries {
			return s, err
		}
	}
}

func start(ctx context.Context, c Config) (*Server, error) {
	cfg := embed.NewConfig()
	if c.Name != "" {
		cfg.Name = c.Name
	}
	cfg.Dir = c.Dir
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	clientAddr, peerAddr := c.ClientAddr, c.PeerAddr
	var err error
	if clientAddr == "" {
		if clientAddr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	if peerAddr == "" {
		if peerAddr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	clientScheme := "http://"
	if c.ClientTLS.CertFile != "" {
		clientScheme = "https://"
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: c.ClientTLS.CertFile, KeyFile: c.ClientTLS.KeyFile,
			TrustedCAFile: c.ClientTLS.TrustedCAFile, ClientCertAuth: c.ClientTLS.TrustedCAFile != ""}
	}
	cu, _ := url.Parse(clientScheme + clientAddr)
	pu, _ := url.Parse("http://" + peerAddr)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	if c.InitialCluster != "" {
		cfg.InitialCluster = c.InitialCluster
	} else {
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	}
	if c.AutoCompactionRetention != "" {
		cfg.AutoCompactionMode = "periodic"
		cfg.AutoCompactionRetention = c.AutoCompactionRetention
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: start: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedetcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedetcd: member %s not ready after 60s", cfg.Name)
	}
	return &Server{etcd: e, endpoints: []string{cu.String()}}, nil
}

// Endpoints are the client URLs of the member.
func (s *Server) Endpoints() []string { return s.endpoints }

// Client returns a new client of the member; the caller closes it. A
// member that serves clients over TLS needs a client made with
// etcdclient.New and a TLS configuration instead.
func (s *Server) Client() (*clientv3.Client, error) {
	return etcdclient.New(etcdclient.Config{Endpoints: s.endpoints})
}

// Close stops the member; closing it again does nothing.
func (s *Server) Close() { s.closed.Do(s.etcd.Close) }

// Kill stops the member the way a crash does: a leader hands its
// leadership to nobody, and the others notice only by its silence (then
// elect a new leader after their election timeout).
func (s *Server) Kill() {
	s.etcd.Server.HardStop()
	s.Close()
}

// IsLeader reports whether the member leads its cluster now.
func (s *Server) IsLeader() bool { return s.etcd.Server.Leader() == s.etcd.Server.MemberID() }

// Err reports a fatal error of the member after it started.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// freeAddr reserves a loopback port by listening and closing.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
