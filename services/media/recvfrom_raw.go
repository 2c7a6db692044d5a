//go:build linux && (amd64 || arm64)

package media

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawReceiver makes the socket's reads raw system calls, for the reason
// rawSender's sends are: a read through the runtime's syscall entry wakes
// the scheduler's monitor whenever it sleeps, and it sleeps whenever the
// edge has been idle for an instant, between two frames, so every frame
// paid for a wake of the monitor and a millisecond of its 20 µs polls.
// The socket is non-blocking; with nothing to read the read waits in the
// poller (syscall.RawConn.Read).
type rawReceiver struct {
	rc syscall.RawConn
	// from is the sender's address of the read in progress; RawConn.Read
	// lets one read run at a time.
	from    unix.RawSockaddrInet4
	fromLen uint32
}

func newRawReceiver(c *net.UDPConn) *rawReceiver {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	return &rawReceiver{rc: rc}
}

// recv reads one datagram into b.
func (r *rawReceiver) recv(b []byte) (int, netip.AddrPort, error) {
	var (
		n     uintptr
		errno syscall.Errno
	)
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			r.fromLen = unix.SizeofSockaddrInet4
			n, _, errno = unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), 0,
				uintptr(unsafe.Pointer(&r.from)), uintptr(unsafe.Pointer(&r.fromLen)))
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			return true
		}
	})
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if errno != 0 {
		return 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Err: errno}
	}
	var from netip.AddrPort
	if r.from.Family == unix.AF_INET {
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&r.from.Port))[:])
		from = netip.AddrPortFrom(netip.AddrFrom4(r.from.Addr), port)
	}
	return int(n), from, nil
}
