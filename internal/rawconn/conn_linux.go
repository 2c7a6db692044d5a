//go:build linux

package rawconn

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/mem"
)

// Wrap returns c with reads and writes made by RawSyscall when c is a
// *net.TCPConn, and c unchanged otherwise.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rc := &Conn{TCPConn: tc, raw: raw}
	rc.ready.read = rc.readReady
	return rc
}

// Conn is a TCP connection whose reads and writes skip the runtime's
// syscall entry. Everything else is the embedded *net.TCPConn's.
type Conn struct {
	*net.TCPConn
	raw syscall.RawConn
	// ready is ReadOnReady's state, kept here with the function that
	// reads (bound once) so that a read allocates nothing: gRPC's reader
	// waits in ReadOnReady for as long as a session is idle, and what a
	// read allocated would stay on the heap all that time.
	ready readyState
}

// readyState is one ReadOnReady call's request and result.
type readyState struct {
	read    func(fd uintptr) bool
	bufSize int
	pool    mem.BufferPool
	buf     *[]byte
	n       int
	errno   syscall.Errno
}

// Read reads like net.Conn's Read.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var (
		n     int
		errno syscall.Errno
	)
	err := c.raw.Read(func(fd uintptr) bool {
		n, errno = sysRead(fd, b)
		return errno != syscall.EAGAIN // EAGAIN: wait in the poller
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, c.opError("read", errno)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// errNoSyscallConn is what SyscallConn returns.
var errNoSyscallConn = errors.New("rawconn: the socket is read and written by its Conn only")

// SyscallConn hides the socket from those that would use it directly:
// gRPC, given a connection that has it, reads the socket's options and
// TCP_INFO (for channelz, which OnAir never turns on) into some 350 bytes
// it keeps for the connection's life, on every room replica connection.
// The Conn's own reads, writes and socket options go through the
// embedded *net.TCPConn, which still has it.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return nil, errNoSyscallConn }

// ReadOnReady waits until c has data, then takes a buffer of bufSize
// from pool and reads into it; it returns the buffer (the caller puts it
// back), the bytes read and an error. A gRPC transport reads through it
// when its connection has it (gRPC's readyreader.Reader, matched by this
// method's signature), so an idle connection pins no read buffer: gRPC
// does so itself for a *net.TCPConn, which a wrapped connection is not,
// and otherwise keeps a bufio.Reader of the read buffer's size for the
// connection's whole life (a KiB of each idle session on a room replica).
// The read skips the syscall entry as Read does.
func (c *Conn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	if bufSize <= 0 {
		return nil, 0, nil
	}
	st := &c.ready
	st.bufSize, st.pool = bufSize, pool
	err := c.raw.Read(st.read)
	buf, n, errno := st.buf, st.n, st.errno
	st.pool, st.buf, st.n, st.errno = nil, nil, 0, 0
	switch {
	case err != nil:
	case errno != 0:
		err = c.opError("read", errno)
	case n == 0:
		err = io.EOF
	default:
		return buf, n, nil
	}
	if buf != nil {
		pool.Put(buf)
	}
	return nil, 0, err
}

// readReady is ReadOnReady's read, called by the poller when the socket
// may have data; it reports whether it is done (false: wait for data).
func (c *Conn) readReady(fd uintptr) bool {
	st := &c.ready
	st.buf = st.pool.Get(st.bufSize)
	b := *st.buf
	st.n, st.errno = sysRead(fd, b)
	if st.errno == syscall.EAGAIN {
		// Nothing to read: the buffer goes back while this connection
		// waits in the poller.
		st.pool.Put(st.buf)
		st.buf = nil
		return false
	}
	return true
}

// sysRead is one read(2) of fd into b, tried again when interrupted.
func sysRead(fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if e != syscall.EINTR {
			return int(r), e
		}
	}
}

// Write writes all of b like net.Conn's Write.
func (c *Conn) Write(b []byte) (int, error) {
	var (
		n     int
		errno syscall.Errno
	)
	err := c.raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[n])), uintptr(len(b)-n))
			switch e {
			case 0:
				n += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // the socket is full: wait in the poller
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if err != nil {
		return n, err
	}
	if errno != 0 {
		return n, c.opError("write", errno)
	}
	return n, nil
}

// opError is the error net.Conn would return for errno.
func (c *Conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

// setUserTimeout sets c's TCP_USER_TIMEOUT; a socket that refuses keeps
// the kernel's default.
func setUserTimeout(c *net.TCPConn, d time.Duration) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d/time.Millisecond))
	})
}
