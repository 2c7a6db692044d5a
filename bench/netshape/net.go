package netshape

import (
	"fmt"
	"net"
	"sync"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// Net is pion's standard transport.Net whose UDP sockets are on a link:
// each is a Conn with the link's delay and loss, bound to the player's pinned
// port (when pion asks for any port), so the Shaper's class for that port
// caps it. Give it to webrtc.SettingEngine.SetNet, with ICE restricted to one
// UDP4 loopback candidate (a second socket cannot take the same port). Only
// ListenUDP and ListenPacket are shaped: ICE's host candidates use them.
type Net struct {
	*stdnet.Net
	port int
	link Link
	seed uint64

	mu    sync.Mutex
	conns []*Conn
}

// NewNet returns a Net whose UDP sockets bind port (0: any) on link l.
// seed makes the loss repeatable.
func NewNet(port int, l Link, seed uint64) (*Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &Net{Net: n, port: port, link: l, seed: seed}, nil
}

// Port is the pinned port.
func (n *Net) Port() int { return n.port }

// Link is the link the sockets are on.
func (n *Net) Link() Link { return n.link }

// ListenUDP opens a UDP socket on the link, on the pinned port when laddr
// asks for any.
func (n *Net) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	a := net.UDPAddr{}
	if laddr != nil {
		a = *laddr
	}
	if a.Port == 0 {
		a.Port = n.port
	}
	c, err := net.ListenUDP(network, &a)
	if err != nil {
		return nil, fmt.Errorf("netshape: listen on the pinned port: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	k := NewConn(c, n.link, n.seed+uint64(len(n.conns)))
	n.conns = append(n.conns, k)
	return k, nil
}

// ListenPacket opens a UDP socket on the link as ListenUDP does; other
// networks are not shaped.
func (n *Net) ListenPacket(network, address string) (net.PacketConn, error) {
	switch network {
	case "udp", "udp4", "udp6":
		a, err := net.ResolveUDPAddr(network, address)
		if err != nil {
			return nil, err
		}
		return n.ListenUDP(network, a)
	}
	return n.Net.ListenPacket(network, address)
}

// Stats adds up the counts of every socket the Net opened.
func (n *Net) Stats() ConnStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	var s ConnStats
	for _, c := range n.conns {
		cs := c.Stats()
		s.Received += cs.Received
		s.Dropped += cs.Dropped
		s.Sent += cs.Sent
	}
	return s
}
