// Package udpgro gives a pion WebRTC peer UDP sockets that receive with
// generic receive offload (UDP_GRO).
//
// A sender that uses UDP segmentation offload, as the OnAir edge does, hands
// the kernel a train of packets to one peer as one message. On a real network
// the train is split by the sender's NIC and the receiver's kernel does the
// per-packet work. On loopback, where the benchmarks run, a receiving socket
// without GRO makes the sender's kernel split the train and queue and wake the
// receiver once per packet, inside the sender's system call, so the sender's
// CPU is charged for its receivers' work. A socket with GRO takes the train
// whole and the receiver splits it when it reads: each side pays for its own
// work, as across a network.
package udpgro

import (
	"net"
	"net/netip"
	"sync"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// maxMessage is the largest UDP payload a GRO read can return.
const maxMessage = 1 << 16

// Net is pion's standard transport.Net whose UDP sockets receive with GRO
// where the kernel offers it (Linux 5.0 on) and as usual elsewhere.
type Net struct{ *stdnet.Net }

// NewNet returns a Net over the host's interfaces.
func NewNet() (*Net, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &Net{n}, nil
}

// ListenUDP opens a UDP socket like net.ListenUDP, with GRO on when the
// kernel takes it.
func (n *Net) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	if !enableGRO(c) {
		return c, nil
	}
	return &Conn{UDPConn: c, buf: make([]byte, maxMessage), oob: make([]byte, oobSize)}, nil
}

// Conn is a UDP socket with GRO on. Its reads return one datagram at a time,
// as a plain socket's do: a coalesced train is split by its segment size.
type Conn struct {
	*net.UDPConn

	mu      sync.Mutex
	buf     []byte // the last message read from the socket
	oob     []byte
	pending []byte // what of buf has not been returned yet
	segment int    // the size of pending's datagrams (the last may be shorter)
	from    netip.AddrPort
}

// ReadFromAddrPort reads the next datagram into b.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		n, oobn, _, from, err := c.UDPConn.ReadMsgUDPAddrPort(c.buf, c.oob)
		if err != nil {
			return 0, netip.AddrPort{}, err
		}
		c.pending, c.from = c.buf[:n], from
		c.segment = segmentSize(c.oob[:oobn])
		if c.segment <= 0 || c.segment > n {
			c.segment = n
		}
	}
	take := min(c.segment, len(c.pending))
	n := copy(b, c.pending[:take])
	c.pending = c.pending[take:]
	return n, c.from, nil
}

// ReadFrom reads the next datagram into b.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// ReadFromUDP reads the next datagram into b.
func (c *Conn) ReadFromUDP(b []byte) (int, *net.UDPAddr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// Read reads the next datagram into b.
func (c *Conn) Read(b []byte) (int, error) {
	n, _, err := c.ReadFromAddrPort(b)
	return n, err
}

// ReadMsgUDP reads the next datagram into b; it returns no control
// messages, since those of a train belong to all of its datagrams.
func (c *Conn) ReadMsgUDP(b, _ []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	n, addr, err = c.ReadFromUDP(b)
	return n, 0, 0, addr, err
}
