// Package rawconn provides TCP connections whose reads and writes do not
// wake the Go runtime's system monitor.
//
// A Go program's reads and writes on a socket are system calls made through
// the runtime's syscall entry, and that entry wakes the system monitor
// (sysmon) when it sleeps. Sysmon sleeps deeply whenever every processor is
// idle, and once woken by a system call it polls every 20 µs for the next
// millisecond before it backs off (golang.org/issue/18236). A service that
// is busy in short bursts (a room replica handing a message to a few
// subscribers every couple of milliseconds) goes idle between bursts, so
// every burst pays for one wake of sysmon and about fifty of its polls:
// measured, about a sixth of a room replica's CPU.
//
// A socket in Go is non-blocking, so a read or a write returns at once; one
// made with syscall.RawSyscall skips the syscall entry and never wakes
// sysmon. Conn does that inside syscall.RawConn's Read and Write, which keep
// the rest of net.Conn's behaviour: one reader and one writer at a time,
// deadlines, and waiting in the network poller when the socket has no data
// or no room.
//
// Only plain TCP sockets on Linux are wrapped (Wrap returns anything else
// unchanged), since only there is a read or a write known never to block.
package rawconn

import (
	"net"
	"time"
)

// Listener wraps the connections it accepts.
type Listener struct {
	net.Listener
	// UserTimeout, when set, is the accepted sockets' TCP_USER_TIMEOUT: how
	// long sent data may stay unacknowledged before the kernel drops the
	// connection. gRPC sets it on the connections it knows to be TCP
	// (*net.TCPConn), which a wrapped one is not, so a gRPC server's
	// listener sets it instead.
	UserTimeout time.Duration
}

// Listen is net.Listen whose accepted TCP connections are wrapped.
func Listen(network, address string) (*Listener, error) {
	l, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &Listener{Listener: l}, nil
}

// Accept accepts a connection and wraps it.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok && l.UserTimeout > 0 {
		setUserTimeout(tc, l.UserTimeout)
	}
	return Wrap(c), nil
}

// Dialer dials TCP connections that are wrapped. Its Dial method makes it
// a nats.CustomDialer.
type Dialer struct {
	net.Dialer
}

// Dial connects and wraps the connection.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	c, err := d.Dialer.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
