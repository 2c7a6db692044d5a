//go:build !linux || !(amd64 || arm64)

package media

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// rawSender is Linux's raw sendmmsg (sendmmsg_raw.go); elsewhere batches
// go through ipv4.PacketConn.
type rawSender struct{}

func newRawSender(*net.UDPConn) *rawSender { return nil }

func (*rawSender) send([]ipv4.Message) (int, bool, error) { return 0, false, nil }

// rawReceiver is Linux's raw recvfrom (recvfrom_raw.go); elsewhere reads
// go through the UDPConn.
type rawReceiver struct{}

func newRawReceiver(*net.UDPConn) *rawReceiver { return nil }

func (*rawReceiver) recv([]byte) (int, netip.AddrPort, error) { return 0, netip.AddrPort{}, nil }
