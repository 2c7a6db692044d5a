//go:build !linux || !(amd64 || arm64)

package udpbatch

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// rawSocket is Linux's raw sendmmsg and recvfrom (rawsocket.go); elsewhere
// batches go through ipv4.PacketConn and reads through the UDPConn.
type rawSocket struct{}

func newRawSocket(*net.UDPConn) *rawSocket { return nil }

func (*rawSocket) send([]ipv4.Message) (int, bool, error) { return 0, false, nil }

func (*rawSocket) recv([]byte) (int, netip.AddrPort, error) { return 0, netip.AddrPort{}, nil }
