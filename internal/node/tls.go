package node

import (
	"context"
	"crypto/tls"
	"net"

	"google.golang.org/grpc/credentials"
)

// PeerCredentials are the transport credentials for calls to other OnAir
// services through discovery, verified with cfg (its RootCAs).
//
// gRPC checks a server's certificate against the channel's authority, which
// for a discovery channel is the service's etcd prefix, a name no
// certificate carries. So unless cfg.ServerName fixes the name every
// service's certificate holds, each instance's certificate is checked
// against the IP address actually dialed, the address the instance
// registered.
func PeerCredentials(cfg *tls.Config) credentials.TransportCredentials {
	return peerCreds{TransportCredentials: credentials.NewTLS(cfg), byAddr: cfg.ServerName == ""}
}

type peerCreds struct {
	credentials.TransportCredentials
	byAddr bool
}

func (p peerCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if p.byAddr {
		if host, _, err := net.SplitHostPort(conn.RemoteAddr().String()); err == nil {
			authority = host
		}
	}
	return p.TransportCredentials.ClientHandshake(ctx, authority, conn)
}

func (p peerCreds) Clone() credentials.TransportCredentials {
	return peerCreds{TransportCredentials: p.TransportCredentials.Clone(), byAddr: p.byAddr}
}
